//! Playground executions live: `execution(id)` yields STARTED, each CHUNK of the answer as the
//! provider sends it, then FINISHED (the whole answer, usage, latency, cost) or FAILED.
//!
//! The runner appends updates to the execution's Redis stream; a subscription reads that stream
//! from its start, so one that arrives late first gets what was already produced, in order,
//! then the rest. The outcome is also an event: when the live updates are gone (expired, or
//! never written because Redis was away), the subscription answers from the event store.

use crate::context::{access, parse_id, state};
use crate::errors::{internal, not_found};
use crate::metrics::SubscriberGuard;
use crate::money::micro_usd_to_string;
use async_graphql::{Context, Enum, Result, SimpleObject, Subscription, ID};
use domain::execution::{Execution, ExecutionUpdate, UpdateKind};
use domain::names::execution_updates_key;
use event_store::Repository;
use futures::{stream, Stream};
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use std::collections::VecDeque;
use std::time::Duration;
use uuid::Uuid;

/// How long one read waits for updates before the execution's stream is checked for an end
/// that Redis did not carry.
const BLOCK: Duration = Duration::from_millis(1_000);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "ExecutionUpdateKind")]
pub enum UpdateKindGql {
    Started,
    Chunk,
    Finished,
    Failed,
}

#[derive(SimpleObject)]
#[graphql(name = "ExecutionUsage")]
pub struct UsageNode {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
}

#[derive(SimpleObject)]
#[graphql(name = "ExecutionUpdate")]
pub struct UpdateNode {
    pub kind: UpdateKindGql,
    /// A CHUNK's piece of the answer; on FINISHED, the whole answer.
    pub text: Option<String>,
    pub usage: Option<UsageNode>,
    /// From the provider call to the answer's end (FINISHED).
    pub latency_ms: Option<i64>,
    /// From the provider call to the answer's first piece (FINISHED).
    pub first_token_ms: Option<i64>,
    /// In USD, as a decimal string; absent when the model's price is unknown.
    pub cost_usd: Option<String>,
    pub error: Option<String>,
}

impl From<ExecutionUpdate> for UpdateNode {
    fn from(update: ExecutionUpdate) -> Self {
        Self {
            kind: match update.kind {
                UpdateKind::Started => UpdateKindGql::Started,
                UpdateKind::Chunk => UpdateKindGql::Chunk,
                UpdateKind::Finished => UpdateKindGql::Finished,
                UpdateKind::Failed => UpdateKindGql::Failed,
            },
            text: update.text,
            usage: update.usage.map(|u| UsageNode {
                prompt_tokens: u.prompt_tokens.into(),
                completion_tokens: u.completion_tokens.into(),
                total_tokens: u.total_tokens.into(),
            }),
            latency_ms: update.latency_ms.map(|ms| ms as i64),
            first_token_ms: update.first_token_ms.map(|ms| ms as i64),
            cost_usd: update.cost_micro_usd.map(micro_usd_to_string),
            error: update.error,
        }
    }
}

#[derive(Default)]
pub struct ExecutionsSubscription;

#[Subscription]
impl ExecutionsSubscription {
    /// A playground execution's answer as it arrives, from its start whenever one subscribes;
    /// completes after FINISHED or FAILED (a cancelled execution fails).
    async fn execution(&self, ctx: &Context<'_>, id: ID) -> Result<impl Stream<Item = UpdateNode>> {
        let execution_id = parse_id(&id, "id")?;
        let state = state(ctx);
        let access = access(ctx);
        access.principal()?;
        access.count_request(state, "anonymous")?;
        let loaded = state.repo.load::<Execution>(execution_id).await.map_err(internal)?;
        let Some(workspace_id) = loaded.state.workspace_id() else {
            return Err(not_found("execution"));
        };
        if !access.sees_now(state, workspace_id).await? {
            return Err(not_found("execution"));
        }
        // Blocking reads need a connection of their own. Without one, the end is read from
        // the event store.
        let redis = match &state.redis_client {
            Some(client) => client
                .get_multiplexed_async_connection_with_config(
                    &redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Duration::from_secs(1))
                        .set_response_timeout(BLOCK * 3),
                )
                .await
                .inspect_err(|error| tracing::warn!(%error, "No Redis for an execution's live updates."))
                .ok(),
            None => None,
        };
        let reader = Reader {
            execution_id,
            key: execution_updates_key(execution_id),
            redis,
            repo: state.repo.clone(),
            last_id: "0".into(),
            pending: VecDeque::new(),
            seen_any: false,
            done: false,
            _guard: SubscriberGuard::count(),
        };
        Ok(stream::unfold(reader, |mut reader| async move {
            let update = reader.next().await?;
            Some((UpdateNode::from(update), reader))
        }))
    }
}

struct Reader {
    execution_id: Uuid,
    key: String,
    redis: Option<MultiplexedConnection>,
    repo: Repository,
    /// The id of the last update read from the Redis stream.
    last_id: String,
    pending: VecDeque<ExecutionUpdate>,
    seen_any: bool,
    done: bool,
    _guard: SubscriberGuard,
}

impl Reader {
    async fn next(&mut self) -> Option<ExecutionUpdate> {
        loop {
            if let Some(update) = self.pending.pop_front() {
                self.seen_any = true;
                self.done = update.is_last();
                return Some(update);
            }
            if self.done {
                return None;
            }
            if self.read_live().await {
                continue;
            }
            // Nothing live for a while: the execution may have ended where Redis did not see.
            if let Ok(loaded) = self.repo.load::<Execution>(self.execution_id).await {
                let mut replay = loaded.state.replay();
                if !replay.is_empty() {
                    if self.seen_any {
                        // Its beginning was seen live; only the end is missing.
                        replay.drain(..replay.len() - 1);
                    }
                    self.pending.extend(replay);
                }
            }
        }
    }

    /// Waits up to [`BLOCK`] for updates after the last one read; whether any came.
    async fn read_live(&mut self) -> bool {
        let Some(redis) = self.redis.as_mut() else {
            tokio::time::sleep(BLOCK / 4).await;
            return false;
        };
        let options = StreamReadOptions::default()
            .block(BLOCK.as_millis() as usize)
            .count(512);
        let reply: Option<StreamReadReply> = match redis
            .xread_options(&[self.key.as_str()], &[self.last_id.as_str()], &options)
            .await
        {
            Ok(reply) => reply,
            Err(error) => {
                tracing::warn!(%error, "Reading an execution's live updates failed; its end comes from the event store.");
                self.redis = None;
                return false;
            }
        };
        let mut any = false;
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            self.last_id = entry.id.clone();
            let update = entry
                .get::<String>("u")
                .and_then(|json| serde_json::from_str::<ExecutionUpdate>(&json).ok());
            if let Some(update) = update {
                self.pending.push_back(update);
                any = true;
            }
        }
        any
    }
}
