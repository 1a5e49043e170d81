//! An in-process app on the test's own database, and the few requests most tests start with.

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use command_api::{AppState, Secret, Settings};
use event_store::EventStore;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;
use tower::ServiceExt;
use uuid::Uuid;

/// The secret tokens are signed with in tests; tests forge and expire tokens with it.
pub const JWT_SECRET: &str = "test-only-jwt-secret-0123456789abcdef";
pub const PASSWORD: &str = "correct horse battery staple";
pub const ACCESS_TTL_SECS: u64 = 900;
/// The one origin browsers may call the test app from.
pub const ALLOWED_ORIGIN: &str = "https://app.example.com";
/// The key-encryption key provider keys are sealed with in tests (32 bytes, base64).
pub const TEST_KEK: &str = "dGVzdC1vbmx5LWtlay0wMTIzNDU2Nzg5YWJjZGVmMDE=";
/// The key webhook secrets are sealed with in tests (32 bytes, base64).
pub const WEBHOOK_KEK: &str = "dGVzdC1vbmx5LXdlYmhvb2sta2V5LTMyLWJ5dGVzISE=";

/// Settings for tests: a known secret and rate limits no test reaches unless it means to.
pub fn settings() -> Settings {
    Settings {
        addr: "127.0.0.1:0".parse().expect("valid address"),
        database_url: Secret::new("postgres://unused-the-pool-is-given"),
        database_max_connections: 5,
        jwt_secret: Secret::new(JWT_SECRET),
        access_token_ttl: Duration::from_secs(ACCESS_TTL_SECS),
        refresh_token_ttl: Duration::from_secs(3_600),
        body_limit: 1024 * 1024,
        rate_limit_per_second: 100_000,
        rate_limit_burst: 100_000,
        redis_url: service::settings::redis_url(),
        min_position_wait: Duration::from_secs(3),
        login_failures_per_account: 5,
        login_failures_per_address: 20,
        login_lockout: Duration::from_secs(300),
        provider_keys: std::sync::Arc::new(
            service::sealing::Sealer::new(&Secret::new(TEST_KEK), None).expect("a valid KEK"),
        ),
        cors_allowed_origins: vec![ALLOWED_ORIGIN.to_owned()],
        webhook_keyring: std::sync::Arc::new(webhook::Keyring::new(WEBHOOK_KEK, None).expect("a valid key")),
        webhook_targets: webhook::TargetPolicy::default(),
    }
}

/// A response: status, headers and the body as JSON (`Value::Null` when empty, a JSON string
/// holding the raw text when the body is not JSON, so `is_object()` tells JSON errors apart).
pub type Answer = (StatusCode, HeaderMap, Value);

pub struct TestApp {
    pub router: Router,
    pub pool: PgPool,
}

impl TestApp {
    pub fn new(pool: PgPool) -> Self {
        Self::with_settings(pool, settings())
    }

    pub fn with_settings(pool: PgPool, settings: Settings) -> Self {
        let state = AppState::new(EventStore::new(pool.clone()), settings);
        Self {
            router: command_api::router(state),
            pool,
        }
    }

