//! Who is asking, and what they may see. Every resolver that touches a workspace's data goes
//! through [`Access::role_in`]; strangers get NOT_FOUND, never data.

use crate::errors::{internal, not_found, unauthenticated};
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

    /// The caller's role in the workspace; NOT_FOUND when they have none.
    pub async fn role_in(&self, pool: &PgPool, workspace_id: Uuid) -> async_graphql::Result<String> {
        let role: Option<String> = match self.principal()? {
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
        role.ok_or_else(|| not_found("workspace"))
    }
}
