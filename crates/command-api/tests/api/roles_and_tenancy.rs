//! Roles decide what a member may do; strangers to a workspace learn nothing of it.

use crate::helpers::*;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// Workspace A, owned by `owner`, with an admin, a member and a viewer.
struct Team {
    app: TestApp,
    owner: String,
    owner_id: Uuid,
    admin: String,
    member: String,
    member_id: Uuid,
    viewer: String,
    workspace_id: Uuid,
}

async fn team(pool: PgPool) -> Team {
    let app = TestApp::new(pool);
    let (owner, owner_id, workspace_id) = app.signup("owner@example.com").await;
    let (admin, _, _) = app.signup("admin@example.com").await;
    let (member, member_id, _) = app.signup("member@example.com").await;
    let (viewer, _, _) = app.signup("viewer@example.com").await;
    app.add_member(&owner, workspace_id, "admin@example.com", "admin").await;
    app.add_member(&owner, workspace_id, "member@example.com", "member")
        .await;
    app.add_member(&owner, workspace_id, "viewer@example.com", "viewer")
        .await;
    app.signup("newcomer@example.com").await;
    Team {
        app,
        owner,
        owner_id,
        admin,
        member,
        member_id,
        viewer,
        workspace_id,
    }
}

impl Team {
    fn members_path(&self) -> String {
        format!("/v1/workspaces/{}/members", self.workspace_id)
    }

