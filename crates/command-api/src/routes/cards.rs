//! Prompt cards: create, update (a new version), labels and archive.

use crate::command::{stream_of, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use domain::card::{CardCommand, CardContent, PromptCard};
use domain::template::{VarType, Variable};
use domain::{Aggregate, Permission};
use event_store::Loaded;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VarTypeDto {
    String,
    Number,
    Boolean,
    Json,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariableDto {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: VarTypeDto,
    pub description: Option<String>,
    /// A value of the declared type used when a test case gives none.
    pub default: Option<Value>,
    /// Defaults to true unless a default is declared.
    pub required: Option<bool>,
}

impl From<VariableDto> for Variable {
    fn from(dto: VariableDto) -> Self {
        Variable {
            required: dto.required.unwrap_or(dto.default.is_none()),
            name: dto.name,
            kind: match dto.kind {
                VarTypeDto::String => VarType::String,
                VarTypeDto::Number => VarType::Number,
                VarTypeDto::Boolean => VarType::Boolean,
                VarTypeDto::Json => VarType::Json,
            },
            description: dto.description,
            default: dto.default,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCard {
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Jinja/Nunjucks syntax: `{{ name }}`.
    pub template: String,
    #[serde(default)]
    pub variables: Vec<VariableDto>,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl CreateCard {
    fn into_content(self) -> CardContent {
        CardContent {
            title: self.title,
            description: self.description,
            template: self.template,
            variables: self.variables.into_iter().map(Variable::from).collect(),
            tags: self.tags,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCard {
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub template: String,
    #[serde(default)]
    pub variables: Vec<VariableDto>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The version being edited; alternatively send `If-Match: "<version>"`.
    pub expected_version: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveLabel {
    pub label: String,
    pub version: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardReply {
    pub id: Uuid,
    pub version: u32,
    pub position: i64,
}

/// A card of the workspace, or 404 whatever the reason it is not one.
pub(crate) async fn load_card(
    state: &AppState,
    workspace_id: Uuid,
    card_id: Uuid,
) -> Result<Loaded<PromptCard>, ApiError> {
    let card = state.repo.load::<PromptCard>(card_id).await?;
    if card.state.workspace_id != Some(workspace_id) {
        return Err(ApiError::NotFound("prompt card not found".into()));
    }
    Ok(card)
}

/// Runs a card command and appends its events. A concurrent writer that got there first turns
/// into the same 409 a stale `expected_version` gets, naming the version to edit now.
async fn execute(
    state: &AppState,
    ctx: &CommandContext,
    workspace_id: Uuid,
    card_id: Uuid,
    command: CardCommand,
    status: StatusCode,
    body: impl FnOnce(&PromptCard) -> Value,
) -> Result<Reply, ApiError> {
    let card = load_card(state, workspace_id, card_id).await?;
    let events = card.state.decide(command)?;
    let after = events.iter().fold(card.state.clone(), |s, e| s.evolve(e));
    let result = state
        .commit(
            ctx,
            Some(workspace_id),
            vec![stream_of(card_id, &card, &events)],
            vec![],
            status,
            body(&after),
        )
        .await;
    match result {
        Err(ApiError::Conflict { .. }) if !events.is_empty() => {
            let current = load_card(state, workspace_id, card_id).await?.state.version();
            Err(ApiError::Conflict {
                message: format!("the card was changed concurrently and is now at version {current}"),
                current_version: Some(current),
            })
        }
        other => other,
    }
}

/// Creates a card at version 1.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/prompt-cards", tag = "prompt-cards",
    request_body = CreateCard, params(("ws" = Uuid, Path)),
    responses((status = 201, body = CardReply), (status = 403), (status = 404), (status = 422)))]
pub async fn create_card(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
    Json(request): Json<CreateCard>,
) -> Result<Reply, ApiError> {
    state
        .workspace_access(&ctx, workspace_id, Permission::WriteCards)
        .await?;
    if let Some(reply) = state.replay(&ctx, StatusCode::CREATED).await? {
        return Ok(reply);
    }
    let card_id = Uuid::now_v7();
    let empty = Loaded {
        state: PromptCard::default(),
        version: 0,
    };
    let events = empty.state.decide(CardCommand::Create {
        card_id,
        workspace_id,
        content: request.into_content(),
    })?;
    state
        .commit(
            &ctx,
            Some(workspace_id),
            vec![stream_of(card_id, &empty, &events)],
            vec![],
            StatusCode::CREATED,
            json!({ "id": card_id, "version": 1 }),
        )
        .await
}

/// The version the client edited: `expected_version` in the body or an `If-Match` header.
fn expected_version(headers: &HeaderMap, body: Option<u32>) -> Result<u32, ApiError> {
    let header = match headers.get(header::IF_MATCH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
                .and_then(|v| v.parse::<u32>().ok())
                .ok_or_else(|| {
                    ApiError::BadRequest("If-Match must be a card version in quotes, such as \"3\"".into())
                })?,
        ),
    };
    match (header, body) {
        (Some(h), Some(b)) if h != b => Err(ApiError::invalid(
            "expected_version",
            format!("disagrees with If-Match ({b} vs {h})"),
        )),
        (Some(v), _) | (None, Some(v)) => Ok(v),
        (None, None) => Err(ApiError::invalid(
            "expected_version",
            "is required (or send If-Match: \"<version>\") so that no edit is silently lost",
        )),
    }
}

/// Writes a new version of the card.
#[utoipa::path(put, path = "/v1/workspaces/{ws}/prompt-cards/{card}", tag = "prompt-cards",
    request_body = UpdateCard, params(("ws" = Uuid, Path), ("card" = Uuid, Path)),
    responses((status = 200, body = CardReply), (status = 404), (status = 409, description = "stale version; body has current_version"), (status = 422)))]
pub async fn update_card(
    State(state): State<AppState>,
    Path((workspace_id, card_id)): Path<(Uuid, Uuid)>,
    headers: HeaderMap,
    ctx: CommandContext,
    Json(request): Json<UpdateCard>,
) -> Result<Reply, ApiError> {
    state
        .workspace_access(&ctx, workspace_id, Permission::WriteCards)
        .await?;
    let expected_version = expected_version(&headers, request.expected_version)?;
    if let Some(reply) = state.replay(&ctx, StatusCode::OK).await? {
        return Ok(reply);
    }
    let content = CreateCard {
        title: request.title,
        description: request.description,
        template: request.template,
        variables: request.variables,
        tags: request.tags,
    }
    .into_content();
    execute(
        &state,
        &ctx,
        workspace_id,
        card_id,
        CardCommand::Update {
            expected_version,
            content,
        },
        StatusCode::OK,
        |card| json!({ "id": card_id, "version": card.version() }),
    )
    .await
}

/// Points a label (such as `production`) at a version of the card.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/prompt-cards/{card}/labels", tag = "prompt-cards",
    request_body = MoveLabel, params(("ws" = Uuid, Path), ("card" = Uuid, Path)),
    responses((status = 200, description = "the label now points at the version"), (status = 404), (status = 422)))]
pub async fn move_label(
    State(state): State<AppState>,
    Path((workspace_id, card_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
    Json(request): Json<MoveLabel>,
) -> Result<Reply, ApiError> {
    state
        .workspace_access(&ctx, workspace_id, Permission::WriteCards)
        .await?;
    if let Some(reply) = state.replay(&ctx, StatusCode::OK).await? {
        return Ok(reply);
    }
    let (label, version) = (request.label.clone(), request.version);
    execute(
        &state,
        &ctx,
        workspace_id,
        card_id,
        CardCommand::MoveLabel {
            label: request.label,
            version,
        },
        StatusCode::OK,
        |_| json!({ "id": card_id, "label": label, "version": version }),
    )
    .await
}

/// Archives the card: hidden from queries, history kept.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/prompt-cards/{card}/archive", tag = "prompt-cards",
    params(("ws" = Uuid, Path), ("card" = Uuid, Path)),
    responses((status = 200, description = "archived"), (status = 404), (status = 409)))]
pub async fn archive_card(
    State(state): State<AppState>,
    Path((workspace_id, card_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
) -> Result<Reply, ApiError> {
    state
        .workspace_access(&ctx, workspace_id, Permission::WriteCards)
        .await?;
    if let Some(reply) = state.replay(&ctx, StatusCode::OK).await? {
        return Ok(reply);
    }
    execute(
        &state,
        &ctx,
        workspace_id,
        card_id,
        CardCommand::Archive,
        StatusCode::OK,
        |_| json!({ "id": card_id, "archived": true }),
    )
    .await
}
