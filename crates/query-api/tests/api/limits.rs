//! Abusive queries are refused before they run: too deep, too complex, too long.

use crate::support::*;
use serde_json::Value;
use sqlx::PgPool;

/// An introspection query whose deepest field is at depth `depth` (`__type` is depth 1).
fn nested(depth: usize) -> String {
    assert!(depth >= 3);
    let inner = depth - 3; // __type, fields, and the innermost `name`
    format!(
        r#"{{ __type(name: "Query") {{ fields {{ {}name{} }} }} }}"#,
        "ofType { ".repeat(inner).replacen("ofType", "type", 1),
        " }".repeat(inner)
    )
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_query_deeper_than_the_limit_is_refused(pool: PgPool) {
    let app = TestApp::new(pool).await; // max_depth: 10
    let ada = app.tenant("ada").await;
    app.project().await;

    let at_limit = app.graphql(&ada.token, &nested(10), Value::Null).await;
    assert!(at_limit.get("errors").is_none(), "depth 10 is allowed: {at_limit}");
    assert!(at_limit["data"]["__type"]["fields"].is_array());

    let too_deep = app.graphql(&ada.token, &nested(11), Value::Null).await;
    assert!(!error_codes(&too_deep).is_empty(), "depth 11 is refused: {too_deep}");
    assert!(too_deep["data"].is_null(), "a refused query runs nothing: {too_deep}");
    assert!(
        too_deep.to_string().to_lowercase().contains("nested too deep"),
        "{too_deep}"
    );

    let absurd = app.graphql(&ada.token, &nested(500), Value::Null).await;
    assert!(absurd["data"].is_null() && absurd["errors"].is_array(), "{absurd}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_query_more_complex_than_the_limit_is_refused(pool: PgPool) {
    let app = TestApp::new(pool).await; // max_complexity: 1000
    let ada = app.tenant("ada").await;
    app.project().await;
    let aliases = |n: usize| {
        format!(
            "{{ {} }}",
            (0..n)
                .map(|i| format!("a{i}: me {{ id }}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };

    let fine = app.graphql(&ada.token, &aliases(100), Value::Null).await;
    assert!(fine.get("errors").is_none(), "{fine}");
    assert_eq!(fine["data"]["a99"]["id"], ada.user_id.to_string());

    let too_complex = app.graphql(&ada.token, &aliases(600), Value::Null).await;
    assert!(too_complex["data"].is_null(), "{too_complex}");
    assert!(
        too_complex.to_string().to_lowercase().contains("complex"),
        "{too_complex}"
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_query_longer_than_the_limit_is_a_bad_request(pool: PgPool) {
    let app = TestApp::new(pool).await; // max_query_bytes: 16 KiB
    let ada = app.tenant("ada").await;
    app.project().await;
    let padded = |len: usize| {
        let query = "{ me { id } }\n#";
        format!("{query}{}", "x".repeat(len - query.len()))
    };

    let at_limit = app.graphql(&ada.token, &padded(16 * 1024), Value::Null).await;
    assert!(at_limit.get("errors").is_none(), "{at_limit}");
    assert_eq!(at_limit["data"]["me"]["id"], ada.user_id.to_string());

    let too_long = app.graphql(&ada.token, &padded(16 * 1024 + 1), Value::Null).await;
    assert_refused(&too_long, "BAD_REQUEST", "a query one byte over the limit");

    // Checked before the credential: an anonymous flood is refused just as cheaply.
    let anonymous = app.graphql("", &padded(100_000), Value::Null).await;
    assert_refused(&anonymous, "BAD_REQUEST", "a long anonymous query");
}

/// Queries past a caller's burst are refused with HTTP 429 and `RATE_LIMITED`; another
/// caller is not held back by them.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_caller_past_its_burst_is_rate_limited(pool: PgPool) {
    let mut settings = settings();
    settings.rate_limit_per_second = 1;
    settings.rate_limit_burst = 2;
    let app = TestApp::with_settings(pool, settings).await;
    let ada = app.tenant("ada").await;
    let bob = app.tenant("bob").await;
    app.project().await;
    let me = "{ me { id } }";
    app.data(&ada.token, me, Value::Null).await;
    app.data(&ada.token, me, Value::Null).await;

    let request = axum::http::Request::post("/graphql")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", ada.token))
        .body(axum::body::Body::from(serde_json::json!({ "query": me }).to_string()))
        .unwrap();
    let (status, _, body) = app.send(request).await;
    assert_eq!(status, axum::http::StatusCode::TOO_MANY_REQUESTS, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error_codes(&body), vec!["RATE_LIMITED"], "{body}");
    app.data(&bob.token, me, Value::Null).await;
}

/// A workspace's queries are limited across all its callers; strangers' refused queries do
/// not count, so they cannot use the limit up.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_workspace_past_its_burst_is_rate_limited_for_every_member(pool: PgPool) {
    let mut settings = settings();
    settings.workspace_rate_limit_per_second = 1;
    settings.workspace_rate_limit_burst = 2;
    let app = TestApp::with_settings(pool, settings).await;
    let ada = app.tenant("ada").await;
    let eve = app.tenant("eve").await;
    let (_, member) = app.member(&ada, domain::Role::Viewer).await;
    app.project().await;
    let query = format!(r#"{{ workspace(id: "{}") {{ id }} }}"#, ada.workspace_id);
    for _ in 0..5 {
        assert_refused(
            &app.graphql(&eve.token, &query, Value::Null).await,
            "NOT_FOUND",
            "a stranger",
        );
    }
    app.data(&ada.token, &query, Value::Null).await;
    app.data(&member, &query, Value::Null).await;
    let answer = app.graphql(&ada.token, &query, Value::Null).await;
    assert_eq!(error_codes(&answer), vec!["RATE_LIMITED"], "{answer}");
    // Eve's own workspace has its own limit.
    let own = format!(r#"{{ workspace(id: "{}") {{ id }} }}"#, eve.workspace_id);
    app.data(&eve.token, &own, Value::Null).await;
}

/// Browsers may call from the allowed origins only: a preflight from one is answered with
/// the CORS headers, from any other without them.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn cors_allows_the_listed_origins_only(pool: PgPool) {
    let mut settings = settings();
    settings.cors_allowed_origins = vec!["https://app.example.com".into()];
    let app = TestApp::with_settings(pool.clone(), settings).await;
    let preflight = |origin: &str| {
        axum::http::Request::builder()
            .method("OPTIONS")
            .uri("/graphql")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let response = app
        .router
        .clone()
        .oneshot_response(preflight("https://app.example.com"))
        .await;
    assert_eq!(
        response.headers().get("access-control-allow-origin").unwrap(),
        "https://app.example.com"
    );
    let response = app
        .router
        .clone()
        .oneshot_response(preflight("https://evil.example"))
        .await;
    assert!(response.headers().get("access-control-allow-origin").is_none());
    // The default (no origins) allows none.
    let closed = TestApp::new(pool).await;
    let response = closed
        .router
        .clone()
        .oneshot_response(preflight("https://app.example.com"))
        .await;
    assert!(response.headers().get("access-control-allow-origin").is_none());
}

trait Oneshot {
    async fn oneshot_response(self, request: axum::http::Request<axum::body::Body>) -> axum::response::Response;
}

impl Oneshot for axum::Router {
    async fn oneshot_response(self, request: axum::http::Request<axum::body::Body>) -> axum::response::Response {
        tower::ServiceExt::oneshot(self, request).await.unwrap()
    }
}
