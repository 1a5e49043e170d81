//! Test runs: request one (the runner picks it up from the events topic) and cancel it.

use crate::command::{stream_of, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::routes::cards::load_card;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use domain::run::{ProviderSpec, RunCase, RunCommand, RunPlan, TestRun};
use domain::test_case::TestCase;
use domain::{Aggregate, DomainError, FieldError, Permission};
use event_store::Loaded;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// A provider: a promptfoo-style id, or `{id, config}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ProviderDto {
    Id(String),
    WithConfig(ProviderObject),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderObject {
    pub id: String,
    #[serde(default)]
    pub config: Value,
}

impl From<ProviderDto> for ProviderSpec {
    fn from(dto: ProviderDto) -> Self {
        match dto {
            ProviderDto::Id(id) => ProviderSpec {
                id,
                config: Value::Null,
            },
            ProviderDto::WithConfig(p) => ProviderSpec {
                id: p.id,
                config: p.config,
            },
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestRun {
    pub card_id: Uuid,
    /// Defaults to the card's current version.
    pub card_version: Option<u32>,
    /// e.g. `["echo", "openai:gpt-4o-mini", {"id": "ollama:chat:llama3", "config": {"temperature": 0}}]`
    pub providers: Vec<ProviderDto>,
    /// Defaults to every test case of the card.
    pub test_case_ids: Option<Vec<Uuid>>,
    /// How many times each case runs per provider; default 1.
    pub repeat: Option<u32>,
}

/// Requests a run of a card version's test cases against providers. The plan (template,
/// variables, cases, assertions) is snapshotted: later edits never change it.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/runs", tag = "runs", request_body = RequestRun,
    params(("ws" = Uuid, Path)),
    responses((status = 202, description = "queued: {run_id, position}"), (status = 404), (status = 409), (status = 422)))]
pub async fn request_run(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
    Json(request): Json<RequestRun>,
) -> Result<Reply, ApiError> {
    state
        .workspace_access(&ctx, workspace_id, Permission::WriteCards)
        .await?;
    if let Some(reply) = state.replay(&ctx, StatusCode::ACCEPTED).await? {
        return Ok(reply);
    }
    let card = load_card(&state, workspace_id, request.card_id).await?.state;
    if card.archived {
        return Err(DomainError::Conflict("the prompt card is archived".into()).into());
    }
    let card_version = request.card_version.unwrap_or(card.version());
    let content = card
        .at_version(card_version)
        .ok_or_else(|| {
            ApiError::invalid(
                "card_version",
                format!("must be an existing version, 1 to {}", card.version()),
            )
        })?
        .content
        .clone();

    let case_ids = request.test_case_ids.unwrap_or_else(|| card.test_cases.clone());
    let mut problems = Vec::new();
    let mut cases = Vec::new();
    for (i, case_id) in case_ids.iter().enumerate() {
        if !card.test_cases.contains(case_id) {
            problems.push(FieldError::new(
                format!("test_case_ids[{i}]"),
                "is not a test case of this card",
            ));
            continue;
        }
        let case = state.repo.load::<TestCase>(*case_id).await?.state;
        let Some(content) = case.content else { continue };
        cases.push(RunCase {
            case_id: *case_id,
            name: content.name,
            vars: content.vars,
            expected_output: content.expected_output,
            assertions: content.assertions,
        });
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }

    let run_id = Uuid::now_v7();
    let empty = Loaded {
        state: TestRun::default(),
        version: 0,
    };
    let events = empty.state.decide(RunCommand::Request {
        run_id,
        plan: RunPlan {
            workspace_id,
            card_id: request.card_id,
            card_version,
            template: content.template,
            variables: content.variables,
            cases,
            providers: request.providers.into_iter().map(ProviderSpec::from).collect(),
            repeat: request.repeat.unwrap_or(1),
        },
    })?;
    state
        .commit(
            &ctx,
            Some(workspace_id),
            vec![stream_of(run_id, &empty, &events)],
            vec![],
            StatusCode::ACCEPTED,
            json!({ "run_id": run_id }),
        )
        .await
}

/// Cancels a run: the runner makes no further provider calls for it.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/runs/{run}/cancel", tag = "runs",
    params(("ws" = Uuid, Path), ("run" = Uuid, Path)),
    responses((status = 200, description = "cancelled"), (status = 404), (status = 409)))]
pub async fn cancel_run(
    State(state): State<AppState>,
    Path((workspace_id, run_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
) -> Result<Reply, ApiError> {
    state
        .workspace_access(&ctx, workspace_id, Permission::WriteCards)
        .await?;
    if let Some(reply) = state.replay(&ctx, StatusCode::OK).await? {
        return Ok(reply);
    }
    let run = state.repo.load::<TestRun>(run_id).await?;
    if run.state.plan.as_ref().map(|p| p.workspace_id) != Some(workspace_id) {
        return Err(ApiError::NotFound("test run not found".into()));
    }
    let events = run.state.decide(RunCommand::Cancel)?;
    state
        .commit(
            &ctx,
            Some(workspace_id),
            vec![stream_of(run_id, &run, &events)],
            vec![],
            StatusCode::OK,
            json!({ "run_id": run_id, "status": "CANCELLED" }),
        )
        .await
}
