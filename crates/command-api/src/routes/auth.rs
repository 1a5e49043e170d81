//! Sign-up, login, sessions (refresh with rotation, logout) and password changes.

use crate::auth::{hash_password, verify_password, Tokens};
use crate::command::{Access, Changes, Loader, Positioned, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::Json;
use crate::AppState;
use auth::Principal;
use auth::SessionRef;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use domain::session::{Session, SessionCommand, SessionEndReason};
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
    /// The session sign-up started; absent from answers stored before sessions were.
    #[serde(default)]
    pub session_id: Option<Uuid>,
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
    let (user_id, workspace_id, session_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
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
                start_session(&mut changes, session_id, user_id)?;
                changes.reserve(USER_EMAIL_SCOPE, email, user_id);
                let registered = Registered {
                    user_id,
                    workspace_id,
                    session_id: Some(session_id),
                };
                Ok((changes, registered))
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
    let registered = &reply.body.answer;
    let tokens = match registered.session_id {
        Some(session_id) => state.tokens.issue_in_session(
            registered.user_id,
            SessionRef {
                session_id,
                generation: 0,
            },
        )?,
        None => state.tokens.issue(registered.user_id)?,
    };
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

fn start_session(changes: &mut Changes, session_id: Uuid, user_id: Uuid) -> Result<(), ApiError> {
    let start = SessionCommand::Start {
        session_id,
        user_id,
        started_at: chrono::Utc::now(),
    };
    changes.decide(session_id, &Loaded::<Session>::empty(), start)?;
    Ok(())
}

/// Exchanges email and password for tokens, starting a session. Failed attempts are counted
/// per email (whether or not it has an account) and per client address; past the limit every
/// attempt gets the same 429, so the answer says nothing about which emails have accounts.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = Tokens), (status = 401, description = "wrong email or password"),
              (status = 429, description = "too many failed attempts for this email or address")))]
pub async fn login(
    State(state): State<AppState>,
    ctx: CommandContext,
    Json(request): Json<LoginRequest>,
) -> Result<axum::Json<Tokens>, ApiError> {
    let wrong = || ApiError::Unauthorized("wrong email or password".into());
    let email = normalize_email(&request.email);
    let account = email.as_deref().unwrap_or(request.email.trim()).to_lowercase();
    let throttle = &state.login_throttle;
    throttle.check(&account, ctx.client_addr)?;
    let user_id = match &email {
        Ok(email) => state.repo.store().reservation(USER_EMAIL_SCOPE, email).await?,
        Err(_) => None,
    };
    let hash = match user_id {
        Some(id) => Some(state.repo.load::<User>(id).await?.state.password_hash),
        None => None,
    };
    // Unknown emails verify against a dummy hash, so both failures take as long.
    let verified = verify_password(request.password, hash).await?;
    let Some(user_id) = user_id.filter(|_| verified) else {
        throttle.failed(&account, ctx.client_addr);
        return Err(wrong());
    };
    throttle.succeeded(&account);
    let session_id = Uuid::now_v7();
    state
        .execute(
            &ctx,
            Access::Anyone,
            StatusCode::OK,
            async |_| Ok(()),
            |()| {
                let mut changes = Changes::default();
                start_session(&mut changes, session_id, user_id)?;
                Ok((changes, ()))
            },
        )
        .await?;
    let session = SessionRef {
        session_id,
        generation: 0,
    };
    Ok(axum::Json(state.tokens.issue_in_session(user_id, session)?))
}

/// What a refresh decided, as stored with an idempotency key (tokens never are).
#[derive(Debug, Serialize, Deserialize)]
enum Refreshed {
    Rotated { generation: u32 },
    Ended { reason: SessionEndReason },
}

/// Exchanges a refresh token for a new pair; the presented token is spent. Presenting a spent
/// token again ends its whole session (401): someone else holds a copy.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = Tokens),
              (status = 401, description = "invalid, expired, spent or logged-out token")))]
