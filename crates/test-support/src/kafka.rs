//! A Kafka topic of one test's own.

use crate::eventually;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::time::Duration;
use uuid::Uuid;

/// Creates a fresh topic `<prefix>-<uuid>` on `brokers` and waits until its partitions are
/// known, so a producer or consumer that starts next sees all of them.
pub async fn create_topic(brokers: &str, prefix: &str, partitions: i32) -> String {
    let name = format!("{prefix}-{}", Uuid::new_v4().simple());
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(&name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("CreateTopics");
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("creating {topic} failed: {code}"));
    }
    let (brokers_owned, name_owned) = (brokers.to_owned(), name.clone());
    eventually("the new topic's partitions are known", || {
        let (brokers, name) = (brokers_owned.clone(), name_owned.clone());
        async move {
            let known = tokio::task::spawn_blocking(move || partition_ids(&brokers, &name))
                .await
                .unwrap();
            (known.len() == partitions as usize).then_some(())
        }
    })
    .await;
    name
}

/// The partition ids of `topic`, as the broker's metadata has them (blocking).
pub fn partition_ids(brokers: &str, topic: &str) -> Vec<i32> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
        Ok(metadata) => metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect(),
        Err(_) => Vec::new(),
    }
}
