//! Probes of the Postgres read models, and a projection of the whole store to compare them with.

use crate::{DEADLINE, POLL_INTERVAL};
use event_store::{Cursor, EventStore};
use projector::checksum::{self, Checksums};
use projector::postgres::{PostgresSink, READ_SCHEMA};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use tokio::time::Instant;
use uuid::Uuid;

/// Every stream of the store with its version, as the streams table has it.
pub async fn store_versions(pool: &PgPool) -> BTreeMap<Uuid, i64> {
    versions(pool, "SELECT stream_id, version FROM streams").await
}

/// What the Postgres projection believes it applied, per stream.
pub async fn projected_versions(pool: &PgPool) -> BTreeMap<Uuid, i64> {
    versions(pool, "SELECT stream_id, version FROM read.stream_versions").await
}

async fn versions(pool: &PgPool, query: &'static str) -> BTreeMap<Uuid, i64> {
    sqlx::query_as::<_, (Uuid, i64)>(query)
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// The tables of the `read` schema.
pub async fn read_tables(pool: &PgPool) -> Vec<String> {
    checksum::tables(&mut pool.acquire().await.unwrap(), READ_SCHEMA)
        .await
        .unwrap()
}

/// The checksum `promptcards verify` compares by, of the tables of `read` as they stand in
/// `schema` (`read` itself, or a copy of it).
pub async fn read_model_checksum(pool: &PgPool, schema: &str) -> Checksums {
    let tables = read_tables(pool).await;
    checksum::checksums(&mut pool.acquire().await.unwrap(), schema, &tables)
        .await
        .unwrap()
}

/// The checksum of a projection of every event of the store, by `projector::catch_up` as a
/// replay runs it, into a new schema of its own shaped like `read` (which is left alone).
/// Waits until the store's reader has returned every event committed when it is called: other
/// tests' open transactions hold back what it may see.
pub async fn fresh_projection(pool: &PgPool, store: &EventStore) -> Checksums {
    let schema = format!("fresh_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(pool)
        .await
        .unwrap();
    for table in read_tables(pool).await {
        sqlx::query(&format!(
            "CREATE TABLE {schema}.{table} (LIKE {READ_SCHEMA}.{table} INCLUDING ALL)"
        ))
        .execute(pool)
        .await
        .unwrap();
    }
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap();
    let sink = PostgresSink::with_schema(pool.clone(), &schema).unwrap();
    let (mut cursor, mut applied) = (Cursor::START, 0i64);
    let deadline = Instant::now() + DEADLINE;
    while applied < written {
        assert!(
            Instant::now() < deadline,
            "the store's reader delivered {applied} of {written} events"
        );
        let before = applied;
        cursor = projector::catch_up(store, &sink, cursor, 100, |events| {
            applied += events.len() as i64;
            ControlFlow::Continue(())
        })
        .await
        .expect("the fresh projection applies");
        if applied == before {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
    assert_eq!(applied, written, "the store holds more events than were counted");
    let sums = read_model_checksum(pool, &schema).await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(pool)
        .await
        .unwrap();
    sums
}
