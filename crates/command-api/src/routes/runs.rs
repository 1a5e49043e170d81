//! Test runs: request one (the runner picks it up from the events topic) and cancel it.

use crate::command::{Access, Changes, Loader, Positioned, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use domain::card::PromptCard;
use domain::run::{cases_to_run, CardRunRequest, ProviderSpec, RunCommand, RunStatus, TestRun};
use domain::test_case::TestCase;
use domain::Permission;
use event_store::Loaded;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// A provider: a promptfoo-style id, or `{id, config}`.
#[derive(Debug, Deserialize, ToSchema, Clone)]
#[serde(untagged)]
pub enum ProviderDto {
    Id(String),
    WithConfig(ProviderObject),
}

#[derive(Debug, Deserialize, ToSchema, Clone)]
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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunQueued {
    pub run_id: Uuid,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunCancelled {
    pub run_id: Uuid,
    #[schema(value_type = String, example = "CANCELLED")]
    pub status: RunStatus,
}

/// Requests a run of a card version's test cases against providers. The plan (template,
/// variables, cases, assertions) is snapshotted: later edits never change it.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/runs", tag = "runs", request_body = RequestRun,
    params(("ws" = Uuid, Path)),
    responses((status = 202, body = Positioned<RunQueued>, description = "queued"), (status = 404), (status = 409), (status = 422)))]
pub async fn request_run(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
    Json(request): Json<RequestRun>,
) -> Result<Reply<RunQueued>, ApiError> {
    let run_id = Uuid::now_v7();
    let access = Access::Workspace(workspace_id, Permission::WriteCards);
    let load = async |l: Loader| {
        // A workspace past its spend budget starts no run (422 naming the budget).
        l.workspace()?.0.state.may_spend()?;
        let card = l.in_workspace::<PromptCard>(request.card_id).await?.state;
        let case_ids = cases_to_run(&card, request.test_case_ids.clone());
        // Ids that are not the card's are refused by `decide`; there is nothing to read for them.
        let mut cases = Vec::with_capacity(case_ids.len());
        for case_id in case_ids.iter().filter(|id| card.test_cases.contains(id)) {
            cases.push(l.in_workspace::<TestCase>(*case_id).await?.state);
        }
        Ok(CardRunRequest {
            card,
            card_version: request.card_version,
            case_ids,
            cases,
            providers: request.providers.iter().cloned().map(ProviderSpec::from).collect(),
            repeat: request.repeat.unwrap_or(1),
            comparison_id: None,
        })
    };
    state
        .execute(&ctx, access, StatusCode::ACCEPTED, load, |request| {
            let mut changes = Changes::default();
            let command = RunCommand::RequestForCard { run_id, request };
            changes.decide(run_id, &Loaded::<TestRun>::empty(), command)?;
            Ok((changes, RunQueued { run_id }))
        })
        .await
}

/// Cancels a run: the runner makes no further provider calls for it.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/runs/{run}/cancel", tag = "runs",
    params(("ws" = Uuid, Path), ("run" = Uuid, Path)),
    responses((status = 200, body = Positioned<RunCancelled>, description = "cancelled"), (status = 404), (status = 409)))]
pub async fn cancel_run(
    State(state): State<AppState>,
    Path((workspace_id, run_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
) -> Result<Reply<RunCancelled>, ApiError> {
    let access = Access::Workspace(workspace_id, Permission::WriteCards);
    let load = async |l: Loader| l.in_workspace::<TestRun>(run_id).await;
    state
        .execute(&ctx, access, StatusCode::OK, load, |run| {
            let mut changes = Changes::default();
            changes.decide(run_id, &run, RunCommand::Cancel)?;
            let answer = RunCancelled {
                run_id,
                status: RunStatus::Cancelled,
            };
            Ok((changes, answer))
        })
        .await
}
