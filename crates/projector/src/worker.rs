//! One sink's consumer: read a batch, apply it until it succeeds, then commit the offsets.

use crate::Sink;
use event_store::{EventStore, RecordedEvent};
use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A batch was applied and its offsets committed.
    Applied { events: usize, last_position: i64 },
    /// No message arrived within the wait.
    Idle,
}

pub struct Worker<S: Sink> {
    consumer: StreamConsumer,
    /// What the consumer was made from, to make a new one when it dies.
    source: Source,
    sink: S,
    /// Used for lag figures only: the store's head position.
    store: EventStore,
    batch_size: usize,
}

impl<S: Sink> Worker<S> {
    pub fn new(
        brokers: &str,
        group_id: &str,
        instance_id: Option<&str>,
        topic: &str,
        sink: S,
        store: EventStore,
        batch_size: usize,
    ) -> anyhow::Result<Self> {
        let source = Source {
            brokers: brokers.to_owned(),
            group_id: group_id.to_owned(),
            instance_id: instance_id.map(str::to_owned),
            topic: topic.to_owned(),
        };
        let consumer = source.consumer()?;
        Ok(Self {
            consumer,
            source,
            sink,
            store,
            batch_size,
        })
    }

    /// Takes what has arrived (waiting up to `wait` for the first message), applies it, retrying
    /// with backoff until the sink accepts it, and then commits the offsets. Never skips.
    pub async fn step(&self, wait: Duration) -> anyhow::Result<Outcome> {
        let first = match tokio::time::timeout(wait, self.consumer.recv()).await {
            Err(_) => return Ok(Outcome::Idle),
            Ok(message) => message?.detach(),
        };
        let mut messages = vec![first];
        let linger_until = Instant::now() + self.sink.linger();
        while messages.len() < self.batch_size {
            if let Some(message) = self.consumer.recv().now_or_never() {
                messages.push(message?.detach());
                continue;
            }
            let lingering = linger_until.saturating_duration_since(Instant::now());
            if lingering.is_zero() {
                break;
            }
            match tokio::time::timeout(lingering, self.consumer.recv()).await {
                Ok(message) => messages.push(message?.detach()),
                Err(_) => break,
            }
        }
        let events = decode(&messages);
        let spans = self.event_spans(&events);
        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        let mut failures = 0u32;
        while let Err(error) = apply_within(&self.sink, &events, APPLY_TIMEOUT).await {
            metrics::counter!("projector_apply_failures_total", "sink" => self.sink.name()).increment(1);
            if failures == 0 {
                tracing::warn!(
                    sink = self.sink.name(),
                    error = format!("{error:#}"),
                    "Applying a batch failed; holding this sink's offsets and retrying with backoff."
                );
            } else {
                tracing::debug!(
                    sink = self.sink.name(),
                    error = format!("{error:#}"),
                    retry_in_ms = backoff.as_millis() as u64,
                    "Applying the batch failed again."
                );
            }
            failures += 1;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        if failures > 0 {
            tracing::info!(
                sink = self.sink.name(),
                failures,
                "The batch is applied; the sink works again."
            );
        }
        self.commit(&messages)?;
        drop(spans);

        let sink = self.sink.name();
        metrics::histogram!("projector_apply_seconds", "sink" => sink).record(started.elapsed().as_secs_f64());
        metrics::histogram!("projector_batch_size", "sink" => sink).record(events.len() as f64);
        metrics::counter!("projector_events_applied_total", "sink" => sink).increment(events.len() as u64);
        let last_position = events.iter().map(|e| e.position).max().unwrap_or_default();
        if let Some(latest) = events.iter().max_by_key(|e| e.recorded_at) {
            let age = (chrono::Utc::now() - latest.recorded_at).num_milliseconds().max(0);
            metrics::gauge!("projector_lag_seconds", "sink" => sink).set(age as f64 / 1000.0);
        }
        if let Ok(head) = self.store.head().await {
            metrics::gauge!("projector_lag_events", "sink" => sink).set((head - last_position).max(0) as f64);
        }
        Ok(Outcome::Applied {
            events: events.len(),
            last_position,
        })
    }

    /// One span per event, in the trace of the command that appended it, open from before the
    /// batch is applied until its offsets are committed. The batch stays one sink call (one
    /// transaction); the spans only place each event's projection in its own trace.
    fn event_spans(&self, events: &[RecordedEvent]) -> Vec<tracing::Span> {
        events
            .iter()
            .map(|event| {
                let span = tracing::info_span!("project", sink = self.sink.name(), event_id = %event.event_id,
                    event_type = %event.event_type, position = event.position);
                service::set_parent_from_traceparent(&span, event.traceparent.as_deref(), event.tracestate.as_deref());
                span
            })
            .collect()
    }

    /// Commits, per partition, the offset after the last message applied.
    fn commit(&self, messages: &[OwnedMessage]) -> anyhow::Result<()> {
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for message in messages {
            let entry = next
                .entry((message.topic().to_owned(), message.partition()))
                .or_default();
            *entry = (*entry).max(message.offset() + 1);
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            offsets.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
        }
        self.consumer.commit(&offsets, CommitMode::Sync)?;
        Ok(())
    }

    /// Runs until the process stops. A broker outage is logged once, and its end once.
    pub async fn run(mut self) {
        let mut failing = false;
        loop {
            match self.step(Duration::from_secs(1)).await {
                Ok(_) if failing => {
                    tracing::info!(sink = self.sink.name(), "Consuming again.");
                    failing = false;
                }
                Ok(_) => {}
                Err(error) => {
                    if !failing {
                        tracing::warn!(
                            sink = self.sink.name(),
                            error = format!("{error:#}"),
                            "Consuming failed; retrying until it works."
                        );
                        failing = true;
                    }
                    if kafka::is_dead(&self.consumer) {
                        tracing::warn!(sink = self.sink.name(), "The consumer hit a fatal error; replacing it.");
                        match self.source.consumer() {
                            Ok(consumer) => self.consumer = consumer,
                            Err(error) => {
                                tracing::warn!(sink = self.sink.name(), error = %error, "Creating a consumer failed; retrying.")
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// Where a worker consumes from.
struct Source {
    brokers: String,
    group_id: String,
    instance_id: Option<String>,
    topic: String,
}

impl Source {
    fn consumer(&self) -> Result<StreamConsumer, rdkafka::error::KafkaError> {
        kafka::consumer(&self.brokers, &self.group_id, self.instance_id.as_deref(), &self.topic)
    }
}

/// The longest a batch may take to apply. A service that accepts the connection and then
/// never answers (a hung server, a half-open TCP connection after a restart) fails the batch
/// after this long, to be retried, instead of holding the sink forever.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

async fn apply_within<S: Sink>(sink: &S, events: &[RecordedEvent], timeout: Duration) -> anyhow::Result<()> {
    match tokio::time::timeout(timeout, sink.apply(events)).await {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!("{} did not answer within {timeout:?}", sink.name())),
    }
}

/// Decodes message payloads. A payload that is not an event is not ours to project: it is
/// logged and counted, never silently dropped.
fn decode(messages: &[OwnedMessage]) -> Vec<RecordedEvent> {
    messages
        .iter()
        .filter_map(|message| {
            let payload = message.payload().unwrap_or_default();
            match serde_json::from_slice::<RecordedEvent>(payload) {
                Ok(event) => Some(event),
                Err(error) => {
                    metrics::counter!("projector_undecodable_messages_total").increment(1);
                    tracing::error!(partition = message.partition(), offset = message.offset(), error = %error,
                        "A message on the events topic is not an event; it cannot be projected.");
                    None
                }
            }
        })
        .collect()
}
