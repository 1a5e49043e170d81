//! Workspaces, their members and API keys.

use crate::auth::{generate_api_key, Principal};
use crate::command::{stream_of, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::routes::auth::USER_EMAIL_SCOPE;
use crate::{AppState, API_KEY_SCOPE};
use axum::extract::State;
use axum::http::StatusCode;
use domain::user::normalize_email;
use domain::workspace::{Workspace, WorkspaceCommand};
use domain::{Aggregate, Permission, Role};
use event_store::{Loaded, Reservation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    pub id: Uuid,
    pub position: i64,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleDto {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl From<RoleDto> for Role {
    fn from(role: RoleDto) -> Self {
        match role {
            RoleDto::Owner => Role::Owner,
            RoleDto::Admin => Role::Admin,
            RoleDto::Member => Role::Member,
            RoleDto::Viewer => Role::Viewer,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub email: String,
    pub role: RoleDto,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRole {
    pub role: RoleDto,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberReply {
    pub user_id: Uuid,
    pub role: RoleDto,
    pub position: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    pub role: RoleDto,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    pub id: Uuid,
    /// The full key. It is shown once and cannot be retrieved later.
    pub key: String,
    pub name: String,
    pub role: RoleDto,
    pub position: i64,
}

/// Creates a workspace owned by the calling user.
#[utoipa::path(post, path = "/v1/workspaces", tag = "workspaces", request_body = CreateWorkspace,
    responses((status = 201, body = Created), (status = 401), (status = 422)))]
pub async fn create_workspace(
    State(state): State<AppState>,
    ctx: CommandContext,
    Json(request): Json<CreateWorkspace>,
) -> Result<Reply, ApiError> {
    let Principal::User(owner_id) = ctx.principal()? else {
        return Err(ApiError::Forbidden("API keys cannot create workspaces".into()));
    };
    if let Some(reply) = state.replay(&ctx, StatusCode::CREATED).await? {
        return Ok(reply);
    }
    let workspace_id = Uuid::now_v7();
    let empty = Loaded {
        state: Workspace::default(),
        version: 0,
    };
    let events = empty.state.decide(WorkspaceCommand::Create {
        workspace_id,
        name: request.name,
        owner_id,
    })?;
    state
        .commit(
            &ctx,
            Some(workspace_id),
            vec![stream_of(workspace_id, &empty, &events)],
            vec![],
            StatusCode::CREATED,
            json!({ "id": workspace_id }),
        )
        .await
}

/// Adds an existing user, by email, to the workspace.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/members", tag = "workspaces", request_body = AddMember,
    params(("ws" = Uuid, Path)),
    responses((status = 201, body = MemberReply), (status = 403), (status = 404), (status = 409)))]
pub async fn add_member(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
    Json(request): Json<AddMember>,
) -> Result<Reply, ApiError> {
    let (workspace, actor_role) = state
        .workspace_access(&ctx, workspace_id, Permission::ManageMembers)
        .await?;
    if let Some(reply) = state.replay(&ctx, StatusCode::CREATED).await? {
        return Ok(reply);
    }
    let email = normalize_email(&request.email)?;
    let user_id = state
        .repo
        .store()
        .reservation(USER_EMAIL_SCOPE, &email)
        .await?
        .ok_or_else(|| ApiError::NotFound("no user has signed up with this email".into()))?;
    let events = workspace.state.decide(WorkspaceCommand::AddMember {
        actor_role,
        user_id,
        role: request.role.into(),
    })?;
    state
        .commit(
            &ctx,
            Some(workspace_id),
            vec![stream_of(workspace_id, &workspace, &events)],
            vec![],
            StatusCode::CREATED,
            json!({ "user_id": user_id, "role": request.role }),
        )
        .await
}

/// Changes a member's role.
#[utoipa::path(patch, path = "/v1/workspaces/{ws}/members/{user_id}", tag = "workspaces",
    request_body = ChangeRole, params(("ws" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 200, body = MemberReply), (status = 403), (status = 404), (status = 409)))]
pub async fn change_member_role(
    State(state): State<AppState>,
    Path((workspace_id, user_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
    Json(request): Json<ChangeRole>,
) -> Result<Reply, ApiError> {
    let (workspace, actor_role) = state
        .workspace_access(&ctx, workspace_id, Permission::ManageMembers)
        .await?;
    if let Some(reply) = state.replay(&ctx, StatusCode::OK).await? {
        return Ok(reply);
    }
    let events = workspace.state.decide(WorkspaceCommand::ChangeMemberRole {
        actor_role,
        user_id,
        role: request.role.into(),
    })?;
    state
        .commit(
            &ctx,
            Some(workspace_id),
            vec![stream_of(workspace_id, &workspace, &events)],
            vec![],
            StatusCode::OK,
            json!({ "user_id": user_id, "role": request.role }),
        )
        .await
}

/// Removes a member from the workspace.
#[utoipa::path(delete, path = "/v1/workspaces/{ws}/members/{user_id}", tag = "workspaces",
    params(("ws" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 200, description = "removed; body carries position"), (status = 403), (status = 404), (status = 409)))]
pub async fn remove_member(
    State(state): State<AppState>,
    Path((workspace_id, user_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
) -> Result<Reply, ApiError> {
    let (workspace, actor_role) = state
        .workspace_access(&ctx, workspace_id, Permission::ManageMembers)
        .await?;
    if let Some(reply) = state.replay(&ctx, StatusCode::OK).await? {
        return Ok(reply);
    }
    let events = workspace
        .state
        .decide(WorkspaceCommand::RemoveMember { actor_role, user_id })?;
    state
        .commit(
            &ctx,
            Some(workspace_id),
            vec![stream_of(workspace_id, &workspace, &events)],
            vec![],
            StatusCode::OK,
            json!({ "user_id": user_id, "removed": true }),
        )
        .await
}

/// Creates an API key for the workspace. The key is in this response only.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/api-keys", tag = "workspaces", request_body = CreateApiKey,
    params(("ws" = Uuid, Path)),
    responses((status = 201, body = ApiKeyCreated), (status = 403), (status = 404)))]
pub async fn create_api_key(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
    Json(request): Json<CreateApiKey>,
) -> Result<Reply, ApiError> {
    let (workspace, actor_role) = state
        .workspace_access(&ctx, workspace_id, Permission::ManageMembers)
        .await?;
    // A retried request must not show a key again: the secret was never stored.
    let already_created = || ApiError::Conflict {
        message: "this API key was already created; its secret was shown once and cannot be shown again".into(),
        current_version: None,
    };
    if state.replay(&ctx, StatusCode::CREATED).await?.is_some() {
        return Err(already_created());
    }
    let key = generate_api_key();
    let events = workspace.state.decide(WorkspaceCommand::CreateApiKey {
        actor_role,
        key_id: key.key_id,
        name: request.name.clone(),
        role: request.role.into(),
        secret_hash: key.secret_hash,
    })?;
    let mut reply = state
        .commit(
            &ctx,
            Some(workspace_id),
            vec![stream_of(workspace_id, &workspace, &events)],
            vec![Reservation {
                scope: API_KEY_SCOPE.into(),
                value: key.key_id.to_string(),
                stream_id: workspace_id,
            }],
            StatusCode::CREATED,
            json!({ "id": key.key_id, "name": request.name.trim(), "role": request.role }),
        )
        .await?;
    if reply.replayed {
        return Err(already_created());
    }
    reply.body["key"] = json!(key.key);
    Ok(reply)
}
