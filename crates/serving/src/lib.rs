//! Prompts served to applications: a card fetched by workspace and name, at a label (default
//! `production`, then the latest version) or a version, and rendered with an application's
//! values. Both APIs serve it: the command API under `/v1` (where API.md puts the routes) and
//! the query API (REST beside GraphQL's `prompt` and `renderPrompt`).
//!
//! A fetch is answered from this process's memory, else from Redis, else from the read models,
//! and only the last touches Postgres. What is remembered is dropped when the projector says a
//! card (or a workspace, for the callers' roles and keys) changed: its Postgres sink sends
//! [`PROMPTS_CHANNEL`](domain::names::PROMPTS_CHANNEL) in the batch's transaction, so a process
//! woken by it reads the change. Each notice carries the stream's version; a document older
//! than a version noticed is never served from memory or Redis again, which closes the race
//! between a reload and the notice that overtakes it. A Redis document is also checked against
//! the version the projector's Redis sink raised (`promptcards:version:<card>`), for processes
//! that started after a change. A request with `X-Min-Position` waits until the read models
//! have applied that position, then reads them unless what is remembered already reflects it.

pub mod freshness;
mod memory;
pub mod rest;

pub use freshness::Freshness;

use auth::{AuthError, Principal, StoredApiKey, TokenKeys};
use domain::prompt::{ChatMessage, PromptKind, Rendered};
use domain::template::Variable;
use domain::{DomainError, FieldError};
use memory::Memory;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;
use uuid::Uuid;

/// Which version of a named prompt a request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    Label(String),
    Version(u32),
    /// The `production` label, else the latest version.
    Default,
}

impl Selector {
    pub fn new(label: Option<String>, version: Option<u32>) -> Result<Self, ServeError> {
        match (label, version) {
            (Some(_), Some(_)) => Err(ServeError::Invalid(vec![FieldError::new(
                "label",
                "give a label or a version, not both",
            )])),
            (Some(label), None) => Ok(Selector::Label(label)),
            (None, Some(version)) => Ok(Selector::Version(version)),
            (None, None) => Ok(Selector::Default),
        }
    }

    fn key(&self) -> String {
        match self {
            Selector::Label(label) => format!("label:{label}"),
            Selector::Version(version) => format!("version:{version}"),
            Selector::Default => "default".into(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Selector::Label(label) => format!(" with label {label:?}"),
            Selector::Version(version) => format!(" at version {version}"),
            Selector::Default => String::new(),
        }
    }
}

/// A prompt as an application gets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Prompt {
    pub id: Uuid,
    pub name: String,
    pub version: u32,
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "text")]
    pub kind: PromptKind,
    /// The text template (type `text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The chat messages, each content a template (type `chat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub messages: Option<Vec<ChatMessage>>,
    #[schema(value_type = Vec<Object>)]
    pub variables: Vec<Variable>,
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
    /// Every label of the card and the version it points at.
    #[schema(value_type = Object)]
    pub labels: Map<String, Value>,
    /// The global position of the card's last event this answer reflects.
    pub position: i64,
}

/// A served prompt and what dates it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Served {
    pub workspace_id: Uuid,
    /// The card stream's version the document was read at.
    pub stream_version: i64,
    pub prompt: Prompt,
}

impl Served {
    /// Changes whenever the card's stream does (a new version, a moved label, a rename).
    pub fn etag(&self) -> String {
        format!(
            "\"{}-{}-{}\"",
            self.prompt.id.simple(),
            self.stream_version,
            self.prompt.version
        )
    }

