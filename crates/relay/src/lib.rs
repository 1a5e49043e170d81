//! The Kafka relay: tails the event store in its safe global order and publishes every event to
//! the events topic, keyed by stream id. The checkpoint moves only after the broker acknowledged
//! every event up to it, so a crash or an outage can duplicate messages but never lose one.

use event_store::{Cursor, EventStore, RecordedEvent, EVENTS_CHANNEL};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use service::settings::{self, Kafka};
use service::{env_or, Secret};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub mod instruments;

#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub database_url: Secret,
    pub kafka: Kafka,
    /// Events read and published per step.
    pub batch_size: i64,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            addr: env_or("RELAY_ADDR", "127.0.0.1:8084").parse()?,
            database_url: settings::database_url(),
            kafka: Kafka::from_env()?,
            batch_size: env_or("RELAY_BATCH_SIZE", "1000").parse()?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("publishing to Kafka failed: {0}")]
    Kafka(#[from] KafkaError),
    /// The session holding the advisory lock is gone (or did not answer in time), so another
    /// relay may hold the lock now: this one must stop publishing.
    #[error("this relay no longer holds the leadership: {0}")]
    LeadershipLost(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Events were published and the checkpoint moved to `position`.
    Published { count: usize, position: i64 },
    /// Nothing new to publish.
    Idle,
}

pub struct Relay {
    store: EventStore,
    producer: FutureProducer,
    topic: String,
    /// Checkpoint row name; one per topic.
    name: String,
    batch_size: i64,
    /// The last event acknowledged by the broker and checkpointed.
    cursor: Cursor,
    /// The right to publish, confirmed before each batch; `None` for a relay driven by hand
    /// (tests, tools) that is the only one.
    leadership: Option<Leadership>,
}

impl Relay {
    /// Resumes from the stored checkpoint for `topic`.
    pub async fn new(
        store: EventStore,
        producer: FutureProducer,
        topic: &str,
        batch_size: i64,
    ) -> Result<Self, sqlx::Error> {
        let name = format!("kafka:{topic}");
        let cursor = read_checkpoint(&store, &name).await?;
        Ok(Self {
            store,
            producer,
            topic: topic.to_owned(),
            name,
            batch_size,
            cursor,
            leadership: None,
        })
    }

    /// The same relay, publishing only while it holds `leadership`.
    pub fn lead(self, leadership: Leadership) -> Self {
        Self {
            leadership: Some(leadership),
            ..self
        }
    }

    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// Publishes the next batch and waits for every delivery report before checkpointing.
    pub async fn step(&mut self) -> Result<Outcome, RelayError> {
        if let Some(leadership) = &mut self.leadership {
            leadership.confirm().await?;
            metrics::gauge!("relay_leader").set(1.0);
        }
        let events = self.store.read_all(self.cursor, self.batch_size).await?;
        if events.is_empty() {
            metrics::gauge!("relay_lag_events").set(0.0);
            metrics::gauge!("relay_lag_seconds").set(0.0);
            return Ok(Outcome::Idle);
        }
        self.publish(events).await
    }

    /// One span per published batch (idle polls, ten a second, make none). A batch serves many
    /// traces, so the span links to each event's trace instead of joining one of them.
    #[tracing::instrument(skip_all, fields(after = self.cursor.position, count = events.len()), err)]
    async fn publish(&mut self, events: Vec<RecordedEvent>) -> Result<Outcome, RelayError> {
        let span = tracing::Span::current();
        for event in &events {
            service::add_link_from_traceparent(&span, event.traceparent.as_deref(), event.tracestate.as_deref());
        }
        let Some(last) = events.last() else {
            return Ok(Outcome::Idle);
        };
        let started = Instant::now();
        let mut deliveries = Vec::with_capacity(events.len());
        for event in &events {
            let delivery = self.enqueue(event, &mut deliveries).await?;
            deliveries.push(delivery);
        }
        for delivery in deliveries {
            wait_for(delivery).await?;
        }
        let cursor = Cursor::after(last);
        let checkpoint = sqlx::query(
            "INSERT INTO relay_checkpoints (name, tx_id, position) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET tx_id = $2, position = $3, updated_at = now()",
        )
        .bind(&self.name)
        .bind(cursor.tx_id)
        .bind(cursor.position);
        // A leader writes its checkpoint on the session that holds the lock: the write succeeds
        // only while that session, and so the leadership, is alive.
        match &mut self.leadership {
            Some(leadership) => {
                checkpoint
                    .execute(&mut leadership.connection)
                    .await
                    .map_err(|error| RelayError::LeadershipLost(error.to_string()))?;
            }
            None => {
                checkpoint.execute(self.store.pool()).await?;
            }
        }
        self.cursor = cursor;

        let head = self.store.head().await?;
        metrics::counter!("relay_events_published_total").increment(events.len() as u64);
        metrics::histogram!("relay_batch_size").record(events.len() as f64);
        metrics::histogram!("relay_batch_seconds").record(started.elapsed().as_secs_f64());
        metrics::gauge!("relay_lag_events").set((head - last.position).max(0) as f64);
        let age = chrono_age_seconds(last);
        metrics::gauge!("relay_lag_seconds").set(age);
        Ok(Outcome::Published {
            count: events.len(),
            position: last.position,
        })
    }

    /// Queues one message in order. When the producer's queue is full, waits for the oldest
    /// pending delivery to make room, so the order of the topic stays the order of the store.
    async fn enqueue(
        &self,
        event: &RecordedEvent,
        pending: &mut Vec<DeliveryFuture>,
    ) -> Result<DeliveryFuture, RelayError> {
        let key = event.stream_id.to_string();
        let payload = serde_json::to_vec(event).expect("recorded events always serialize");
        let headers = message_headers(event);
        loop {
            let record = FutureRecord::to(&self.topic)
                .key(&key)
                .payload(&payload)
                .headers(headers.clone());
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if pending.is_empty() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    } else {
                        wait_for(pending.remove(0)).await?;
                    }
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
    }

    /// Publishes until the leadership is lost (the only way it returns): whenever an append
    /// notifies, and polling briefly in between because an event can become safe to read
    /// without a new notification (when an older transaction ends). Other failures are
    /// retried with backoff from the checkpoint.
    pub async fn run(mut self) -> Result<Infallible, RelayError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(self.store.pool()).await?;
        listener.listen(EVENTS_CHANNEL).await?;
        let mut backoff = Duration::from_millis(100);
        let mut failing = false;
        loop {
            match self.step().await {
                Ok(outcome) => {
                    if failing {
                        tracing::info!("The relay publishes again.");
                        failing = false;
                    }
                    backoff = Duration::from_millis(100);
                    if outcome == Outcome::Idle {
                        let _ = tokio::time::timeout(Duration::from_millis(100), listener.recv()).await;
                    }
                }
                Err(error @ RelayError::LeadershipLost(_)) => return Err(error),
                Err(error) => {
                    // Not publishing now; whether it still leads is confirmed before the next batch.
                    metrics::gauge!("relay_leader").set(0.0);
                    if !failing {
                        tracing::warn!(error = %error, "Relay step failed; retrying from the checkpoint with backoff.");
                        failing = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    // Whatever was sent since the checkpoint is sent again: duplicates, no gaps.
                    if let Err(error) = self.reload_checkpoint().await {
                        tracing::debug!(error = %error, "Reading the checkpoint failed; retrying.");
                    }
                }
            }
        }
    }

    async fn reload_checkpoint(&mut self) -> Result<(), sqlx::Error> {
        self.cursor = read_checkpoint(&self.store, &self.name).await?;
        Ok(())
    }
}

/// The cursor checkpointed under `name`, or the start of the store.
async fn read_checkpoint(store: &EventStore, name: &str) -> Result<Cursor, sqlx::Error> {
    Ok(
        sqlx::query_as::<_, (i64, i64)>("SELECT tx_id, position FROM relay_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(store.pool())
            .await?
            .map(|(tx_id, position)| Cursor { tx_id, position })
            .unwrap_or(Cursor::START),
    )
}

/// The headers of an event's message: its type and id, and the trace context stored with it,
/// so consumers that read only headers continue the event's trace.
fn message_headers(event: &RecordedEvent) -> OwnedHeaders {
    let event_id = event.event_id.to_string();
    let mut headers = OwnedHeaders::new()
        .insert(Header {
            key: "event_type",
            value: Some(event.event_type.as_bytes()),
        })
        .insert(Header {
            key: "event_id",
            value: Some(event_id.as_bytes()),
        });
    if let Some(traceparent) = &event.traceparent {
        headers = headers.insert(Header {
            key: "traceparent",
            value: Some(traceparent.as_bytes()),
        });
    }
    if let Some(tracestate) = &event.tracestate {
        headers = headers.insert(Header {
            key: "tracestate",
            value: Some(tracestate.as_bytes()),
        });
    }
    headers
}

async fn wait_for(delivery: DeliveryFuture) -> Result<(), RelayError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(error.into()),
        Err(_cancelled) => Err(KafkaError::Canceled.into()),
    }
}

