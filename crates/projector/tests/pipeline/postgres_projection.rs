//! The Postgres read models: exactly-once effects over at-least-once delivery (INVARIANT 7),
//! and what the projections hold for a known history.

use crate::support::*;
use event_store::{EventStore, ExpectedVersion, RecordedEvent};
use projector::postgres::PostgresSink;
use projector::{Sink, Worker};
use serde_json::json;
use sqlx::PgPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use uuid::Uuid;

/// A Postgres sink in a projector that is killed right after its effect is durable and before
/// the worker can commit the offsets: it signals how many events it applied and never returns.
#[derive(Clone)]
struct DiesAfterApply {
    inner: PostgresSink,
    applied: Arc<tokio::sync::Notify>,
    count: Arc<AtomicUsize>,
}

impl Sink for DiesAfterApply {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn apply(&self, events: &[RecordedEvent]) -> anyhow::Result<()> {
        self.inner.apply(events).await?;
        self.count.store(events.len(), Ordering::SeqCst);
        self.applied.notify_one();
        std::future::pending().await
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_crash_between_apply_and_commit_leaves_the_read_model_equal_to_a_full_replay(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let n = seed(&store, 2, 3, 8).await;
    let topic = create_topic(&kafka_brokers(), "pipeline-test", 3).await;
    publish_all(&mut relay_for(&store, &kafka_brokers(), &topic, 100).await, n).await;
    let group = group_id("postgres");
    let sink = PostgresSink::new(pool.clone());

    // A worker applies a first batch and commits it, then stops.
    let committed = {
        let worker = Worker::new(&kafka_brokers(), &group, None, &topic, sink.clone(), store.clone(), 10).unwrap();
        match worker.step(DEADLINE).await.unwrap() {
            projector::Outcome::Applied { events, .. } => events,
            projector::Outcome::Idle => panic!("the first worker got nothing"),
        }
    };
    // The next worker of the group applies a batch and is killed before it commits.
    let dying = DiesAfterApply {
        inner: sink.clone(),
        applied: Arc::new(tokio::sync::Notify::new()),
        count: Arc::new(AtomicUsize::new(0)),
    };
    let worker = Worker::new(&kafka_brokers(), &group, None, &topic, dying.clone(), store.clone(), 40).unwrap();
    let task = tokio::spawn(async move { worker.step(DEADLINE).await });
    tokio::time::timeout(DEADLINE, dying.applied.notified())
        .await
        .expect("the dying worker applied nothing");
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let crashed = dying.count.load(Ordering::SeqCst);
    assert!(
        crashed > 0 && committed + crashed < n,
        "the crash should leave events for the restart"
    );

    // After the restart the group resumes at the last commit: the crashed batch comes again.
    let worker = Worker::new(&kafka_brokers(), &group, None, &topic, sink.clone(), store.clone(), 25).unwrap();
    consume_n(&worker, n - committed).await;
    drop(worker);

    assert_eq!(projected_versions(&pool).await, store_versions(&pool).await);
    let live = read_model_checksum(&pool, "read").await;
    for table in [
        "prompt_cards",
        "card_versions",
        "label_moves",
        "test_cases",
        "workspaces",
        "members",
        "test_runs",
        "test_results",
        "webhooks",
        "alert_rules",
        "alerts",
    ] {
        assert!(live[table].0 > 0, "read.{table} is empty; the history should fill it");
    }
    assert_eq!(
        live,
        fresh_projection(&pool, &store).await,
        "the live read model differs from a full replay"
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn redelivered_and_older_events_change_nothing(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let n = seed(&store, 1, 3, 6).await;
    let events = read_everything(&store, n).await;
    let sink = PostgresSink::new(pool.clone());

    // A first batch, then a redelivery overlapping it: both halves, as after a lost commit.
    sink.apply(&events[..n / 2]).await.unwrap();
    sink.apply(&events).await.unwrap();
    let once = read_model_checksum(&pool, "read").await;
    assert_eq!(projected_versions(&pool).await, store_versions(&pool).await);
    // The seeded runs' results arrive interleaved in batches; each is counted once.
    let runs: Vec<(String, i64, i64, i64, i64)> =
        sqlx::query_as("SELECT status, total, completed, passed, failed FROM read.test_runs")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(runs, vec![("COMPLETED".to_owned(), 6, 6, 4, 2); 2]);
    let results: Vec<(i32, bool, Option<String>)> =
        sqlx::query_as("SELECT repetition, passed, error FROM read.test_results ORDER BY position")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(results.len(), 12);
    assert!(results
        .iter()
        .all(|(r, passed, error)| *passed == (r % 3 != 2) && error.is_some() != *passed));

    // The whole history again.
    sink.apply(&events).await.unwrap();
    assert_eq!(
        read_model_checksum(&pool, "read").await,
        once,
        "a redelivered batch changed the read model"
    );

    // Older events after newer ones, newest first, and a lone first event.
    let reversed: Vec<RecordedEvent> = events.iter().rev().cloned().collect();
    sink.apply(&reversed).await.unwrap();
    sink.apply(&events[..1]).await.unwrap();
    assert_eq!(
        read_model_checksum(&pool, "read").await,
        once,
        "an older event regressed the read model"
    );
    assert_eq!(
        projected_versions(&pool).await,
        store_versions(&pool).await,
        "stream_versions went back"
    );

    assert_eq!(
        fresh_projection(&pool, &store).await,
        once,
        "applying with redeliveries differs from one pass"
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_card_and_a_test_case_project_their_whole_history(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let actor = Actor::new();
    let ws = actor.workspace_id;
    actor.create_workspace(&store, &MEMBERS).await;
    let (card_id, case_id) = (Uuid::now_v7(), Uuid::now_v7());
    let card = |expected, events| vec![stream(card_id, "prompt_card", expected, events)];
    let case = |expected, events| vec![stream(case_id, "test_case", expected, events)];
    actor
        .append(
            &store,
            true,
            card(ExpectedVersion::NoStream, vec![card_created(card_id, ws, "first")]),
        )
        .await;
    actor
        .append(
            &store,
            false,
            card(ExpectedVersion::Exact(1), vec![card_updated(2, "second")]),
        )
        .await;
    actor
        .append(
            &store,
            false,
            card(ExpectedVersion::Exact(2), vec![card_updated(3, "third")]),
        )
        .await;
    actor
        .append(
            &store,
            true,
            card(ExpectedVersion::Exact(3), vec![label_moved("production", 2, None)]),
        )
        .await;
    actor
        .append(&store, false, card(ExpectedVersion::Exact(4), vec![card_archived()]))
        .await;
    actor
        .append(
            &store,
            false,
            case(
                ExpectedVersion::NoStream,
                vec![case_created(case_id, card_id, ws, "case")],
            ),
        )
        .await;
    actor
        .append(
            &store,
            false,
            case(ExpectedVersion::Exact(1), vec![case_updated("renamed case")]),
        )
        .await;
    actor
        .append(&store, false, case(ExpectedVersion::Exact(2), vec![case_deleted()]))
        .await;
    let n = 3 + 5 + 3;

    let topic = create_topic(&kafka_brokers(), "pipeline-test", 2).await;
    publish_all(&mut relay_for(&store, &kafka_brokers(), &topic, 100).await, n).await;
    let worker = Worker::new(
        &kafka_brokers(),
        &group_id("postgres"),
        None,
        &topic,
        PostgresSink::new(pool.clone()),
        store.clone(),
        100,
    )
    .unwrap();
    consume_n(&worker, n).await;

    let (version, title, labels, archived, workspace_id): (i32, String, serde_json::Value, bool, Uuid) =
        sqlx::query_as(
            "SELECT version, title, labels, archived, workspace_id FROM read.prompt_cards WHERE card_id = $1",
        )
        .bind(card_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        (version, title.as_str(), archived, workspace_id),
        (3, "third", true, ws)
    );
    assert_eq!(labels, json!({ "production": 2 }));

    let versions: Vec<(i32, String, Option<Uuid>)> =
        sqlx::query_as("SELECT version, title, actor_id FROM read.card_versions WHERE card_id = $1 ORDER BY version")
            .bind(card_id)
            .fetch_all(&pool)
            .await
            .unwrap();
    let actor_id = Some(actor.actor_id);
    assert_eq!(
        versions,
        vec![
            (1, "first".to_owned(), actor_id),
            (2, "second".to_owned(), actor_id),
            (3, "third".to_owned(), actor_id),
        ]
    );

    let moves: Vec<(String, i32, Option<i32>, Option<Uuid>)> =
        sqlx::query_as("SELECT label, version, previous_version, actor_id FROM read.label_moves WHERE card_id = $1")
            .bind(card_id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(moves, vec![("production".to_owned(), 2, None, actor_id)]);

    let (name, deleted, case_card, case_ws, vars): (String, bool, Uuid, Uuid, serde_json::Value) =
        sqlx::query_as("SELECT name, deleted, card_id, workspace_id, vars FROM read.test_cases WHERE case_id = $1")
            .bind(case_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (name.as_str(), deleted, case_card, case_ws),
        ("renamed case", true, card_id, ws)
    );
    assert_eq!(vars["text"], "input of renamed case");

    let mut roles: Vec<String> = sqlx::query_scalar("SELECT role FROM read.members WHERE workspace_id = $1")
        .bind(ws)
        .fetch_all(&pool)
        .await
        .unwrap();
    roles.sort();
    assert_eq!(roles, ["member", "owner", "viewer"]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_prompt_servers_hear_of_every_changed_card_and_workspace(pool: PgPool) {
    // A prompt server that refused a caller before their membership was projected must hear
    // that the workspace changed, or it keeps refusing them from memory.
    let store = EventStore::new(pool.clone());
    seed(&store, 1, 2, 1).await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await.unwrap();
    listener.listen(domain::names::PROMPTS_CHANNEL).await.unwrap();
    let events = store.read_all(event_store::Cursor::START, 10_000).await.unwrap();

    PostgresSink::new(pool.clone()).apply(&events).await.unwrap();

    let mut named = std::collections::BTreeMap::new();
    while let Ok(Ok(notice)) = tokio::time::timeout(std::time::Duration::from_secs(1), listener.recv()).await {
        let streams: Vec<(Uuid, i64)> = serde_json::from_str(notice.payload()).unwrap();
        named.extend(streams);
    }
    let mut expected = std::collections::BTreeMap::new();
    for event in events
        .iter()
        .filter(|e| ["workspace", "prompt_card"].contains(&e.stream_type.as_str()))
    {
        expected.insert(event.stream_id, event.version);
    }
    assert!(
        expected.values().count() >= 3,
        "a workspace and two cards: {expected:?}"
    );
    assert_eq!(named, expected);
}
