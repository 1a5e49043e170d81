//! INVARIANT 6 through the whole pipeline: a relay and a projector that start while writers are
//! busy catch up and then follow live, and every event is applied exactly once.

use crate::support::*;
use domain::role::Role;
use event_store::{EventStore, ExpectedVersion};
use projector::postgres::PostgresSink;
use projector::Worker;
use sqlx::PgPool;
use std::collections::BTreeMap;
use uuid::Uuid;

const WRITERS: usize = 4;
const CARDS_PER_WRITER: usize = 3;
const ROUNDS: u32 = 15;

/// One writer: its own cards, updated round after round, sometimes relabelled; and members
/// added to the workspace every writer shares, with "any" as the expected version. Returns
/// each card's final version and title, and the number of events written.
async fn write(store: EventStore, actor: Actor) -> (BTreeMap<Uuid, (i32, String)>, usize) {
    let mut cards: BTreeMap<Uuid, (i32, String)> = BTreeMap::new();
    let mut stream_versions: BTreeMap<Uuid, i64> = BTreeMap::new();
    let mut written = 0;
    for i in 0..CARDS_PER_WRITER {
        let card_id = Uuid::now_v7();
        let title = format!("card {i}");
        let created = card_created(card_id, actor.workspace_id, &title);
        actor
            .append(
                &store,
                true,
                vec![stream(card_id, "prompt_card", ExpectedVersion::NoStream, vec![created])],
            )
            .await;
        cards.insert(card_id, (1, title));
        stream_versions.insert(card_id, 1);
        written += 1;
    }
    for round in 0..ROUNDS {
        for (card_id, (version, title)) in cards.iter_mut() {
            *version += 1;
            *title = format!("card {card_id} v{version}");
            let mut events = vec![card_updated(*version as u32, title)];
            if round % 5 == 4 {
                events.push(label_moved("production", *version as u32, None));
            }
            let at = stream_versions.get_mut(card_id).unwrap();
            let n = events.len() as i64;
            actor
                .append(
                    &store,
                    false,
                    vec![stream(*card_id, "prompt_card", ExpectedVersion::Exact(*at), events)],
                )
                .await;
            *at += n;
            written += n as usize;
        }
        actor
            .append(
                &store,
                false,
                vec![stream(
                    actor.workspace_id,
                    "workspace",
                    ExpectedVersion::Any,
                    vec![member_added(Uuid::now_v7(), Role::Member)],
                )],
            )
            .await;
        written += 1;
    }
    (cards, written)
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_projector_started_while_writers_are_busy_applies_every_event_once(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let owner = Actor::new();
    owner.create_workspace(&store, &MEMBERS).await;
    let topic = create_topic(&kafka_brokers(), "pipeline-test", 3).await;

    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let actor = Actor {
                workspace_id: owner.workspace_id,
                actor_id: Uuid::now_v7(),
            };
            tokio::spawn(write(store.clone(), actor))
        })
        .collect();

    // The relay and the projector start from nothing while the writers are at it.
    eventually("the writers are under way", || async {
        (store.head().await.unwrap() >= 40).then_some(())
    })
    .await;
    let relay = relay_for(&store, &kafka_brokers(), &topic, 50).await;
    let relay_task = tokio::spawn(relay.run());
    let worker = Worker::new(
        &kafka_brokers(),
        &group_id("postgres"),
        None,
        &topic,
        PostgresSink::new(pool.clone()),
        store.clone(),
        50,
    )
    .unwrap();
    let worker_task = tokio::spawn(worker.run());

    let mut cards = BTreeMap::new();
    let mut n = 3;
    for writer in writers {
        let (written_cards, written) = writer.await.unwrap();
        cards.extend(written_cards);
        n += written;
    }
    let expected = store_versions(&pool).await;
    eventually("the projector applied every stream's last version", || async {
        (projected_versions(&pool).await == expected).then_some(())
    })
    .await;
    relay_task.abort();
    worker_task.abort();

    // The relay, a subscriber that started at 0 while writers were busy, published every event
    // exactly once, in the store's global order (per partition) and per stream in version order.
    let messages = consume_all(&kafka_brokers(), &topic).await;
    assert_eq!(messages.len(), n, "events on the topic");
    for (stream_id, versions) in versions_by_stream(&messages) {
        assert_eq!(
            versions,
            (1..=expected[&stream_id]).collect::<Vec<_>>(),
            "stream {stream_id} on the topic"
        );
    }
    let mut last_in_partition: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for message in &messages {
        let event = message.event();
        let at = (event.tx_id, event.position);
        if let Some(previous) = last_in_partition.insert(message.partition, at) {
            assert!(
                previous < at,
                "partition {}: {at:?} after {previous:?}",
                message.partition
            );
        }
    }

    for (card_id, (version, title)) in &cards {
        let (projected_version, projected_title): (i32, String) =
            sqlx::query_as("SELECT version, title FROM read.prompt_cards WHERE card_id = $1")
                .bind(card_id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(
            (projected_version, &projected_title),
            (*version, title),
            "card {card_id}"
        );
        let versions: Vec<i32> =
            sqlx::query_scalar("SELECT version FROM read.card_versions WHERE card_id = $1 ORDER BY version")
                .bind(card_id)
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            versions,
            (1..=*version).collect::<Vec<_>>(),
            "card {card_id}: every version applied once"
        );
    }
    let members: i64 = sqlx::query_scalar("SELECT count(*) FROM read.members WHERE workspace_id = $1")
        .bind(owner.workspace_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(members, 3 + (WRITERS as i64) * ROUNDS as i64);

    let live = read_model_checksum(&pool, "read").await;
    assert_eq!(
        live,
        fresh_projection(&pool, &store).await,
        "the live read model differs from a full replay"
    );
}
