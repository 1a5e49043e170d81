//! Sessions: refresh tokens rotate and a reused one ends its family, logout ends a session, a
//! password change ends every other session, and failed logins are throttled per email and
//! per address without telling which emails have accounts.

use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

async fn login(app: &TestApp, email: &str, password: &str) -> crate::helpers::Answer {
    app.post("/v1/auth/login", "", json!({ "email": email, "password": password }))
        .await
}

async fn refresh(app: &TestApp, token: &Value) -> crate::helpers::Answer {
    app.post("/v1/auth/refresh", "", json!({ "refresh_token": token }))
        .await
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_whole_family(pool: PgPool) {
    let app = TestApp::new(pool);
    app.signup("ada@example.com").await;
    let (status, _, first) = login(&app, "ada@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{first}");

    let (status, _, second) = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let (status, _, third) = refresh(&app, &second["refresh_token"]).await;
    assert_eq!(status, StatusCode::OK, "{third}");

    // The first token again: the theft signal. It is refused, and so is the family's newest.
    let answer = refresh(&app, &first["refresh_token"]).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "already used");
    let answer = refresh(&app, &third["refresh_token"]).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "already used");
    assert_eq!(app.count_events_of_type("SessionEnded").await, 1);
    assert_eq!(app.count_events_of_type("SessionRefreshed").await, 2);

    // Another session of the same user is untouched.
    let (_, _, other) = login(&app, "ada@example.com", PASSWORD).await;
    let (status, _, body) = refresh(&app, &other["refresh_token"]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn logout_ends_the_session_of_the_refresh_token(pool: PgPool) {
    let app = TestApp::new(pool);
    app.signup("ada@example.com").await;
    let (_, _, tokens) = login(&app, "ada@example.com", PASSWORD).await;
    let (status, _, body) = app
        .post(
            "/v1/auth/logout",
            "",
            json!({ "refresh_token": tokens["refresh_token"] }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let answer = refresh(&app, &tokens["refresh_token"]).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "logged out");
    // Logging out twice is fine; a forged token is not.
    let (status, _, _) = app
        .post(
            "/v1/auth/logout",
            "",
            json!({ "refresh_token": tokens["refresh_token"] }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let answer = app
        .post("/v1/auth/logout", "", json!({ "refresh_token": "not.a.token" }))
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "invalid");
    assert_eq!(app.count_events_of_type("SessionEnded").await, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_password_change_ends_every_other_session(pool: PgPool) {
    let app = TestApp::new(pool);
    app.signup("ada@example.com").await;
    let (_, _, here) = login(&app, "ada@example.com", PASSWORD).await;
    let (_, _, elsewhere) = login(&app, "ada@example.com", PASSWORD).await;
    let access = here["access_token"].as_str().unwrap();
    let new_password = "a much better passphrase";

    let before = app.events_count().await;
    let answer = app
        .post(
            "/v1/auth/password",
            access,
            json!({ "current_password": "wrong guess", "new_password": new_password }),
        )
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "current password");
    let answer = app
        .post(
            "/v1/auth/password",
            access,
            json!({ "current_password": PASSWORD, "new_password": "short" }),
        )
        .await;
    assert_eq!(invalid_fields(&answer.2), vec!["new_password"], "{}", answer.2);
    let answer = app
        .post(
            "/v1/auth/password",
            "",
            json!({ "current_password": PASSWORD, "new_password": new_password }),
        )
        .await;
    assert_eq!(answer.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.events_count().await, before, "refused changes append nothing");

    let (status, _, body) = app
        .post(
            "/v1/auth/password",
            access,
            json!({ "current_password": PASSWORD, "new_password": new_password }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let answer = refresh(&app, &elsewhere["refresh_token"]).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "password changed");
    let (status, _, body) = refresh(&app, &here["refresh_token"]).await;
    assert_eq!(status, StatusCode::OK, "the current session goes on: {body}");

    assert_eq!(
        login(&app, "ada@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _, fresh) = login(&app, "ada@example.com", new_password).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = refresh(&app, &fresh["refresh_token"]).await;
    assert_eq!(status, StatusCode::OK, "sessions after the change work: {body}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn failed_logins_are_throttled_alike_for_known_and_unknown_emails(pool: PgPool) {
    let app = TestApp::new(pool);
    app.signup("ada@example.com").await;
    for email in ["ada@example.com", "nobody@example.com"] {
        for _ in 0..5 {
            let answer = login(&app, email, "wrong password").await;
            assert_error(
                &answer,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "wrong email or password",
            );
        }
    }
    // The right password no longer helps Ada's email, and the answer is the unknown email's.
    let known = login(&app, "ada@example.com", PASSWORD).await;
    let unknown = login(&app, "nobody@example.com", PASSWORD).await;
    assert_error(&known, StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many");
    assert_eq!((known.0, &known.2), (unknown.0, &unknown.2));
    assert!(known.1.get("retry-after").is_some());
    // Other emails are not locked by Ada's failures.
    app.signup("bob@example.com").await;
    assert_eq!(login(&app, "bob@example.com", PASSWORD).await.0, StatusCode::OK);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn failed_logins_are_throttled_per_address(pool: PgPool) {
    let mut settings = settings();
    settings.login_failures_per_address = 3;
    let app = TestApp::with_settings(pool, settings);
    app.signup("ada@example.com").await;
    let from = |n: u8| std::net::SocketAddr::from(([10, 0, 0, n], 40_000));
    let attempt = |addr, email: &str, password: &str| {
        let mut request = axum::http::Request::post("/v1/auth/login")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                json!({ "email": email, "password": password }).to_string(),
            ))
            .unwrap();
        request.extensions_mut().insert(axum::extract::ConnectInfo(addr));
        app.send(request)
    };
    for n in 0..3 {
        let answer = attempt(from(1), &format!("guess{n}@example.com"), "wrong password").await;
        assert_eq!(answer.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        attempt(from(1), "ada@example.com", PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(attempt(from(2), "ada@example.com", PASSWORD).await.0, StatusCode::OK);
}
