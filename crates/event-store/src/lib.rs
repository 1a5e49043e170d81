//! The Postgres event store. All SQL touching the store's tables is in [`sql`]; nothing else in
//! the workspace writes them.
//!
//! Guarantees (see `../shared/INVARIANTS.md`): a single winner among appends at the same expected
//! version, contiguous stream versions, idempotent retries by key or by event id, and a tailing
//! reader that never passes an uncommitted transaction's events.

pub mod chain;
mod group_commit;
mod repository;
mod sql;

pub use repository::{fold_recorded, Decided, ExecuteError, Executed, LoadError, Loaded, Repository};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use uuid::Uuid;

pub use domain::names::EVENTS_CHANNEL;

/// Every schema migration of the project's Postgres database, read models included.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// What the writer believes about a stream before appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExpectedVersion {
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be at exactly this version (0 means "does not exist yet").
    Exact(i64),
    /// Append whatever the current version is; never loses an append.
    Any,
}

/// An event ready to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub data: Value,
}

impl NewEvent {
    pub fn from_domain<E: domain::Event>(event: &E) -> Self {
        let encoded = domain::event::encode(event);
        Self {
            event_id: Uuid::now_v7(),
            event_type: encoded.event_type.to_owned(),
            schema_version: encoded.schema_version as i32,
            data: encoded.data,
        }
    }
}

/// Who and what caused an append; recorded with each of its events.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub actor_id: Option<Uuid>,
    pub workspace_id: Option<Uuid>,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    /// W3C trace context of the request that caused the append.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// Events for one stream within an append.
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub stream_id: Uuid,
    pub stream_type: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// A uniqueness claim made atomically with the append, e.g. an email for a user.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub scope: String,
    pub value: String,
    pub stream_id: Uuid,
}

/// An idempotency key, a hash of the request it came with, and the response to give again
/// when the request is retried (the store adds nothing to it but keeps it with the outcome).
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub scope: String,
    pub key: String,
    pub request_hash: String,
    pub response: Value,
}

/// One atomic append: any number of streams, reservations and an optional idempotency key.
#[derive(Debug, Clone, Default)]
pub struct Append {
    pub streams: Vec<StreamAppend>,
    pub metadata: Metadata,
    pub reservations: Vec<Reservation>,
    /// Values given up in the same transaction (a card's old name on a rename); only a value
    /// held by the stream named is released. Released before the reservations are claimed.
    pub releases: Vec<Reservation>,
    pub idempotency: Option<Idempotency>,
    /// Streams read to decide but not written, which must still be at these versions (e.g. the
    /// workspace whose membership authorised the command): a decision made on a state that has
    /// since moved fails with `WrongExpectedVersion` instead of being appended.
    pub unchanged: Vec<StreamVersion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamVersion {
    pub stream_id: Uuid,
    pub version: i64,
}

/// The outcome of an append, or of the first append when a retry is replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// Each stream's version after the append, in the order the append listed them.
    pub streams: Vec<StreamVersion>,
    /// Global position of the last event appended.
    pub position: i64,
    /// True when this is the stored result of an earlier identical append.
    #[serde(skip)]
    pub replayed: bool,
    /// The response stored with the idempotency key, if the append carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("stream {stream_id} is at version {actual:?}, not the expected {expected:?}")]
    WrongExpectedVersion {
        stream_id: Uuid,
        expected: ExpectedVersion,
        actual: Option<i64>,
    },
    #[error("{scope} {value:?} is already taken")]
    Reserved { scope: String, value: String },
    #[error("the idempotency key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("event {0} was already appended with different content")]
    DuplicateEvent(Uuid),
    #[error("an append needs at least one event")]
    Empty,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// An event as stored, with its metadata.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub position: i64,
    pub tx_id: i64,
    pub event_id: Uuid,
    pub stream_id: Uuid,
    pub stream_type: String,
    pub version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub workspace_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub data: Value,
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// Decodes into a domain event, upcasting older schema versions.
    pub fn decode<E: domain::Event>(&self) -> Result<E, domain::DecodeError> {
        domain::event::decode(&self.event_type, self.schema_version as u32, self.data.clone())
    }
}

/// Where a tailing reader stands in the global order `(tx_id, position)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    pub tx_id: i64,
    pub position: i64,
}

impl Cursor {
    pub const START: Cursor = Cursor { tx_id: 0, position: 0 };

