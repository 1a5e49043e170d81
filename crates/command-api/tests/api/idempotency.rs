//! INVARIANT 3 over HTTP: a retry with the same Idempotency-Key returns the first answer and
//! appends nothing; the key with a different request is refused.

use crate::helpers::*;
use axum::http::{Method, StatusCode};
use futures::future::join_all;
use serde_json::json;
use sqlx::PgPool;
use std::sync::Arc;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_retried_create_returns_the_first_answer_and_appends_once(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, ws) = app.signup("ada@example.com").await;
    let path = cards_path(ws);
    let key = [("idempotency-key", "create-card-1")];

    let first = app.json(Method::POST, &path, &token, card_body("Once"), &key).await;
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.2);
    let after_first = app.events_count().await;
    let retry = app.json(Method::POST, &path, &token, card_body("Once"), &key).await;
    assert_eq!(retry.0, StatusCode::CREATED, "{}", retry.2);
    assert_eq!(
        retry.2, first.2,
        "the retry must answer exactly what the first request did"
    );
    assert_eq!(app.events_count().await, after_first);
    assert_eq!(app.count_events_of_type("PromptCardCreated").await, 1);

    // The same body without the key is a new command.
    let (status, _, body) = app.post(&path, &token, card_body("Once")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(body["id"], first.2["id"]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_key_reused_for_a_different_request_is_422(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, ws) = app.signup("ada@example.com").await;
    let card_id = app.create_card(&token, ws, "Existing").await;
    let key = [("idempotency-key", "k-1")];
    let first = app
        .json(Method::POST, &cards_path(ws), &token, card_body("First"), &key)
        .await;
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.2);
    let before = app.events_count().await;

    let answer = app
        .json(Method::POST, &cards_path(ws), &token, card_body("Different"), &key)
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable",
        "Idempotency-Key",
    );
    // Same body, different path (another command) is a different request too.
    let answer = app
        .json(
            Method::POST,
            &format!("{}/archive", card_path(ws, card_id)),
            &token,
            card_body("First"),
            &key,
        )
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable",
        "Idempotency-Key",
    );
    assert_eq!(app.events_count().await, before);
    // The card was not archived by the refused request.
    let mut update = card_body("Still live");
    update["expected_version"] = json!(1);
    let (status, _, body) = app.put(&card_path(ws, card_id), &token, update).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn eight_concurrent_requests_with_one_key_create_one_card(pool: PgPool) {
    let app = Arc::new(TestApp::new(pool));
    let (token, _, ws) = app.signup("ada@example.com").await;
    let tasks = (0..8).map(|_| {
        let (app, token) = (app.clone(), token.clone());
        tokio::spawn(async move {
            app.json(
                Method::POST,
                &cards_path(ws),
                &token,
                card_body("Racing"),
                &[("idempotency-key", "race")],
            )
            .await
        })
    });
    let answers: Vec<Answer> = join_all(tasks).await.into_iter().map(Result::unwrap).collect();
    for answer in &answers {
        assert!(answer.0.is_success(), "{}: {}", answer.0, answer.2);
        assert_eq!(answer.2["id"], answers[0].2["id"]);
        assert_eq!(answer.2["position"], answers[0].2["position"]);
    }
    assert_eq!(app.count_events_of_type("PromptCardCreated").await, 1);
    let stored = uuid_at(&answers[0].2, "id");
    assert_eq!(app.stream_versions(stored).await, vec![1]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn keys_are_per_caller(pool: PgPool) {
    let app = TestApp::new(pool);
    let (ada, _, ada_ws) = app.signup("ada@example.com").await;
    let (bob, _, bob_ws) = app.signup("bob@example.com").await;
    let key = [("idempotency-key", "shared-key")];
    let a = app
        .json(Method::POST, &cards_path(ada_ws), &ada, card_body("Ada's"), &key)
        .await;
    let b = app
        .json(Method::POST, &cards_path(bob_ws), &bob, card_body("Bob's"), &key)
        .await;
    assert_eq!(a.0, StatusCode::CREATED, "{}", a.2);
    assert_eq!(b.0, StatusCode::CREATED, "{}", b.2);
    assert_ne!(a.2["id"], b.2["id"]);
    assert_eq!(app.count_events_of_type("PromptCardCreated").await, 2);
    // Bob's use of the key did not replace Ada's first answer.
    let again = app
        .json(Method::POST, &cards_path(ada_ws), &ada, card_body("Ada's"), &key)
        .await;
    assert_eq!(again.2, a.2);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_retried_update_is_not_a_stale_update(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, ws) = app.signup("ada@example.com").await;
    let card_id = app.create_card(&token, ws, "v1").await;
    let mut body = card_body("v2");
    body["expected_version"] = json!(1);
    let key = [("idempotency-key", "update-1")];
    let first = app
        .json(Method::PUT, &card_path(ws, card_id), &token, body.clone(), &key)
        .await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.2);
    // Without the key, the same request is stale; with it, it is the same request again.
    let retry = app.json(Method::PUT, &card_path(ws, card_id), &token, body, &key).await;
    assert_eq!(retry.0, StatusCode::OK, "{}", retry.2);
    assert_eq!(retry.2, first.2);
    assert_eq!(retry.1.get("etag"), first.1.get("etag"));
    assert_eq!(app.stream_versions(card_id).await, vec![1, 2]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_retried_signup_returns_the_same_user(pool: PgPool) {
    let app = TestApp::new(pool);
    let body = json!({ "email": "ada@example.com", "password": PASSWORD, "workspace_name": "A" });
    let key = [("idempotency-key", "signup-7f3a")];
    let first = app.json(Method::POST, "/v1/auth/signup", "", body.clone(), &key).await;
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.2);
    let retry = app.json(Method::POST, "/v1/auth/signup", "", body, &key).await;
    assert_eq!(retry.0, StatusCode::CREATED, "{}", retry.2);
    for field in ["user_id", "workspace_id", "position"] {
        assert_eq!(retry.2[field], first.2[field], "{field}");
    }
    assert_eq!(app.count_events_of_type("UserRegistered").await, 1);
    // The user, the workspace and the session.
    assert_eq!(app.events_count().await, 3);
    // The retry's tokens are fresh and work.
    let workspace_id = uuid_at(&retry.2, "workspace_id");
    app.create_card(retry.2["access_token"].as_str().unwrap(), workspace_id, "After retry")
        .await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_malformed_key_is_400(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, ws) = app.signup("ada@example.com").await;
    let long = "k".repeat(256);
    for key in ["", "has space", long.as_str()] {
        let answer = app
            .json(
                Method::POST,
                &cards_path(ws),
                &token,
                card_body("x"),
                &[("idempotency-key", key)],
            )
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request", "Idempotency-Key");
    }
    // Bytes outside ASCII are not a key the server could honour, so they are refused rather
    // than silently ignored (which would make the request non-idempotent behind the client's back).
    let request = axum::http::Request::post(cards_path(ws))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header(
            "idempotency-key",
            axum::http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        )
        .body(axum::body::Body::from(card_body("x").to_string()))
        .unwrap();
    let answer = app.send(request).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request", "Idempotency-Key");
    assert_eq!(app.count_events_of_type("PromptCardCreated").await, 0);
}
