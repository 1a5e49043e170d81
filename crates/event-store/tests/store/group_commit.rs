//! Group commit: commands that share a batch succeed or fail each on its own, and a batch that
//! never commits leaves nothing of any of its commands.

use crate::support::{append_of, append_to, event_count, event_ids, eventually, stream, versions};
use event_store::{AppendError, EventStore, ExpectedVersion, Idempotency, Reservation, StreamVersion};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use ExpectedVersion::{Exact, NoStream};

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_conflict_fails_its_command_alone_never_its_batch_mates(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let (shared, other) = (Uuid::now_v7(), Uuid::now_v7());
    let reserved = |stream_id| Reservation {
        scope: "name".into(),
        value: "taken".into(),
        stream_id,
    };
    let keyed = |request_hash: &str, stream_id| {
        let mut append = append_to(stream_id, NoStream, 1);
        append.idempotency = Some(Idempotency {
            scope: "user:1".into(),
            key: "k".into(),
            request_hash: request_hash.into(),
            response: json!({ "id": stream_id }),
        });
        append
    };
    let mut first_name = append_to(Uuid::now_v7(), NoStream, 1);
    first_name.reservations = vec![reserved(first_name.streams[0].stream_id)];
    let mut second_name = append_to(Uuid::now_v7(), NoStream, 1);
    second_name.reservations = vec![reserved(second_name.streams[0].stream_id)];
    let (keyed_stream, reused_stream) = (Uuid::now_v7(), Uuid::now_v7());

    // One batch: two creations of the same stream, a write on top of the first one, a write at
    // a version the stream will never have been at, two holders of one name, an idempotency
    // key used twice with the same request and once with another, and an unrelated stream.
    let batch = vec![
        append_to(shared, NoStream, 2),
        append_to(shared, NoStream, 1),
        append_to(shared, Exact(2), 1),
        append_to(shared, Exact(7), 1),
        first_name,
        second_name,
        keyed("a", keyed_stream),
        keyed("a", keyed_stream),
        keyed("b", reused_stream),
        append_of(vec![stream(other, NoStream, 1)]),
    ];
    let outcomes = store.append_batch(&batch).await.unwrap();

    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    assert!(
        matches!(outcomes[1], Err(AppendError::WrongExpectedVersion { stream_id, actual: Some(2), .. }) if stream_id == shared),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(outcomes[2].as_ref().unwrap().streams[0].version, 3);
    assert!(
        matches!(
            outcomes[3],
            Err(AppendError::WrongExpectedVersion { actual: Some(3), .. })
        ),
        "{:?}",
        outcomes[3]
    );
    assert!(outcomes[4].is_ok(), "{:?}", outcomes[4]);
    assert!(
        matches!(&outcomes[5], Err(AppendError::Reserved { value, .. }) if value == "taken"),
        "{:?}",
        outcomes[5]
    );
    let original = outcomes[6].as_ref().unwrap();
    let replayed = outcomes[7].as_ref().unwrap();
    assert!(!original.replayed && replayed.replayed);
    assert_eq!(
        (replayed.position, &replayed.response),
        (original.position, &original.response)
    );
    assert!(
        matches!(outcomes[8], Err(AppendError::IdempotencyKeyReused)),
        "{:?}",
        outcomes[8]
    );
    assert!(outcomes[9].is_ok());

    // Exactly what succeeded is stored: contiguous versions, one chain, nothing of the losers.
    assert_eq!(versions(&store, shared).await, vec![1, 2, 3]);
    assert_eq!(versions(&store, keyed_stream).await, vec![1]);
    assert!(versions(&store, reused_stream).await.is_empty());
    assert!(versions(&store, batch[5].streams[0].stream_id).await.is_empty());
    assert_eq!(event_count(&pool).await, 3 + 1 + 1 + 1);
    assert_eq!(store.verify_chains(None).await.unwrap(), vec![]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_batch_killed_before_it_commits_leaves_nothing_of_any_command(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    // A transaction outside the store holds a name, uncommitted: the batch's second command
    // waits for it after the first command has written its events.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO reservations (scope, value, stream_id) VALUES ('name', 'held', $1)")
        .bind(Uuid::now_v7())
        .execute(&mut *holder)
        .await
        .unwrap();
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    let mut waiting = append_to(second, NoStream, 1);
    waiting.reservations = vec![Reservation {
        scope: "name".into(),
        value: "held".into(),
        stream_id: second,
    }];
    let batch = vec![append_to(first, NoStream, 3), waiting];
    let running = {
        let (store, batch) = (store.clone(), batch.clone());
        tokio::spawn(async move { store.append_batch(&batch).await })
    };

    // When the batch's backend dies mid-batch (as in a crash of Postgres's session or of the
    // process), with the first command's events already inserted
    kill_backend_waiting_in(&pool, "%promptcards_append_batch(%").await;

    // Then the batch failed as a whole and nothing of either command is stored
    assert!(running.await.unwrap().is_err());
    holder.rollback().await.unwrap();
    assert_eq!(event_count(&pool).await, 0);
    let streams: i64 = sqlx::query_scalar("SELECT count(*) FROM streams")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(streams, 0);

    // And the same commands, sent again, are appended whole
    let outcomes = store.append_batch(&batch).await.unwrap();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(versions(&store, first).await, vec![1, 2, 3]);
    assert_eq!(versions(&store, second).await, vec![1]);
    assert_eq!(store.verify_chains(None).await.unwrap(), vec![]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_stale_command_in_a_batch_of_plain_writes_fails_alone(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let (edited, stale, existing) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    for id in [edited, stale, existing] {
        store.append(append_to(id, NoStream, 1)).await.unwrap();
    }
    let (created, read) = (Uuid::now_v7(), Uuid::now_v7());
    store.append(append_to(read, NoStream, 2)).await.unwrap();

    // A batch of plain writes (exact versions, distinct streams, no key or name), which the
    // store appends set-based until one of them conflicts
    let mut decided_on_read = append_to(Uuid::now_v7(), NoStream, 1);
    decided_on_read.unchanged = vec![StreamVersion {
        stream_id: read,
        version: 2,
    }];
    let mut decided_on_stale_read = append_to(Uuid::now_v7(), NoStream, 1);
    decided_on_stale_read.unchanged = vec![StreamVersion {
        stream_id: read,
        version: 1,
    }];
    let batch = vec![
        append_to(edited, Exact(1), 2),
        append_to(stale, Exact(4), 1),
        append_to(created, NoStream, 3),
        append_to(existing, NoStream, 1),
        decided_on_read,
        decided_on_stale_read,
    ];
    let outcomes = store.append_batch(&batch).await.unwrap();

    // Then each command has its own outcome
    let edit = outcomes[0].as_ref().unwrap();
    assert_eq!(
        edit.streams,
        vec![StreamVersion {
            stream_id: edited,
            version: 3
        }]
    );
    assert!(
        matches!(outcomes[1], Err(AppendError::WrongExpectedVersion { stream_id, actual: Some(1), .. }) if stream_id == stale),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(outcomes[2].as_ref().unwrap().streams[0].version, 3);
    assert!(
        matches!(outcomes[3], Err(AppendError::WrongExpectedVersion { stream_id, .. }) if stream_id == existing),
        "{:?}",
        outcomes[3]
    );
    assert!(outcomes[4].is_ok(), "{:?}", outcomes[4]);
    assert!(
        matches!(outcomes[5], Err(AppendError::WrongExpectedVersion { stream_id, actual: Some(2), .. }) if stream_id == read),
        "{:?}",
        outcomes[5]
    );

    // And exactly the winners are stored, each answer naming its last event's position
    assert_eq!(versions(&store, edited).await, vec![1, 2, 3]);
    assert_eq!(versions(&store, stale).await, vec![1]);
    assert_eq!(versions(&store, created).await, vec![1, 2, 3]);
    assert_eq!(versions(&store, existing).await, vec![1]);
    assert_eq!(versions(&store, batch[5].streams[0].stream_id).await, Vec::<i64>::new());
    let last = store.read_stream(edited, 2).await.unwrap();
    assert_eq!(edit.position, last[0].position);
    assert_eq!(event_count(&pool).await, 3 + 2 + 2 + 3 + 1);
    assert_eq!(store.verify_chains(None).await.unwrap(), vec![]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn plain_writes_appended_together_keep_each_streams_order_and_chain(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    store.append(append_to(first, NoStream, 2)).await.unwrap();

    let batch = vec![
        append_to(first, Exact(2), 3),
        append_of(vec![stream(second, NoStream, 2), stream(Uuid::now_v7(), NoStream, 1)]),
    ];
    let outcomes = store.append_batch(&batch).await.unwrap();

    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let events = store.read_stream(first, 0).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    let ids: Vec<Uuid> = events[2..].iter().map(|e| e.event_id).collect();
    assert_eq!(ids, event_ids(&batch[0]));
    assert_eq!(outcomes[0].as_ref().unwrap().position, events[4].position);
    assert_eq!(outcomes[1].as_ref().unwrap().streams.len(), 2);
    assert_eq!(store.verify_chains(None).await.unwrap(), vec![]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_batch_of_plain_writes_killed_before_it_commits_leaves_nothing(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    for id in [first, second] {
        store.append(append_to(id, NoStream, 1)).await.unwrap();
    }
    // A transaction outside the store holds the second stream's row: the batch waits for it
    // inside its set-based append.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM streams WHERE stream_id = $1 FOR UPDATE")
        .bind(second)
        .execute(&mut *holder)
        .await
        .unwrap();
    let batch = vec![append_to(first, Exact(1), 3), append_to(second, Exact(1), 1)];
    let running = {
        let (store, batch) = (store.clone(), batch.clone());
        tokio::spawn(async move { store.append_batch(&batch).await })
    };

    // When the batch's backend dies while it waits (in the set-based append, which is how
    // such a batch is appended)
    kill_backend_waiting_in(&pool, "%promptcards_append_batch_fast(%").await;

    // Then nothing of either command is stored, and sent again both are appended whole
    assert!(running.await.unwrap().is_err());
    holder.rollback().await.unwrap();
    assert_eq!(event_count(&pool).await, 2);
    assert_eq!(versions(&store, first).await, vec![1]);
    let outcomes = store.append_batch(&batch).await.unwrap();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(versions(&store, first).await, vec![1, 2, 3, 4]);
    assert_eq!(versions(&store, second).await, vec![1, 2]);
    assert_eq!(store.verify_chains(None).await.unwrap(), vec![]);
}

/// Once a backend of this database waits on a lock in a statement like `query`, terminates it,
/// as a crash of that session (or of Postgres) would.
async fn kill_backend_waiting_in(pool: &PgPool, query: &str) {
    let backend: i32 = eventually("the batch waits on a lock", || async {
        sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1",
        )
        .bind(query)
        .fetch_optional(pool)
        .await
        .unwrap()
    })
    .await;
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(backend)
        .execute(pool)
        .await
        .unwrap();
}