    /// Renders the version with `values`; every unknown, mistyped or missing variable is named.
    pub fn render(&self, values: &Map<String, Value>) -> Result<Rendered, ServeError> {
        let prompt = &self.prompt;
        let messages = prompt.messages.as_deref().unwrap_or_default();
        let template = prompt.template.as_deref().unwrap_or_default();
        domain::prompt::render_prompt(template, messages, &prompt.variables, values, "variables").map_err(|e| match e {
            DomainError::Invalid(fields) => ServeError::Invalid(fields),
            other => ServeError::Internal(other.to_string()),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the request is invalid: {}", .0.iter().map(|f| format!("{} {}", f.field, f.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    #[error("the read models have not reached position {0} yet; retry shortly")]
    Stale(i64),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for ServeError {
    fn from(error: sqlx::Error) -> Self {
        ServeError::Internal(error.to_string())
    }
}

impl From<AuthError> for ServeError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthorized(message) => ServeError::Unauthorized(message),
            AuthError::Internal(message) => ServeError::Internal(message),
        }
    }
}

/// The serving side's handles; cheap to clone.
#[derive(Clone)]
pub struct Prompts {
    pool: PgPool,
    tokens: Arc<TokenKeys>,
    /// Whether a remembered API key is still live (neither revoked nor expired).
    api_keys: auth::ApiKeys,
    freshness: Freshness,
    min_position_wait: Duration,
    memory: Arc<Memory>,
    /// Set once Redis first answers; until then fetches skip it.
    redis: service::redis::Lazy,
}

fn doc_key(workspace_id: Uuid, name: &str, selector: &Selector) -> String {
    format!("promptcards:prompt:{workspace_id}:{name}:{}", selector.key())
}

impl Prompts {
    /// Starts listening for the projector's notices and connecting to Redis, both in the
    /// background: until they answer, fetches go to Postgres.
    pub fn start(
        pool: PgPool,
        redis_url: &str,
        tokens: Arc<TokenKeys>,
        api_keys: auth::ApiKeys,
        freshness: Freshness,
        min_position_wait: Duration,
    ) -> Self {
        let memory = Arc::new(Memory::new());
        memory::follow(freshness.notices(), memory.clone());
        let redis = service::redis::connect_in_background(redis_url, "connecting to Redis for served prompts");
        Self {
            pool,
            tokens,
            api_keys,
            freshness,
            min_position_wait,
            memory,
            redis,
        }
    }

    pub fn freshness(&self) -> &Freshness {
        &self.freshness
    }

    /// The caller an `Authorization` header value names.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, ServeError> {
        let header =
            header.ok_or_else(|| ServeError::Unauthorized("send Authorization: Bearer <token or API key>".into()))?;
        let token = auth::bearer(header)?;
        if let Some(principal) = self.memory.principal(token) {
            return self.live(principal).await;
        }
        let pool = &self.pool;
        let epoch = self.memory.epoch();
        // The version of the key's workspace stream the key was read at, in the same statement.
        let read_at = AtomicI64::new(0);
        let read_at = &read_at;
        // Whether the key came from its workspace's stream because the read model did not have
        // it yet (a key created a moment ago): not remembered, since no read-model version dates it.
        let from_stream = AtomicBool::new(false);
        let from_stream = &from_stream;
        let api_keys = &self.api_keys;
        let principal = auth::authenticate(&self.tokens, token, |key_id| async move {
            // The same lookup as the query API's (crates/query-api/src/access.rs).
            let row: Option<(Uuid, String, i64)> = sqlx::query_as(
                "SELECT k.workspace_id, k.secret_hash, COALESCE(sv.version, 0)
                 FROM read.api_keys k LEFT JOIN read.stream_versions sv ON sv.stream_id = k.workspace_id
                 WHERE k.key_id = $1",
            )
            .bind(key_id)
            .fetch_optional(pool)
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?;
            match row {
                Some((workspace_id, secret_hash, version)) => {
                    read_at.store(version, Ordering::Relaxed);
                    Ok(Some(StoredApiKey {
                        workspace_id,
                        secret_hash,
                    }))
                }
                None => {
                    from_stream.store(true, Ordering::Relaxed);
                    api_keys.find_live(key_id).await
                }
            }
        })
        .await?;
        if !from_stream.load(Ordering::Relaxed) {
            self.memory
                .remember_principal(token, principal, (epoch, read_at.load(Ordering::Relaxed)));
        }
        self.live(principal).await
    }

