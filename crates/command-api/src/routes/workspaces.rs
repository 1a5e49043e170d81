//! Workspaces, their members and API keys.

use crate::auth::generate_api_key;
use crate::command::{Access, Changes, Created, Loader, Positioned, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::routes::auth::USER_EMAIL_SCOPE;
use crate::{AppState, API_KEY_SCOPE};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use domain::user::normalize_email;
use domain::workspace::{Workspace, WorkspaceCommand};
use domain::{Permission, Role};
use event_store::Loaded;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    pub name: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleDto {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl From<Role> for RoleDto {
    fn from(role: Role) -> Self {
        match role {
            Role::Owner => RoleDto::Owner,
            Role::Admin => RoleDto::Admin,
            Role::Member => RoleDto::Member,
            Role::Viewer => RoleDto::Viewer,
        }
    }
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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberReply {
    pub user_id: Uuid,
    pub role: RoleDto,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberRemoved {
    pub user_id: Uuid,
    pub removed: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    pub role: RoleDto,
    /// After this instant (RFC 3339) the key no longer works; absent, it works until revoked.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// An API key as stored with the idempotency key: without its secret.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiKeyStored {
    pub id: Uuid,
    pub name: String,
    pub role: RoleDto,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyCreated {
    pub id: Uuid,
    /// The full key. It is shown once and cannot be retrieved later.
    pub key: String,
    pub name: String,
    pub role: RoleDto,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ApiKeyStatus {
    Active,
    Expired,
    Revoked,
}

/// An API key as listed: everything but its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeySummary {
    pub id: Uuid,
    /// The start of the key, `pc_<id>`; the secret after it is never shown again.
    pub prefix: String,
    pub name: String,
    pub role: RoleDto,
    pub status: ApiKeyStatus,
    /// Absent for keys made before keys recorded it.
    pub created_at: Option<DateTime<Utc>>,
    /// To the minute: a use is recorded at most once a minute per process.
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyRevoked {
    pub id: Uuid,
    pub revoked: bool,
}

/// Creates a workspace owned by the calling user.
#[utoipa::path(post, path = "/v1/workspaces", tag = "workspaces", request_body = CreateWorkspace,
    responses((status = 201, body = Positioned<Created>), (status = 401), (status = 422)))]
pub async fn create_workspace(
    State(state): State<AppState>,
    ctx: CommandContext,
    Json(request): Json<CreateWorkspace>,
) -> Result<Reply<Created>, ApiError> {
    let workspace_id = Uuid::now_v7();
    let access = Access::User("create workspaces");
    let load = async |l: Loader| l.user_id();
    state
        .execute(&ctx, access, StatusCode::CREATED, load, |owner_id| {
            let mut changes = Changes::default().in_workspace(workspace_id);
            let command = WorkspaceCommand::Create {
                workspace_id,
                name: request.name.clone(),
                owner_id,
            };
            changes.decide(workspace_id, &Loaded::<Workspace>::empty(), command)?;
            Ok((changes, Created { id: workspace_id }))
        })
        .await
}

/// Adds an existing user, by email, to the workspace.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/members", tag = "workspaces", request_body = AddMember,
    params(("ws" = Uuid, Path)),
    responses((status = 201, body = Positioned<MemberReply>), (status = 403), (status = 404), (status = 409)))]
pub async fn add_member(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
    Json(request): Json<AddMember>,
) -> Result<Reply<MemberReply>, ApiError> {
    let access = Access::Workspace(workspace_id, Permission::ManageMembers);
    let load = async |l: Loader| {
        let email = normalize_email(&request.email)?;
        let user_id = l
            .reservation(USER_EMAIL_SCOPE, &email)
            .await?
            .ok_or_else(|| ApiError::NotFound("no user has signed up with this email".into()))?;
        Ok((l.workspace()?, user_id))
    };
    state
        .execute(
            &ctx,
            access,
            StatusCode::CREATED,
            load,
            |((workspace, actor_role), user_id)| {
                let mut changes = Changes::default();
                let command = WorkspaceCommand::AddMember {
                    actor_role,
                    user_id,
                    role: request.role.into(),
                };
                changes.decide(workspace_id, &workspace, command)?;
                Ok((
                    changes,
                    MemberReply {
                        user_id,
                        role: request.role,
                    },
                ))
            },
        )
        .await
}

/// Changes a member's role.
#[utoipa::path(patch, path = "/v1/workspaces/{ws}/members/{user_id}", tag = "workspaces",
    request_body = ChangeRole, params(("ws" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 200, body = Positioned<MemberReply>), (status = 403), (status = 404), (status = 409)))]
pub async fn change_member_role(
    State(state): State<AppState>,
    Path((workspace_id, user_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
    Json(request): Json<ChangeRole>,
) -> Result<Reply<MemberReply>, ApiError> {
    let access = Access::Workspace(workspace_id, Permission::ManageMembers);
    let load = async |l: Loader| l.workspace();
    state
        .execute(&ctx, access, StatusCode::OK, load, |(workspace, actor_role)| {
            let mut changes = Changes::default();
            let command = WorkspaceCommand::ChangeMemberRole {
                actor_role,
                user_id,
                role: request.role.into(),
            };
            changes.decide(workspace_id, &workspace, command)?;
            Ok((
                changes,
                MemberReply {
                    user_id,
                    role: request.role,
                },
            ))
        })
        .await
}

/// Removes a member from the workspace.
#[utoipa::path(delete, path = "/v1/workspaces/{ws}/members/{user_id}", tag = "workspaces",
    params(("ws" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 200, body = Positioned<MemberRemoved>, description = "removed"), (status = 403), (status = 404), (status = 409)))]
