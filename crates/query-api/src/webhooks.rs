//! Webhooks in GraphQL, for the workspace's admins only (an endpoint's URL may itself be a
//! credential): `webhooks` lists the endpoints, never their secrets, and `webhookDeliveries`
//! pages an endpoint's deliveries with every attempt, from the deliverer's tables.

use crate::context::{access, parse_id, state};
use crate::errors::{forbidden, internal, not_found};
use crate::pagination::{decode_cursor, encode_cursor, page, page_size};
use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use uuid::Uuid;
use webhook::outbox::{self, AttemptRow, DeliveryRow};

/// FORBIDDEN unless the caller administers the workspace (NOT_FOUND for strangers).
async fn ensure_admin(ctx: &Context<'_>, workspace_id: Uuid) -> Result<()> {
    let role = access(ctx).role_in(state(ctx), workspace_id).await?;
    match role.as_str() {
        "owner" | "admin" => Ok(()),
        other => Err(forbidden(format!("a {other} may not see the workspace's webhooks"))),
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookNode {
    pub webhook_id: Uuid,
    pub workspace_id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[Object(name = "Webhook")]
impl WebhookNode {
    async fn id(&self) -> ID {
        ID(self.webhook_id.to_string())
    }
    async fn workspace_id(&self) -> ID {
        ID(self.workspace_id.to_string())
    }
    async fn url(&self) -> &str {
        &self.url
    }
    /// The event types sent, or `["*"]` for all.
    async fn events(&self) -> &[String] {
        &self.events
    }
    async fn enabled(&self) -> bool {
        self.enabled
    }
    /// Why it is disabled: by an admin, or by the deliverer after failing for too long.
    async fn disabled_reason(&self) -> Option<&str> {
        self.disabled_reason.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum DeliveryStatus {
    /// Waiting for its first attempt or for a retry.
    Pending,
    Delivered,
    /// Given up on: a 4xx, a refused target, or the retry horizon passed.
    Failed,
}

/// One attempt to deliver.
#[derive(Debug, Clone, SimpleObject)]
pub struct DeliveryAttempt {
    pub attempt: i32,
    pub at: DateTime<Utc>,
    /// The HTTP status the receiver answered; null when none answered.
    pub status: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
    /// The first bytes of the receiver's answer.
    pub response_excerpt: Option<String>,
}

impl From<AttemptRow> for DeliveryAttempt {
    fn from(row: AttemptRow) -> Self {
        Self {
            attempt: row.attempt,
            at: row.at,
            status: row.status,
            latency_ms: row.latency_ms,
            error: row.error,
            response_excerpt: row.response_excerpt,
        }
    }
}

/// One event sent to one endpoint. `id` is the `webhook-id` header of every attempt.
#[derive(Debug, Clone, SimpleObject)]
pub struct WebhookDelivery {
    #[graphql(skip)]
    pub seq: i64,
    pub id: ID,
    pub webhook_id: ID,
    /// The delivery's `type`, e.g. `run.completed`.
    pub event_type: String,
    pub event_id: ID,
    /// The event's global position (for `X-Min-Position`).
    pub position: i64,
    pub status: DeliveryStatus,
    pub attempts: Vec<DeliveryAttempt>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl WebhookDelivery {
    fn of(row: DeliveryRow, attempts: Vec<DeliveryAttempt>) -> Self {
        let status = match row.status.as_str() {
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Pending,
        };
        Self {
            seq: row.seq,
            id: ID(row.delivery_id.to_string()),
            webhook_id: ID(row.webhook_id.to_string()),
            event_type: row.event_type,
            event_id: ID(row.event_id.to_string()),
            position: row.event_position,
            next_attempt_at: (status == DeliveryStatus::Pending).then_some(row.next_attempt_at),
            status,
            attempts,
            delivered_at: row.delivered_at,
            last_error: row.last_error,
            created_at: row.created_at,
        }
    }
}

#[derive(Default)]
pub struct WebhooksQuery;

#[Object]
impl WebhooksQuery {
    /// The workspace's webhook endpoints, oldest first. Admins only.
    async fn webhooks(&self, ctx: &Context<'_>, workspace_id: ID) -> Result<Vec<WebhookNode>> {
        let workspace_id = parse_id(&workspace_id, "workspaceId")?;
        ensure_admin(ctx, workspace_id).await?;
        sqlx::query_as(
            "SELECT webhook_id, workspace_id, url, events, enabled, disabled_reason, created_at, updated_at
             FROM read.webhooks WHERE workspace_id = $1 ORDER BY created_at, webhook_id",
        )
        .bind(workspace_id)
        .fetch_all(&state(ctx).pool)
        .await
        .map_err(internal)
    }

    /// An endpoint's deliveries, newest first, each with its attempts. Admins only.
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        webhook_id: ID,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, WebhookDelivery>> {
        let webhook_id = parse_id(&webhook_id, "webhookId")?;
        let state = state(ctx);
        let workspace_id: Option<Uuid> =
            sqlx::query_scalar("SELECT workspace_id FROM read.webhooks WHERE webhook_id = $1")
                .bind(webhook_id)
                .fetch_optional(&state.pool)
                .await
                .map_err(internal)?;
        let workspace_id = workspace_id.ok_or_else(|| not_found("webhook"))?;
        // A stranger learns no more than of a webhook that does not exist.
        ensure_admin(ctx, workspace_id)
            .await
            .map_err(|e| if is_not_found(&e) { not_found("webhook") } else { e })?;
        let limit = page_size(first)?;
        let after: Option<i64> = after.as_deref().map(decode_cursor).transpose()?;
        let rows = outbox::deliveries(&state.pool, webhook_id, after, limit + 1)
            .await
            .map_err(internal)?;
        let ids: Vec<Uuid> = rows.iter().map(|r| r.delivery_id).collect();
        let mut attempts: HashMap<Uuid, Vec<DeliveryAttempt>> = HashMap::new();
        for row in outbox::attempts(&state.pool, &ids).await.map_err(internal)? {
            attempts.entry(row.delivery_id).or_default().push(row.into());
        }
        let nodes: Vec<WebhookDelivery> = rows
            .into_iter()
            .map(|row| {
                let of = attempts.remove(&row.delivery_id).unwrap_or_default();
                WebhookDelivery::of(row, of)
            })
            .collect();
        Ok(page(nodes, limit, after.is_some(), |node| encode_cursor(&node.seq)))
    }
}

fn is_not_found(error: &async_graphql::Error) -> bool {
    error
        .extensions
        .as_ref()
        .and_then(|e| e.get("code"))
        .is_some_and(|code| code == &async_graphql::Value::from("NOT_FOUND"))
}
