//! Commands decided on a process's memory: two apps on one database stand for two command-api
//! processes, each remembering what it last saw. What one remembers goes stale when the other
//! writes; that may cost a second attempt, never a wrong answer.

use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_member_removed_through_another_process_is_refused_by_one_that_remembers_them(pool: PgPool) {
    let (here, elsewhere) = (TestApp::new(pool.clone()), TestApp::new(pool));
    let (owner, _, ws) = here.signup("owner@example.com").await;
    let (member, member_id, _) = here.signup("member@example.com").await;
    here.add_member(&owner, ws, "member@example.com", "member").await;
    // This process remembers the workspace with the member in it, and the member's card.
    let card_id = here.create_card(&member, ws, "Remembered").await;
    let mut edit = card_body("Edited here");
    edit["expected_version"] = json!(1);
    assert_eq!(here.put(&card_path(ws, card_id), &member, edit).await.0, StatusCode::OK);

    // When another process removes the member
    let (status, _, body) = elsewhere
        .delete(&format!("/v1/workspaces/{ws}/members/{member_id}"), &owner)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Then this process refuses them as a stranger, and the card is unchanged
    let mut edit = card_body("Edited after removal");
    edit["expected_version"] = json!(2);
    let answer = here.put(&card_path(ws, card_id), &member, edit).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "workspace");
    assert_eq!(here.stream_versions(card_id).await, vec![1, 2]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_edit_made_through_another_process_is_seen_by_one_that_remembers_the_card(pool: PgPool) {
    let (here, elsewhere) = (TestApp::new(pool.clone()), TestApp::new(pool));
    let (owner, _, ws) = here.signup("owner@example.com").await;
    let card_id = here.create_card(&owner, ws, "Remembered at 1").await;
    let mut edit = card_body("Edited elsewhere");
    edit["expected_version"] = json!(1);
    assert_eq!(
        elsewhere.put(&card_path(ws, card_id), &owner, edit).await.0,
        StatusCode::OK
    );

    // An edit of version 2 sent here, where the card is remembered at version 1, is accepted
    let mut edit = card_body("Edited here");
    edit["expected_version"] = json!(2);
    let (status, _, body) = here.put(&card_path(ws, card_id), &owner, edit).await;
    assert_eq!((status, body["version"].as_i64()), (StatusCode::OK, Some(3)), "{body}");

    // And a stale edit is refused naming the version as stored, whichever process gets it
    for app in [&here, &elsewhere] {
        let mut stale = card_body("Stale");
        stale["expected_version"] = json!(1);
        let answer = app.put(&card_path(ws, card_id), &owner, stale).await;
        assert_error(&answer, StatusCode::CONFLICT, "conflict", "version 3");
    }
    assert_eq!(here.stream_versions(card_id).await, vec![1, 2, 3]);
}