fn chrono_age_seconds(event: &RecordedEvent) -> f64 {
    let age = chrono::Utc::now() - event.recorded_at;
    age.num_milliseconds().max(0) as f64 / 1000.0
}

/// The right to publish one topic: a session-level advisory lock, held by a connection of
/// its own. Postgres releases the lock only when that session ends, so while the session
/// answers, no other relay holds the lock. A Postgres restart ends the session; the relay
/// notices before its next batch (`confirm`), and its checkpoint writes go through the same
/// session, so a relay that lost the lock cannot move the checkpoint either.
pub struct Leadership {
    /// The session holding the lock; never returned to a pool.
    connection: sqlx::PgConnection,
}

impl Leadership {
    /// Waits (as a standby, retrying every second) until this relay holds the lock.
    pub async fn acquire(store: &EventStore, topic: &str) -> Result<Self, sqlx::Error> {
        let mut connection = store.pool().acquire().await?.detach();
        let mut standing_by = false;
        loop {
            let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
                .bind(format!("relay:{topic}"))
                .fetch_one(&mut connection)
                .await?;
            if acquired {
                tracing::info!(topic, "This relay is the active publisher.");
                metrics::gauge!("relay_leader").set(1.0);
                return Ok(Self { connection });
            }
            if !standing_by {
                tracing::info!(topic, "Another relay is publishing; standing by.");
                standing_by = true;
            }
            metrics::gauge!("relay_leader").set(0.0);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Proves the lock is still held: the session that took it still answers, within 2 s.
    async fn confirm(&mut self) -> Result<(), RelayError> {
        let ping = sqlx::query("SELECT 1").execute(&mut self.connection);
        match tokio::time::timeout(Duration::from_secs(2), ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(RelayError::LeadershipLost(error.to_string())),
            Err(_) => Err(RelayError::LeadershipLost(
                "the lock's session did not answer within 2 s".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;
    use std::collections::HashMap;

    fn event(traceparent: Option<&str>, tracestate: Option<&str>) -> RecordedEvent {
        RecordedEvent {
            position: 7,
            tx_id: 3,
            event_id: uuid::Uuid::now_v7(),
            stream_id: uuid::Uuid::now_v7(),
            stream_type: "prompt_card".into(),
            version: 1,
            event_type: "PromptCardCreated".into(),
            schema_version: 1,
            workspace_id: None,
            actor_id: None,
            correlation_id: uuid::Uuid::now_v7(),
            causation_id: None,
            traceparent: traceparent.map(str::to_owned),
            tracestate: tracestate.map(str::to_owned),
            data: serde_json::json!({}),
            recorded_at: chrono::Utc::now(),
        }
    }

    fn as_map(headers: &OwnedHeaders) -> HashMap<String, String> {
        headers
            .iter()
            .map(|h| {
                (
                    h.key.to_owned(),
                    String::from_utf8(h.value.unwrap_or_default().to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn the_trace_context_header_is_the_one_stored_with_the_event() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let traced = event(Some(traceparent), Some("vendor=opaque"));
        let headers = as_map(&message_headers(&traced));
        assert_eq!(headers["traceparent"], traceparent);
        assert_eq!(headers["tracestate"], "vendor=opaque");
        assert_eq!(headers["event_type"], "PromptCardCreated");
        assert_eq!(headers["event_id"], traced.event_id.to_string());

        let headers = as_map(&message_headers(&event(None, None)));
        assert!(!headers.contains_key("traceparent") && !headers.contains_key("tracestate"));
    }
}
