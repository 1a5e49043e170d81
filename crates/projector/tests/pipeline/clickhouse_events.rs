//! ClickHouse: a retried batch collapses to one row per event (INVARIANT 7), and the rows say
//! what the store says.

use crate::support::*;
use clickhouse::Row;
use event_store::EventStore;
use projector::clickhouse_sink::ClickHouseSink;
use projector::Sink;
use serde::Deserialize;
use sqlx::PgPool;

#[derive(Debug, Row, Deserialize)]
struct EventRow {
    event_id: String,
    position: i64,
    stream_id: String,
    stream_type: String,
    version: i64,
    event_type: String,
    schema_version: i32,
    workspace_id: String,
    actor_id: String,
    correlation_id: String,
    recorded_at: u32,
    recorded_at_ms: i64,
    data: String,
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_batch_applied_twice_leaves_one_row_per_event(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let n = seed(&store, 1, 2, 5).await;
    let events = read_everything(&store, n).await;
    let db = ScratchDatabase::create().await;
    let sink = ClickHouseSink::new(db.client());

    sink.apply(&events).await.unwrap();
    sink.apply(&events).await.unwrap();
    sink.apply(&events[..n / 2]).await.unwrap();

    let client = db.client();
    let (count, unique): (u64, u64) = client
        .query(&format!(
            "SELECT count(), uniqExact(event_id) FROM {}.events FINAL",
            db.name
        ))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        (count, unique),
        (n as u64, n as u64),
        "rows and distinct events with FINAL"
    );
    let raw: u64 = client
        .query(&format!("SELECT count() FROM {}.events", db.name))
        .fetch_one()
        .await
        .unwrap();
    assert!(raw >= n as u64, "{raw} raw rows for {n} events");

    let rows: Vec<EventRow> = client
        .query(&format!(
            "SELECT toString(event_id), position, toString(stream_id), stream_type, version, event_type,
                    schema_version, toString(workspace_id), toString(actor_id), toString(correlation_id),
                    toUInt32(recorded_at), recorded_at_ms, data
             FROM {}.events FINAL ORDER BY position",
            db.name
        ))
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(rows.len(), n);
    for (row, event) in rows.iter().zip(&events) {
        assert_eq!(row.event_id, event.event_id.to_string());
        assert_eq!(row.position, event.position);
        assert_eq!(row.stream_id, event.stream_id.to_string());
        assert_eq!(row.stream_type, event.stream_type);
        assert_eq!(row.version, event.version);
        assert_eq!(row.event_type, event.event_type);
        assert_eq!(row.schema_version, event.schema_version);
        assert_eq!(row.workspace_id, event.workspace_id.unwrap().to_string());
        assert_eq!(row.actor_id, event.actor_id.unwrap().to_string());
        assert_eq!(row.correlation_id, event.correlation_id.to_string());
        assert_eq!(row.recorded_at as i64, event.recorded_at.timestamp());
        assert_eq!(row.recorded_at_ms, event.recorded_at.timestamp_millis());
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&row.data).unwrap(),
            event.data
        );
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn grading_usage_lands_in_its_own_columns_and_migrating_again_is_harmless(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let n = seed(&store, 1, 2, 5).await;
    let events = read_everything(&store, n).await;
    let db = ScratchDatabase::create().await;
    // A restarted projector migrates again; the added columns are already there.
    ClickHouseSink::migrate(&test_support::clickhouse_url(), &db.name)
        .await
        .unwrap();
    ClickHouseSink::new(db.client()).apply(&events).await.unwrap();

    let mut expected = (0u64, 0u64, 0i64, 0i64);
    for event in &events {
        if let Ok(domain::run::RunEvent::TestResultRecorded { result, .. }) = event.decode() {
            expected.0 += u64::from(result.grading.grading_prompt_tokens);
            expected.1 += u64::from(result.grading.grading_completion_tokens);
            expected.2 += result.grading.grading_cost_micro_usd;
            expected.3 += result.cost_micro_usd;
        }
    }
    assert!(expected.2 > 0, "the seed grades with a cost");
    let sums: (u64, u64, i64, i64) = db
        .client()
        .query(&format!(
            "SELECT toUInt64(sum(grading_prompt_tokens)), toUInt64(sum(grading_completion_tokens)),
                    toInt64(sum(grading_cost_micro_usd)), toInt64(sum(cost_micro_usd))
             FROM {}.test_results FINAL",
            db.name
        ))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(sums, expected);
}