    /// The principal, unless it is an API key revoked or expired since: asked of the key's
    /// workspace stream at most every `auth::keys::LIVENESS_TTL`, as both APIs ask it, so a revoked
    /// key stops fetching prompts as soon as it stops everything else.
    async fn live(&self, principal: Principal) -> Result<Principal, ServeError> {
        if let Principal::ApiKey { key_id, .. } = principal {
            if !self.api_keys.still_live(key_id).await? {
                return Err(ServeError::Unauthorized(
                    "the API key was revoked or has expired".into(),
                ));
            }
        }
        Ok(principal)
    }

    /// Whether the caller may read the workspace: any member role, or a key of it. Strangers
    /// get the 404 an unknown workspace gets.
    async fn authorise(&self, principal: Principal, workspace_id: Uuid) -> Result<(), ServeError> {
        let not_found = || ServeError::NotFound("workspace not found".into());
        if let Some(allowed) = self.memory.allowed(principal, workspace_id) {
            return if allowed { Ok(()) } else { Err(not_found()) };
        }
        let epoch = self.memory.epoch();
        // The role, and the version of the workspace stream it was read at.
        let row: Option<(Option<String>, i64)> = match principal {
            Principal::User(user_id) => {
                sqlx::query_as(
                    "SELECT (SELECT role FROM read.members WHERE workspace_id = $1 AND user_id = $2),
                            COALESCE((SELECT version FROM read.stream_versions WHERE stream_id = $1), 0)",
                )
                .bind(workspace_id)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?
            }
            // A key reads its own workspace whatever its role, and `authenticate` found it live
            // in that workspace (from its stream when the read model did not have it yet).
            Principal::ApiKey {
                workspace_id: key_workspace,
                ..
            } if key_workspace == workspace_id => return Ok(()),
            Principal::ApiKey { .. } => Some((None, i64::MAX)),
        };
        let (role, version) = row.unwrap_or((None, 0));
        self.memory
            .remember_allowed(principal, workspace_id, role.is_some(), (epoch, version));
        if role.is_some() {
            Ok(())
        } else {
            Err(not_found())
        }
    }

    /// Waits for `X-Min-Position`; STALE if the read models do not reach it in time.
    pub async fn wait_for(&self, position: i64) -> Result<(), ServeError> {
        match self.freshness.wait_for(position, self.min_position_wait).await? {
            true => Ok(()),
            false => Err(ServeError::Stale(position)),
        }
    }

    /// The prompt `name` of the workspace at `selector`, for a caller allowed to read it. With
    /// `min_position` (already waited for), a remembered answer is used only if it reflects it.
    pub async fn get(
        &self,
        principal: Principal,
        workspace_id: Uuid,
        name: &str,
        selector: &Selector,
        min_position: Option<i64>,
    ) -> Result<Arc<Served>, ServeError> {
        self.authorise(principal, workspace_id).await?;
        let recent_enough = |served: &Served| min_position.is_none_or(|p| served.prompt.position >= p);
        if let Some(served) = self
            .memory
            .prompt(workspace_id, name, selector)
            .filter(|s| recent_enough(s))
        {
            lookup("memory");
            return Ok(served);
        }
        let epoch = self.memory.epoch();
        if min_position.is_none() {
            if let Some(served) = self.redis_doc(workspace_id, name, selector).await {
                lookup("redis");
                let served = Arc::new(served);
                self.memory.remember_prompt(name, selector, served.clone(), epoch);
                return Ok(served);
            }
        }
        lookup("postgres");
        let served = self.read_model(workspace_id, name, selector).await?.ok_or_else(|| {
            ServeError::NotFound(format!(
                "no prompt named {name:?}{} in this workspace",
                selector.describe()
            ))
        })?;
        let served = Arc::new(served);
        self.memory.remember_prompt(name, selector, served.clone(), epoch);
        self.put_redis_doc(name, selector, &served).await;
        Ok(served)
    }

