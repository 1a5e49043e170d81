//! The query API in-process on the test's own database, the domain events that give it
//! something to read (appended and projected the way the system does), and the GraphQL,
//! Redis and ClickHouse probes the tests share.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use domain::card::{CardCommand, CardContent, PromptCard};

use domain::test_case::{CardFacts, TestCase, TestCaseCommand, TestCaseContent};
use domain::user::{User, UserCommand};
use domain::workspace::{Workspace, WorkspaceCommand};
use domain::{Aggregate, Role};
use event_store::{
    Append, Appended, Cursor, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, Repository, StreamAppend,
};
use http_body_util::BodyExt;
use projector::postgres::PostgresSink;
use projector::redis_sink::RedisSink;
use projector::Sink;
use query_api::Settings;
use serde_json::{json, Value};
use service::Secret;
use sqlx::PgPool;
use std::time::Duration;
use tower::ServiceExt;
use uuid::Uuid;

pub const JWT_SECRET: &str = "query-api-test-secret-0123456789abcdef";

pub use test_support::clickhouse::ScratchDatabase;
pub use test_support::history::string_variable as string_var;
pub use test_support::{clickhouse_url, eventually, redis_url};

/// Settings for tests: a known secret, the machine's Redis and ClickHouse (its `default`
/// database, which every server has; analytics tests point at a private one, see
/// [`analytics_settings`]), and the limits the deployment defaults to.
pub fn settings() -> Settings {
    Settings {
        addr: "127.0.0.1:0".parse().expect("valid address"),
        database_url: Secret::new("postgres://unused-the-pool-is-given"),
        redis_url: Secret::new(redis_url()),
        clickhouse_url: clickhouse_url(),
        clickhouse_database: "default".to_owned(),
        jwt_secret: Secret::new(JWT_SECRET),
        min_position_wait: Duration::from_secs(10),
        max_depth: 10,
        max_complexity: 1000,
        max_query_bytes: 16 * 1024,
        rate_limit_per_second: 100_000,
        rate_limit_burst: 100_000,
        workspace_rate_limit_per_second: 100_000,
        workspace_rate_limit_burst: 100_000,
        cors_allowed_origins: vec![],
    }
}

/// A user who owns a workspace, with an access token for the query API.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub user_id: Uuid,
    pub workspace_id: Uuid,
    pub token: String,
}

pub struct TestApp {
    pub router: Router,
    pub pool: PgPool,
    pub store: EventStore,
    repository: Repository,
    keys: auth::TokenKeys,
}

impl TestApp {
    pub async fn new(pool: PgPool) -> Self {
        Self::with_settings(pool, settings()).await
    }

    pub async fn with_settings(pool: PgPool, settings: Settings) -> Self {
        let secret = settings.jwt_secret.expose().to_owned();
        let state = query_api::AppState::new(pool.clone(), settings).await;
        let store = EventStore::new(pool.clone());
        Self {
            router: query_api::router(state),
            pool,
            repository: Repository::new(store.clone(), 1_000),
            store,
            keys: auth::TokenKeys::new(&secret, Duration::from_secs(900), Duration::from_secs(900)),
        }
    }

    pub fn token(&self, user_id: Uuid) -> String {
        self.keys.issue(user_id).expect("a token can be signed").access_token
    }

    // --- Requests ----------------------------------------------------------------------------

