//! Test cases of a prompt card.

use crate::command::{stream_of, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::routes::cards::load_card;
use crate::AppState;
use assertions::Assertion;
use axum::extract::State;
use axum::http::StatusCode;
use domain::card::{CardCommand, PromptCard};
use domain::test_case::{CardFacts, TestCase, TestCaseCommand, TestCaseContent};
use domain::{Aggregate, Permission};
use event_store::Loaded;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertionDto {
    /// A promptfoo assertion type such as `contains` or `not-regex`.
    #[serde(rename = "type")]
    pub kind: String,
    /// May contain `{{ var }}` placeholders, rendered with the case's vars.
    pub value: Option<Value>,
    pub threshold: Option<f64>,
    pub weight: Option<f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
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
                })
                .collect(),
        }
    }
}

fn facts(card: &PromptCard) -> Result<CardFacts, ApiError> {
    let (Some(card_id), Some(workspace_id), Some(current)) = (card.id, card.workspace_id, card.current()) else {
        return Err(ApiError::NotFound("prompt card not found".into()));
    };
    Ok(CardFacts {
        card_id,
        workspace_id,
        variables: current.content.variables.clone(),
        archived: card.archived,
    })
}

/// A test case of the card, or 404.
async fn load_case(state: &AppState, card_id: Uuid, case_id: Uuid) -> Result<Loaded<TestCase>, ApiError> {
    let case = state.repo.load::<TestCase>(case_id).await?;
    if case.state.card_id != Some(card_id) || case.state.deleted {
        return Err(ApiError::NotFound("test case not found".into()));
    }
    Ok(case)
}

/// Adds a test case; its vars are checked against the card's current variables.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/prompt-cards/{card}/test-cases", tag = "test-cases",
    request_body = TestCaseRequest, params(("ws" = Uuid, Path), ("card" = Uuid, Path)),
    responses((status = 201, body = crate::routes::workspaces::Created), (status = 404), (status = 409), (status = 422)))]
pub async fn create_test_case(
    State(state): State<AppState>,
    Path((workspace_id, card_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
    Json(request): Json<TestCaseRequest>,
) -> Result<Reply, ApiError> {
    state
        .workspace_access(&ctx, workspace_id, Permission::WriteCards)
        .await?;
    if let Some(reply) = state.replay(&ctx, StatusCode::CREATED).await? {
        return Ok(reply);
    }
    let card = load_card(&state, workspace_id, card_id).await?;
    let case_id = Uuid::now_v7();
    let empty = Loaded {
        state: TestCase::default(),
        version: 0,
    };
    let events = empty.state.decide(TestCaseCommand::Create {
        case_id,
        card: facts(&card.state)?,
        content: request.into_content(),
    })?;
    // The card records the case in the same append, at the version it was checked against.
    let card_events = card.state.decide(CardCommand::AttachTestCase { case_id })?;
    state
        .commit(
            &ctx,
            Some(workspace_id),
            vec![
                stream_of(card_id, &card, &card_events),
                stream_of(case_id, &empty, &events),
            ],
            vec![],
            StatusCode::CREATED,
            json!({ "id": case_id }),
        )
        .await
}

/// Replaces a test case's content.
#[utoipa::path(put, path = "/v1/workspaces/{ws}/prompt-cards/{card}/test-cases/{case}", tag = "test-cases",
    request_body = TestCaseRequest, params(("ws" = Uuid, Path), ("card" = Uuid, Path), ("case" = Uuid, Path)),
    responses((status = 200, body = crate::routes::workspaces::Created), (status = 404), (status = 422)))]
pub async fn update_test_case(
    State(state): State<AppState>,
    Path((workspace_id, card_id, case_id)): Path<(Uuid, Uuid, Uuid)>,
    ctx: CommandContext,
    Json(request): Json<TestCaseRequest>,
) -> Result<Reply, ApiError> {
    state
        .workspace_access(&ctx, workspace_id, Permission::WriteCards)
        .await?;
    if let Some(reply) = state.replay(&ctx, StatusCode::OK).await? {
        return Ok(reply);
    }
    let card = load_card(&state, workspace_id, card_id).await?;
    let case = load_case(&state, card_id, case_id).await?;
    let events = case.state.decide(TestCaseCommand::Update {
        card: facts(&card.state)?,
        content: request.into_content(),
    })?;
    state
        .commit(
            &ctx,
            Some(workspace_id),
            vec![stream_of(case_id, &case, &events)],
            vec![],
            StatusCode::OK,
            json!({ "id": case_id }),
        )
        .await
}

/// Deletes a test case (its history stays in the event store).
#[utoipa::path(delete, path = "/v1/workspaces/{ws}/prompt-cards/{card}/test-cases/{case}", tag = "test-cases",
    params(("ws" = Uuid, Path), ("card" = Uuid, Path), ("case" = Uuid, Path)),
    responses((status = 200, description = "deleted"), (status = 404)))]
pub async fn delete_test_case(
    State(state): State<AppState>,
    Path((workspace_id, card_id, case_id)): Path<(Uuid, Uuid, Uuid)>,
    ctx: CommandContext,
) -> Result<Reply, ApiError> {
    state
        .workspace_access(&ctx, workspace_id, Permission::WriteCards)
        .await?;
    if let Some(reply) = state.replay(&ctx, StatusCode::OK).await? {
        return Ok(reply);
    }
    let card = load_card(&state, workspace_id, card_id).await?;
    let case = load_case(&state, card_id, case_id).await?;
    let events = case.state.decide(TestCaseCommand::Delete)?;
    let card_events = card.state.decide(CardCommand::DetachTestCase { case_id })?;
    state
        .commit(
            &ctx,
            Some(workspace_id),
            vec![
                stream_of(card_id, &card, &card_events),
                stream_of(case_id, &case, &events),
            ],
            vec![],
            StatusCode::OK,
            json!({ "id": case_id, "deleted": true }),
        )
        .await
}
