//! The HTTP surface around GraphQL: GraphiQL, health, readiness and metrics.

use crate::support::*;
use axum::http::StatusCode;
use query_api::Settings;
use serde_json::Value;
use service::Secret;
use sqlx::PgPool;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn graphiql_health_and_metrics_are_served(pool: PgPool) {
    let app = TestApp::new(pool).await;

    let (status, content_type, body) = app.get("/graphql").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(body.to_lowercase().contains("graphiql"), "GraphiQL is served");
    assert!(body.contains("/graphql/ws"), "GraphiQL subscribes over /graphql/ws");

    let (status, _, body) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    app.graphql("", "{ __typename }", Value::Null).await;
    let (status, content_type, metrics) = app.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(metrics.contains("graphql_request_duration_seconds"), "{metrics}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn ready_when_postgres_redis_and_clickhouse_answer(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let (status, _, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["checks"],
        serde_json::json!({ "postgres": true, "redis": true, "clickhouse": true })
    );

    // Nothing listens on port 9 of this machine: each dependency missing is reported.
    let broken = Settings {
        redis_url: Secret::new("redis://127.0.0.1:9"),
        clickhouse_url: "http://127.0.0.1:9".to_owned(),
        ..settings()
    };
    let app = TestApp::with_settings(pool, broken).await;
    let (status, _, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["checks"],
        serde_json::json!({ "postgres": true, "redis": false, "clickhouse": false })
    );
    // Without Redis there is no cache, but queries are still answered.
    let answer = app.graphql("", "{ __typename }", Value::Null).await;
    assert_eq!(answer["data"]["__typename"], "Query");
}
