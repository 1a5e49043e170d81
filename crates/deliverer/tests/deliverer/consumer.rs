//! The fan-out as a consumer of the real events topic: a consumer that dies after recording a
//! batch but before committing its offsets loses nothing and doubles nothing, because the
//! deliveries are written before the commit and once per endpoint and event.

use crate::support::*;
use deliverer::fanout::FanOut;
use event_store::RecordedEvent;
use projector::{Outcome, Sink, Worker};
use relay::Relay;
use sqlx::PgPool;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use test_support::kafka::create_topic;
use test_support::{kafka_brokers, DEADLINE};
use tokio::sync::Notify;

/// The fan-out of a deliverer killed right after its batch is recorded, before the commit.
#[derive(Clone)]
struct DiesAfterApply {
    inner: FanOut,
    applied: Arc<Notify>,
}

impl Sink for DiesAfterApply {
    fn name(&self) -> &'static str {
        "webhooks"
    }

    async fn apply(&self, events: &[RecordedEvent]) -> anyhow::Result<()> {
        self.inner.apply(events).await?;
        self.applied.notify_one();
        std::future::pending().await
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_fan_out_killed_before_its_commit_records_every_delivery_once(pool: PgPool) {
    let world = World::new(pool).await;
    let receiver = Receiver::start().await;
    let (webhook_id, secret) = world.register(&receiver.url(), &["card.created"]).await;
    let mut cards = HashSet::new();
    for n in 0..20 {
        cards.insert(world.create_card(&format!("card {n}")).await.to_string());
    }
    let topic = create_topic(&kafka_brokers(), "deliverer-test", 3).await;
    let mut relay = Relay::new(
        world.store.clone(),
        kafka::producer(&kafka_brokers()).unwrap(),
        &topic,
        500,
    )
    .await
    .unwrap();
    let total = world.events().await.len();
    let mut published = 0;
    while published < total {
        if let relay::Outcome::Published { count, .. } = relay.step().await.unwrap() {
            published += count;
        }
    }
    let group = format!("deliverer-test-{}", uuid::Uuid::new_v4().simple());

    let dying = DiesAfterApply {
        inner: world.fanout(),
        applied: Arc::new(Notify::new()),
    };
    let doomed = Worker::new(
        &kafka_brokers(),
        &group,
        None,
        &topic,
        dying.clone(),
        world.store.clone(),
        8,
    )
    .unwrap();
    let task = tokio::spawn(async move { doomed.step(DEADLINE).await });
    tokio::time::timeout(DEADLINE, dying.applied.notified())
        .await
        .expect("the dying fan-out applied nothing");
    task.abort();
    let recorded_before_the_crash = world.deliveries(webhook_id).await.len();
    assert!(recorded_before_the_crash > 0);

    // The restarted consumer gets the crashed batch again, and the rest.
    let restarted = Worker::new(
        &kafka_brokers(),
        &group,
        None,
        &topic,
        world.fanout(),
        world.store.clone(),
        8,
    )
    .unwrap();
    let mut taken = 0;
    while taken < total {
        match restarted.step(Duration::from_secs(5)).await.unwrap() {
            Outcome::Applied { events, .. } => taken += events,
            Outcome::Idle => panic!("the topic ran dry after {taken} of {total} events"),
        }
    }
    assert!(taken >= total);
    let deliveries = world.deliveries(webhook_id).await;
    assert_eq!(
        deliveries.len(),
        20,
        "one delivery per card, however often its event was consumed"
    );

    world
        .dispatcher(loopback_allowed(), quick_retries())
        .step()
        .await
        .unwrap();
    let received = receiver.wait_for(20, Duration::from_secs(30)).await;
    let delivered: HashSet<String> = received
        .iter()
        .map(|r| {
            r.verify(&secret).unwrap();
            r.json()["data"]["card_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(delivered, cards);
    assert_eq!(received.len(), 20);
}
