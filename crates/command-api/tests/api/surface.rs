//! What operators and client generators rely on: OpenAPI, health, readiness and metrics.

use crate::helpers::*;
use axum::http::{header, StatusCode};
use serde_json::Value;
use sqlx::PgPool;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn openapi_describes_every_command_path(pool: PgPool) {
    let app = TestApp::new(pool);
    let (status, headers, doc) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths");
    // Every REST path of API.md except runs and imports, with its methods.
    let expected: &[(&str, &[&str])] = &[
        ("/v1/auth/signup", &["post"]),
        ("/v1/auth/login", &["post"]),
        ("/v1/auth/refresh", &["post"]),
        ("/v1/workspaces", &["post"]),
        ("/v1/workspaces/{ws}/members", &["post"]),
        ("/v1/workspaces/{ws}/members/{user_id}", &["patch", "delete"]),
        ("/v1/workspaces/{ws}/api-keys", &["post"]),
        ("/v1/workspaces/{ws}/prompt-cards", &["post"]),
        ("/v1/workspaces/{ws}/prompt-cards/{card}", &["put"]),
        ("/v1/workspaces/{ws}/prompt-cards/{card}/archive", &["post"]),
        ("/v1/workspaces/{ws}/prompt-cards/{card}/labels", &["post"]),
        ("/v1/workspaces/{ws}/prompt-cards/{card}/test-cases", &["post"]),
        (
            "/v1/workspaces/{ws}/prompt-cards/{card}/test-cases/{case}",
            &["put", "delete"],
        ),
    ];
    for (path, methods) in expected {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} missing from {:?}", paths.keys()));
        for method in *methods {
            assert!(item.get(*method).is_some(), "{method} {path} missing");
        }
    }
    // Request bodies are described by schemas, so clients can be generated.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for schema in [
        "SignupRequest",
        "CreateCard",
        "UpdateCard",
        "TestCaseRequest",
        "AddMember",
    ] {
        assert!(schemas.contains_key(schema), "schema {schema} missing");
    }
    assert_eq!(doc, serde_json::to_value(command_api::openapi()).unwrap());
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn health_readiness_and_metrics_answer(pool: PgPool) {
    let app = TestApp::new(pool);
    let (status, _, body) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    let (status, _, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["postgres"], "ok");

    // A command first, so the request histogram has a sample.
    app.signup("ada@example.com").await;
    let (status, headers, body) = app.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = body.as_str().expect("metrics are text");
    assert!(text.contains("http_request_duration_seconds"), "{text}");
    assert!(
        text.contains(r#"path="/v1/auth/signup""#),
        "requests are labelled by route: {text}"
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn readiness_fails_when_postgres_is_gone(pool: PgPool) {
    let app = TestApp::new(pool.clone());
    pool.close().await;
    let (status, _, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "unavailable");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn every_response_carries_a_request_id(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, headers, _) = app.get("/healthz").await;
    let id = headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::try_parse(id).is_ok(), "{id}");
    // A caller's own id is kept.
    let (_, headers, _) = app
        .json(
            axum::http::Method::GET,
            "/healthz",
            "",
            Value::Null,
            &[("x-request-id", "trace-me-42")],
        )
        .await;
    assert_eq!(headers["x-request-id"], "trace-me-42");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn unknown_routes_and_methods_get_json_errors(pool: PgPool) {
    let app = TestApp::new(pool);
    let answer = app.get("/v1/nothing-here").await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "/v1/nothing-here");
    let answer = app.get("/v1/auth/signup").await;
    assert_error(&answer, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "GET");
}