    /// Sends any request; returns the status, the content type and the body as text.
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, String, String) {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("the body can be read")
            .to_bytes();
        (status, content_type, String::from_utf8_lossy(&bytes).into_owned())
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String, String) {
        self.send(
            Request::builder()
                .method(Method::GET)
                .uri(path)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// POST /graphql with a bearer token (none when `token` is empty) and extra headers;
    /// returns the JSON answer, which is always HTTP 200 for GraphQL.
    pub async fn graphql_with(&self, token: &str, headers: &[(&str, &str)], query: &str, variables: Value) -> Value {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/graphql")
            .header(header::CONTENT_TYPE, "application/json");
        if !token.is_empty() {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = json!({ "query": query, "variables": variables }).to_string();
        let (status, _, text) = self.send(request.body(Body::from(body)).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "POST /graphql answered {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST /graphql answered non-JSON ({e}): {text}"))
    }

    pub async fn graphql(&self, token: &str, query: &str, variables: Value) -> Value {
        self.graphql_with(token, &[], query, variables).await
    }

    /// A query that must succeed; returns its `data`.
    pub async fn data(&self, token: &str, query: &str, variables: Value) -> Value {
        let answer = self.graphql(token, query, variables).await;
        assert!(answer.get("errors").is_none(), "the query failed: {answer}");
        answer["data"].clone()
    }

    // --- Writing events the way the command API does ------------------------------------------

    /// Decides `command` on the stream's current state and appends what it produces, checking
    /// the stream version it decided on.
    pub async fn execute<A: Aggregate>(
        &self,
        stream_id: Uuid,
        command: A::Command,
        workspace_id: Option<Uuid>,
        actor_id: Option<Uuid>,
    ) -> Appended {
        let (stream, _) = self.decide::<A>(stream_id, command).await;
        self.append(vec![stream], workspace_id, actor_id).await
    }

    async fn decide<A: Aggregate>(&self, stream_id: Uuid, command: A::Command) -> (StreamAppend, A) {
        let loaded = self.repository.load::<A>(stream_id).await.expect("the stream loads");
        let events = loaded.state.decide(command).expect("the domain accepts the command");
        assert!(!events.is_empty(), "the command produced no events");
        (
            StreamAppend {
                stream_id,
                stream_type: A::STREAM_TYPE.to_owned(),
                expected: ExpectedVersion::Exact(loaded.version),
                events: events.iter().map(NewEvent::from_domain).collect(),
            },
            loaded.state,
        )
    }

    pub async fn append(
        &self,
        streams: Vec<StreamAppend>,
        workspace_id: Option<Uuid>,
        actor_id: Option<Uuid>,
    ) -> Appended {
        self.store
            .append(Append {
                streams,
                metadata: Metadata {
                    workspace_id,
                    actor_id,
                    correlation_id: Uuid::now_v7(),
                    ..Metadata::default()
                },
                ..Append::default()
            })
            .await
            .expect("the append succeeds")
    }

    pub async fn register_user(&self, email: &str) -> Uuid {
        let user_id = Uuid::now_v7();
        let command = UserCommand::Register {
            user_id,
            email: email.to_owned(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$not-a-real-hash".to_owned(),
        };
        self.execute::<User>(user_id, command, None, Some(user_id)).await;
        user_id
    }

    /// Registers a user who creates a workspace, as signup does.
    pub async fn tenant(&self, name: &str) -> Tenant {
        let user_id = self
            .register_user(&format!("{name}-{}@example.com", Uuid::new_v4().simple()))
            .await;
        let workspace_id = Uuid::now_v7();
        let command = WorkspaceCommand::Create {
            workspace_id,
            name: format!("{name}'s team"),
            owner_id: user_id,
        };
        self.execute::<Workspace>(workspace_id, command, Some(workspace_id), Some(user_id))
            .await;
        Tenant {
            user_id,
            workspace_id,
            token: self.token(user_id),
        }
    }

    /// Registers a user and adds them to the tenant's workspace with `role`.
    pub async fn member(&self, tenant: &Tenant, role: Role) -> (Uuid, String) {
        let user_id = self
            .register_user(&format!("{role}-{}@example.com", Uuid::new_v4().simple()))
            .await;
        let command = WorkspaceCommand::AddMember {
            actor_role: Role::Owner,
            user_id,
            role,
        };
        self.execute::<Workspace>(
            tenant.workspace_id,
            command,
            Some(tenant.workspace_id),
            Some(tenant.user_id),
        )
        .await;
        (user_id, self.token(user_id))
    }

    /// Creates an API key of the tenant's workspace, reserved to it as the command API does;
    /// returns (key id, bearer token).
    pub async fn api_key_with_id(&self, tenant: &Tenant, role: Role) -> (Uuid, String) {
        let key_id = Uuid::new_v4();
        let secret = format!("secret{}", Uuid::new_v4().simple());
        let command = WorkspaceCommand::CreateApiKey {
            actor_role: Role::Owner,
            key_id,
            name: format!("{role} key"),
            role,
            secret_hash: auth::hash_secret(&secret),
            created_at: chrono::Utc::now(),
            expires_at: None,
        };
        let (stream, _) = self.decide::<Workspace>(tenant.workspace_id, command).await;
        self.store
            .append(Append {
                streams: vec![stream],
                metadata: Metadata {
                    workspace_id: Some(tenant.workspace_id),
                    actor_id: Some(tenant.user_id),
                    correlation_id: Uuid::now_v7(),
                    ..Metadata::default()
                },
                reservations: vec![event_store::Reservation {
                    scope: auth::API_KEY_SCOPE.into(),
                    value: key_id.to_string(),
                    stream_id: tenant.workspace_id,
                }],
                ..Append::default()
            })
            .await
            .expect("the append succeeds");
        (key_id, format!("pc_{}_{secret}", key_id.simple()))
    }

    /// Creates an API key of the tenant's workspace; returns its bearer token.
    pub async fn api_key(&self, tenant: &Tenant, role: Role) -> String {
        self.api_key_with_id(tenant, role).await.1
    }

    /// Revokes an API key as the tenant's owner.
    pub async fn revoke_api_key(&self, tenant: &Tenant, key_id: Uuid) -> Appended {
        let command = WorkspaceCommand::RevokeApiKey {
            actor_role: Role::Owner,
            key_id,
            revoked_at: chrono::Utc::now(),
        };
        self.execute::<Workspace>(
            tenant.workspace_id,
            command,
            Some(tenant.workspace_id),
            Some(tenant.user_id),
        )
        .await
    }

    pub async fn create_card(&self, tenant: &Tenant, content: CardContent) -> (Uuid, Appended) {
        let card_id = Uuid::now_v7();
        let command = CardCommand::Create {
            card_id,
            workspace_id: tenant.workspace_id,
            name: domain::prompt::legacy_name(&content.title, card_id),
            content,
        };
        let appended = self.card_command(tenant, card_id, command).await;
        (card_id, appended)
    }

    pub async fn update_card(&self, tenant: &Tenant, card_id: Uuid, content: CardContent) -> Appended {
        let current = self
            .repository
            .load::<PromptCard>(card_id)
            .await
            .unwrap()
            .state
            .version();
        self.card_command(
            tenant,
            card_id,
            CardCommand::Update {
                expected_version: current,
                name: None,
                content,
            },
        )
        .await
    }

    pub async fn card_command(&self, tenant: &Tenant, card_id: Uuid, command: CardCommand) -> Appended {
        self.card_command_by(tenant, tenant.user_id, card_id, command).await
    }

    pub async fn card_command_by(
        &self,
        tenant: &Tenant,
        actor_id: Uuid,
        card_id: Uuid,
        command: CardCommand,
    ) -> Appended {
        self.execute::<PromptCard>(card_id, command, Some(tenant.workspace_id), Some(actor_id))
            .await
    }

    /// Creates a test case and attaches it to its card in one append, as the command API does.
    pub async fn create_test_case(&self, tenant: &Tenant, card_id: Uuid, content: TestCaseContent) -> Uuid {
        let card = self.repository.load::<PromptCard>(card_id).await.unwrap().state;
        let facts = CardFacts {
            card_id,
            workspace_id: tenant.workspace_id,
            variables: card.current().expect("the card exists").content.variables.clone(),
            archived: card.archived,
        };
        let case_id = Uuid::now_v7();
        let (card_stream, _) = self
            .decide::<PromptCard>(card_id, CardCommand::AttachTestCase { case_id })
            .await;
        let (case_stream, _) = self
            .decide::<TestCase>(
                case_id,
                TestCaseCommand::Create {
                    case_id,
                    card: facts,
                    content,
                },
            )
            .await;
        self.append(
            vec![card_stream, case_stream],
            Some(tenant.workspace_id),
            Some(tenant.user_id),
        )
        .await;
        case_id
    }

    /// Deletes a test case and detaches it from its card in one append.
    pub async fn delete_test_case(&self, tenant: &Tenant, card_id: Uuid, case_id: Uuid) {
        let (card_stream, _) = self
            .decide::<PromptCard>(card_id, CardCommand::DetachTestCase { case_id })
            .await;
        let (case_stream, _) = self
            .decide::<TestCase>(case_id, TestCaseCommand::Delete { card_id })
            .await;
        self.append(
            vec![card_stream, case_stream],
            Some(tenant.workspace_id),
            Some(tenant.user_id),
        )
        .await;
    }

    // --- Projecting, as the projector's sinks do ----------------------------------------------

    /// Every event at or below the store's head, once a tailing reader may see them all (other
    /// tests' open transactions hold the cluster-wide snapshot back for a moment).
    pub async fn events_through_head(&self) -> Vec<RecordedEvent> {
        let head = self.store.head().await.unwrap();
        let written: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE position <= $1")
            .bind(head)
            .fetch_one(&self.pool)
            .await
            .unwrap();
        eventually("every event up to the head is visible to a tailing reader", || async {
            let events = self.store.read_all(Cursor::START, 10_000).await.unwrap();
            let visible = events.iter().filter(|e| e.position <= head).count() as i64;
            (visible == written).then_some(events)
        })
        .await
    }

    /// The events after `position`, once all up to the head are visible.
    pub async fn events_after(&self, position: i64) -> Vec<RecordedEvent> {
        let mut events = self.events_through_head().await;
        events.retain(|e| e.position > position);
        events
    }

    /// Applies everything written so far to the Postgres read models. Redelivered events are
    /// skipped by the sink, so projecting from the start each time is what a restart does.
    pub async fn project(&self) {
        let events = self.events_through_head().await;
        PostgresSink::new(self.pool.clone())
            .apply(&events)
            .await
            .expect("the Postgres sink applies");
    }

    /// Applies everything after `position` to the Postgres read models and Redis (which raises
    /// stream versions and publishes to subscribers).
    pub async fn project_with_redis(&self, after_position: i64) {
        let events = self.events_after(after_position).await;
        PostgresSink::new(self.pool.clone())
            .apply(&events)
            .await
            .expect("the Postgres sink applies");
        redis_sink().await.apply(&events).await.expect("the Redis sink applies");
    }

    pub async fn head(&self) -> i64 {
        self.store.head().await.unwrap()
    }
}

pub async fn redis_sink() -> RedisSink {
    RedisSink::connect(&redis_url()).await.expect("Redis answers")
}

pub async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers")
}

// --- Domain content --------------------------------------------------------------------------

/// A card's content; the template's `{{ name }}` placeholders are declared as string variables.
pub fn content(title: &str, description: &str, template: &str, vars: &[&str], tags: &[&str]) -> CardContent {
    CardContent {
        title: title.to_owned(),
        description: description.to_owned(),
        template: template.to_owned(),
        variables: vars.iter().map(|v| string_var(v)).collect(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        ..Default::default()
    }
}

pub fn titled(title: &str) -> CardContent {
    content(title, "", "Summarise {{ text }}", &["text"], &[])
}

// --- Reading answers -------------------------------------------------------------------------

/// The `extensions.code` of every error of an answer.
pub fn error_codes(answer: &Value) -> Vec<String> {
    answer["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("<no code>").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts the answer is a refusal with `code` and carries no data.
#[track_caller]
pub fn assert_refused(answer: &Value, code: &str, what: &str) {
    assert_eq!(error_codes(answer), vec![code.to_owned()], "{what}: {answer}");
    let data = &answer["data"];
    assert!(
        data.is_null() || data.as_object().is_some_and(|o| o.values().all(Value::is_null)),
        "{what}: a refusal must carry no data: {answer}"
    );
}

pub fn ids(values: &[Value]) -> Vec<Uuid> {
    values
        .iter()
        .map(|v| v["id"].as_str().and_then(|s| Uuid::try_parse(s).ok()).expect("an id"))
        .collect()
}

/// Settings that read analytics from the test's own ClickHouse database.
pub fn analytics_settings(db: &ScratchDatabase) -> Settings {
    Settings {
        clickhouse_database: db.name.clone(),
        ..settings()
    }
}
