//! INVARIANTS 1 and 2: a single winner, contiguous versions and exact expected-state semantics.

use crate::support::{append_of, append_to, event_count, stream, versions};
use event_store::{AppendError, EventStore, ExpectedVersion};
use sqlx::PgPool;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::Barrier;
use uuid::Uuid;

use ExpectedVersion::{Any, Exact, NoStream};

fn assert_wrong_version(
    result: Result<event_store::Appended, AppendError>,
    stream: Uuid,
    expected: ExpectedVersion,
    actual: Option<i64>,
) {
    match result {
        Err(AppendError::WrongExpectedVersion {
            stream_id,
            expected: e,
            actual: a,
        }) => {
            assert_eq!((stream_id, e, a), (stream, expected, actual));
        }
        other => panic!("expected WrongExpectedVersion at {actual:?}, got {other:?}"),
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn one_of_many_racing_appends_at_the_same_version_wins(pool: PgPool) {
    // Given a stream at version 3
    let store = EventStore::new(pool);
    let id = Uuid::now_v7();
    store.append(append_to(id, NoStream, 3)).await.unwrap();

    // When 16 tasks append two events each, all expecting version 3
    let barrier = Arc::new(Barrier::new(16));
    let racers: Vec<_> = (0..16)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.append(append_to(id, Exact(3), 2)).await
            })
        })
        .collect();
    let results: Vec<_> = futures::future::join_all(racers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    // Then exactly one wins and every loser is told the version the winner left
    let (won, lost): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!(won.len(), 1, "winners: {won:?}");
    assert_eq!(won[0].as_ref().unwrap().streams[0].version, 5);
    for result in lost {
        assert_wrong_version(result, id, Exact(3), Some(5));
    }
    assert_eq!(versions(&store, id).await, vec![1, 2, 3, 4, 5]);
    assert_eq!(event_count(store.pool()).await, 5);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn expected_versions_match_only_the_version_they_name(pool: PgPool) {
    let store = EventStore::new(pool);
    let id = Uuid::now_v7();

    // A missing stream: "exact n > 0" fails, "no stream" creates it
    assert_wrong_version(store.append(append_to(id, Exact(1), 1)).await, id, Exact(1), None);
    let created = store.append(append_to(id, NoStream, 2)).await.unwrap();
    assert_eq!(created.streams[0].version, 2);

    // An existing stream at 2: "no stream", "exact 0", "exact 1" and "exact 3" all fail
    for expected in [NoStream, Exact(0), Exact(1), Exact(3)] {
        assert_wrong_version(store.append(append_to(id, expected, 1)).await, id, expected, Some(2));
    }
    assert_eq!(versions(&store, id).await, vec![1, 2]);

    // "exact 2" succeeds and moves the stream on
    let appended = store.append(append_to(id, Exact(2), 1)).await.unwrap();
    assert_eq!(appended.streams[0].version, 3);
    assert_eq!(versions(&store, id).await, vec![1, 2, 3]);
    assert_eq!(event_count(store.pool()).await, 3);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn any_never_loses_an_append_among_racing_writers(pool: PgPool) {
    // Given a stream that does not exist yet
    let store = EventStore::new(pool);
    let id = Uuid::now_v7();

    // When 20 tasks append one event each with "any"
    let barrier = Arc::new(Barrier::new(20));
    let writers: Vec<_> = (0..20)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                let append = append_to(id, Any, 1);
                let event_id = append.streams[0].events[0].event_id;
                barrier.wait().await;
                (event_id, store.append(append).await.unwrap())
            })
        })
        .collect();
    let results: Vec<_> = futures::future::join_all(writers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    // Then every append got its own version and every event is stored at it
    let reported: BTreeSet<i64> = results.iter().map(|(_, a)| a.streams[0].version).collect();
    assert_eq!(reported, (1..=20).collect());
    let stored = store.read_stream(id, 0).await.unwrap();
    assert_eq!(
        stored.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    for (event_id, appended) in &results {
        let at = stored.iter().find(|e| e.event_id == *event_id).expect("event stored");
        assert_eq!(at.version, appended.streams[0].version);
        assert_eq!(at.position, appended.position);
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_multi_stream_append_is_all_or_nothing(pool: PgPool) {
    // Given stream `a` at version 1 and stream `b` at version 2
    let store = EventStore::new(pool);
    let (a, b, fresh) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    store.append(append_to(a, NoStream, 1)).await.unwrap();
    store.append(append_to(b, NoStream, 2)).await.unwrap();

    // When the second stream's expectation is wrong, nothing of the first is kept, not even a
    // stream the append would have created
    let failed = store
        .append(append_of(vec![
            stream(fresh, NoStream, 1),
            stream(a, Exact(1), 2),
            stream(b, Exact(1), 1),
        ]))
        .await;
    assert_wrong_version(failed, b, Exact(1), Some(2));
    assert_eq!(versions(&store, a).await, vec![1]);
    assert_eq!(store.stream_info(fresh).await.unwrap(), None);
    assert_eq!(event_count(store.pool()).await, 3);

    // When every expectation holds, all streams move together, reported in the order listed
    let appended = store
        .append(append_of(vec![stream(b, Exact(2), 1), stream(a, Exact(1), 2)]))
        .await
        .unwrap();
    let reported: Vec<_> = appended.streams.iter().map(|s| (s.stream_id, s.version)).collect();
    assert_eq!(reported, vec![(b, 3), (a, 3)]);
    let max_position: i64 = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(appended.position, max_position);
    assert_eq!(event_count(store.pool()).await, 6);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_append_without_events_is_refused(pool: PgPool) {
    let store = EventStore::new(pool);
    let id = Uuid::now_v7();
    let result = store.append(append_to(id, NoStream, 0)).await;
    assert!(matches!(result, Err(AppendError::Empty)), "{result:?}");
    assert_eq!(store.stream_info(id).await.unwrap(), None);
}
