//! Commands are rate limited per caller.

use crate::helpers::*;
use axum::http::{header, StatusCode};
use sqlx::PgPool;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_request_past_the_burst_is_429_with_retry_after(pool: PgPool) {
    let mut settings = settings();
    settings.rate_limit_per_second = 1;
    settings.rate_limit_burst = 2;
    let app = TestApp::with_settings(pool, settings);
    // Two anonymous signups use up the anonymous callers' burst.
    let (ada, _, ada_ws) = app.signup("ada@example.com").await;
    let (bob, _, bob_ws) = app.signup("bob@example.com").await;
    let answer = app
        .post(
            "/v1/auth/login",
            "",
            serde_json::json!({ "email": "ada@example.com", "password": PASSWORD }),
        )
        .await;
    assert_error(&answer, StatusCode::TOO_MANY_REQUESTS, "rate_limited", "retry");

    app.create_card(&ada, ada_ws, "One").await;
    app.create_card(&ada, ada_ws, "Two").await;
    let before = app.events_count().await;
    let answer = app.post(&cards_path(ada_ws), &ada, card_body("Three")).await;
    assert_error(&answer, StatusCode::TOO_MANY_REQUESTS, "rate_limited", "retry");
    let retry_after: u64 = answer
        .1
        .get(header::RETRY_AFTER)
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds");
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    assert_eq!(app.events_count().await, before, "a limited request appended events");

    // The limit is per caller: Bob still has his whole burst.
    app.create_card(&bob, bob_ws, "Bob's").await;
}

/// Browsers may call from the allowed origins only (`CORS_ALLOWED_ORIGINS`).
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn cors_allows_the_listed_origins_only(pool: PgPool) {
    let preflight = |origin: &str| {
        axum::http::Request::builder()
            .method("OPTIONS")
            .uri("/v1/workspaces")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, idempotency-key",
            )
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let app = TestApp::new(pool.clone());
    let (_, headers, _) = app.send(preflight(ALLOWED_ORIGIN)).await;
    assert_eq!(headers.get("access-control-allow-origin").unwrap(), ALLOWED_ORIGIN);
    let allowed = headers.get("access-control-allow-headers").unwrap().to_str().unwrap();
    assert!(allowed.contains("idempotency-key"), "{allowed}");
    let (_, headers, _) = app.send(preflight("https://evil.example")).await;
    assert!(headers.get("access-control-allow-origin").is_none());

    let mut closed = settings();
    closed.cors_allowed_origins = vec![];
    let app = TestApp::with_settings(pool, closed);
    let (_, headers, _) = app.send(preflight(ALLOWED_ORIGIN)).await;
    assert!(headers.get("access-control-allow-origin").is_none());
}
