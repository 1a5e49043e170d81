//! Sign-up, login, refresh, token checks and API keys.

use crate::helpers::*;
use axum::http::StatusCode;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

fn sign(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::default(), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("claims encode")
}

fn claims(user_id: Uuid, typ: &str, exp_offset_secs: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({ "sub": user_id, "typ": typ, "iat": now - 3_600, "exp": now + exp_offset_secs, "jti": Uuid::new_v4() })
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn signup_creates_an_owned_workspace_and_returns_tokens_and_position(pool: PgPool) {
    let app = TestApp::new(pool);
    let (status, _, body) = app
        .post(
            "/v1/auth/signup",
            "",
            json!({ "email": "ada@example.com", "password": PASSWORD, "workspace_name": "Analytical" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let user_id = uuid_at(&body, "user_id");
    let workspace_id = uuid_at(&body, "workspace_id");
    let access = body["access_token"].as_str().expect("access_token");
    assert!(!body["refresh_token"].as_str().expect("refresh_token").is_empty());
    assert_eq!(body["expires_in"], ACCESS_TTL_SECS);
    // The position is that of the last event the signup appended: the user, the workspace and
    // the session its tokens belong to.
    assert_eq!(body["position"].as_i64(), Some(app.max_position().await));
    assert_eq!(app.events_count().await, 3);
    assert_eq!(app.stream_versions(user_id).await, vec![1]);
    assert_eq!(app.stream_versions(workspace_id).await, vec![1]);
    // The user owns the workspace: an owner-only command succeeds with the new token.
    let (status, _, body) = app
        .post(
            &format!("/v1/workspaces/{workspace_id}/api-keys"),
            access,
            json!({ "name": "ci", "role": "owner" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_email_signs_up_once_whatever_its_case(pool: PgPool) {
    let app = TestApp::new(pool);
    app.signup("ada@example.com").await;
    let before = app.events_count().await;
    let answer = app
        .post(
            "/v1/auth/signup",
            "",
            json!({ "email": "  ADA@Example.COM ", "password": "another password", "workspace_name": "Copy" }),
        )
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", "email");
    assert_eq!(app.events_count().await, before, "a refused signup appended events");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn signup_reports_every_invalid_field_at_once(pool: PgPool) {
    let app = TestApp::new(pool);
    let answer = app
        .post(
            "/v1/auth/signup",
            "",
            json!({ "email": "not-an-email", "password": "short", "workspace_name": "  " }),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "password",
    );
    let mut fields = invalid_fields(&answer.2);
    fields.sort();
    assert_eq!(fields, ["email", "name", "password"]);
    assert_eq!(app.events_count().await, 0);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn login_gives_working_tokens_and_never_says_which_part_was_wrong(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, _, workspace_id) = app.signup("ada@example.com").await;

    let (status, _, body) = app
        .post(
            "/v1/auth/login",
            "",
            json!({ "email": "Ada@Example.com", "password": PASSWORD }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], ACCESS_TTL_SECS);
    assert!(body["refresh_token"].is_string());
    let access = body["access_token"].as_str().expect("access_token");
    app.create_card(access, workspace_id, "Logged in").await;

    let wrong_password = app
        .post(
            "/v1/auth/login",
            "",
            json!({ "email": "ada@example.com", "password": "not the password" }),
        )
        .await;
    assert_error(
        &wrong_password,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "wrong email or password",
    );
    let unknown_email = app
        .post(
            "/v1/auth/login",
            "",
            json!({ "email": "bob@example.com", "password": PASSWORD }),
        )
        .await;
    assert_error(
        &unknown_email,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "wrong email or password",
    );
    assert_eq!(
        wrong_password.2, unknown_email.2,
        "the two failures must be indistinguishable"
    );
    assert!(wrong_password.2.get("access_token").is_none());
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_refresh_token_buys_new_tokens_and_is_not_an_access_token(pool: PgPool) {
    let app = TestApp::new(pool);
    let (status, _, signup) = app
        .post(
            "/v1/auth/signup",
            "",
            json!({ "email": "ada@example.com", "password": PASSWORD, "workspace_name": "A" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let workspace_id = uuid_at(&signup, "workspace_id");
    let access = signup["access_token"].as_str().unwrap();
    let refresh = signup["refresh_token"].as_str().unwrap();

    let (status, _, body) = app
        .post("/v1/auth/refresh", "", json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["refresh_token"].is_string());
    let renewed = body["access_token"].as_str().expect("access_token");
    app.create_card(renewed, workspace_id, "Renewed").await;

    // An access token where a refresh token belongs, and the other way round.
    let answer = app
        .post("/v1/auth/refresh", "", json!({ "refresh_token": access }))
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "refresh token");
    let before = app.events_count().await;
    let answer = app
        .post(&cards_path(workspace_id), refresh, card_body("With a refresh token"))
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "refresh token");
    assert_eq!(app.events_count().await, before);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn forged_expired_and_malformed_credentials_are_refused(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, user_id, workspace_id) = app.signup("ada@example.com").await;
    let before = app.events_count().await;
    let path = cards_path(workspace_id);

    // Well-formed claims for a real user, signed with a secret the server does not have.
    let forged = sign("someone-elses-secret", &claims(user_id, "access", 600));
    let answer = app.post(&path, &forged, card_body("Forged")).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "invalid");

    // Signed with the right secret, but expired a minute ago.
    let expired = sign(JWT_SECRET, &claims(user_id, "access", -60));
    let answer = app.post(&path, &expired, card_body("Expired")).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "expired");

    // The same claims not yet expired do work, so the two refusals above are about the
    // signature and the expiry and nothing else.
    let valid = sign(JWT_SECRET, &claims(user_id, "access", 600));
    let (status, _, body) = app.post(&path, &valid, card_body("Valid")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let before_bad = app.events_count().await;
    assert_eq!(before_bad, before + 1);

    for token in ["not-a-jwt", "pc_nonsense", "pc_00000000000000000000000000000000_secret"] {
        let answer = app.post(&path, token, card_body("Garbage")).await;
        assert_eq!(answer.0, StatusCode::UNAUTHORIZED, "token {token:?}: {}", answer.2);
        assert_eq!(answer.2["error"], "unauthorized");
    }
    // A scheme other than Bearer.
    let answer = app
        .json(
            axum::http::Method::POST,
            &path,
            "",
            card_body("Basic"),
            &[("authorization", "Basic YWRhOnB3")],
        )
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "Bearer");
    // No credentials at all.
    let answer = app.post(&path, "", card_body("Anonymous")).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "Authorization");
    assert_eq!(
        app.events_count().await,
        before_bad,
        "a refused request appended events"
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_api_key_is_shown_once_and_authenticates(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, workspace_id) = app.signup("ada@example.com").await;
    let (status, _, body) = app
        .post(
            &format!("/v1/workspaces/{workspace_id}/api-keys"),
            &token,
            json!({ "name": "  ci  ", "role": "member" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let key_id = uuid_at(&body, "id");
    let key = body["key"].as_str().expect("key").to_owned();
    assert!(key.starts_with("pc_"), "{key}");
    assert_eq!(body["name"], "ci");
    assert_eq!(body["role"], "member");
    assert!(body["position"].as_i64().unwrap() > 0);

    // Only a hash of the secret is stored.
    let secret = key.rsplit_once('_').unwrap().1;
    let stored: Vec<String> = sqlx::query_scalar("SELECT data::text FROM events")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(
        stored.iter().all(|data| !data.contains(secret)),
        "the key's secret was stored"
    );

    // The key acts in its workspace; the card's creation event names the key as its actor.
    let card_id = app.create_card(&key, workspace_id, "By key").await;
    let actor: Option<Uuid> = sqlx::query_scalar("SELECT actor_id FROM events WHERE stream_id = $1")
        .bind(card_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(actor, Some(key_id));

    // A key with a wrong secret is refused.
    let tampered = format!("{}x", &key[..key.len() - 1]);
    let answer = app
        .post(&cards_path(workspace_id), &tampered, card_body("Tampered"))
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "API key");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_retried_api_key_creation_does_not_show_the_key_again(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, workspace_id) = app.signup("ada@example.com").await;
    let path = format!("/v1/workspaces/{workspace_id}/api-keys");
    let body = json!({ "name": "ci", "role": "member" });
    let headers = [("idempotency-key", "key-1")];
    let first = app
        .json(axum::http::Method::POST, &path, &token, body.clone(), &headers)
        .await;
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.2);
    let before = app.events_count().await;
    let retry = app.json(axum::http::Method::POST, &path, &token, body, &headers).await;
    assert_error(&retry, StatusCode::CONFLICT, "conflict", "shown once");
    assert!(retry.2.get("key").is_none());
    assert_eq!(app.events_count().await, before);
}