    pub fn after(event: &RecordedEvent) -> Cursor {
        Cursor {
            tx_id: event.tx_id,
            position: event.position,
        }
    }
}

#[derive(Clone, Debug)]
pub struct EventStore {
    pool: PgPool,
    /// Started by the first append, on the runtime that makes it; shared by every clone.
    group_commit: Arc<OnceLock<group_commit::GroupCommit>>,
}

impl EventStore {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            group_commit: Arc::default(),
        }
    }

    /// Connects with the session settings the store relies on: a transaction left idle is
    /// ended, because an open transaction holds back every tailing reader.
    pub async fn connect(database_url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        let options =
            PgConnectOptions::from_str(database_url)?.options([("idle_in_transaction_session_timeout", "30s")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(Self::new(pool))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        MIGRATOR.run(&self.pool).await
    }

    /// Appends atomically. See [`AppendError`] for every way it refuses.
    #[tracing::instrument(skip_all, fields(streams = append.streams.len()), err(level = "debug"))]
    pub async fn append(&self, append: Append) -> Result<Appended, AppendError> {
        if append.streams.iter().all(|s| s.events.is_empty()) {
            return Err(AppendError::Empty);
        }
        let group_commit = self
            .group_commit
            .get_or_init(|| group_commit::GroupCommit::start(self.pool.clone()));
        group_commit.append(append).await
    }

    /// Appends these commands together, in one transaction, each all or nothing: a conflict
    /// fails its command alone. [`append`](Self::append) batches concurrent callers through
    /// this; tests call it to control what shares a batch.
    pub async fn append_batch(&self, appends: &[Append]) -> Result<Vec<Result<Appended, AppendError>>, sqlx::Error> {
        if appends.iter().any(|a| a.streams.iter().all(|s| s.events.is_empty())) {
            return Err(sqlx::Error::Protocol(
                "every append of a batch needs at least one event".into(),
            ));
        }
        sql::append_batch(&mut *self.pool.acquire().await?, appends).await
    }

    /// The stored result of an earlier append with this idempotency key, if any.
    pub async fn idempotent_result(&self, idempotency: &Idempotency) -> Result<Option<Appended>, AppendError> {
        sql::idempotent_result(&self.pool, idempotency).await
    }

    /// Events of one stream with a version above `after_version`, in version order.
    pub async fn read_stream(&self, stream_id: Uuid, after_version: i64) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        sql::read_stream(&self.pool, stream_id, after_version).await
    }

    /// One event of a stream, by its version (1 is the event that created the stream).
    pub async fn event_at_version(&self, stream_id: Uuid, version: i64) -> Result<Option<RecordedEvent>, sqlx::Error> {
        sql::event_at_version(&self.pool, stream_id, version).await
    }

    /// The streams of one type in a workspace, e.g. its webhook endpoints; committed ones only.
    pub async fn streams_of(&self, workspace_id: Uuid, stream_type: &str) -> Result<Vec<Uuid>, sqlx::Error> {
        sql::streams_of(&self.pool, workspace_id, stream_type).await
    }

    /// The stream's type, current version and workspace, if it exists.
    pub async fn stream_info(&self, stream_id: Uuid) -> Result<Option<StreamInfo>, sqlx::Error> {
        sql::stream_info(&self.pool, stream_id).await
    }

    /// The next events in the global order after `cursor`, never passing a transaction that may
    /// still commit (INVARIANTS 4 and 5).
    pub async fn read_all(&self, after: Cursor, limit: i64) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        sql::read_all(&self.pool, after, limit).await
    }

    /// Every committed event matching `filter`, in the global order `(tx_id, position)`, read in
    /// one statement and so from one snapshot: a listing or an export that is complete as of
    /// its start, however long it takes to consume. Not a tailing reader: follow with
    /// [`EventStore::read_all`] for events committed later.
    pub fn events<'a>(
        &'a self,
        filter: &EventFilter,
    ) -> futures_util::stream::BoxStream<'a, Result<RecordedEvent, sqlx::Error>> {
        sql::events(&self.pool, filter)
    }

    /// A run's recorded results in the order they were recorded, at most `limit` of them (the
    /// count a loaded run reports, for a reader that must agree with it), streamed.
    pub fn run_results(
        &self,
        run_id: Uuid,
        limit: Option<i64>,
    ) -> futures_util::stream::BoxStream<'_, Result<domain::run::TestResult, LoadError>> {
        use futures_util::StreamExt;
        let filter = EventFilter {
            stream_id: Some(run_id),
            event_type: Some(domain::run::RunEvent::TEST_RESULT_RECORDED.into()),
            limit,
            ..Default::default()
        };
        // The filter reads results only, so any other event decoded is skipped, never met.
        sql::events(&self.pool, &filter)
            .filter_map(|event| async move {
                let decoded = event.map_err(LoadError::from).and_then(|event| Ok(event.decode()?));
                match decoded {
                    Ok(domain::run::RunEvent::TestResultRecorded { result, .. }) => Some(Ok(result)),
                    Ok(_) => None,
                    Err(error) => Some(Err(error)),
                }
            })
            .boxed()
    }

    /// A workspace's events (optionally of one stream), newest first, below `before_position`
    /// when given: the audit log, a page at a time.
    pub async fn workspace_history(
        &self,
        workspace_id: Uuid,
        stream_id: Option<Uuid>,
        before_position: Option<i64>,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        sql::workspace_history(&self.pool, workspace_id, stream_id, before_position, limit).await
    }

    /// The stream and version of the event at a global position; `None` for a position no
    /// committed event holds (not yet written, or left by an append that rolled back).
    pub async fn stream_version_at(&self, position: i64) -> Result<Option<StreamVersion>, sqlx::Error> {
        sql::stream_version_at(&self.pool, position).await
    }

    /// The highest global position written so far (0 for an empty store).
    pub async fn head(&self) -> Result<i64, sqlx::Error> {
        sql::head(&self.pool).await
    }

    /// The stream that claimed `value` in `scope`, if any.
    pub async fn reservation(&self, scope: &str, value: &str) -> Result<Option<Uuid>, sqlx::Error> {
        sql::reservation(&self.pool, scope, value).await
    }

    /// Checks every stream's versions and hash chain (or one stream's); empty means intact.
    pub async fn verify_chains(&self, stream_id: Option<Uuid>) -> Result<Vec<IntegrityProblem>, sqlx::Error> {
        sql::verify_chains(&self.pool, stream_id).await
    }

    /// Age in seconds of the oldest transaction open on this database; it stalls every tailer.
    pub async fn oldest_transaction_age_seconds(&self) -> Result<f64, sqlx::Error> {
        sql::oldest_transaction_age_seconds(&self.pool).await
    }
}