pub async fn remove_member(
    State(state): State<AppState>,
    Path((workspace_id, user_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
) -> Result<Reply<MemberRemoved>, ApiError> {
    let access = Access::Workspace(workspace_id, Permission::ManageMembers);
    let load = async |l: Loader| l.workspace();
    state
        .execute(&ctx, access, StatusCode::OK, load, |(workspace, actor_role)| {
            let mut changes = Changes::default();
            let command = WorkspaceCommand::RemoveMember { actor_role, user_id };
            changes.decide(workspace_id, &workspace, command)?;
            let answer = MemberRemoved { user_id, removed: true };
            Ok((changes, answer))
        })
        .await
}

/// Creates an API key for the workspace. The key is in this response only.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/api-keys", tag = "workspaces", request_body = CreateApiKey,
    params(("ws" = Uuid, Path)),
    responses((status = 201, body = Positioned<ApiKeyCreated>), (status = 403), (status = 404)))]
pub async fn create_api_key(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
    Json(request): Json<CreateApiKey>,
) -> Result<Reply<ApiKeyCreated>, ApiError> {
    let key = generate_api_key();
    let access = Access::Workspace(workspace_id, Permission::ManageMembers);
    let load = async |l: Loader| l.workspace();
    let reply = state
        .execute(&ctx, access, StatusCode::CREATED, load, |(workspace, actor_role)| {
            let mut changes = Changes::default();
            let command = WorkspaceCommand::CreateApiKey {
                actor_role,
                key_id: key.key_id,
                name: request.name.clone(),
                role: request.role.into(),
                secret_hash: key.secret_hash.clone(),
                created_at: Utc::now(),
                expires_at: request.expires_at,
            };
            changes.decide(workspace_id, &workspace, command)?;
            changes.reserve(API_KEY_SCOPE, key.key_id.to_string(), workspace_id);
            let answer = ApiKeyStored {
                id: key.key_id,
                name: request.name.trim().to_owned(),
                role: request.role,
                expires_at: request.expires_at,
            };
            Ok((changes, answer))
        })
        .await?;
    // A retried request must not show a key again: the secret was never stored.
    if reply.replayed {
        return Err(ApiError::Conflict {
            message: "this API key was already created; its secret was shown once and cannot be shown again".into(),
            current_version: None,
        });
    }
    Ok(reply.map(|stored| ApiKeyCreated {
        id: stored.id,
        key: key.key,
        name: stored.name,
        role: stored.role,
        expires_at: stored.expires_at,
    }))
}

/// Lists the workspace's API keys, revoked and expired ones included; never their secrets.
#[utoipa::path(get, path = "/v1/workspaces/{ws}/api-keys", tag = "workspaces",
    params(("ws" = Uuid, Path)),
    responses((status = 200, body = Vec<ApiKeySummary>), (status = 401), (status = 403), (status = 404)))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
) -> Result<axum::Json<Vec<ApiKeySummary>>, ApiError> {
    let (workspace, _) = state
        .authorise_read(&ctx, workspace_id, Permission::ManageMembers)
        .await?
        .workspace()?;
    let ids: Vec<Uuid> = workspace.state.api_keys.keys().copied().collect();
    let last_used = state.api_keys.last_used(&ids).await?;
    let now = Utc::now();
    let mut api_keys: Vec<ApiKeySummary> = workspace
        .state
        .api_keys
        .iter()
        .map(|(id, key)| ApiKeySummary {
            id: *id,
            prefix: format!("pc_{}", id.simple()),
            name: key.name.clone(),
            role: key.role.into(),
            status: match (key.revoked_at, key.is_live(now)) {
                (Some(_), _) => ApiKeyStatus::Revoked,
                (None, false) => ApiKeyStatus::Expired,
                (None, true) => ApiKeyStatus::Active,
            },
            created_at: key.created_at,
            last_used_at: last_used.get(id).copied(),
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
        })
        .collect();
    // Key ids are v4 (random), so the newest first is by creation time.
    api_keys.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    Ok(axum::Json(api_keys))
}

/// Revokes an API key: from the moment this answers, no request of either API accepts it, and
/// GraphQL subscriptions opened with it are closed within a second. Revoking twice is a no-op.
#[utoipa::path(delete, path = "/v1/workspaces/{ws}/api-keys/{key}", tag = "workspaces",
    params(("ws" = Uuid, Path), ("key" = Uuid, Path)),
    responses((status = 200, body = Positioned<ApiKeyRevoked>), (status = 401), (status = 403), (status = 404)))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    Path((workspace_id, key_id)): Path<(Uuid, Uuid)>,
    ctx: CommandContext,
) -> Result<Reply<ApiKeyRevoked>, ApiError> {
    let access = Access::Workspace(workspace_id, Permission::ManageMembers);
    let load = async |l: Loader| l.workspace();
    let revoked_at = Utc::now();
    state
        .execute(&ctx, access, StatusCode::OK, load, |(workspace, actor_role)| {
            let mut changes = Changes::default();
            let command = WorkspaceCommand::RevokeApiKey {
                actor_role,
                key_id,
                revoked_at,
            };
            changes.decide(workspace_id, &workspace, command)?;
            Ok((
                changes,
                ApiKeyRevoked {
                    id: key_id,
                    revoked: true,
                },
            ))
        })
        .await
}
