//! Workspaces and users in GraphQL: `me`, `workspace`, and a workspace's members.

use crate::access::Principal;
use crate::context::{access, parse_id, state};
use crate::errors::internal;
use async_graphql::{Context, Object, Result, ID};
use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkspaceNode {
    pub workspace_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow, async_graphql::SimpleObject)]
pub struct Member {
    pub user_id: Uuid,
    pub email: Option<String>,
    pub role: String,
}

#[Object(name = "Workspace")]
impl WorkspaceNode {
    async fn id(&self) -> ID {
        ID(self.workspace_id.to_string())
    }
    async fn name(&self) -> &str {
        &self.name
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    /// The caller's role here.
    async fn role(&self, ctx: &Context<'_>) -> Result<String> {
        access(ctx).role_in(state(ctx), self.workspace_id).await
    }
    async fn members(&self, ctx: &Context<'_>) -> Result<Vec<Member>> {
        sqlx::query_as(
            "SELECT m.user_id, u.email, m.role FROM read.members m
             LEFT JOIN read.users u ON u.user_id = m.user_id
             WHERE m.workspace_id = $1 ORDER BY m.added_at, m.user_id",
        )
        .bind(self.workspace_id)
        .fetch_all(&state(ctx).pool)
        .await
        .map_err(internal)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserNode {
    pub user_id: Uuid,
    pub email: String,
}

#[Object(name = "User")]
impl UserNode {
    async fn id(&self) -> ID {
        ID(self.user_id.to_string())
    }
    async fn email(&self) -> &str {
        &self.email
    }
    async fn workspaces(&self, ctx: &Context<'_>) -> Result<Vec<WorkspaceNode>> {
        sqlx::query_as(
            "SELECT w.workspace_id, w.name, w.created_at FROM read.workspaces w
             JOIN read.members m ON m.workspace_id = w.workspace_id
             WHERE m.user_id = $1 ORDER BY w.created_at",
        )
        .bind(self.user_id)
        .fetch_all(&state(ctx).pool)
        .await
        .map_err(internal)
    }
}

#[derive(Default)]
pub struct WorkspacesQuery;

#[Object]
impl WorkspacesQuery {
    /// The calling user (null for an API key).
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<UserNode>> {
        let Principal::User(user_id) = access(ctx).principal()? else {
            return Ok(None);
        };
        sqlx::query_as("SELECT user_id, email FROM read.users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&state(ctx).pool)
            .await
            .map_err(internal)
    }

    async fn workspace(&self, ctx: &Context<'_>, id: ID) -> Result<Option<WorkspaceNode>> {
        let workspace_id = parse_id(&id, "id")?;
        let state = state(ctx);
        access(ctx).role_in(state, workspace_id).await?;
        sqlx::query_as("SELECT workspace_id, name, created_at FROM read.workspaces WHERE workspace_id = $1")
            .bind(workspace_id)
            .fetch_optional(&state.pool)
            .await
            .map_err(internal)
    }
}
