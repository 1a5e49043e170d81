//! The audit trail in GraphQL: `auditLog` pages a workspace's events from the event store,
//! and the `workspaceEvents` subscription follows them live from Redis pub/sub.

use crate::context::{access, parse_id, state};
use crate::errors::internal;
use crate::metrics::SubscriberGuard;
use crate::pagination::{decode_cursor, encode_cursor, page, page_size};
use async_graphql::connection::Connection;
use async_graphql::{Context, Json, Object, Result, Subscription, ID};
use chrono::{DateTime, Utc};
use event_store::RecordedEvent;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// One event of a workspace, as the audit log and `workspaceEvents` show it.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(complex)]
pub struct AuditEntry {
    pub position: i64,
    pub stream_id: Uuid,
    pub stream_type: String,
    pub version: i64,
    pub event_type: String,
    pub actor_id: Option<Uuid>,
    pub recorded_at: DateTime<Utc>,
    #[graphql(skip)]
    pub data: Value,
}

#[async_graphql::ComplexObject]
impl AuditEntry {
    /// The event's payload. A provider key appears only as the fact that one was set: even
    /// sealed, it is no reader's business.
    async fn data(&self) -> Json<Value> {
        let mut data = self.data.clone();
        if self.event_type == "ProviderCredentialSet" {
            if let Some(key) = data.get_mut("api_key").filter(|key| !key.is_null()) {
                *key = Value::String("[set]".into());
            }
        }
        Json(data)
    }
}

impl From<RecordedEvent> for AuditEntry {
    fn from(event: RecordedEvent) -> Self {
        Self {
            position: event.position,
            stream_id: event.stream_id,
            stream_type: event.stream_type,
            version: event.version,
            event_type: event.event_type,
            actor_id: event.actor_id,
            recorded_at: event.recorded_at,
            data: event.data,
        }
    }
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// Every event of a workspace (optionally of one stream), newest first.
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        stream_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, AuditEntry>> {
        let workspace_id = parse_id(&workspace_id, "workspaceId")?;
        let stream_id = stream_id.as_ref().map(|s| parse_id(s, "streamId")).transpose()?;
        let state = state(ctx);
        access(ctx).role_in(state, workspace_id).await?;
        let limit = page_size(first)?;
        let after: Option<i64> = after.as_deref().map(decode_cursor).transpose()?;
        let rows: Vec<AuditEntry> = state
            .store
            .workspace_history(workspace_id, stream_id, after, limit + 1)
            .await
            .map_err(internal)?
            .into_iter()
            .map(AuditEntry::from)
            .collect();
        Ok(page(rows, limit, after.is_some(), |entry| {
            encode_cursor(&entry.position)
        }))
    }
}

#[derive(Default)]
pub struct AuditSubscription;

#[Subscription]
impl AuditSubscription {
    /// Every event of the workspace from now on, fed by Redis pub/sub so any replica delivers.
    async fn workspace_events(&self, ctx: &Context<'_>, workspace_id: ID) -> Result<impl Stream<Item = AuditEntry>> {
        let workspace_id = parse_id(&workspace_id, "workspaceId")?;
        let state = state(ctx);
        access(ctx).count_request(state, "anonymous")?;
        // A stranger gets NOT_FOUND, as from every query of the workspace.
        access(ctx).role_in(state, workspace_id).await?;
        let pubsub = state
            .subscribe([domain::names::workspace_channel(workspace_id)])
            .await?;
        let guard = SubscriberGuard::count();
        Ok(pubsub.into_on_message().filter_map(move |message| {
            let _alive = &guard;
            let entry = message
                .get_payload::<String>()
                .ok()
                .and_then(|payload: String| serde_json::from_str::<AuditEntry>(&payload).ok());
            async move { entry }
        }))
    }
}
