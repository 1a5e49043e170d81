//! A workspace's provider credentials (OpenAI-compatible, Anthropic, Ollama: base URL, API
//! key, default model) and its spend budget. Keys are sealed (`service::sealing`) before they
//! reach an event and are never answered, listed or logged.

use crate::command::{Access, Changes, Loader, Positioned, Reply};
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use domain::workspace::{ProviderCredential, ProviderKind, WorkspaceCommand};
use domain::Permission;
use serde::{Deserialize, Serialize};
use service::sealing::provider_key_context;
use utoipa::ToSchema;
use uuid::Uuid;

/// Absent fields are unset, except `api_key`: absent keeps the key already stored.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetProviderCredential {
    /// Sealed at once; never answered again.
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub default_model: Option<String>,
}

// Written by hand so that a request can never print its key.
impl std::fmt::Debug for SetProviderCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetProviderCredential")
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("base_url", &self.base_url)
            .field("default_model", &self.default_model)
            .finish()
    }
}

/// A provider's settings as answered: whether a key is set, never the key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderCredentialView {
    /// `openai`, `anthropic` or `ollama`.
    pub provider: String,
    pub base_url: Option<String>,
    pub default_model: Option<String>,
    pub key_set: bool,
    pub updated_at: DateTime<Utc>,
}

impl ProviderCredentialView {
    fn new(provider: ProviderKind, credential: &ProviderCredential) -> Self {
        Self {
            provider: provider.as_str().to_owned(),
            base_url: credential.base_url.clone(),
            default_model: credential.default_model.clone(),
            key_set: credential.api_key.is_some(),
            updated_at: credential.updated_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderCredentialRemoved {
    pub provider: String,
    pub removed: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBudget {
    /// The most the workspace's runs may cost, in micro-USD (1 USD = 1,000,000); `null` is no
    /// limit. Past it, new runs are refused with 422.
    pub limit_micro_usd: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Budget {
    pub limit_micro_usd: Option<u64>,
    pub spent_micro_usd: u64,
}

fn provider_kind(name: &str) -> Result<ProviderKind, ApiError> {
    ProviderKind::parse(name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "unknown provider {name:?}; expected openai, anthropic or ollama"
        ))
    })
}

/// Sets a provider's credentials for the workspace. The answer says whether a key is set.
#[utoipa::path(put, path = "/v1/workspaces/{ws}/provider-credentials/{provider}", tag = "workspaces",
    request_body = SetProviderCredential, params(("ws" = Uuid, Path), ("provider" = String, Path)),
    responses((status = 200, body = Positioned<ProviderCredentialView>), (status = 401), (status = 403),
              (status = 404), (status = 422)))]
pub async fn set_provider_credential(
    State(state): State<AppState>,
    Path((workspace_id, provider)): Path<(Uuid, String)>,
    ctx: CommandContext,
    Json(request): Json<SetProviderCredential>,
) -> Result<Reply<ProviderCredentialView>, ApiError> {
    let provider = provider_kind(&provider)?;
    if let Some(key) = &request.api_key {
        if key.is_empty() || key.len() > 4_096 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::invalid(
                "api_key",
                "must be 1 to 4096 visible ASCII characters",
            ));
        }
    }
    // Sealed once, before any attempt, so a retried attempt appends the same ciphertext.
    let api_key = request.api_key.as_deref().map(|key| {
        state
            .settings
            .provider_keys
            .seal(key, &provider_key_context(workspace_id, provider))
    });
    let updated_at = Utc::now();
    let access = Access::Workspace(workspace_id, Permission::ManageMembers);
    let load = async |l: Loader| l.workspace();
    state
        .execute(&ctx, access, StatusCode::OK, load, |(workspace, actor_role)| {
            let mut changes = Changes::default();
            let command = WorkspaceCommand::SetProviderCredential {
                actor_role,
                provider,
                base_url: request.base_url.clone(),
                default_model: request.default_model.clone(),
                api_key: api_key.clone(),
                updated_at,
            };
            let after = changes.decide(workspace_id, &workspace, command)?;
            let credential = &after.provider_credentials[&provider];
            Ok((changes, ProviderCredentialView::new(provider, credential)))
        })
        .await
}

