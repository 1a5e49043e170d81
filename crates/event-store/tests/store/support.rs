//! Builders and probes shared by the store tests.

use event_store::{Append, Cursor, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StreamAppend};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

pub use test_support::eventually;

pub const STREAM_TYPE: &str = "test_stream";

/// How long a tailing reader may take to deliver (see `Tail::until`), and the bound a blocked
/// reader's wait is checked against. Tests in other databases of the same cluster hold
/// transactions open too, and every open transaction anywhere holds back what a tailing reader
/// may see.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Pause between two probes of a bounded poll loop; not a synchronisation point.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

pub fn event(event_type: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        data: json!({ "note": event_type }),
    }
}

pub fn stream(stream_id: Uuid, expected: ExpectedVersion, n: usize) -> StreamAppend {
    StreamAppend {
        stream_id,
        stream_type: STREAM_TYPE.to_owned(),
        expected,
        events: (0..n).map(|i| event(&format!("Happened{i}"))).collect(),
    }
}

pub fn append_of(streams: Vec<StreamAppend>) -> Append {
    Append {
        streams,
        metadata: Metadata {
            correlation_id: Uuid::now_v7(),
            ..Metadata::default()
        },
        ..Append::default()
    }
}

pub fn append_to(stream_id: Uuid, expected: ExpectedVersion, n: usize) -> Append {
    append_of(vec![stream(stream_id, expected, n)])
}

pub fn event_ids(append: &Append) -> Vec<Uuid> {
    append
        .streams
        .iter()
        .flat_map(|s| s.events.iter().map(|e| e.event_id))
        .collect()
}

pub async fn versions(store: &EventStore, stream_id: Uuid) -> Vec<i64> {
    let events = store.read_stream(stream_id, 0).await.unwrap();
    events.iter().map(|e| e.version).collect()
}

pub async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Inserts a one-event stream the way a writer outside the store's API would, inside whatever
/// transaction `conn` is in. Returns the event's position and transaction id.
pub async fn insert_raw_event(conn: &mut PgConnection, stream_id: Uuid, event_id: Uuid) -> (i64, i64) {
    sqlx::query("INSERT INTO streams (stream_id, stream_type, version) VALUES ($1, $2, 1)")
        .bind(stream_id)
        .bind(STREAM_TYPE)
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query_as(
        "INSERT INTO events (event_id, stream_id, stream_type, version, event_type,
                             schema_version, correlation_id, data)
         VALUES ($1, $2, $3, 1, 'RawInserted', 1, $4, '{}')
         RETURNING position, tx_id::text::bigint",
    )
    .bind(event_id)
    .bind(stream_id)
    .bind(STREAM_TYPE)
    .bind(Uuid::now_v7())
    .fetch_one(&mut *conn)
    .await
    .unwrap()
}

/// Sessions of this test's database that are blocked waiting for a lock.
pub async fn sessions_waiting_on_locks(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A tailing reader as the relay and the projectors run it: it keeps its cursor and reads
/// the batch after it, checking on every batch that the cursor only moves forward.
pub struct Tail {
    store: EventStore,
    pub cursor: Cursor,
    /// Every event delivered so far, in delivery order.
    pub delivered: Vec<RecordedEvent>,
}

impl Tail {
    pub fn new(store: EventStore, from: Cursor) -> Self {
        Self {
            store,
            cursor: from,
            delivered: Vec::new(),
        }
    }

    /// Reads one batch after the cursor and returns how many events it held.
    pub async fn poll(&mut self, limit: i64) -> usize {
        let batch = self.store.read_all(self.cursor, limit).await.unwrap();
        for event in &batch {
            let next = Cursor::after(event);
            assert!(
                next > self.cursor,
                "cursor went from {:?} back to {next:?}",
                self.cursor
            );
            self.cursor = next;
        }
        let n = batch.len();
        self.delivered.extend(batch);
        n
    }

    /// Polls until `done` holds for everything delivered so far.
    pub async fn until(&mut self, what: &str, done: impl Fn(&[RecordedEvent]) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done(&self.delivered) {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            if self.poll(100).await == 0 {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
    }

    pub fn delivered_ids(&self) -> Vec<Uuid> {
        self.delivered.iter().map(|e| e.event_id).collect()
    }
}
