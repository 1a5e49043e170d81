//! Every Kafka client of the project is configured here, so that a setting and the reason for
//! it are written once. Settings left at librdkafka's defaults are not repeated.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use std::time::Duration;

pub use rdkafka;

/// The producer of the relay. It never drops a message: idempotent, acknowledged by all
/// in-sync replicas, and retried for as long as the broker is away (`message.timeout.ms=0`).
///
/// `linger.ms=1`: the relay hands over a whole batch read from the store and then waits for
/// every delivery report before it moves its checkpoint, so the batch is already there to be
/// batched; waiting longer for more messages only adds to each event's time to consumers.
pub fn producer(brokers: &str) -> Result<FutureProducer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0")
        .set("linger.ms", "1")
        .create()
}

/// The configuration of a consumer in `group_id` that commits its offsets itself, only after
/// their effect is written. Callers may add settings before `create()`.
///
/// `instance_id` makes the consumer a static member of its group (KIP-345): a process that
/// restarts under the same id takes its partitions back at once, with no rebalance. Without
/// it a restarted process (after SIGKILL, which sends no LeaveGroup) waits until the broker
/// declares the dead member gone. That wait is `session.timeout.ms`, lowered here from 45 s
/// to 10 s for consumers that are not static (replicas whose names change).
///
/// The fetch wait stays at librdkafka's 500 ms: Kafka answers a fetch as soon as a message
/// arrives, so it bounds only how often an idle consumer asks, not how late a message is.
pub fn consumer_config(brokers: &str, group_id: &str, instance_id: Option<&str>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000");
    if let Some(instance_id) = instance_id.filter(|id| !id.is_empty()) {
        config.set("group.instance.id", instance_id);
    }
    config
}

/// A consumer of `topic`, subscribed.
pub fn consumer(
    brokers: &str,
    group_id: &str,
    instance_id: Option<&str>,
    topic: &str,
) -> Result<StreamConsumer, KafkaError> {
    let consumer: StreamConsumer = consumer_config(brokers, group_id, instance_id).create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// Whether `consumer` hit a fatal error and will never deliver again, so that its owner must
/// create a new one. Seen after a broker restart: the coordinator, reloading the group, fences
/// the static member's old session (`FENCED_INSTANCE_ID`) while the same client rejoins.
pub fn is_dead(consumer: &StreamConsumer) -> bool {
    consumer.client().fatal_error().is_some()
}

/// This process's static group membership id: `KAFKA_GROUP_INSTANCE_ID` when set (empty turns
/// static membership off), else the host name, which is stable across restarts on a machine
/// and in a Kubernetes StatefulSet, and distinct between replicas. Two processes of the same
/// group on one host must be given distinct ids; the broker fences the older one otherwise.
pub fn instance_id_from_env() -> Option<String> {
    let id = match std::env::var("KAFKA_GROUP_INSTANCE_ID") {
        Ok(id) => id,
        Err(_) => std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())?
            .trim()
            .to_owned(),
    };
    Some(id).filter(|id| !id.is_empty())
}

/// Creates `topic` with `partitions` partitions unless it exists. Brokers run with topic
/// auto-creation off, so every process that uses the topic calls this before it does.
#[tracing::instrument(skip_all, fields(topic, partitions), err)]
pub async fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    // -1: the broker's `default.replication.factor`, so a cluster of three gets three copies.
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(-1))],
            &options,
        )
        .await?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(topic, partitions, "Created the topic."),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    Ok(())
}

/// Whether the brokers answer a metadata request within two seconds (for `/readyz`).
pub async fn answers(brokers: &str) -> bool {
    let brokers = brokers.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: Result<BaseConsumer, _> = ClientConfig::new().set("bootstrap.servers", &brokers).create();
        consumer.is_ok_and(|c| c.fetch_metadata(None, Duration::from_secs(2)).is_ok())
    })
    .await
    .unwrap_or(false)
}
