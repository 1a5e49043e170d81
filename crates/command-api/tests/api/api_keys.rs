//! API keys listed without their secrets, revoked, and expiring: a revoked or expired key is
//! refused by the next request, on this process and on another one over the same store.

use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

fn keys_path(workspace_id: Uuid) -> String {
    format!("/v1/workspaces/{workspace_id}/api-keys")
}

fn listed(list: &Value, key_id: Uuid) -> &Value {
    list.as_array()
        .and_then(|keys| keys.iter().find(|k| k["id"] == key_id.to_string()))
        .unwrap_or_else(|| panic!("{key_id} is not listed in {list}"))
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn keys_are_listed_without_secrets_and_a_revoked_one_is_refused_by_every_process(pool: PgPool) {
    let app = TestApp::new(pool.clone());
    // A second process over the same store: its memory knows nothing of the first's.
    let other = TestApp::new(pool);
    let (owner, _, workspace_id) = app.signup("ada@example.com").await;
    let (key_id, key) = app.create_api_key(&owner, workspace_id, "member").await;
    app.create_card(&key, workspace_id, "Made with the key").await;
    other
        .create_card(&key, workspace_id, "Made with the key elsewhere")
        .await;

    let (status, _, list) = app.get_as(&keys_path(workspace_id), &owner).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let entry = listed(&list, key_id);
    assert_eq!(entry["prefix"], format!("pc_{}", key_id.simple()));
    assert!(key.starts_with(entry["prefix"].as_str().unwrap()));
    assert_eq!(entry["name"], "member key");
    assert_eq!(entry["role"], "member");
    assert_eq!(entry["status"], "active");
    assert!(entry["created_at"].is_string(), "{entry}");
    assert!(
        entry["expires_at"].is_null() && entry["revoked_at"].is_null(),
        "{entry}"
    );
    let secret = key.rsplit('_').next().unwrap();
    assert!(!list.to_string().contains(secret), "the secret is never listed: {list}");
    // The use is written in the background; it shows up in the list.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, _, list) = app.get_as(&keys_path(workspace_id), &owner).await;
        if listed(&list, key_id)["last_used_at"].is_string() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the key's last use is never listed: {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Only admins list and revoke: the key itself (a member) may not, a stranger sees nothing.
    let answer = app.get_as(&keys_path(workspace_id), &key).await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "member");
    let (stranger, _, _) = app.signup("eve@example.com").await;
    let answer = app.get_as(&keys_path(workspace_id), &stranger).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "workspace");
    let before = app.events_count().await;
    let answer = app
        .delete(&format!("{}/{key_id}", keys_path(workspace_id)), &stranger)
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "workspace");
    let answer = app.delete(&format!("{}/{key_id}", keys_path(workspace_id)), &key).await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "member");
    let answer = app
        .delete(&format!("{}/{}", keys_path(workspace_id), Uuid::new_v4()), &owner)
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "API key");
    assert_eq!(app.events_count().await, before, "refused revocations append nothing");

    let (status, _, revoked) = app
        .delete(&format!("{}/{key_id}", keys_path(workspace_id)), &owner)
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["revoked"], true);
    assert!(revoked["position"].as_i64().unwrap() > 0);
    assert_eq!(app.count_events_of_type("ApiKeyRevoked").await, 1);

    // Refused at once, here and on the other process (which had the workspace in memory).
    for process in [&app, &other] {
        let answer = process
            .post(&cards_path(workspace_id), &key, card_body("After revocation"))
            .await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "not valid");
    }
    // Revoking again changes nothing and appends nothing.
    let before = app.events_count().await;
    let (status, _, again) = app
        .delete(&format!("{}/{key_id}", keys_path(workspace_id)), &owner)
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(app.events_count().await, before);
    let (_, _, list) = app.get_as(&keys_path(workspace_id), &owner).await;
    let entry = listed(&list, key_id);
    assert_eq!(entry["status"], "revoked");
    assert!(entry["revoked_at"].is_string(), "{entry}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_key_stops_working_when_it_expires_and_an_expiry_in_the_past_is_refused(pool: PgPool) {
    let app = TestApp::new(pool);
    let (owner, _, workspace_id) = app.signup("ada@example.com").await;
    let past = (chrono::Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
    let before = app.events_count().await;
    let answer = app
        .post(
            &keys_path(workspace_id),
            &owner,
            json!({ "name": "old", "role": "viewer", "expires_at": past }),
        )
        .await;
    assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.2);
    assert_eq!(invalid_fields(&answer.2), vec!["expires_at"]);
    assert_eq!(app.events_count().await, before);

    let expiry = chrono::Utc::now() + chrono::Duration::milliseconds(1_500);
    let (status, _, created) = app
        .post(
            &keys_path(workspace_id),
            &owner,
            json!({ "name": "brief", "role": "member", "expires_at": expiry.to_rfc3339() }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["expires_at"].is_string(), "{created}");
    let key = created["key"].as_str().unwrap();
    let key_id = uuid_at(&created, "id");
    app.create_card(key, workspace_id, "Before expiry").await;

    let wait = (expiry - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + std::time::Duration::from_millis(50)).await;
    let answer = app
        .post(&cards_path(workspace_id), key, card_body("After expiry"))
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "not valid");
    let (_, _, list) = app.get_as(&keys_path(workspace_id), &owner).await;
    assert_eq!(listed(&list, key_id)["status"], "expired");
}
