//! Sign-up, login and token refresh.

use crate::auth::{hash_password, verify_password, Tokens};
use crate::command::{Access, Changes, Positioned, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::Json;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use domain::user::{check_password, normalize_email, User, UserCommand};
use domain::workspace::{Workspace, WorkspaceCommand};
use event_store::Loaded;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub const USER_EMAIL_SCOPE: &str = "user_email";

#[derive(Debug, Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    pub email: String,
    pub password: String,
    pub workspace_name: String,
}

/// A signed-up user and their first workspace, as stored with the idempotency key: tokens are
/// issued fresh on every answer, so none is ever stored.
#[derive(Debug, Serialize, Deserialize)]
pub struct Registered {
    pub user_id: Uuid,
    pub workspace_id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignupResponse {
    pub user_id: Uuid,
    pub workspace_id: Uuid,
    #[serde(flatten)]
    pub tokens: Tokens,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Creates a user and their first workspace, which they own.
#[utoipa::path(post, path = "/v1/auth/signup", tag = "auth", request_body = SignupRequest,
    responses((status = 201, body = Positioned<SignupResponse>), (status = 409, description = "email taken"),
              (status = 422, description = "invalid input")))]
pub async fn signup(
    State(state): State<AppState>,
    ctx: CommandContext,
    Json(request): Json<SignupRequest>,
) -> Result<Reply<SignupResponse>, ApiError> {
    let (user_id, workspace_id) = (Uuid::now_v7(), Uuid::now_v7());
    let result = state
        .try_execute(
            &ctx,
            Access::Anyone,
            StatusCode::CREATED,
            async |_| check(request.clone()).await,
            |(email, password_hash, name)| {
                let mut changes = Changes::default().in_workspace(workspace_id);
                let register = UserCommand::Register {
                    user_id,
                    email: email.clone(),
                    password_hash,
                };
                changes.decide(user_id, &Loaded::<User>::empty(), register)?;
                let create = WorkspaceCommand::Create {
                    workspace_id,
                    name,
                    owner_id: user_id,
                };
                changes.decide(workspace_id, &Loaded::<Workspace>::empty(), create)?;
                changes.reserve(USER_EMAIL_SCOPE, email, user_id);
                Ok((changes, Registered { user_id, workspace_id }))
            },
        )
        .await?;
    let reply = match result.map_err(ApiError::from) {
        Err(ApiError::Conflict { .. }) => Err(ApiError::Conflict {
            message: "an account with this email already exists".into(),
            current_version: None,
        }),
        other => other,
    }?;
    // Tokens are issued fresh on every answer, so none is ever stored with the idempotency key.
    let tokens = state.tokens.issue(reply.body.answer.user_id)?;
    Ok(reply.map(|registered| SignupResponse {
        user_id: registered.user_id,
        workspace_id: registered.workspace_id,
        tokens,
    }))
}

/// Checks every field at once, then hashes the password: the slow step, so only for valid input.
async fn check(request: SignupRequest) -> Result<(String, String, String), ApiError> {
    let email = normalize_email(&request.email);
    let password = check_password(&request.password);
    let name = domain::workspace::check_workspace_name(&request.workspace_name);
    let mut problems = vec![];
    for result in [email.as_ref().err(), password.as_ref().err(), name.as_ref().err()] {
        if let Some(domain::DomainError::Invalid(fields)) = result {
            problems.extend(fields.iter().cloned());
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let email = email?;
    let password_hash = hash_password(request.password).await?;
    Ok((email, password_hash, request.workspace_name))
}

/// Exchanges email and password for tokens.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = Tokens), (status = 401, description = "wrong email or password")))]
pub async fn login(
    State(state): State<AppState>,
    _ctx: CommandContext,
    Json(request): Json<LoginRequest>,
) -> Result<axum::Json<Tokens>, ApiError> {
    let wrong = || ApiError::Unauthorized("wrong email or password".into());
    let user_id = match normalize_email(&request.email) {
        Ok(email) => state.repo.store().reservation(USER_EMAIL_SCOPE, &email).await?,
        Err(_) => None,
    };
    let hash = match user_id {
        Some(id) => Some(state.repo.load::<User>(id).await?.state.password_hash),
        None => None,
    };
    if !verify_password(request.password, hash).await? {
        return Err(wrong());
    }
    let user_id = user_id.ok_or_else(wrong)?;
    Ok(axum::Json(state.tokens.issue(user_id)?))
}

/// Exchanges a refresh token for a new pair of tokens.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = Tokens), (status = 401, description = "invalid or expired token")))]
pub async fn refresh(
    State(state): State<AppState>,
    _ctx: CommandContext,
    Json(request): Json<RefreshRequest>,
) -> Result<axum::Json<Tokens>, ApiError> {
    let user_id = state.tokens.verify_refresh(&request.refresh_token)?;
    if state.repo.load::<User>(user_id).await?.state.id.is_none() {
        return Err(ApiError::Unauthorized("the user no longer exists".into()));
    }
    Ok(axum::Json(state.tokens.issue(user_id)?))
}