    /// Sends any request and collects the answer.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("the body can be read")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, headers, body)
    }

    /// A JSON request. An empty `token` sends no Authorization header; `body` `Value::Null`
    /// sends no body and no Content-Type.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Value,
        extra_headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if !token.is_empty() {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in extra_headers {
            request = request.header(*name, *value);
        }
        let body = if body.is_null() {
            Body::empty()
        } else {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(body.to_string())
        };
        self.send(request.body(body).expect("a valid request")).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.json(Method::POST, path, token, body, &[]).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Answer {
        self.json(Method::PUT, path, token, body, &[]).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.json(Method::PATCH, path, token, body, &[]).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.json(Method::DELETE, path, token, Value::Null, &[]).await
    }

    /// GET with a bearer token.
    pub async fn get_as(&self, path: &str, token: &str) -> Answer {
        self.json(Method::GET, path, token, Value::Null, &[]).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.json(Method::GET, path, "", Value::Null, &[]).await
    }

    /// Signs up `email` with [`PASSWORD`]; returns (access token, user id, workspace id).
    pub async fn signup(&self, email: &str) -> (String, Uuid, Uuid) {
        let (status, _, body) = self
            .post(
                "/v1/auth/signup",
                "",
                json!({ "email": email, "password": PASSWORD, "workspace_name": format!("{email}'s team") }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "signup of {email} failed: {body}");
        (
            body["access_token"].as_str().expect("access_token").to_owned(),
            uuid_at(&body, "user_id"),
            uuid_at(&body, "workspace_id"),
        )
    }

    /// Creates a card from [`card_body`]; returns its id.
    pub async fn create_card(&self, token: &str, workspace_id: Uuid, title: &str) -> Uuid {
        let (status, _, body) = self.post(&cards_path(workspace_id), token, card_body(title)).await;
        assert_eq!(status, StatusCode::CREATED, "creating card {title:?} failed: {body}");
        uuid_at(&body, "id")
    }

    /// Adds an already signed-up user to a workspace with a role.
    pub async fn add_member(&self, token: &str, workspace_id: Uuid, email: &str, role: &str) {
        let (status, _, body) = self
            .post(
                &format!("/v1/workspaces/{workspace_id}/members"),
                token,
                json!({ "email": email, "role": role }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "adding {email} as {role} failed: {body}");
    }

    /// Creates an API key; returns (key id, key).
    pub async fn create_api_key(&self, token: &str, workspace_id: Uuid, role: &str) -> (Uuid, String) {
        let (status, _, body) = self
            .post(
                &format!("/v1/workspaces/{workspace_id}/api-keys"),
                token,
                json!({ "name": format!("{role} key"), "role": role }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "creating a {role} API key failed: {body}");
        (uuid_at(&body, "id"), body["key"].as_str().expect("key").to_owned())
    }

    pub async fn events_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("events can be counted")
    }

    pub async fn count_events_of_type(&self, event_type: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
            .bind(event_type)
            .fetch_one(&self.pool)
            .await
            .expect("events can be counted")
    }

    /// The versions stored for a stream, in order.
    pub async fn stream_versions(&self, stream_id: Uuid) -> Vec<i64> {
        sqlx::query_scalar("SELECT version FROM events WHERE stream_id = $1 ORDER BY version")
            .bind(stream_id)
            .fetch_all(&self.pool)
            .await
            .expect("versions can be read")
    }

    pub async fn max_position(&self) -> i64 {
        sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("positions can be read")
    }
}

pub fn cards_path(workspace_id: Uuid) -> String {
    format!("/v1/workspaces/{workspace_id}/prompt-cards")
}

pub fn card_path(workspace_id: Uuid, card_id: Uuid) -> String {
    format!("/v1/workspaces/{workspace_id}/prompt-cards/{card_id}")
}

/// A valid card: one string variable `text`, used by the template.
pub fn card_body(title: &str) -> Value {
    json!({
        "title": title,
        "description": "Summarises support tickets.",
        "template": "Summarise: {{ text }}",
        "variables": [{ "name": "text", "type": "string" }],
        "tags": ["support"],
    })
}

pub fn uuid_at(body: &Value, field: &str) -> Uuid {
    body[field]
        .as_str()
        .and_then(|s| Uuid::try_parse(s).ok())
        .unwrap_or_else(|| panic!("{field} is not a UUID in {body}"))
}

/// Asserts the JSON error shape: the status, the `error` code, and a `message` containing
/// `needle` (case-insensitive).
#[track_caller]
pub fn assert_error(answer: &Answer, status: StatusCode, code: &str, needle: &str) {
    let (actual, _, body) = answer;
    assert_eq!(*actual, status, "unexpected status; body: {body}");
    assert!(body.is_object(), "the error body is not a JSON object: {body}");
    assert_eq!(body["error"], code, "unexpected error code in {body}");
    let message = body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {body}"));
    assert!(
        message.to_lowercase().contains(&needle.to_lowercase()),
        "message {message:?} does not mention {needle:?}"
    );
}

/// The fields named in a validation error's `details`.
pub fn invalid_fields(body: &Value) -> Vec<String> {
    body["details"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .filter_map(|f| f["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
