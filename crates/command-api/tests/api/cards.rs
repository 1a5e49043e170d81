//! Prompt cards: versions, optimistic concurrency, labels and archiving.

use crate::helpers::*;
use axum::http::{header, Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

fn update(title: &str, expected_version: Option<u32>) -> Value {
    let mut body = card_body(title);
    if let Some(v) = expected_version {
        body["expected_version"] = json!(v);
    }
    body
}

fn etag(answer: &Answer) -> &str {
    answer.1.get(header::ETAG).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The position and type of the last event of a stream.
async fn last_event(app: &TestApp, stream_id: Uuid) -> (i64, String) {
    sqlx::query_as("SELECT position, event_type FROM events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1")
        .bind(stream_id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_card_is_created_at_version_one(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, ws) = app.signup("ada@example.com").await;
    let answer = app.post(&cards_path(ws), &token, card_body("Summariser")).await;
    let (status, _, body) = &answer;
    assert_eq!(*status, StatusCode::CREATED, "{body}");
    let card_id = uuid_at(body, "id");
    assert_eq!(body["version"], 1);
    assert_eq!(etag(&answer), "\"1\"");
    let (position, event_type) = last_event(&app, card_id).await;
    assert_eq!(body["position"].as_i64(), Some(position));
    assert_eq!(event_type, "PromptCardCreated");
    let (workspace, actor): (Option<Uuid>, Option<Uuid>) =
        sqlx::query_as("SELECT workspace_id, actor_id FROM events WHERE stream_id = $1")
            .bind(card_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(workspace, Some(ws));
    assert!(actor.is_some());
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn updates_make_new_versions_and_stale_ones_conflict(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, ws) = app.signup("ada@example.com").await;
    let card_id = app.create_card(&token, ws, "v1").await;
    let path = card_path(ws, card_id);

    let answer = app.put(&path, &token, update("v2", Some(1))).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
    assert_eq!(answer.2["id"], json!(card_id));
    assert_eq!(answer.2["version"], 2);
    assert_eq!(etag(&answer), "\"2\"");
    assert_eq!(answer.2["position"].as_i64(), Some(last_event(&app, card_id).await.0));

    let answer = app
        .json(Method::PUT, &path, &token, update("v3", None), &[("if-match", "\"2\"")])
        .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
    assert_eq!(answer.2["version"], 3);
    assert_eq!(etag(&answer), "\"3\"");
    // A weak validator, as some clients send, is read the same way.
    let answer = app
        .json(
            Method::PUT,
            &path,
            &token,
            update("v4", None),
            &[("if-match", "W/\"3\"")],
        )
        .await;
    assert_eq!(answer.2["version"], 4, "{}", answer.2);

    let before = app.events_count().await;
    for (body, headers) in [
        (update("stale", Some(1)), vec![]),
        (update("stale", None), vec![("if-match", "\"3\"")]),
        (update("future", Some(9)), vec![]),
    ] {
        let answer = app.json(Method::PUT, &path, &token, body, &headers).await;
        assert_error(&answer, StatusCode::CONFLICT, "conflict", "version 4");
        assert_eq!(answer.2["current_version"], 4);
    }
    assert_eq!(app.events_count().await, before, "a stale update appended events");
    assert_eq!(app.stream_versions(card_id).await, vec![1, 2, 3, 4]);
    // The stored content is what the winning updates sent.
    let title: String = sqlx::query_scalar("SELECT data->>'title' FROM events WHERE stream_id = $1 AND version = 4")
        .bind(card_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(title, "v4");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn labels_point_at_existing_versions(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, ws) = app.signup("ada@example.com").await;
    let card_id = app.create_card(&token, ws, "Labelled").await;
    let labels = format!("{}/labels", card_path(ws, card_id));

    let (status, _, body) = app
        .post(&labels, &token, json!({ "label": "production", "version": 1 }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["label"], "production");
    assert_eq!(body["version"], 1);
    let (position, event_type) = last_event(&app, card_id).await;
    assert_eq!(event_type, "PromptCardLabelMoved");
    assert_eq!(body["position"].as_i64(), Some(position));

    // Moving a label where it already points changes nothing and appends nothing.
    let before = app.events_count().await;
    let (status, _, body) = app
        .post(&labels, &token, json!({ "label": "production", "version": 1 }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["position"].as_i64(), Some(position));
    assert_eq!(app.events_count().await, before);

    let answer = app
        .post(&labels, &token, json!({ "label": "production", "version": 99 }))
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "version",
    );
    assert_eq!(invalid_fields(&answer.2), ["version"]);
    let answer = app
        .post(&labels, &token, json!({ "label": "-bad label-", "version": 1 }))
        .await;
    assert_eq!(invalid_fields(&answer.2), ["label"], "{}", answer.2);
    let answer = app
        .post(&labels, &token, json!({ "label": "production", "version": -1 }))
        .await;
    assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.2);
    assert_eq!(app.events_count().await, before);

    // Once version 2 exists the label can move there.
    app.put(&card_path(ws, card_id), &token, update("v2", Some(1))).await;
    let (status, _, body) = app
        .post(&labels, &token, json!({ "label": "production", "version": 2 }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let previous: Option<i64> = sqlx::query_scalar(
        "SELECT (data->>'previous_version')::bigint FROM events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(card_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(previous, Some(1));
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_archived_card_refuses_changes(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, ws) = app.signup("ada@example.com").await;
    let card_id = app.create_card(&token, ws, "Old").await;
    let path = card_path(ws, card_id);

    let (status, _, body) = app.post(&format!("{path}/archive"), &token, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["archived"], true);
    assert_eq!(
        last_event(&app, card_id).await,
        (body["position"].as_i64().unwrap(), "PromptCardArchived".into())
    );

    let before = app.events_count().await;
    let answer = app.put(&path, &token, update("Revived", Some(1))).await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", "archived");
    let answer = app.post(&format!("{path}/archive"), &token, Value::Null).await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", "archived");
    let answer = app
        .post(
            &format!("{path}/labels"),
            &token,
            json!({ "label": "production", "version": 1 }),
        )
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", "archived");
    assert_eq!(app.events_count().await, before);
    // History is kept.
    assert_eq!(app.stream_versions(card_id).await, vec![1, 2]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn positions_strictly_increase_across_commands(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, ws) = app.signup("ada@example.com").await;
    let mut positions = vec![];
    let (_, _, body) = app.post(&cards_path(ws), &token, card_body("First")).await;
    let first = uuid_at(&body, "id");
    positions.push(body["position"].as_i64().unwrap());
    let (_, _, body) = app.post(&cards_path(ws), &token, card_body("Second")).await;
    let second = uuid_at(&body, "id");
    positions.push(body["position"].as_i64().unwrap());
    for (path, body) in [
        (card_path(ws, first), update("First v2", Some(1))),
        (card_path(ws, second), update("Second v2", Some(1))),
    ] {
        let (_, _, answer) = app.put(&path, &token, body).await;
        positions.push(answer["position"].as_i64().unwrap());
    }
    let (_, _, body) = app
        .post(
            &format!("{}/labels", card_path(ws, first)),
            &token,
            json!({ "label": "production", "version": 2 }),
        )
        .await;
    positions.push(body["position"].as_i64().unwrap());
    let (_, _, body) = app
        .post(&format!("{}/archive", card_path(ws, second)), &token, Value::Null)
        .await;
    positions.push(body["position"].as_i64().unwrap());

    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions do not increase: {positions:?}"
    );
    assert_eq!(*positions.last().unwrap(), app.max_position().await);
    // Each answered position is that of an event the command appended.
    let stored: Vec<i64> =
        sqlx::query_scalar("SELECT position FROM events WHERE stream_id = ANY($1) ORDER BY position")
            .bind(vec![first, second])
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, positions);
}
