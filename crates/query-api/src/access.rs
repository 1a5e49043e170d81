//! Who is asking, and what they may see. Every resolver that touches a workspace's data goes
//! through [`Access::role_in`]; strangers get NOT_FOUND, never data.

use crate::context::AppState;
use crate::errors::{internal, not_found, rate_limited, unauthenticated};
pub use auth::Principal;

use sqlx::PgPool;
use uuid::Uuid;

/// The request's caller, if it authenticated; put in the GraphQL request data.
#[derive(Debug, Clone, Copy)]
pub struct Access(pub Option<Principal>);

impl Access {
    pub fn principal(&self) -> async_graphql::Result<Principal> {
        self.0.ok_or_else(unauthenticated)
    }

    /// The caller's role in the workspace; NOT_FOUND when they have none, RATE_LIMITED when
    /// the workspace has had more requests than its limit.
    pub async fn role_in(&self, state: &AppState, workspace_id: Uuid) -> async_graphql::Result<String> {
        self.principal()?;
        self.sees(state, workspace_id)
            .await?
            .ok_or_else(|| not_found("workspace"))
    }

    /// Counts one request (a query, or a new subscription) against the caller's limit: the
    /// user or API key, else `fallback` (the client's address).
    pub fn count_request(&self, state: &AppState, fallback: &str) -> async_graphql::Result<()> {
        let key = match self.0 {
            Some(principal) => principal.actor_id().to_string(),
            None => fallback.to_owned(),
        };
        state
            .caller_limiter
            .check(&key)
            .map_err(|retry_after_secs| rate_limited("caller", retry_after_secs))
    }

    /// [`Access::role_in`] for resolvers that answer `null` to strangers (and anonymous
    /// callers): `None` then, and an error only for a fault or a rate limit. The workspace's
    /// limit is counted for its members only, so no stranger can use it up.
    pub async fn sees(&self, state: &AppState, workspace_id: Uuid) -> async_graphql::Result<Option<String>> {
        let Some(principal) = self.0 else { return Ok(None) };
        let role = Self::role(&state.pool, principal, workspace_id).await?;
        if role.is_some() {
            count_for_workspace(state, workspace_id)?;
        }
        Ok(role)
    }

    /// [`Access::sees`] as the workspace's stream says now, not as projected: for what a client
    /// subscribes to the moment it created it (a playground execution in a workspace made a
    /// moment ago), where the read model may not have caught up yet.
    pub async fn sees_now(&self, state: &AppState, workspace_id: Uuid) -> async_graphql::Result<bool> {
        let Some(principal) = self.0 else { return Ok(false) };
        let member = match principal {
            Principal::User(user_id) => {
                let workspace = state
                    .repo
                    .load::<domain::workspace::Workspace>(workspace_id)
                    .await
                    .map_err(internal)?;
                workspace.state.members.contains_key(&user_id)
            }
            // Authentication checked the key against its workspace's stream.
            Principal::ApiKey {
                workspace_id: key_workspace,
                ..
            } => key_workspace == workspace_id,
        };
        if member {
            count_for_workspace(state, workspace_id)?;
        }
        Ok(member)
    }

    async fn role(pool: &PgPool, principal: Principal, workspace_id: Uuid) -> async_graphql::Result<Option<String>> {
        let role: Option<String> = match principal {
            Principal::User(user_id) => {
                sqlx::query_scalar("SELECT role FROM read.members WHERE workspace_id = $1 AND user_id = $2")
                    .bind(workspace_id)
                    .bind(user_id)
                    .fetch_optional(pool)
                    .await
                    .map_err(internal)?
            }
            Principal::ApiKey {
                key_id,
                workspace_id: key_workspace,
            } if key_workspace == workspace_id => {
                sqlx::query_scalar("SELECT role FROM read.api_keys WHERE key_id = $1")
                    .bind(key_id)
                    .fetch_optional(pool)
                    .await
                    .map_err(internal)?
            }
            Principal::ApiKey { .. } => None,
        };
        Ok(role)
    }
}

/// Counts one request of a member against the workspace's limit.
fn count_for_workspace(state: &AppState, workspace_id: Uuid) -> async_graphql::Result<()> {
    state
        .workspace_limiter
        .check(&workspace_id.to_string())
        .map_err(|retry_after_secs| rate_limited("workspace", retry_after_secs))
}