pub async fn refresh(
    State(state): State<AppState>,
    ctx: CommandContext,
    Json(request): Json<RefreshRequest>,
) -> Result<axum::Json<Tokens>, ApiError> {
    let (user_id, session) = state.tokens.verify_refresh(&request.refresh_token)?;
    let session =
        session.ok_or_else(|| ApiError::Unauthorized("this refresh token predates sessions; sign in again".into()))?;
    let session_id = session.session_id;
    let load = async |l: Loader| Ok((l.stream::<User>(user_id).await?, l.stream::<Session>(session_id).await?));
    let reply = state
        .execute(&ctx, Access::Anyone, StatusCode::OK, load, |(user, loaded)| {
            if user.state.id.is_none() || loaded.state.user_id != Some(user_id) {
                return Err(ApiError::Unauthorized("the session no longer exists".into()));
            }
            let mut changes = Changes::default();
            let command = SessionCommand::Refresh {
                generation: session.generation,
                cutoff: user.state.password_cutoff,
            };
            let after = changes
                .decide(session_id, &loaded, command)
                .map_err(|_| ApiError::Unauthorized("the refresh token is not valid".into()))?;
            let answer = match after.ended {
                Some(reason) => Refreshed::Ended { reason },
                None => Refreshed::Rotated {
                    generation: after.generation,
                },
            };
            Ok((changes, answer))
        })
        .await?;
    match reply.body.answer {
        Refreshed::Rotated { generation } => Ok(axum::Json(
            state
                .tokens
                .issue_in_session(user_id, SessionRef { session_id, generation })?,
        )),
        Refreshed::Ended { reason } => Err(ApiError::Unauthorized(
            match reason {
                SessionEndReason::LoggedOut => "the session was logged out; sign in again",
                SessionEndReason::RefreshTokenReused => {
                    "this refresh token was already used; its session is revoked, sign in again"
                }
                SessionEndReason::PasswordChanged => "the password changed; sign in again",
            }
            .into(),
        )),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    pub refresh_token: String,
}

/// Ends the refresh token's session: none of its refresh tokens works again. Access tokens
/// already issued expire on their own (`ACCESS_TOKEN_TTL_SECONDS`).
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = LogoutRequest,
    responses((status = 204, description = "logged out"), (status = 401, description = "invalid or expired token")))]
pub async fn logout(
    State(state): State<AppState>,
    ctx: CommandContext,
    Json(request): Json<LogoutRequest>,
) -> Result<StatusCode, ApiError> {
    let (user_id, session) = state.tokens.verify_refresh(&request.refresh_token)?;
    let Some(session) = session else {
        return Ok(StatusCode::NO_CONTENT);
    };
    let session_id = session.session_id;
    let load = async |l: Loader| l.stream::<Session>(session_id).await;
    state
        .execute(&ctx, Access::Anyone, StatusCode::NO_CONTENT, load, |loaded| {
            if loaded.state.user_id != Some(user_id) {
                return Err(ApiError::Unauthorized("the session no longer exists".into()));
            }
            let mut changes = Changes::default();
            changes.decide(session_id, &loaded, SessionCommand::LogOut)?;
            Ok((changes, ()))
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current_password: String,
    pub new_password: String,
}

/// Changes the signed-in user's password. Every other session ends: its refresh tokens stop
/// working; the session of the access token used here goes on.
#[utoipa::path(post, path = "/v1/auth/password", tag = "auth", request_body = ChangePassword,
    responses((status = 204, description = "changed"), (status = 401, description = "not signed in, or wrong current password"),
              (status = 403, description = "API keys have no password"), (status = 422, description = "the new password is invalid")))]
pub async fn change_password(
    State(state): State<AppState>,
    ctx: CommandContext,
    headers: HeaderMap,
    Json(request): Json<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    let Principal::User(user_id) = ctx.principal()? else {
        return Err(ApiError::Forbidden("API keys have no password to change".into()));
    };
    let kept_session = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| auth::bearer(v).ok())
        .and_then(|token| state.tokens.access_session(token).ok().flatten());
    check_password(&request.new_password)
        .map_err(|_| ApiError::invalid("new_password", "must be 8 to 256 characters"))?;
    let user = state.repo.load::<User>(user_id).await?.state;
    if user.id.is_none() || !verify_password(request.current_password, Some(user.password_hash)).await? {
        return Err(ApiError::Unauthorized("the current password is wrong".into()));
    }
    let password_hash = hash_password(request.new_password).await?;
    let changed_at = chrono::Utc::now();
    let load = async |l: Loader| l.stream::<User>(user_id).await;
    state
        .execute(
            &ctx,
            Access::User("change a password"),
            StatusCode::NO_CONTENT,
            load,
            |user| {
                let mut changes = Changes::default();
                let command = UserCommand::ChangePassword {
                    password_hash: password_hash.clone(),
                    changed_at,
                    kept_session,
                };
                changes.decide(user_id, &user, command)?;
                Ok((changes, ()))
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
