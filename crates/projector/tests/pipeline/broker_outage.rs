//! INVARIANT 9 and "Postgres is the source of truth": killing the broker stops nothing on the
//! write side, and the relay catches up when it returns, with duplicates at most, never gaps.

use crate::support::*;
use event_store::{EventStore, ExpectedVersion};
use sqlx::PgPool;
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

/// Cards updated round-robin, one append per card per round.
struct Cards {
    actor: Actor,
    versions: Vec<(Uuid, i64)>,
    written: usize,
}

impl Cards {
    async fn create(store: &EventStore, count: usize) -> Self {
        let actor = Actor::new();
        actor.create_workspace(store, &MEMBERS).await;
        let mut versions = Vec::new();
        for i in 0..count {
            let card_id = Uuid::now_v7();
            let created = card_created(card_id, actor.workspace_id, &format!("card {i}"));
            actor
                .append(
                    store,
                    true,
                    vec![stream(card_id, "prompt_card", ExpectedVersion::NoStream, vec![created])],
                )
                .await;
            versions.push((card_id, 1));
        }
        Self {
            actor,
            versions,
            written: 3 + count,
        }
    }

    /// One update of every card; every append must succeed.
    async fn round(&mut self, store: &EventStore) {
        for (card_id, version) in &mut self.versions {
            let next = *version as u32 + 1;
            self.actor
                .append(
                    store,
                    next.is_multiple_of(2),
                    vec![stream(
                        *card_id,
                        "prompt_card",
                        ExpectedVersion::Exact(*version),
                        vec![card_updated(next, &format!("v{next}"))],
                    )],
                )
                .await;
            *version += 1;
            self.written += 1;
        }
    }
}

/// Where the relay's checkpoint for `topic` stands (0 before the first acknowledged batch).
async fn checkpoint(pool: &PgPool, topic: &str) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT position FROM relay_checkpoints WHERE name = $1")
        .bind(format!("kafka:{topic}"))
        .fetch_optional(pool)
        .await
        .unwrap()
        .unwrap_or(0)
}

async fn head(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Aborts the task when the test ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<Result<std::convert::Infallible, relay::RelayError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_relay_catches_up_after_the_broker_is_killed_without_gaps(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let mut broker = PrivateBroker::start().await;
    let brokers = broker.brokers();
    let topic = create_topic(&brokers, "pipeline-test", 3).await;
    let relay = relay_for(&store, &brokers, &topic, 20).await;
    let relay_task = AbortOnDrop(tokio::spawn(relay.run()));

    // Writes flow while the broker is up, until the relay has acknowledged some of them.
    let mut cards = Cards::create(&store, 8).await;
    for _ in 0..5 {
        cards.round(&store).await;
    }
    eventually("the relay acknowledged a first batch", || async {
        (checkpoint(&pool, &topic).await > 0).then_some(())
    })
    .await;
    for _ in 0..3 {
        cards.round(&store).await;
    }

    // SIGKILL mid-flow. Appends keep succeeding (Cards::round panics on a failed append).
    broker.kill();
    for _ in 0..10 {
        cards.round(&store).await;
    }
    // Let the outage last: the producer reconnects with backoff meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !relay_task.0.is_finished(),
        "the relay gave up while the broker was away"
    );
    let stuck = checkpoint(&pool, &topic).await;
    assert!(
        stuck < head(&pool).await,
        "the relay checkpointed up to {stuck}, past events the broker never acknowledged"
    );

    // The broker returns on the same storage; the relay catches up with what is written next.
    broker.restart().await;
    for _ in 0..3 {
        cards.round(&store).await;
    }
    let n = cards.written;
    let last = head(&pool).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while checkpoint(&pool, &topic).await < last {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay did not catch up after the broker returned (checkpoint {} of {last}); broker log:\n{}",
            checkpoint(&pool, &topic).await,
            broker.log()
        );
        assert!(!relay_task.0.is_finished(), "the relay stopped");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    drop(relay_task);

    let messages = consume_all(&brokers, &topic).await;
    let events = read_everything(&store, n).await;
    let on_topic: HashSet<String> = messages.iter().map(|m| m.headers["event_id"].clone()).collect();
    for event in &events {
        assert!(
            on_topic.contains(&event.event_id.to_string()),
            "event {} of {} v{} is lost",
            event.event_id,
            event.stream_id,
            event.version
        );
    }
    let versions = store_versions(&pool).await;
    let by_stream = versions_by_stream(&messages);
    for (stream_id, version) in &versions {
        let sequence = &by_stream[stream_id];
        let mut first_seen = Vec::new();
        for v in sequence {
            if !first_seen.contains(v) {
                first_seen.push(*v);
            }
        }
        let expected: Vec<i64> = (1..=*version).collect();
        assert_eq!(first_seen, expected, "stream {stream_id}: first appearances on the topic, in topic order, must be 1..={version} (topic holds {sequence:?})");
    }
    eprintln!(
        "broker outage: {n} events, {} messages ({} duplicates)",
        messages.len(),
        messages.len() - n
    );
}
