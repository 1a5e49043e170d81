//! Redis: the latest applied version per stream (so cached documents older than it are never
//! served) and pub/sub notifications per workspace for GraphQL subscriptions.

use crate::Sink;
use domain::names::{comparison_channel, run_channel, version_key, workspace_channel};
use event_store::RecordedEvent;
use redis::aio::ConnectionManager;
use serde_json::json;

/// Raises `KEYS[1]` to `ARGV[1]` and never lowers it, so a redelivered event is harmless.
const RAISE_VERSION: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
return 1";

#[derive(Clone)]
pub struct RedisSink {
    connection: ConnectionManager,
    /// Whether events are published to the workspace and run channels; a replay only restores
    /// the version keys, since subscribers must not see history again as if it were live.
    publish: bool,
}

impl RedisSink {
    pub async fn connect(url: &str) -> redis::RedisResult<Self> {
        Ok(Self {
            connection: service::redis::connect(url).await?,
            publish: true,
        })
    }

    /// The same sink, writing version keys only.
    pub fn without_publishing(self) -> Self {
        Self { publish: false, ..self }
    }
}

/// The shape GraphQL's `AuditEntry` serves.
pub fn audit_entry(event: &RecordedEvent) -> serde_json::Value {
    json!({
        "position": event.position,
        "streamId": event.stream_id,
        "streamType": event.stream_type,
        "version": event.version,
        "eventType": event.event_type,
        "actorId": event.actor_id,
        "workspaceId": event.workspace_id,
        "recordedAt": event.recorded_at,
        "data": event.data,
    })
}

impl Sink for RedisSink {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn apply(&self, events: &[RecordedEvent]) -> anyhow::Result<()> {
        let mut pipe = redis::pipe();
        for event in events {
            pipe.cmd("EVAL")
                .arg(RAISE_VERSION)
                .arg(1)
                .arg(version_key(event.stream_id))
                .arg(event.version)
                .ignore();
            if !self.publish {
                continue;
            }
            let entry = audit_entry(event).to_string();
            if let Some(workspace_id) = event.workspace_id {
                pipe.publish(workspace_channel(workspace_id), &entry).ignore();
            }
            if event.stream_type == domain::names::stream_types::TEST_RUN {
                pipe.publish(run_channel(event.stream_id), &entry).ignore();
            }
            if event.stream_type == domain::names::stream_types::COMPARISON {
                pipe.publish(comparison_channel(event.stream_id), &entry).ignore();
            }
        }
        let mut connection = self.connection.clone();
        pipe.query_async::<()>(&mut connection).await?;
        Ok(())
    }
}