/// Lists the workspace's provider settings; keys only as `key_set`.
#[utoipa::path(get, path = "/v1/workspaces/{ws}/provider-credentials", tag = "workspaces",
    params(("ws" = Uuid, Path)),
    responses((status = 200, body = Vec<ProviderCredentialView>), (status = 401), (status = 404)))]
pub async fn list_provider_credentials(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
) -> Result<axum::Json<Vec<ProviderCredentialView>>, ApiError> {
    let (workspace, _) = state
        .authorise_read(&ctx, workspace_id, Permission::Read)
        .await?
        .workspace()?;
    Ok(axum::Json(
        workspace
            .state
            .provider_credentials
            .iter()
            .map(|(provider, credential)| ProviderCredentialView::new(*provider, credential))
            .collect(),
    ))
}

/// Removes a provider's credentials; its runs then use the operator's default, if any.
#[utoipa::path(delete, path = "/v1/workspaces/{ws}/provider-credentials/{provider}", tag = "workspaces",
    params(("ws" = Uuid, Path), ("provider" = String, Path)),
    responses((status = 200, body = Positioned<ProviderCredentialRemoved>), (status = 401), (status = 403), (status = 404)))]
pub async fn remove_provider_credential(
    State(state): State<AppState>,
    Path((workspace_id, provider)): Path<(Uuid, String)>,
    ctx: CommandContext,
) -> Result<Reply<ProviderCredentialRemoved>, ApiError> {
    let provider = provider_kind(&provider)?;
    let access = Access::Workspace(workspace_id, Permission::ManageMembers);
    let load = async |l: Loader| l.workspace();
    state
        .execute(&ctx, access, StatusCode::OK, load, |(workspace, actor_role)| {
            let mut changes = Changes::default();
            let command = WorkspaceCommand::RemoveProviderCredential { actor_role, provider };
            changes.decide(workspace_id, &workspace, command)?;
            let answer = ProviderCredentialRemoved {
                provider: provider.as_str().to_owned(),
                removed: true,
            };
            Ok((changes, answer))
        })
        .await
}

/// Sets the workspace's spend budget.
#[utoipa::path(put, path = "/v1/workspaces/{ws}/budget", tag = "workspaces", request_body = SetBudget,
    params(("ws" = Uuid, Path)),
    responses((status = 200, body = Positioned<Budget>), (status = 401), (status = 403), (status = 404)))]
pub async fn set_budget(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
    Json(request): Json<SetBudget>,
) -> Result<Reply<Budget>, ApiError> {
    let access = Access::Workspace(workspace_id, Permission::ManageMembers);
    let load = async |l: Loader| l.workspace();
    state
        .execute(&ctx, access, StatusCode::OK, load, |(workspace, actor_role)| {
            let mut changes = Changes::default();
            let command = WorkspaceCommand::SetSpendBudget {
                actor_role,
                limit_micro_usd: request.limit_micro_usd,
            };
            let after = changes.decide(workspace_id, &workspace, command)?;
            let answer = Budget {
                limit_micro_usd: after.spend_budget_micro_usd,
                spent_micro_usd: after.spent_micro_usd,
            };
            Ok((changes, answer))
        })
        .await
}

/// The workspace's spend budget and what its finished runs have cost.
#[utoipa::path(get, path = "/v1/workspaces/{ws}/budget", tag = "workspaces",
    params(("ws" = Uuid, Path)),
    responses((status = 200, body = Budget), (status = 401), (status = 404)))]
pub async fn get_budget(
    State(state): State<AppState>,
    Path(workspace_id): Path<Uuid>,
    ctx: CommandContext,
) -> Result<axum::Json<Budget>, ApiError> {
    let (workspace, _) = state
        .authorise_read(&ctx, workspace_id, Permission::Read)
        .await?
        .workspace()?;
    Ok(axum::Json(Budget {
        limit_micro_usd: workspace.state.spend_budget_micro_usd,
        spent_micro_usd: workspace.state.spent_micro_usd,
    }))
}
