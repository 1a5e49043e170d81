//! INVARIANTS 4, 5 and 6: the tailing reader never passes a transaction that may still commit,
//! passes rolled-back holes, and delivers every event once in an order that keeps each stream's
//! versions increasing.

use crate::support::{
    append_of, append_to, event_ids, eventually, insert_raw_event, sessions_waiting_on_locks, stream, Tail, DEADLINE,
    POLL_INTERVAL,
};
use event_store::{Cursor, EventStore, ExpectedVersion, Idempotency, RecordedEvent};
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{oneshot, Barrier};
use tokio::time::Instant;
use uuid::Uuid;

use ExpectedVersion::{Any, Exact, NoStream};

/// Asserts that, in delivery order, each stream's versions go 1, 2, 3... with no gap or repeat.
fn assert_stream_versions_contiguous(delivered: &[RecordedEvent]) {
    let mut last: HashMap<Uuid, i64> = HashMap::new();
    for event in delivered {
        let previous = last.insert(event.stream_id, event.version).unwrap_or(0);
        assert_eq!(
            event.version,
            previous + 1,
            "stream {} delivered version {} after {previous}",
            event.stream_id,
            event.version
        );
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_reader_never_passes_a_transaction_that_may_still_commit(pool: PgPool) {
    let store = EventStore::new(pool.clone());

    // Given a tailing reader that has delivered an earlier event
    let earlier = append_to(Uuid::now_v7(), NoStream, 1);
    let earlier_id = event_ids(&earlier)[0];
    store.append(earlier).await.unwrap();
    let mut tail = Tail::new(store.clone(), Cursor::START);
    tail.until("the earlier event is delivered", |d| !d.is_empty()).await;

    // Given writer A, which has taken its transaction id but not written yet
    let mut a = pool.begin().await.unwrap();
    let a_xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *a)
        .await
        .unwrap();

    // When writer B appends and commits
    let (b_stream, a_stream, a_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let b_append = append_to(b_stream, NoStream, 1);
    let b_id = event_ids(&b_append)[0];
    store.append(b_append).await.unwrap();

    // Then no reader sees B while A is open
    let from_start = store.read_all(Cursor::START, 100).await.unwrap();
    assert!(from_start.iter().all(|e| e.event_id != b_id), "B read while A is open");
    tail.poll(100).await;
    assert_eq!(tail.delivered_ids(), vec![earlier_id]);

    // When A writes after B, so at a higher position but with a lower transaction id
    let (a_position, a_tx) = insert_raw_event(&mut a, a_stream, a_id).await;
    let b = store.read_stream(b_stream, 0).await.unwrap().remove(0);
    assert_eq!(a_tx, a_xid);
    assert!(
        a_position > b.position && a_tx < b.tx_id,
        "A {a_position}/{a_tx}, B {b:?}"
    );
    tail.poll(100).await;
    assert_eq!(tail.delivered_ids(), vec![earlier_id]);

    // And A commits
    a.commit().await.unwrap();

    // Then the reader, keeping its cursor, delivers A then B, each once
    tail.until("B is delivered", |d| d.iter().any(|e| e.event_id == b_id))
        .await;
    tail.poll(100).await;
    assert_eq!(tail.delivered_ids(), vec![earlier_id, a_id, b_id]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_reader_passes_a_rolled_back_hole_promptly(pool: PgPool) {
    let store = EventStore::new(pool.clone());

    // Given a tailing reader that has delivered an earlier event
    let earlier = append_to(Uuid::now_v7(), NoStream, 1);
    let earlier_id = event_ids(&earlier)[0];
    let earlier_position = store.append(earlier).await.unwrap().position;
    let mut tail = Tail::new(store.clone(), Cursor::START);
    tail.until("the earlier event is delivered", |d| !d.is_empty()).await;

    // Given a transaction that inserts an event, and a later append that commits meanwhile
    let mut doomed = pool.begin().await.unwrap();
    let (hole, _) = insert_raw_event(&mut doomed, Uuid::now_v7(), Uuid::now_v7()).await;
    let later = append_to(Uuid::now_v7(), NoStream, 1);
    let later_id = event_ids(&later)[0];
    let later_position = store.append(later).await.unwrap().position;
    tail.poll(100).await;
    assert_eq!(tail.delivered_ids(), vec![earlier_id], "passed an open transaction");

    // When the transaction rolls back
    doomed.rollback().await.unwrap();

    // Then the reader passes the hole without waiting for it and loses nothing
    let started = Instant::now();
    tail.until("the later event is delivered", |d| d.len() == 2).await;
    assert!(started.elapsed() < DEADLINE);
    tail.poll(100).await;
    assert_eq!(tail.delivered_ids(), vec![earlier_id, later_id]);
    assert!(earlier_position < hole && hole < later_position);

    // And so does a reader starting from scratch
    let mut fresh = Tail::new(store, Cursor::START);
    fresh.until("both events are delivered", |d| d.len() == 2).await;
    assert_eq!(fresh.delivered_ids(), vec![earlier_id, later_id]);
}

const WRITERS: usize = 4;
const EVENTS_PER_WRITER: usize = 150;
const STREAMS_PER_WRITER: usize = 10;

/// Appends `EVENTS_PER_WRITER` events over the writer's own streams, one to three per append;
/// every seventh append also adds an event to the shared `hot` stream under an idempotency
/// key, so writers contend. Returns the ids of everything it appended.
async fn write(store: EventStore, writer: usize, hot: Uuid, start: Arc<Barrier>) -> Vec<Uuid> {
    let streams: Vec<Uuid> = (0..STREAMS_PER_WRITER).map(|_| Uuid::now_v7()).collect();
    let mut versions = [0i64; STREAMS_PER_WRITER];
    let mut written = Vec::with_capacity(EVENTS_PER_WRITER);
    start.wait().await;
    for i in 0.. {
        let remaining = EVENTS_PER_WRITER - written.len();
        if remaining == 0 {
            break;
        }
        let touches_hot = i % 7 == 3 && remaining >= 2;
        let n = (1 + i % 3).min(remaining - usize::from(touches_hot));
        let s = i % STREAMS_PER_WRITER;
        let mut append = append_to(streams[s], Exact(versions[s]), n);
        if touches_hot {
            append.streams.push(stream(hot, Any, 1));
            append.idempotency = Some(Idempotency {
                scope: format!("writer-{writer}"),
                key: format!("append-{i}"),
                request_hash: "h".to_owned(),
                response: serde_json::Value::Null,
            });
        }
        written.extend(event_ids(&append));
        let appended = store.append(append).await.unwrap();
        assert!(!appended.replayed);
        versions[s] += n as i64;
    }
    written
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_reader_catching_up_with_live_writers_sees_every_event_once_in_order(pool: PgPool) {
    let store = EventStore::new(pool);
    let hot = Uuid::now_v7();
    let start = Arc::new(Barrier::new(WRITERS + 1));

    // Given a reader that starts from the beginning as the writers start
    let (all_written_tx, mut all_written) = oneshot::channel::<HashSet<Uuid>>();
    let reader = tokio::spawn({
        let (store, start) = (store.clone(), start.clone());
        async move {
            let mut tail = Tail::new(store, Cursor::START);
            let mut expected: Option<HashSet<Uuid>> = None;
            let deadline = Instant::now() + DEADLINE;
            start.wait().await;
            loop {
                let read = tail.poll(50).await;
                if expected.is_none() {
                    expected = all_written.try_recv().ok();
                }
                if let Some(expected) = &expected {
                    let seen: HashSet<Uuid> = tail.delivered_ids().into_iter().collect();
                    if expected.is_subset(&seen) {
                        break;
                    }
                }
                assert!(Instant::now() < deadline, "reader stuck at {:?}", tail.cursor);
                if read == 0 {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
            }
            tail.poll(50).await;
            tail.delivered
        }
    });

    // When 4 writers append 150 events each
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(write(store.clone(), w, hot, start.clone())))
        .collect();
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    let expected: HashSet<Uuid> = written.iter().copied().collect();
    assert_eq!(expected.len(), WRITERS * EVENTS_PER_WRITER);
    all_written_tx.send(expected.clone()).unwrap();
    let delivered = reader.await.unwrap();

    // Then the reader delivered each event once, in a global order (checked by `Tail` on every
    // batch) that keeps every stream's versions contiguous and increasing
    let ids: Vec<Uuid> = delivered.iter().map(|e| e.event_id).collect();
    let unique: HashSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an event was delivered twice");
    assert_eq!(unique, expected);
    assert_stream_versions_contiguous(&delivered);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_stream_keeps_its_version_order_when_an_append_to_it_waited(pool: PgPool) {
    // INVARIANT 6 (and 9 downstream): the global order is by transaction id, so an append
    // that took its transaction id before another one locked the same stream must not end
    // up after it in that stream's versions.
    let store = EventStore::new(pool.clone());
    let (first, hot) = (Uuid::now_v7(), Uuid::now_v7());

    // Given a slow writer: a transaction holding an uncommitted event with id `contended`
    let contended = Uuid::now_v7();
    let mut slow = pool.begin().await.unwrap();
    insert_raw_event(&mut slow, Uuid::now_v7(), contended).await;

    // Given append M to streams `first` and `hot`, whose first event carries `contended`, so it
    // waits for the slow writer after it has begun writing
    let mut m = append_of(vec![stream(first, NoStream, 1), stream(hot, Any, 1)]);
    m.streams[0].events[0].event_id = contended;
    let m_hot_event = m.streams[1].events[0].event_id;
    let m = tokio::spawn({
        let store = store.clone();
        async move { store.append(m).await }
    });
    eventually("M waits for the slow writer", || async {
        (sessions_waiting_on_locks(&pool).await >= 1).then_some(())
    })
    .await;

    // When append N to `hot` runs meanwhile from another process (one process's appends queue
    // behind each other in its group commit), and then the slow writer rolls back
    let n = append_to(hot, Any, 1);
    let n_event = event_ids(&n)[0];
    let n = tokio::spawn({
        let other_process = EventStore::new(pool.clone());
        async move { other_process.append(n).await }
    });
    eventually("N has appended or waits", || async {
        (n.is_finished() || sessions_waiting_on_locks(&pool).await >= 2).then_some(())
    })
    .await;
    slow.rollback().await.unwrap();
    m.await.unwrap().unwrap();
    n.await.unwrap().unwrap();

    // Then `hot` is delivered in its version order
    let mut tail = Tail::new(store.clone(), Cursor::START);
    tail.until("both appends are delivered", |d| d.len() == 3).await;
    assert_stream_versions_contiguous(&tail.delivered);
    let hot_in_delivery_order: Vec<(Uuid, i64)> = tail
        .delivered
        .iter()
        .filter(|e| e.stream_id == hot)
        .map(|e| (e.event_id, e.version))
        .collect();
    let hot_in_stream_order: Vec<(Uuid, i64)> = store
        .read_stream(hot, 0)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.event_id, e.version))
        .collect();
    assert_eq!(hot_in_delivery_order, hot_in_stream_order);
    let mut hot_ids: Vec<Uuid> = hot_in_stream_order.iter().map(|(id, _)| *id).collect();
    hot_ids.sort();
    let mut both = vec![m_hot_event, n_event];
    both.sort();
    assert_eq!(hot_ids, both);
}
