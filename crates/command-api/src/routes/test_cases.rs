//! Test cases of a prompt card.

use crate::command::{Access, Changes, Created, Loader, Positioned, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::AppState;
use assertions::Assertion;
use axum::extract::State;
use axum::http::StatusCode;
use domain::card::{CardCommand, PromptCard};
use domain::test_case::{CardFacts, TestCase, TestCaseCommand, TestCaseContent};
use domain::Permission;
use event_store::Loaded;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct AssertionDto {
    /// A promptfoo assertion type such as `contains` or `not-regex`.
    #[serde(rename = "type")]
    pub kind: String,
    /// May contain `{{ var }}` placeholders, rendered with the case's vars.
    pub value: Option<Value>,
    pub threshold: Option<f64>,
    pub weight: Option<f64>,
    /// Model-graded types only: the grading model, `openai:chat:<model>` (or
    /// `openai:embedding:<model>` for `similar`) or `{id, config}`. Default: the runner's.
    #[schema(value_type = Option<Object>)]
    pub provider: Option<Value>,
    /// Model-graded types only: a grading prompt replacing the default (text or
    /// `[{role, content}]`; for `g-eval`, `{steps?, evaluate?}`).
    #[serde(rename = "rubricPrompt")]
    #[schema(value_type = Option<Object>)]
    pub rubric_prompt: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct TestCaseRequest {
    pub name: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub vars: BTreeMap<String, Value>,
    pub expected_output: Option<String>,
    #[serde(default)]
    pub assertions: Vec<AssertionDto>,
}

impl TestCaseRequest {
    fn into_content(self) -> TestCaseContent {
        TestCaseContent {
            name: self.name,
            vars: self.vars.into_iter().collect::<Map<String, Value>>(),
            expected_output: self.expected_output,
            assertions: self
                .assertions
                .into_iter()
                .map(|a| Assertion {
                    kind: a.kind,
                    value: a.value,
                    threshold: a.threshold,
                    weight: a.weight,
                    provider: a.provider,
                    rubric_prompt: a.rubric_prompt,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeletedReply {
    pub id: Uuid,
    pub deleted: bool,
}

/// Adds a test case; its vars are checked against the card's current variables.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/prompt-cards/{card}/test-cases", tag = "test-cases",
    request_body = TestCaseRequest, params(("ws" = Uuid, Path), ("card" = Uuid, Path)),
    responses((status = 201, body = Positioned<Created>), (status = 404), (status = 409), (status = 422)))]
pub async fn create_test_case(
    State(state): State<AppState>,
    Path((workspace_id, card_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
    Json(request): Json<TestCaseRequest>,
) -> Result<Reply<Created>, ApiError> {
    let case_id = Uuid::now_v7();
    let access = Access::Workspace(workspace_id, Permission::WriteCards);
    let load = async |l: Loader| l.in_workspace::<PromptCard>(card_id).await;
    state
        .execute(&ctx, access, StatusCode::CREATED, load, |card| {
            let mut changes = Changes::default();
            // The card records the case in the same append, at the version it was checked
            // against; the card's stream comes first, as in an import.
            changes.decide(card_id, &card, CardCommand::AttachTestCase { case_id })?;
            let command = TestCaseCommand::Create {
                case_id,
                card: CardFacts::of(&card.state)?,
                content: request.clone().into_content(),
            };
            changes.decide(case_id, &Loaded::<TestCase>::empty(), command)?;
            Ok((changes, Created { id: case_id }))
        })
        .await
}

/// Replaces a test case's content.
#[utoipa::path(put, path = "/v1/workspaces/{ws}/prompt-cards/{card}/test-cases/{case}", tag = "test-cases",
    request_body = TestCaseRequest, params(("ws" = Uuid, Path), ("card" = Uuid, Path), ("case" = Uuid, Path)),
    responses((status = 200, body = Positioned<Created>), (status = 404), (status = 422)))]
pub async fn update_test_case(
    State(state): State<AppState>,
    Path((workspace_id, card_id, case_id)): Path<(Uuid, Uuid, Uuid)>,
    ctx: CommandContext,
    Json(request): Json<TestCaseRequest>,
) -> Result<Reply<Created>, ApiError> {
    let access = Access::Workspace(workspace_id, Permission::WriteCards);
    let load = async |l: Loader| {
        let card = l.in_workspace::<PromptCard>(card_id).await?;
        Ok((card, l.in_workspace::<TestCase>(case_id).await?))
    };
    state
        .execute(&ctx, access, StatusCode::OK, load, |(card, case)| {
            let mut changes = Changes::default();
            let command = TestCaseCommand::Update {
                card: CardFacts::of(&card.state)?,
                content: request.clone().into_content(),
            };
            changes.decide(case_id, &case, command)?;
            Ok((changes, Created { id: case_id }))
        })
        .await
}

/// Deletes a test case (its history stays in the event store).
#[utoipa::path(delete, path = "/v1/workspaces/{ws}/prompt-cards/{card}/test-cases/{case}", tag = "test-cases",
    params(("ws" = Uuid, Path), ("card" = Uuid, Path), ("case" = Uuid, Path)),
    responses((status = 200, body = Positioned<DeletedReply>, description = "deleted"), (status = 404)))]
pub async fn delete_test_case(
    State(state): State<AppState>,
    Path((workspace_id, card_id, case_id)): Path<(Uuid, Uuid, Uuid)>,
    ctx: CommandContext,
) -> Result<Reply<DeletedReply>, ApiError> {
    let access = Access::Workspace(workspace_id, Permission::WriteCards);
    let load = async |l: Loader| {
        let card = l.in_workspace::<PromptCard>(card_id).await?;
        Ok((card, l.in_workspace::<TestCase>(case_id).await?))
    };
    state
        .execute(&ctx, access, StatusCode::OK, load, |(card, case)| {
            let mut changes = Changes::default();
            let deleted = case.decide(case_id, TestCaseCommand::Delete { card_id })?;
            changes.decide(card_id, &card, CardCommand::DetachTestCase { case_id })?;
            changes.push(deleted.append);
            let answer = DeletedReply {
                id: case_id,
                deleted: true,
            };
            Ok((changes, answer))
        })
        .await
}
