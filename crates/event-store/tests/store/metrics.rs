//! What the store reports about itself: the age of the oldest open transaction (it stalls every
//! tailer, INVARIANT 4) and a stream's current state.

use crate::support::{append_to, eventually, STREAM_TYPE};
use event_store::{EventStore, ExpectedVersion, StreamInfo};
use sqlx::PgPool;
use uuid::Uuid;

use ExpectedVersion::{Any, NoStream};

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_oldest_transaction_age_counts_a_transaction_left_open(pool: PgPool) {
    let store = EventStore::new(pool.clone());

    // Given a transaction left open
    let mut open = pool.begin().await.unwrap();
    sqlx::query("SELECT 1").execute(&mut *open).await.unwrap();

    // Then its age is reported, and grows while it stays open
    let first = eventually("the open transaction is reported", || async {
        let age = store.oldest_transaction_age_seconds().await.unwrap();
        (age > 0.0).then_some(age)
    })
    .await;
    let later = eventually("its age grows", || async {
        let age = store.oldest_transaction_age_seconds().await.unwrap();
        (age > first).then_some(age)
    })
    .await;

    // When it ends, the age no longer counts it
    open.commit().await.unwrap();
    let after = store.oldest_transaction_age_seconds().await.unwrap();
    assert!(after < later, "age {after} after commit, {later} while open");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn stream_info_reports_the_version_and_last_position(pool: PgPool) {
    let store = EventStore::new(pool);
    let (id, other, workspace) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    assert_eq!(store.stream_info(id).await.unwrap(), None);

    // Given a stream created in a workspace, with other streams written after it
    let mut create = append_to(id, NoStream, 2);
    create.metadata.workspace_id = Some(workspace);
    let created = store.append(create).await.unwrap();
    store.append(append_to(other, NoStream, 3)).await.unwrap();

    let expected = StreamInfo {
        stream_id: id,
        stream_type: STREAM_TYPE.to_owned(),
        version: 2,
        workspace_id: Some(workspace),
        last_position: created.position,
    };
    assert_eq!(store.stream_info(id).await.unwrap(), Some(expected.clone()));

    // When it is appended to again
    let appended = store.append(append_to(id, Any, 1)).await.unwrap();

    // Then its version and last position move, its workspace stays
    assert_eq!(
        store.stream_info(id).await.unwrap(),
        Some(StreamInfo {
            version: 3,
            last_position: appended.position,
            ..expected
        })
    );
}
