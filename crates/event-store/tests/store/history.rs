//! The read paths the query API serves history from: a workspace's events newest first, a page
//! at a time, and the stream version behind a global position.

use crate::support::append_to;
use event_store::{EventStore, ExpectedVersion, StreamVersion};
use sqlx::PgPool;
use uuid::Uuid;

async fn append_in(store: &EventStore, workspace_id: Uuid, stream_id: Uuid, expected: ExpectedVersion, n: usize) {
    let mut append = append_to(stream_id, expected, n);
    append.metadata.workspace_id = Some(workspace_id);
    store.append(append).await.unwrap();
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_workspaces_history_pages_newest_first_and_only_its_own(pool: PgPool) {
    let store = EventStore::new(pool);
    let (workspace, other) = (Uuid::new_v4(), Uuid::new_v4());
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    append_in(&store, workspace, a, ExpectedVersion::NoStream, 2).await;
    append_in(&store, other, Uuid::new_v4(), ExpectedVersion::NoStream, 1).await;
    append_in(&store, workspace, b, ExpectedVersion::NoStream, 1).await;
    append_in(&store, workspace, a, ExpectedVersion::Exact(2), 1).await;

    let page = store.workspace_history(workspace, None, None, 3).await.unwrap();
    let seen: Vec<(Uuid, i64)> = page.iter().map(|e| (e.stream_id, e.version)).collect();
    assert_eq!(seen, vec![(a, 3), (b, 1), (a, 2)]);
    let rest = store
        .workspace_history(workspace, None, Some(page[2].position), 3)
        .await
        .unwrap();
    let seen: Vec<(Uuid, i64)> = rest.iter().map(|e| (e.stream_id, e.version)).collect();
    assert_eq!(seen, vec![(a, 1)], "the next page starts below the cursor");

    let of_b = store.workspace_history(workspace, Some(b), None, 10).await.unwrap();
    assert_eq!(of_b.len(), 1);
    assert_eq!(of_b[0].stream_id, b);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_position_names_its_stream_version_until_the_head(pool: PgPool) {
    let store = EventStore::new(pool);
    let stream_id = Uuid::new_v4();
    store
        .append(append_to(stream_id, ExpectedVersion::NoStream, 2))
        .await
        .unwrap();
    let head = store.head().await.unwrap();
    assert_eq!(
        store.stream_version_at(head).await.unwrap(),
        Some(StreamVersion { stream_id, version: 2 })
    );
    assert_eq!(store.stream_version_at(head + 1).await.unwrap(), None);
}