/// Which events [`EventStore::events`] returns; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub workspace_id: Option<Uuid>,
    pub stream_id: Option<Uuid>,
    pub event_type: Option<String>,
    /// Lowest global position, inclusive.
    pub from_position: Option<i64>,
    /// Highest global position, inclusive.
    pub to_position: Option<i64>,
    /// Recorded at or after.
    pub since: Option<DateTime<Utc>>,
    /// Recorded before.
    pub until: Option<DateTime<Utc>>,
    /// Most events returned.
    pub limit: Option<i64>,
}

impl EventFilter {
    /// Whether `event` meets every condition but the limit; for readers that filter as they go.
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.workspace_id.is_none_or(|w| event.workspace_id == Some(w))
            && self.stream_id.is_none_or(|s| event.stream_id == s)
            && self.event_type.as_ref().is_none_or(|t| event.event_type == *t)
            && self.from_position.is_none_or(|p| event.position >= p)
            && self.to_position.is_none_or(|p| event.position <= p)
            && self.since.is_none_or(|t| event.recorded_at >= t)
            && self.until.is_none_or(|t| event.recorded_at < t)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StreamInfo {
    pub stream_id: Uuid,
    pub stream_type: String,
    pub version: i64,
    pub workspace_id: Option<Uuid>,
    /// Global position of the stream's last event.
    pub last_position: i64,
}

/// A way the stored history differs from what was appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum IntegrityProblem {
    /// Versions `from..=to` of the stream are missing: events were deleted.
    MissingVersions { stream_id: Uuid, from: i64, to: i64 },
    /// The event's stored hash does not match its content and predecessor: it was edited.
    HashMismatch {
        stream_id: Uuid,
        version: i64,
        event_id: Uuid,
    },
    /// The stream row claims a version the events do not reach (its last events were deleted).
    StreamVersionMismatch { stream_id: Uuid, claimed: i64, stored: i64 },
}
