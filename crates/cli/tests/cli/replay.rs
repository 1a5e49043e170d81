//! `replay`: rebuilding while the system writes ends equal to live (INVARIANT 8); resuming a
//! partial rebuild; ClickHouse and Redis.

use crate::support::*;
use domain::card::CardEvent;
use event_store::{Cursor, EventStore};
use projector::postgres::PostgresSink;
use projector::Sink;
use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Appends card creations and updates in a workspace of its own until stopped; counts events.
fn writer(store: EventStore, stop: Arc<AtomicBool>, written: Arc<AtomicUsize>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let actor = Actor::new();
        actor.create_workspace(&store, &MEMBERS).await;
        written.fetch_add(2, Ordering::SeqCst);
        let mut round = 0u32;
        while !stop.load(Ordering::SeqCst) {
            let (card, _) = actor.create_card(&store, &format!("written {round}")).await;
            written.fetch_add(2, Ordering::SeqCst);
            let mut version = 1;
            for v in 2..=4u32 {
                let mut events = vec![CardEvent::PromptCardUpdated {
                    version: v,
                    content: content(&format!("written {round} v{v}"), "Hello {{ name }}"),
                }];
                if v == 3 {
                    events.push(CardEvent::PromptCardLabelMoved {
                        label: "live".to_owned(),
                        version: v,
                        previous_version: None,
                    });
                }
                let n = events.len();
                version = actor.card_events(&store, card, version, events).await;
                written.fetch_add(n, Ordering::SeqCst);
                // Pacing, so the writers share the two cores with the replay; not a sync point.
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            if round.is_multiple_of(5) {
                actor
                    .run(
                        &store,
                        card,
                        &[("Ada", Some("Hello Ada!"), true), ("Bob", Some("Bye"), false)],
                    )
                    .await;
                written.fetch_add(5, Ordering::SeqCst);
            }
            round += 1;
        }
    })
}

async fn read_models_oid(pool: &PgPool) -> u32 {
    sqlx::query_scalar::<_, sqlx::postgres::types::Oid>("SELECT 'read.stream_versions'::regclass::oid")
        .fetch_one(pool)
        .await
        .unwrap()
        .0
}

