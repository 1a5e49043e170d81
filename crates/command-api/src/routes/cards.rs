//! Prompt cards: create, update (a new version), labels and archive.

use crate::command::{Access, Changes, Positioned, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use domain::card::{CardCommand, CardContent, PromptCard};
use domain::template::{VarType, Variable};
use domain::Permission;
use event_store::Loaded;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
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

/// A card and its version after the command.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CardReply {
    pub id: Uuid,
    pub version: u32,
}

/// A label and the version it now points at.
#[derive(Debug, Serialize, Deserialize, ToSchema, Clone)]
pub struct LabelReply {
    pub id: Uuid,
    pub label: String,
    pub version: u32,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ArchiveReply {
    pub id: Uuid,
    pub archived: bool,
}

/// Runs a command on an existing card; the command is parsed once the caller is authorised.
/// A concurrent writer that got there first turns into the
/// same 409 a stale `expected_version` gets, naming the version to edit now.
async fn execute<T: Serialize + DeserializeOwned>(
    state: &AppState,
    ctx: &CommandContext,
    workspace_id: Uuid,
    card_id: Uuid,
    command: impl Fn() -> Result<CardCommand, ApiError>,
    answer: impl Fn(&PromptCard) -> T,
) -> Result<Reply<T>, ApiError> {
    let access = Access::Workspace(workspace_id, Permission::WriteCards);
    let result = state
        .try_execute(
            ctx,
            access,
            StatusCode::OK,
            async |l| Ok((command()?, l.in_workspace::<PromptCard>(card_id).await?)),
            |(command, card)| {
                let mut changes = Changes::default();
                let after = changes.decide(card_id, &card, command)?;
                Ok((changes, answer(&after)))
            },
        )
        .await?;
    match result.map_err(ApiError::from) {
        Err(ApiError::Conflict { .. }) => {
            let current = state.repo.load::<PromptCard>(card_id).await?.state.version();
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
    responses((status = 201, body = Positioned<CardReply>), (status = 403), (status = 404), (status = 422)))]
pub async fn create_card(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
    Json(request): Json<CreateCard>,
) -> Result<Reply<CardReply>, ApiError> {
    let card_id = Uuid::now_v7();
    let command = CardCommand::Create {
        card_id,
        workspace_id,
        content: request.into_content(),
    };
    let access = Access::Workspace(workspace_id, Permission::WriteCards);
    state
        .execute(
            &ctx,
            access,
            StatusCode::CREATED,
            async |_| Ok(Loaded::<PromptCard>::empty()),
            |card| {
                let mut changes = Changes::default();
                changes.decide(card_id, &card, command.clone())?;
                Ok((
                    changes,
                    CardReply {
                        id: card_id,
                        version: 1,
                    },
                ))
            },
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
    responses((status = 200, body = Positioned<CardReply>), (status = 404), (status = 409, description = "stale version; body has current_version"), (status = 422)))]
pub async fn update_card(
    State(state): State<AppState>,
    Path((workspace_id, card_id)): Path<(Uuid, Uuid)>,
    headers: HeaderMap,
    ctx: CommandContext,
    Json(request): Json<UpdateCard>,
) -> Result<Reply<CardReply>, ApiError> {
    let content = CreateCard {
        title: request.title,
        description: request.description,
        template: request.template,
        variables: request.variables,
        tags: request.tags,
    }
    .into_content();
    let command = || {
        Ok(CardCommand::Update {
            expected_version: expected_version(&headers, request.expected_version)?,
            content: content.clone(),
        })
    };
    execute(&state, &ctx, workspace_id, card_id, command, |card| CardReply {
        id: card_id,
        version: card.version(),
    })
    .await
}

/// Points a label (such as `production`) at a version of the card.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/prompt-cards/{card}/labels", tag = "prompt-cards",
    request_body = MoveLabel, params(("ws" = Uuid, Path), ("card" = Uuid, Path)),
    responses((status = 200, body = Positioned<LabelReply>, description = "the label now points at the version"), (status = 404), (status = 422)))]
pub async fn move_label(
    State(state): State<AppState>,
    Path((workspace_id, card_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
    Json(request): Json<MoveLabel>,
) -> Result<Reply<LabelReply>, ApiError> {
    let answer = LabelReply {
        id: card_id,
        label: request.label.clone(),
        version: request.version,
    };
    let command = CardCommand::MoveLabel {
        label: request.label,
        version: request.version,
    };
    execute(
        &state,
        &ctx,
        workspace_id,
        card_id,
        || Ok(command.clone()),
        |_| answer.clone(),
    )
    .await
}

/// Archives the card: hidden from queries, history kept.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/prompt-cards/{card}/archive", tag = "prompt-cards",
    params(("ws" = Uuid, Path), ("card" = Uuid, Path)),
    responses((status = 200, body = Positioned<ArchiveReply>, description = "archived"), (status = 404), (status = 409)))]
pub async fn archive_card(
    State(state): State<AppState>,
    Path((workspace_id, card_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
) -> Result<Reply<ArchiveReply>, ApiError> {
    execute(
        &state,
        &ctx,
        workspace_id,
        card_id,
        || Ok(CardCommand::Archive),
        |_| ArchiveReply {
            id: card_id,
            archived: true,
        },
    )
    .await
}