    async fn redis_doc(&self, workspace_id: Uuid, name: &str, selector: &Selector) -> Option<Served> {
        let mut redis = self.redis.get()?.clone();
        let doc: Option<String> = redis::cmd("GET")
            .arg(doc_key(workspace_id, name, selector))
            .query_async(&mut redis)
            .await
            .ok()?;
        let served: Served = serde_json::from_str(&doc?).ok()?;
        let latest: Option<i64> = redis::cmd("GET")
            .arg(domain::names::version_key(served.prompt.id))
            .query_async(&mut redis)
            .await
            .ok()?;
        let fresh = served.stream_version >= latest.unwrap_or(0)
            && served.stream_version >= self.memory.floor(served.prompt.id)
            && served.workspace_id == workspace_id
            && served.prompt.name == name;
        fresh.then_some(served)
    }

    async fn put_redis_doc(&self, name: &str, selector: &Selector, served: &Served) {
        let Some(mut redis) = self.redis.get().cloned() else {
            return;
        };
        let Ok(doc) = serde_json::to_string(served) else {
            return;
        };
        let _: Result<(), _> = redis::cmd("SET")
            .arg(doc_key(served.workspace_id, name, selector))
            .arg(doc)
            .arg("EX")
            .arg(3600)
            .query_async(&mut redis)
            .await;
    }

    /// One statement: the card by name, the version the selector resolves to, and the stream
    /// version and position the read models have applied.
    async fn read_model(
        &self,
        workspace_id: Uuid,
        name: &str,
        selector: &Selector,
    ) -> Result<Option<Served>, ServeError> {
        let (label, version) = match selector {
            Selector::Label(label) => (Some(label.as_str()), None),
            Selector::Version(version) => (None, Some(i32::try_from(*version).unwrap_or(i32::MAX))),
            Selector::Default => (None, None),
        };
        #[derive(sqlx::FromRow)]
        struct Row {
            card_id: Uuid,
            name: String,
            labels: Value,
            stream_version: i64,
            position: i64,
            version: i32,
            template: String,
            messages: Value,
            variables: Value,
            config: Value,
        }
        let row: Option<Row> = sqlx::query_as(
            "SELECT c.card_id, c.name, c.labels, sv.version AS stream_version, sv.position,
                    v.version, v.template, v.messages, v.variables, v.config
             FROM read.prompt_cards c
             JOIN read.stream_versions sv ON sv.stream_id = c.card_id
             JOIN read.card_versions v ON v.card_id = c.card_id AND v.version = CASE
                 WHEN $3::text IS NOT NULL THEN (c.labels->>$3::text)::int
                 WHEN $4::int IS NOT NULL THEN $4::int
                 ELSE COALESCE((c.labels->>'production')::int, c.version) END
             WHERE c.workspace_id = $1 AND c.name = $2 AND NOT c.archived
             LIMIT 1",
        )
        .bind(workspace_id)
        .bind(name)
        .bind(label)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let parse = |e: serde_json::Error| ServeError::Internal(format!("a read model row does not parse: {e}"));
        let messages: Vec<ChatMessage> = serde_json::from_value(row.messages).map_err(parse)?;
        let kind = if messages.is_empty() {
            PromptKind::Text
        } else {
            PromptKind::Chat
        };
        Ok(Some(Served {
            workspace_id,
            stream_version: row.stream_version,
            prompt: Prompt {
                id: row.card_id,
                name: row.name,
                version: row.version as u32,
                kind,
                template: (kind == PromptKind::Text).then_some(row.template),
                messages: (kind == PromptKind::Chat).then_some(messages),
                variables: serde_json::from_value(row.variables).map_err(parse)?,
                config: match row.config {
                    Value::Object(config) => config,
                    _ => Map::new(),
                },
                labels: match row.labels {
                    Value::Object(labels) => labels,
                    _ => Map::new(),
                },
                position: row.position,
            },
        }))
    }
}

fn lookup(from: &'static str) {
    metrics::counter!("serve_prompt_lookups_total", "from" => from).increment(1);
}
