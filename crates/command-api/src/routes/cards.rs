//! Prompt cards: create, update (a new version), labels and archive.

use crate::command::{Access, Changes, Loader, Positioned, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use domain::card::{CardCommand, CardContent, PromptCard};
use domain::names::card_name_scope;
use domain::prompt::{legacy_name, name_candidates, ChatMessage, ChatRole};
use domain::template::{VarType, Variable};
use domain::Permission;
use event_store::{AppendError, Loaded};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
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

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChatRoleDto {
    System,
    User,
    Assistant,
}

/// One message of a chat prompt; `content` is a template.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatMessageDto {
    pub role: ChatRoleDto,
    pub content: String,
}

impl From<ChatMessageDto> for ChatMessage {
    fn from(dto: ChatMessageDto) -> Self {
        ChatMessage {
            role: match dto.role {
                ChatRoleDto::System => ChatRole::System,
                ChatRoleDto::User => ChatRole::User,
                ChatRoleDto::Assistant => ChatRole::Assistant,
            },
            content: dto.content,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCard {
    /// The slug the card is served under (`^[a-z0-9][a-z0-9._-]{0,99}$`), unique in the
    /// workspace. Derived from the title, and made unique, when absent.
    pub name: Option<String>,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// A text prompt, in Jinja/Nunjucks syntax: `{{ name }}`. Give this or `messages`.
    #[serde(default)]
    pub template: String,
    /// A chat prompt: messages whose contents are templates. Give this or `template`.
    #[serde(default)]
    pub messages: Vec<ChatMessageDto>,
    #[serde(default)]
    pub variables: Vec<VariableDto>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Model settings passed to providers where they apply (model, temperature, max_tokens, ...).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
}

impl CreateCard {
    fn into_content(self) -> CardContent {
        CardContent {
            title: self.title,
            description: self.description,
            template: self.template,
            messages: self.messages.into_iter().map(ChatMessage::from).collect(),
            variables: self.variables.into_iter().map(Variable::from).collect(),
            tags: self.tags,
            config: self.config,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCard {
    /// A new name for the card; absent keeps the name it has.
    pub name: Option<String>,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub template: String,
    #[serde(default)]
    pub messages: Vec<ChatMessageDto>,
    #[serde(default)]
    pub variables: Vec<VariableDto>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
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
    /// The name the card is served under (absent in answers stored before cards had names).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
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
                if after.name != card.state.name {
                    let scope = card_name_scope(workspace_id);
                    changes.reserve(&scope, after.name.clone(), card_id);
                    changes.release(&scope, card.state.name.clone(), card_id);
                }
                Ok((changes, answer(&after)))
            },
        )
        .await?;
    let result = match result {
        Err(AppendError::Reserved { value, .. }) => return Err(ApiError::NameTaken(value)),
        other => other,
    };
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
    responses((status = 201, body = Positioned<CardReply>), (status = 403), (status = 404), (status = 409, description = "the name is taken; details name it"), (status = 422)))]
pub async fn create_card(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
    Json(request): Json<CreateCard>,
) -> Result<Reply<CardReply>, ApiError> {
    let card_id = Uuid::now_v7();
    let given_name = request.name.clone();
    let title = request.title.clone();
    let content = request.into_content();
    let scope = card_name_scope(workspace_id);
    let access = Access::Workspace(workspace_id, Permission::WriteCards);
    // A derived name another creator claims first is derived again, a few times.
    for attempt in 1.. {
        let result = state
            .try_execute(
                &ctx,
                access,
                StatusCode::CREATED,
                async |loader| {
                    let name = match &given_name {
                        Some(name) => name.clone(),
                        None => free_name(&loader, &scope, &title, card_id).await?,
                    };
                    Ok((name, Loaded::<PromptCard>::empty()))
                },
                |(name, card)| {
                    let mut changes = Changes::default();
                    let command = CardCommand::Create {
                        card_id,
                        workspace_id,
                        name: name.clone(),
                        content: content.clone(),
                    };
                    changes.decide(card_id, &card, command)?;
                    changes.reserve(&scope, name.clone(), card_id);
                    Ok((
                        changes,
                        CardReply {
                            id: card_id,
                            version: 1,
                            name,
                        },
                    ))
                },
            )
            .await?;
        return match result {
            Err(AppendError::Reserved { .. }) if given_name.is_none() && attempt < 5 => continue,
            Err(AppendError::Reserved { value, .. }) => Err(ApiError::NameTaken(value)),
            other => other.map_err(ApiError::from),
        };
    }
    unreachable!("the loop returns")
}

/// The first name the title suggests that no card of the workspace holds.
async fn free_name(loader: &Loader, scope: &str, title: &str, card_id: Uuid) -> Result<String, ApiError> {
    for candidate in name_candidates(title).take(100) {
        if loader.reservation(scope, &candidate).await?.is_none() {
            return Ok(candidate);
        }
    }
    // A hundred cards of one title: the id's random tail sets this one apart.
    Ok(legacy_name(title, card_id))
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
    let name = request.name;
    let content = CreateCard {
        name: None,
        title: request.title,
        description: request.description,
        template: request.template,
        messages: request.messages,
        variables: request.variables,
        tags: request.tags,
        config: request.config,
    }
    .into_content();
    let command = || {
        Ok(CardCommand::Update {
            expected_version: expected_version(&headers, request.expected_version)?,
            name: name.clone(),
            content: content.clone(),
        })
    };
    execute(&state, &ctx, workspace_id, card_id, command, |card| CardReply {
        id: card_id,
        version: card.version(),
        name: card.name.clone(),
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
