//! Run and execution requests from the events topic. A request's offset is committed only once its run is
//! over, and never past a request still running, so a runner that dies mid-run sees the
//! request again on restart and resumes it.

use crate::Runner;
use domain::execution::ExecutionEvent;
use domain::run::RunEvent;
use event_store::RecordedEvent;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use uuid::Uuid;

type Partition = (String, i32);

pub struct RunRequests {
    consumer: StreamConsumer,
    /// Makes a new consumer when the current one dies of a fatal error.
    make_consumer: Box<dyn Fn() -> Result<StreamConsumer, rdkafka::error::KafkaError> + Send + Sync>,
    runner: Runner,
    max_runs: usize,
}

impl RunRequests {
    pub fn new(
        brokers: &str,
        group_id: &str,
        instance_id: Option<&str>,
        topic: &str,
        runner: Runner,
        max_runs: usize,
    ) -> anyhow::Result<Self> {
        let (brokers, group_id, topic) = (brokers.to_owned(), group_id.to_owned(), topic.to_owned());
        let instance_id = instance_id.map(str::to_owned);
        let make_consumer = move || {
            let consumer: StreamConsumer = kafka::consumer_config(&brokers, &group_id, instance_id.as_deref())
                // A long run keeps its request uncommitted; the consumer itself keeps polling.
                .set("max.poll.interval.ms", "3600000")
                // The loop below stores the offsets that are safe to commit after every message;
                // librdkafka commits the latest stored ones once a second. Committing on every
                // message queued so many OffsetCommits behind a restarted broker that they held
                // back the heartbeats and the group kept timing out.
                .set("enable.auto.commit", "true")
                .set("enable.auto.offset.store", "false")
                .set("auto.commit.interval.ms", "1000")
                .create()?;
            consumer.subscribe(&[&topic])?;
            Ok(consumer)
        };
        Ok(Self {
            consumer: make_consumer()?,
            make_consumer: Box::new(make_consumer),
            runner,
            max_runs: max_runs.max(1),
        })
    }

    pub async fn run(mut self) -> anyhow::Result<()> {
        let slots = Arc::new(Semaphore::new(self.max_runs));
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Partition, i64)>();
        // Offsets received and not yet finished, and the next offset to read, per partition.
        let mut in_flight: BTreeMap<Partition, BTreeSet<i64>> = BTreeMap::new();
        let mut next: BTreeMap<Partition, i64> = BTreeMap::new();
        // Whether the last receive failed, so that an outage is logged once, not per attempt.
        let mut failing = false;
        loop {
            tokio::select! {
                Some((partition, offset)) = done_rx.recv() => {
                    if let Some(offsets) = in_flight.get_mut(&partition) {
                        offsets.remove(&offset);
                    }
                }
                message = self.consumer.recv() => {
                    // A broker outage surfaces here as an error, not as a stalled stream; the
                    // consumer reconnects by itself, so wait a moment and receive again.
                    let message = match message {
                        Ok(message) => {
                            if failing {
                                tracing::info!("Receiving run requests again.");
                                failing = false;
                            }
                            message
                        }
                        Err(error) => {
                            if !failing {
                                tracing::warn!(error = %error, "Receiving run requests failed; retrying until the broker answers.");
                                failing = true;
                            }
                            if kafka::is_dead(&self.consumer) {
                                tracing::warn!("The consumer hit a fatal error; replacing it.");
                                match (self.make_consumer)() {
                                    Ok(consumer) => self.consumer = consumer,
                                    Err(error) => tracing::warn!(error = %error, "Creating a consumer failed; retrying."),
                                }
                            }
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                    };
                    let partition = (message.topic().to_owned(), message.partition());
                    let offset = message.offset();
                    next.insert(partition.clone(), offset + 1);
                    let requested = message
                        .payload()
                        .and_then(|p| serde_json::from_slice::<RecordedEvent>(p).ok())
                        .and_then(|e| Work::of(&e));
                    if let Some(work) = requested {
                        in_flight.entry(partition.clone()).or_default().insert(offset);
                        // Runs share `max_runs` slots; a playground execution is one call that
                        // someone is watching, so it never queues behind runs.
                        let permit = match work {
                            Work::Run(_) => Some(slots.clone().acquire_owned().await?),
                            Work::Execution(_) => None,
                        };
                        let (runner, done) = (self.runner.clone(), done_tx.clone());
                        tokio::spawn(async move {
                            until_done(&runner, work).await;
                            let _ = done.send((partition, offset));
                            drop(permit);
                        });
                    }
                }
            }
            if let Err(error) = self.commit(&in_flight, &next) {
                // A partition no longer assigned (a rebalance) refuses its offset; the next
                // store after the next message carries the rest.
                tracing::debug!(error = %error, "Storing offsets failed.");
            }
        }
    }

    /// Stores, per partition, the offset up to the oldest request still running (or all that
    /// was read), for the next automatic commit.
    fn commit(
        &self,
        in_flight: &BTreeMap<Partition, BTreeSet<i64>>,
        next: &BTreeMap<Partition, i64>,
    ) -> anyhow::Result<()> {
        let mut offsets = TopicPartitionList::new();
        for (partition, next_offset) in next {
            let safe = in_flight
                .get(partition)
                .and_then(|o| o.first().copied())
                .unwrap_or(*next_offset);
            offsets.add_partition_offset(&partition.0, partition.1, Offset::Offset(safe))?;
        }
        if offsets.count() > 0 {
            self.consumer.store_offsets(&offsets)?;
        }
        Ok(())
    }
}

/// What a request on the topic asks the runner to do.
#[derive(Debug, Clone, Copy)]
enum Work {
    Run(Uuid),
    Execution(Uuid),
}

impl Work {
    fn of(event: &RecordedEvent) -> Option<Self> {
        match event.event_type.as_str() {
            RunEvent::TEST_RUN_REQUESTED => Some(Work::Run(event.stream_id)),
            ExecutionEvent::EXECUTION_REQUESTED => Some(Work::Execution(event.stream_id)),
            _ => None,
        }
    }
}

/// Does `work` until it is over, starting it again after a failure (a database outage, say)
/// with a growing pause: a run resumes where it stopped, an execution starts over.
async fn until_done(runner: &Runner, work: Work) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let outcome = match work {
            // A run that is one side of a comparison settles it once over; until that is
            // written the request stays uncommitted, so a crash in between settles it again.
            Work::Run(run_id) => match runner.execute(run_id).await {
                Ok(outcome) => runner
                    .settle_comparison(run_id)
                    .await
                    .map(|comparison| format!("{outcome:?}, comparison {comparison:?}")),
                Err(error) => Err(error),
            },
            Work::Execution(execution_id) => runner
                .run_execution(execution_id)
                .await
                .map(|status| status.as_str().to_owned()),
        };
        match outcome {
            Ok(outcome) => {
                tracing::info!(work = ?work, outcome, "Work is over.");
                return;
            }
            Err(error) => {
                tracing::warn!(work = ?work, error = format!("{error:#}"), retry_in_ms = backoff.as_millis() as u64,
                    "The work failed; starting it again shortly.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
