//! Tamper evidence: the per-stream hash chain catches an edited payload, a deleted event in
//! the middle of a stream, and deleted events at its end.

use crate::support::append_to;
use event_store::{EventStore, ExpectedVersion, IntegrityProblem};
use sqlx::PgPool;
use uuid::Uuid;

async fn store_with_two_streams(pool: &PgPool) -> (EventStore, Uuid, Uuid) {
    let store = EventStore::new(pool.clone());
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    store.append(append_to(a, ExpectedVersion::NoStream, 3)).await.unwrap();
    store.append(append_to(a, ExpectedVersion::Exact(3), 2)).await.unwrap();
    store.append(append_to(b, ExpectedVersion::NoStream, 2)).await.unwrap();
    (store, a, b)
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_untouched_store_verifies_clean(pool: PgPool) {
    let (store, a, _) = store_with_two_streams(&pool).await;
    assert_eq!(store.verify_chains(None).await.unwrap(), vec![]);
    assert_eq!(store.verify_chains(Some(a)).await.unwrap(), vec![]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_edited_payload_breaks_the_chain_at_that_event(pool: PgPool) {
    let (store, a, _) = store_with_two_streams(&pool).await;
    sqlx::query(
        "UPDATE events SET data = jsonb_set(data, '{note}', '\"forged\"') WHERE stream_id = $1 AND version = 4",
    )
    .bind(a)
    .execute(&pool)
    .await
    .unwrap();
    let problems = store.verify_chains(None).await.unwrap();
    assert!(
        matches!(problems.as_slice(), [IntegrityProblem::HashMismatch { stream_id, version: 4, .. }] if *stream_id == a),
        "{problems:?}"
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_deleted_event_is_reported_as_missing_versions(pool: PgPool) {
    let (store, a, _) = store_with_two_streams(&pool).await;
    sqlx::query("DELETE FROM events WHERE stream_id = $1 AND version = 2")
        .bind(a)
        .execute(&pool)
        .await
        .unwrap();
    let problems = store.verify_chains(None).await.unwrap();
    assert!(
        problems.contains(&IntegrityProblem::MissingVersions {
            stream_id: a,
            from: 2,
            to: 2
        }),
        "{problems:?}"
    );
    // Version 3's predecessor is gone, so its hash no longer matches either.
    assert!(problems
        .iter()
        .any(|p| matches!(p, IntegrityProblem::HashMismatch { version: 3, .. })));
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn deleted_last_events_are_caught_by_the_stream_version(pool: PgPool) {
    let (store, _, b) = store_with_two_streams(&pool).await;
    sqlx::query("DELETE FROM events WHERE stream_id = $1 AND version = 2")
        .bind(b)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        store.verify_chains(None).await.unwrap(),
        vec![IntegrityProblem::StreamVersionMismatch {
            stream_id: b,
            claimed: 2,
            stored: 1
        }]
    );
}
