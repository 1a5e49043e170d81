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
        let consumer = kafka::consumer(brokers, group_id, instance_id, topic)?;
        Ok(Self {
            consumer,
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
        while messages.len() < self.batch_size {
            match self.consumer.recv().now_or_never() {
                Some(message) => messages.push(message?.detach()),
                None => break,
            }
        }
        let events = decode(&messages);
        let spans = self.event_spans(&events);
        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        while let Err(error) = self.sink.apply(&events).await {
            metrics::counter!("projector_apply_failures_total", "sink" => self.sink.name()).increment(1);
            tracing::warn!(sink = self.sink.name(), error = format!("{error:#}"), retry_in_ms = backoff.as_millis() as u64,
                "Applying a batch failed; holding this sink's offsets and retrying.");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
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

    /// Runs until the process stops.
    pub async fn run(self) {
        loop {
            if let Err(error) = self.step(Duration::from_secs(1)).await {
                tracing::warn!(sink = self.sink.name(), error = format!("{error:#}"), "Consuming failed; retrying.");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
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
