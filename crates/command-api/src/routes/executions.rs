//! Playground executions: try a card version, or an unsaved template, on one provider and watch
//! the answer stream in (GraphQL subscription `execution(id)` on the query API). The runner
//! picks the request up from the events topic.

use crate::command::{Access, Changes, Loader, Positioned, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::routes::cards::ChatMessageDto;
use crate::routes::runs::ProviderDto;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use domain::card::PromptCard;
use domain::execution::{Execution, ExecutionCommand, ExecutionRequest, ExecutionStatus};
use domain::Permission;
use event_store::Loaded;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestExecution {
    pub card_id: Uuid,
    /// Defaults to the card's current version; not used with `template` or `messages`.
    pub version: Option<u32>,
    /// An unsaved text template to try. It may use variables the card does not declare; those
    /// take optional strings.
    pub template: Option<String>,
    /// Unsaved chat messages to try, each content a template.
    pub messages: Option<Vec<ChatMessageDto>>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: Map<String, Value>,
    /// e.g. `"openai:gpt-4o-mini"` or `{"id": "ollama:chat:llama3", "config": {"temperature": 0}}`
    pub provider: ProviderDto,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecutionQueued {
    pub execution_id: Uuid,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecutionCancelled {
    pub execution_id: Uuid,
    #[schema(value_type = String, example = "CANCELLED")]
    pub status: ExecutionStatus,
}

/// Requests an execution: the prompt is rendered and checked now (422 naming each bad
/// variable), and fixed in the request's event.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/executions", tag = "executions",
    request_body = RequestExecution,
    params(("ws" = Uuid, Path)),
    responses((status = 202, body = Positioned<ExecutionQueued>, description = "queued; subscribe to execution(id)"),
        (status = 404), (status = 409), (status = 422)))]
pub async fn request_execution(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
    Json(request): Json<RequestExecution>,
) -> Result<Reply<ExecutionQueued>, ApiError> {
    let execution_id = Uuid::now_v7();
    let access = Access::Workspace(workspace_id, Permission::WriteCards);
    let load = async |l: Loader| {
        // A workspace past its spend budget calls no provider (422 naming the budget).
        l.workspace()?.0.state.may_spend()?;
        Ok(l.in_workspace::<PromptCard>(request.card_id).await?.state)
    };
    let RequestExecution {
        version,
        template,
        messages,
        variables,
        provider,
        ..
    } = request;
    let messages: Option<Vec<_>> = messages.map(|m| m.into_iter().map(Into::into).collect());
    state
        .execute(&ctx, access, StatusCode::ACCEPTED, load, |card| {
            let mut changes = Changes::default();
            let command = ExecutionCommand::Request {
                execution_id,
                request: Box::new(ExecutionRequest {
                    card,
                    version,
                    template: template.clone(),
                    messages: messages.clone(),
                    variables: variables.clone(),
                    provider: provider.clone().into(),
                }),
            };
            changes.decide(execution_id, &Loaded::<Execution>::empty(), command)?;
            Ok((changes, ExecutionQueued { execution_id }))
        })
        .await
}

/// Cancels an execution: the runner stops reading the answer and closes the connection to the
/// provider; subscribers get FAILED.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/executions/{execution}/cancel", tag = "executions",
    params(("ws" = Uuid, Path), ("execution" = Uuid, Path)),
    responses((status = 200, body = Positioned<ExecutionCancelled>, description = "cancelled"), (status = 404), (status = 409)))]
pub async fn cancel_execution(
    State(state): State<AppState>,
    Path((workspace_id, execution_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
) -> Result<Reply<ExecutionCancelled>, ApiError> {
    let access = Access::Workspace(workspace_id, Permission::WriteCards);
    let load = async |l: Loader| l.in_workspace::<Execution>(execution_id).await;
    state
        .execute(&ctx, access, StatusCode::OK, load, |execution| {
            let mut changes = Changes::default();
            changes.decide(execution_id, &execution, ExecutionCommand::Cancel)?;
            let answer = ExecutionCancelled {
                execution_id,
                status: ExecutionStatus::Cancelled,
            };
            Ok((changes, answer))
        })
        .await
}