async fn schema_exists(pool: &PgPool, schema: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(schema)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_replay_while_writers_append_and_project_ends_equal_to_live(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    for _ in 0..3 {
        seed(&store, &Actor::new(), 12, 8).await;
    }
    let live = LiveProjector::start(store.clone(), 50);
    let (stop, written) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let writers: Vec<_> = (0..2)
        .map(|_| writer(store.clone(), stop.clone(), written.clone()))
        .collect();
    eventually("the writers are under way", || async {
        (written.load(Ordering::SeqCst) > 20).then_some(())
    })
    .await;

    let oid = read_models_oid(&pool).await;
    let before = written.load(Ordering::SeqCst);
    let replay = promptcards(&pool, &["replay", "postgres", "--batch-size", "50"])
        .await
        .success();
    let during = written.load(Ordering::SeqCst) - before;
    assert!(during > 0, "nothing was written while the replay ran");
    assert!(
        replay.stdout.contains("events/s") && replay.stdout.contains("swapped into schema read"),
        "{}",
        replay.stdout
    );
    assert_ne!(
        read_models_oid(&pool).await,
        oid,
        "the rebuilt tables took the place of the old ones"
    );
    assert!(!schema_exists(&pool, "read_rebuild").await && !schema_exists(&pool, "read_old").await);

    // The live projector carries on into the rebuilt schema.
    let after_swap = written.load(Ordering::SeqCst);
    eventually("more is written after the swap", || async {
        (written.load(Ordering::SeqCst) > after_swap + 20).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }
    let expected = store_versions(&pool).await;
    eventually("the live projector has applied everything", || async {
        (projected_versions(&pool).await == expected).then_some(())
    })
    .await;
    live.finish().await;

    let rebuilt = read_model_checksum(&pool, "read").await;
    for table in [
        "prompt_cards",
        "card_versions",
        "label_moves",
        "test_cases",
        "test_runs",
        "test_results",
        "workspaces",
        "members",
    ] {
        assert!(rebuilt[table].0 > 0, "read.{table} is empty");
    }
    assert_eq!(
        rebuilt,
        fresh_projection(&pool, &store).await,
        "the rebuilt and live read models differ from a fresh projection"
    );
    let verified = promptcards(&pool, &["verify", "--read-models"]).await.success();
    assert!(
        verified.stdout.contains("read models equal a fresh projection"),
        "{}",
        verified.stdout
    );

    // The rebuilt schema keeps the migrations' index names.
    let indexes: Vec<String> =
        sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE schemaname = 'read' ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    for name in [
        "members_by_user",
        "prompt_cards_search",
        "prompt_cards_pkey",
        "test_results_in_order",
    ] {
        assert!(indexes.iter().any(|i| i == name), "{name} missing from {indexes:?}");
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn replay_from_resumes_a_partial_rebuild(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    seed(&store, &Actor::new(), 6, 4).await;
    let events = all_events(&store).await;
    PostgresSink::new(pool.clone()).apply(&events).await.unwrap();
    let live = read_model_checksum(&pool, "read").await;

    let missing = promptcards(
        &pool,
        &["replay", "postgres", "--from", &events[3].position.to_string()],
    )
    .await;
    assert_eq!(missing.code, 3);
    assert!(
        missing.stderr.contains("no read_rebuild schema to resume"),
        "{}",
        missing.stderr
    );

    // An interrupted rebuild: the shadow holds the first half of the store's order.
    cli::shadow::create(&pool, "read_rebuild").await.unwrap();
    let half = events.len() / 2;
    PostgresSink::with_schema(pool.clone(), "read_rebuild")
        .unwrap()
        .apply(&events[..half])
        .await
        .unwrap();
    let resume_at = Cursor::after(&events[half - 1]).position;

    let resumed = promptcards(&pool, &["replay", "postgres", "--from", &resume_at.to_string()])
        .await
        .success();
    let rest = events.len() - half;
    assert!(
        resumed.stdout.contains(&format!("rebuilt from {rest} events")),
        "{}",
        resumed.stdout
    );
    assert_eq!(read_model_checksum(&pool, "read").await, live);

    let gap = promptcards(&pool, &["replay", "postgres", "--from", "999999"]).await;
    assert_eq!(gap.code, 3);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn replay_all_rebuilds_clickhouse_and_redis_too(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let actor = Actor::new();
    seed(&store, &actor, 3, 2).await;
    let events = all_events(&store).await;
    let results = events.iter().filter(|e| e.event_type == "TestResultRecorded").count() as u64;
    let scratch = ScratchDatabase::create().await;
    let database = scratch.name.clone();
    let env = [
        ("CLICKHOUSE_DATABASE", database.clone()),
        ("CLICKHOUSE_URL", clickhouse_url()),
        ("REDIS_URL", redis_url()),
    ];

    let output = promptcards_with(&pool, &["replay", "--all"], &env).await.success();
    for projection in ["postgres:", "clickhouse:", "redis:"] {
        assert!(
            output
                .stdout
                .lines()
                .any(|l| l.starts_with(projection) && l.contains("events/s")),
            "{}",
            output.stdout
        );
    }
    // Again: the swap replaces tables that exist, and nothing doubles.
    promptcards_with(&pool, &["replay", "clickhouse"], &env).await.success();

    let client = scratch.client();
    let stored: u64 = client
        .query("SELECT count() FROM events FINAL")
        .fetch_one()
        .await
        .unwrap();
    let recorded: u64 = client
        .query("SELECT count() FROM test_results FINAL")
        .fetch_one()
        .await
        .unwrap();
    let databases: u64 = service::clickhouse::client(&clickhouse_url(), "default")
        .query("SELECT count() FROM system.databases WHERE name = ?")
        .bind(format!("{database}_rebuild"))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((stored, recorded), (events.len() as u64, results));
    assert_eq!(databases, 0, "the shadow database is dropped");

    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for (stream_id, version) in store_versions(&pool).await {
        let key: Option<i64> = redis::cmd("GET")
            .arg(domain::names::version_key(stream_id))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(key, Some(version), "the version key of {stream_id}");
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_replay_takes_in_what_live_applied_ahead_of_the_stores_safe_reader(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let actor = Actor::new();
    let cards = seed(&store, &actor, 4, 3).await;
    let sink = PostgresSink::new(pool.clone());
    sink.apply(&all_events(&store).await).await.unwrap();

    // An open transaction holds the store's safe reader below it: what commits after it has
    // begun is not returned until it ends, but a live projector fed some other way has applied it.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *holder)
        .await
        .unwrap();
    let version = sqlx::query_scalar::<_, i64>("SELECT version FROM streams WHERE stream_id = $1")
        .bind(cards[0])
        .fetch_one(&pool)
        .await
        .unwrap();
    let updates = (1..=3)
        .map(|i| CardEvent::PromptCardUpdated {
            version: 4 + i,
            content: content(&format!("late {i}"), "Hello {{ name }}"),
        })
        .collect();
    actor.card_events(&store, cards[0], version, updates).await;
    sink.apply(&store.read_stream(cards[0], version).await.unwrap())
        .await
        .unwrap();

    let replay = promptcards(&pool, &["replay", "postgres"]).await.success();
    holder.rollback().await.unwrap();
    let brought_up: u64 = replay
        .stdout
        .split(" and ")
        .last()
        .and_then(|tail| tail.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {}", replay.stdout));
    assert!(brought_up >= 3, "{}", replay.stdout);
    assert_eq!(
        read_model_checksum(&pool, "read").await,
        fresh_projection(&pool, &store).await
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_live_batch_in_flight_at_the_swap_is_waited_for_and_carried_over(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let actor = Actor::new();
    let cards = seed(&store, &actor, 4, 3).await;
    let sink = PostgresSink::new(pool.clone());
    sink.apply(&all_events(&store).await).await.unwrap();

    // A live projector batch in flight: it has locked its stream_versions rows and not committed.
    let mut batch = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM read.stream_versions LIMIT 1 FOR UPDATE")
        .execute(&mut *batch)
        .await
        .unwrap();
    let replay = tokio::spawn({
        let pool = pool.clone();
        async move { promptcards(&pool, &["replay", "postgres"]).await }
    });
    eventually("the swap waits for the batch in flight", || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE read.stream_versions%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        (waiting == 1).then_some(())
    })
    .await;
    // Meanwhile events are appended, and the batch in flight applies them to `read` and commits.
    let version = sqlx::query_scalar::<_, i64>("SELECT version FROM streams WHERE stream_id = $1")
        .bind(cards[1])
        .fetch_one(&pool)
        .await
        .unwrap();
    let updates = (1..=3)
        .map(|i| CardEvent::PromptCardUpdated {
            version: 4 + i,
            content: content(&format!("in flight {i}"), "Hello {{ name }}"),
        })
        .collect();
    actor.card_events(&store, cards[1], version, updates).await;
    sink.apply_in(&mut batch, &store.read_stream(cards[1], version).await.unwrap())
        .await
        .unwrap();
    batch.commit().await.unwrap();

    let replay = replay.await.unwrap().success();
    assert!(
        !replay
            .stdout
            .contains("after 0 events in the final catch-up and 0 brought up"),
        "{}",
        replay.stdout
    );
    let title: String = sqlx::query_scalar("SELECT title FROM read.prompt_cards WHERE card_id = $1")
        .bind(cards[1])
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(title, "in flight 3");
    assert_eq!(
        read_model_checksum(&pool, "read").await,
        fresh_projection(&pool, &store).await
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_replay_keeps_the_grants_on_the_read_models(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    seed(&store, &Actor::new(), 2, 2).await;
    let role = format!("cli_test_reader_{}", uuid::Uuid::new_v4().simple());
    for statement in [
        format!("CREATE ROLE {role} NOLOGIN"),
        format!("GRANT USAGE ON SCHEMA read TO {role}"),
        format!("GRANT SELECT ON read.prompt_cards, read.test_runs TO {role}"),
    ] {
        sqlx::query(&statement).execute(&pool).await.unwrap();
    }
    let output = promptcards(&pool, &["replay", "postgres"]).await;
    let privileges: (bool, bool, bool) = sqlx::query_as(
        "SELECT has_schema_privilege($1, 'read', 'USAGE'), has_table_privilege($1, 'read.prompt_cards', 'SELECT'),
                has_table_privilege($1, 'read.users', 'SELECT')",
    )
    .bind(&role)
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(&format!("DROP OWNED BY {role}"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(&format!("DROP ROLE {role}")).execute(&pool).await.unwrap();
    output.success();
    assert_eq!(privileges, (true, true, false));
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_interrupted_replay_says_where_to_resume_and_resuming_finishes_it(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    for _ in 0..2 {
        seed(&store, &Actor::new(), 10, 8).await;
    }
    PostgresSink::new(pool.clone())
        .apply(&all_events(&store).await)
        .await
        .unwrap();
    let live = read_model_checksum(&pool, "read").await;

    let child = command(&pool, &["replay", "postgres", "--batch-size", "1"], &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the replay has applied something", || async {
        let applied: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM read_rebuild.stream_versions")
            .fetch_one(&pool)
            .await
            .ok();
        applied.filter(|n| *n > 0).map(|_| ())
    })
    .await;
    let signalled = std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let position = stderr
        .split("--from ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no resume position in {stderr:?}"));
    assert_eq!(
        read_model_checksum(&pool, "read").await,
        live,
        "an interrupted replay leaves read as it was"
    );

    let resumed = promptcards(&pool, &["replay", "postgres", "--from", position])
        .await
        .success();
    assert!(
        resumed.stdout.contains("swapped into schema read"),
        "{}",
        resumed.stdout
    );
    assert_eq!(read_model_checksum(&pool, "read").await, live);
}