    fn member_path(&self, user_id: Uuid) -> String {
        format!("/v1/workspaces/{}/members/{user_id}", self.workspace_id)
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_viewer_never_writes(pool: PgPool) {
    let t = team(pool).await;
    let card_id = t.app.create_card(&t.owner, t.workspace_id, "Owned").await;
    let before = t.app.events_count().await;

    let answer = t
        .app
        .post(&cards_path(t.workspace_id), &t.viewer, card_body("By viewer"))
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "viewer");
    let mut update = card_body("Edited by viewer");
    update["expected_version"] = json!(1);
    let answer = t.app.put(&card_path(t.workspace_id, card_id), &t.viewer, update).await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "viewer");
    let answer = t
        .app
        .post(
            &format!("{}/archive", card_path(t.workspace_id, card_id)),
            &t.viewer,
            Value::Null,
        )
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "viewer");
    let answer = t
        .app
        .post(
            &t.members_path(),
            &t.viewer,
            json!({ "email": "newcomer@example.com", "role": "viewer" }),
        )
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "viewer");
    assert_eq!(t.app.events_count().await, before);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_member_writes_cards_but_does_not_manage_members(pool: PgPool) {
    let t = team(pool).await;
    t.app.create_card(&t.member, t.workspace_id, "By member").await;
    let before = t.app.events_count().await;
    let answer = t
        .app
        .post(
            &t.members_path(),
            &t.member,
            json!({ "email": "newcomer@example.com", "role": "viewer" }),
        )
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "member");
    let answer = t
        .app
        .post(
            &format!("/v1/workspaces/{}/api-keys", t.workspace_id),
            &t.member,
            json!({ "name": "mine", "role": "member" }),
        )
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "member");
    assert_eq!(t.app.events_count().await, before);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_admin_manages_members_but_never_the_owner_role(pool: PgPool) {
    let t = team(pool).await;
    let before = t.app.events_count().await;
    let answer = t
        .app
        .post(
            &t.members_path(),
            &t.admin,
            json!({ "email": "newcomer@example.com", "role": "owner" }),
        )
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "owner");
    let answer = t
        .app
        .patch(&t.member_path(t.member_id), &t.admin, json!({ "role": "owner" }))
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "owner");
    let answer = t.app.delete(&t.member_path(t.owner_id), &t.admin).await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "owner");
    let answer = t
        .app
        .post(
            &format!("/v1/workspaces/{}/api-keys", t.workspace_id),
            &t.admin,
            json!({ "name": "root", "role": "owner" }),
        )
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "owner");
    assert_eq!(t.app.events_count().await, before);

    // What an admin may do: add members below owner, change and remove them.
    t.app
        .add_member(&t.admin, t.workspace_id, "newcomer@example.com", "member")
        .await;
    let (status, _, body) = t
        .app
        .patch(&t.member_path(t.member_id), &t.admin, json!({ "role": "viewer" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "viewer");
    // The demoted member is now a viewer and cannot write.
    let answer = t
        .app
        .post(&cards_path(t.workspace_id), &t.member, card_body("Demoted"))
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "viewer");
    let (status, _, body) = t.app.delete(&t.member_path(t.member_id), &t.admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A removed member is a stranger: 404, not 403.
    let answer = t
        .app
        .post(&cards_path(t.workspace_id), &t.member, card_body("Removed"))
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "workspace");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_last_owner_stays(pool: PgPool) {
    let t = team(pool).await;
    let before = t.app.events_count().await;
    let answer = t.app.delete(&t.member_path(t.owner_id), &t.owner).await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", "at least one owner");
    let answer = t
        .app
        .patch(&t.member_path(t.owner_id), &t.owner, json!({ "role": "admin" }))
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", "at least one owner");
    assert_eq!(t.app.events_count().await, before);

    // With a second owner, the first may leave.
    let (status, _, body) = t
        .app
        .patch(&t.member_path(t.member_id), &t.owner, json!({ "role": "owner" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = t.app.delete(&t.member_path(t.owner_id), &t.member).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = t.app.delete(&t.member_path(t.member_id), &t.member).await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", "at least one owner");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn adding_a_member_twice_or_an_unknown_email_is_refused(pool: PgPool) {
    let t = team(pool).await;
    let before = t.app.events_count().await;
    let answer = t
        .app
        .post(
            &t.members_path(),
            &t.owner,
            json!({ "email": "MEMBER@example.com", "role": "viewer" }),
        )
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", "already a member");
    let answer = t
        .app
        .post(
            &t.members_path(),
            &t.owner,
            json!({ "email": "nobody@example.com", "role": "viewer" }),
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "email");
    let answer = t
        .app
        .post(
            &t.members_path(),
            &t.owner,
            json!({ "email": "newcomer@example.com", "role": "root" }),
        )
        .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "role");
    assert_eq!(t.app.events_count().await, before);
}

/// Everything a stranger might try on workspace A's ids: each is 404 and reveals nothing.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_stranger_gets_404_for_every_command_on_another_workspace(pool: PgPool) {
    let t = team(pool).await;
    let secret_title = "Quarterly secret plan";
    let card_id = t.app.create_card(&t.owner, t.workspace_id, secret_title).await;
    let (status, _, case) = t
        .app
        .post(
            &format!("{}/test-cases", card_path(t.workspace_id, card_id)),
            &t.owner,
            json!({ "name": "secret case", "vars": { "text": "confidential" }, "assertions": [] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{case}");
    let case_id = uuid_at(&case, "id");
    let (stranger, stranger_id, stranger_ws) = t.app.signup("stranger@example.com").await;
    let before = t.app.events_count().await;

    let ws = t.workspace_id;
    let card = card_path(ws, card_id);
    let case = format!("{card}/test-cases/{case_id}");
    let mut update = card_body("Hijacked");
    update["expected_version"] = json!(1);
    let test_case = json!({ "name": "injected", "vars": { "text": "x" }, "assertions": [] });
    let attempts: Vec<(Method, String, Value)> = vec![
        (Method::PUT, card.clone(), update.clone()),
        (
            Method::POST,
            format!("{card}/labels"),
            json!({ "label": "production", "version": 1 }),
        ),
        (Method::POST, format!("{card}/archive"), Value::Null),
        (Method::POST, format!("{card}/test-cases"), test_case.clone()),
        (Method::PUT, case.clone(), test_case.clone()),
        (Method::DELETE, case, Value::Null),
        (Method::POST, cards_path(ws), card_body("Planted")),
        (
            Method::POST,
            t.members_path(),
            json!({ "email": "stranger@example.com", "role": "owner" }),
        ),
        (Method::PATCH, t.member_path(stranger_id), json!({ "role": "owner" })),
        (Method::PATCH, t.member_path(t.member_id), json!({ "role": "viewer" })),
        (Method::DELETE, t.member_path(t.member_id), Value::Null),
        (
            Method::POST,
            format!("/v1/workspaces/{ws}/api-keys"),
            json!({ "name": "mine", "role": "owner" }),
        ),
        // A's card through the stranger's own workspace.
        (Method::PUT, card_path(stranger_ws, card_id), update),
        (
            Method::POST,
            format!("{}/archive", card_path(stranger_ws, card_id)),
            Value::Null,
        ),
        (
            Method::POST,
            format!("{}/test-cases", card_path(stranger_ws, card_id)),
            test_case,
        ),
        // A workspace that does not exist at all looks the same.
        (Method::POST, cards_path(Uuid::now_v7()), card_body("Nowhere")),
    ];
    for (method, path, body) in attempts {
        let answer = t.app.json(method.clone(), &path, &stranger, body, &[]).await;
        assert_eq!(answer.0, StatusCode::NOT_FOUND, "{method} {path}: {}", answer.2);
        assert_eq!(answer.2["error"], "not_found", "{method} {path}: {}", answer.2);
        let keys: Vec<&String> = answer.2.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["error", "message"], "{method} {path} said more: {}", answer.2);
        let text = answer.2.to_string();
        assert!(
            !text.contains(secret_title) && !text.contains("confidential"),
            "{method} {path} leaked: {text}"
        );
    }
    assert_eq!(
        t.app.events_count().await,
        before,
        "a stranger's command appended events"
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_api_key_acts_only_in_its_workspace_and_with_its_role(pool: PgPool) {
    let app = TestApp::new(pool);
    let (owner_a, _, ws_a) = app.signup("a@example.com").await;
    let (owner_b, _, ws_b) = app.signup("b@example.com").await;
    let card_b = app.create_card(&owner_b, ws_b, "B's card").await;
    let (_, key_a) = app.create_api_key(&owner_a, ws_a, "admin").await;
    let (_, viewer_key) = app.create_api_key(&owner_a, ws_a, "viewer").await;
    let card_a = app.create_card(&key_a, ws_a, "Made by key").await;
    let before = app.events_count().await;

    let answer = app.post(&cards_path(ws_b), &key_a, card_body("In B")).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "workspace");
    let answer = app
        .post(&format!("{}/archive", card_path(ws_b, card_b)), &key_a, Value::Null)
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "workspace");
    let answer = app
        .post(
            &format!("/v1/workspaces/{ws_b}/members"),
            &key_a,
            json!({ "email": "a@example.com", "role": "owner" }),
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "workspace");

    let answer = app
        .post(&cards_path(ws_a), &viewer_key, card_body("By viewer key"))
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "viewer");
    let answer = app
        .post(
            &format!("{}/archive", card_path(ws_a, card_a)),
            &viewer_key,
            Value::Null,
        )
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "viewer");

    for key in [&key_a, &viewer_key] {
        let answer = app.post("/v1/workspaces", key, json!({ "name": "Key's own" })).await;
        assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "API key");
    }
    // An admin key may not mint an owner key.
    let answer = app
        .post(
            &format!("/v1/workspaces/{ws_a}/api-keys"),
            &key_a,
            json!({ "name": "escalate", "role": "owner" }),
        )
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "owner");
    assert_eq!(app.events_count().await, before);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_user_creates_more_workspaces_and_owns_each(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, _) = app.signup("ada@example.com").await;
    let (status, _, body) = app.post("/v1/workspaces", &token, json!({ "name": "Second" })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let second = uuid_at(&body, "id");
    assert_eq!(body["position"].as_i64(), Some(app.max_position().await));
    app.create_api_key(&token, second, "owner").await;
    let answer = app.post("/v1/workspaces", &token, json!({ "name": " " })).await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "name");
    let answer = app.post("/v1/workspaces", "", json!({ "name": "Anonymous" })).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "Authorization");
}
