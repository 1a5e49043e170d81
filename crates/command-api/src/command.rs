//! The one path every command takes: authorise, replay an idempotent retry, load, decide, append
//! at the versions loaded, answer. The order is a security rule: nothing is read or decided for
//! a caller before they are authorised, and a retry gets its first answer before anything is
//! decided again. It is written here and nowhere else; a handler only parses its request and
//! says what to load, what to decide and what to answer.
//!
//! A command is first decided on what this process remembers (the workspace that authorises
//! it, the aggregates it loads), without reading Postgres, and appended on the condition that
//! every stream read is still at the version remembered. A success there is final, and so is a
//! fault (an append whose outcome is unknown is never sent twice); anything else (nothing
//! remembered, a stream that moved, any refusal) runs the path again on the streams as stored,
//! so a stale memory costs a retry, never a wrong decision. The
//! Idempotency-Key is checked by the append itself on that first attempt: a retry of a command
//! already appended gets the stored answer, whatever it decided this time.

use crate::auth::RoleIn;
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::AppState;
use auth::Principal;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::alert::AlertRule;
use domain::card::PromptCard;
use domain::comparison::Comparison;
use domain::run::TestRun;
use domain::test_case::TestCase;
use domain::webhook::Webhook;
use domain::workspace::Workspace;
use domain::{Aggregate, DomainError, Permission, Role};
use event_store::{Append, AppendError, Idempotency, Loaded, Metadata, Reservation, StreamAppend, StreamVersion};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::future::Future;
use std::time::Instant;
use utoipa::ToSchema;
use uuid::Uuid;

/// Who may send a command.
#[derive(Debug, Clone, Copy)]
pub enum Access {
    /// Members of the workspace (or its API keys) whose role allows the permission. Strangers
    /// get 404, so ids of other tenants' workspaces reveal nothing; members lacking the
    /// permission get 403.
    Workspace(Uuid, Permission),
    /// Signed-in users only, since API keys act only inside their own workspace; the text
    /// names the action for the 403.
    User(&'static str),
    /// Anyone, signed in or not: sign-up.
    Anyone,
}

impl Access {
    fn workspace_id(&self) -> Option<Uuid> {
        match self {
            Access::Workspace(id, _) => Some(*id),
            Access::User(_) | Access::Anyone => None,
        }
    }
}

/// A command's answer: its typed body plus the global position of its append. Clients wait for
/// that position in the query API to read their own writes.
#[derive(Debug, Serialize, ToSchema)]
pub struct Positioned<T> {
    #[serde(flatten)]
    pub answer: T,
    pub position: i64,
}

/// A command's reply: status, body and, when the body names a `version`, that version as ETag.
#[derive(Debug)]
pub struct Reply<T> {
    pub status: StatusCode,
    pub body: Positioned<T>,
    /// True when this is the stored answer to an earlier request with the same key.
    pub replayed: bool,
}

impl<T> Reply<T> {
    /// The same reply with another body, for parts of an answer that are never stored with the
    /// idempotency key (fresh tokens, a secret shown once).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Reply<U> {
        Reply {
            status: self.status,
            body: Positioned {
                answer: f(self.body.answer),
                position: self.body.position,
            },
            replayed: self.replayed,
        }
    }
}

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        let body = match serde_json::to_value(&self.body) {
            Ok(body) => body,
            Err(error) => return ApiError::Internal(error.into()).into_response(),
        };
        let etag = body
            .get("version")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok());
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(version) = etag {
            if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
                response.headers_mut().insert(header::ETAG, value);
            }
        }
        response
    }
}

/// Where a command's reads come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// This process's memory of each stream, checked by the append.
    Memory,
    /// The streams as stored.
    Postgres,
}

/// The load step's handle: what authorisation established, and reads for that caller.
pub struct Loader {
    state: AppState,
    access: Access,
    reads: Reads,
    /// For `Access::Workspace`: the workspace as loaded to authorise, and the caller's role.
    workspace: Option<(Loaded<Workspace>, Role)>,
    principal: Option<Principal>,
}

/// Aggregates that belong to one workspace, and so load only inside it.
pub trait InWorkspace: Aggregate {
    const NOT_FOUND: &'static str;
    fn workspace_id(&self) -> Option<Uuid>;
}

impl InWorkspace for PromptCard {
    const NOT_FOUND: &'static str = "prompt card not found";
    fn workspace_id(&self) -> Option<Uuid> {
        self.workspace_id
    }
}

impl InWorkspace for TestCase {
    const NOT_FOUND: &'static str = "test case not found";
    fn workspace_id(&self) -> Option<Uuid> {
        self.workspace_id
    }
}

impl InWorkspace for Comparison {
    const NOT_FOUND: &'static str = "comparison not found";
    fn workspace_id(&self) -> Option<Uuid> {
        Comparison::workspace_id(self)
    }
}

impl InWorkspace for domain::execution::Execution {
    const NOT_FOUND: &'static str = "execution not found";
    fn workspace_id(&self) -> Option<Uuid> {
        domain::execution::Execution::workspace_id(self)
    }
}

impl InWorkspace for TestRun {
    const NOT_FOUND: &'static str = "test run not found";
    fn workspace_id(&self) -> Option<Uuid> {
        self.plan.as_ref().map(|plan| plan.workspace_id)
    }
}

impl InWorkspace for Webhook {
    const NOT_FOUND: &'static str = "webhook not found";
    fn workspace_id(&self) -> Option<Uuid> {
        // A deleted endpoint is not found, as a deleted test case is not.
        self.workspace_id.filter(|_| !self.deleted)
    }
}

impl InWorkspace for AlertRule {
    const NOT_FOUND: &'static str = "alert rule not found";
    fn workspace_id(&self) -> Option<Uuid> {
        self.workspace_id.filter(|_| !self.deleted)
    }
}

impl Loader {
    /// The authorised workspace and the caller's role there.
    pub fn workspace(&self) -> Result<(Loaded<Workspace>, Role), ApiError> {
        self.workspace
            .clone()
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the command was not authorised in a workspace")))
    }

    /// The signed-in user sending the command.
    pub fn user_id(&self) -> Result<Uuid, ApiError> {
        match self.principal {
            Some(Principal::User(id)) => Ok(id),
            _ => Err(ApiError::Internal(anyhow::anyhow!(
                "the command was not authorised for a user"
            ))),
        }
    }

    /// An aggregate of the authorised workspace, or 404 whatever the reason it is not one.
    pub async fn in_workspace<A: InWorkspace>(&self, id: Uuid) -> Result<Loaded<A>, ApiError> {
        let loaded = match self.reads {
            Reads::Postgres => self.state.repo.load::<A>(id).await?,
            // Not remembered: this attempt ends, and the one reading Postgres answers.
            Reads::Memory => self
                .state
                .repo
                .cached::<A>(id)
                .ok_or_else(|| ApiError::NotFound(A::NOT_FOUND.into()))?,
        };
        match self.access.workspace_id() {
            Some(workspace_id) if loaded.state.workspace_id() == Some(workspace_id) => Ok(loaded),
            _ => Err(ApiError::NotFound(A::NOT_FOUND.into())),
        }
    }

    /// Any stream, for commands outside a workspace (a user's, a session's): from memory on
    /// the first attempt (not remembered ends it, and the attempt reading Postgres answers).
    pub async fn stream<A: Aggregate>(&self, id: Uuid) -> Result<Loaded<A>, ApiError> {
        match self.reads {
            Reads::Postgres => Ok(self.state.repo.load::<A>(id).await?),
            Reads::Memory => self
                .state
                .repo
                .cached::<A>(id)
                .ok_or_else(|| ApiError::NotFound("not remembered".into())),
        }
    }

    /// The stream a reservation points at, e.g. the user who signed up with an email.
    pub async fn reservation(&self, scope: &str, value: &str) -> Result<Option<Uuid>, ApiError> {
        Ok(self.state.repo.store().reservation(scope, value).await?)
    }
}

/// Records a decided state in the repository's memory once its append has a version.
type Remember = Box<dyn FnOnce(&event_store::Repository, i64) + Send>;

/// What a command decided: the streams to append, each at the version it was decided on, and
/// the uniqueness claims to make in the same transaction.
#[derive(Default)]
pub struct Changes {
    streams: Vec<StreamAppend>,
    /// The state each decided stream reaches, by stream id, remembered after the append.
    decided: Vec<(Uuid, Remember)>,
    reservations: Vec<Reservation>,
    /// Values the streams give up in the same transaction.
    releases: Vec<Reservation>,
    /// The workspace the events are recorded in, when it is not the authorised one (a
    /// workspace being created).
    workspace_id: Option<Uuid>,
}

impl Changes {
    /// Decides `command` on a loaded aggregate and returns the state after it. Streams are
    /// appended in the order they were decided.
    pub fn decide<A: Aggregate>(
        &mut self,
        stream_id: Uuid,
        loaded: &Loaded<A>,
        command: A::Command,
    ) -> Result<A, DomainError> {
        let decided = loaded.decide(stream_id, command)?;
        self.streams.push(decided.append);
        let state = decided.state.clone();
        self.decided.push((
            stream_id,
            Box::new(move |repo: &event_store::Repository, version| repo.remember(stream_id, state, version)),
        ));
        Ok(decided.state)
    }

    /// Appends a stream decided elsewhere, e.g. several commands on one new stream.
    pub fn push(&mut self, stream: StreamAppend) {
        self.streams.push(stream);
    }

    /// Claims `value` in `scope` for `stream_id`; a taken value fails the whole append.
    pub fn reserve(&mut self, scope: &str, value: String, stream_id: Uuid) {
        self.reservations.push(Reservation {
            scope: scope.into(),
            value,
            stream_id,
        });
    }

    /// Gives up `value` in `scope` if `stream_id` holds it, in the same transaction.
    pub fn release(&mut self, scope: &str, value: String, stream_id: Uuid) {
        self.releases.push(Reservation {
            scope: scope.into(),
            value,
            stream_id,
        });
    }

    /// Records the events in `workspace_id`.
    pub fn in_workspace(mut self, workspace_id: Uuid) -> Self {
        self.workspace_id = Some(workspace_id);
        self
    }
}

impl AppState {
    /// Runs a command: authorise, replay, `load`, `decide`, append, answer `status` with the
    /// decided answer and the append's position.
    pub async fn execute<S, T, F>(
        &self,
        ctx: &CommandContext,
        access: Access,
        status: StatusCode,
        load: impl Fn(Loader) -> F,
        decide: impl Fn(S) -> Result<(Changes, T), ApiError>,
    ) -> Result<Reply<T>, ApiError>
    where
        F: Future<Output = Result<S, ApiError>>,
        T: Serialize + DeserializeOwned,
    {
        self.try_execute(ctx, access, status, load, decide)
            .await?
            .map_err(ApiError::from)
    }

    /// [`AppState::execute`], with the store's refusal of the append (a lost race, a taken
    /// reservation) given back for the handler to explain.
    pub async fn try_execute<S, T, F>(
        &self,
        ctx: &CommandContext,
        access: Access,
        status: StatusCode,
        load: impl Fn(Loader) -> F,
        decide: impl Fn(S) -> Result<(Changes, T), ApiError>,
    ) -> Result<Result<Reply<T>, AppendError>, ApiError>
    where
        F: Future<Output = Result<S, ApiError>>,
        T: Serialize + DeserializeOwned,
    {
        let remembered = async {
            let loader = self.authorise(ctx, access, Reads::Memory).await?;
            let (changes, answer) = decide(load(loader).await?)?;
            self.append(ctx, access, Reads::Memory, changes, status, answer).await
        };
        match remembered.await {
            Ok(Ok(reply)) => {
                metrics::counter!("command_reads_total", "from" => "memory").increment(1);
                return Ok(Ok(reply));
            }
            // A fault (the store unreachable, an append whose outcome is unknown) is answered as
            // it is: sending the command again could append it twice.
            Err(fault @ ApiError::Internal(_)) => return Err(fault),
            Ok(Err(_)) | Err(_) => metrics::counter!("command_reads_total", "from" => "postgres").increment(1),
        }
        let loader = self.authorise(ctx, access, Reads::Postgres).await?;
        if let Some(reply) = self.replay(ctx, status).await? {
            return Ok(Ok(reply));
        }
        let loaded = load(loader).await?;
        let (changes, answer) = decide(loaded)?;
        self.append(ctx, access, Reads::Postgres, changes, status, answer).await
    }

    /// Authorises a read of a workspace (a GET: a listing, an export) as a command is
    /// authorised, on the workspace as stored: strangers get 404, members lacking `permission`
    /// 403. The loader reads streams as stored, inside that workspace only; its `workspace()` is
    /// the workspace and the caller's role there.
    pub async fn authorise_read(
        &self,
        ctx: &CommandContext,
        workspace_id: Uuid,
        permission: Permission,
    ) -> Result<Loader, ApiError> {
        self.authorise(ctx, Access::Workspace(workspace_id, permission), Reads::Postgres)
            .await
    }

    async fn authorise(&self, ctx: &CommandContext, access: Access, reads: Reads) -> Result<Loader, ApiError> {
        let mut loader = Loader {
            state: self.clone(),
            access,
            reads,
            workspace: None,
            principal: None,
        };
        match access {
            Access::Anyone => {}
            Access::User(action) => {
                let principal = ctx.principal()?;
                let Principal::User(_) = principal else {
                    return Err(ApiError::Forbidden(format!("API keys cannot {action}")));
                };
                loader.principal = Some(principal);
            }
            Access::Workspace(workspace_id, permission) => {
                let principal = ctx.principal()?;
                let workspace = match reads {
                    Reads::Postgres => self.repo.load::<Workspace>(workspace_id).await?,
                    Reads::Memory => self
                        .repo
                        .cached::<Workspace>(workspace_id)
                        .ok_or_else(|| ApiError::NotFound("workspace not found".into()))?,
                };
                let role = principal
                    .role_in(workspace_id, &workspace.state)
                    .ok_or_else(|| ApiError::NotFound("workspace not found".into()))?;
                if !role.allows(permission) {
                    return Err(ApiError::Forbidden(format!(
                        "a {role} may not do this in the workspace"
                    )));
                }
                loader.principal = Some(principal);
                loader.workspace = Some((workspace, role));
            }
        }
        Ok(loader)
    }

    /// The first answer to a request sent earlier with the same Idempotency-Key, if any.
    async fn replay<T: DeserializeOwned>(
        &self,
        ctx: &CommandContext,
        status: StatusCode,
    ) -> Result<Option<Reply<T>>, ApiError> {
        let Some(idempotency) = self.idempotency(ctx, Value::Null) else {
            return Ok(None);
        };
        let Some(stored) = self.repo.store().idempotent_result(&idempotency).await? else {
            return Ok(None);
        };
        let answer = stored
            .response
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("an idempotency key without a stored answer")))?;
        Ok(Some(Reply {
            status,
            body: Positioned {
                answer: serde_json::from_value(answer).map_err(|e| ApiError::Internal(e.into()))?,
                position: stored.position,
            },
            replayed: true,
        }))
    }

    /// Appends atomically what was decided, storing the answer with the idempotency key. A
    /// command that changed nothing appends nothing and answers with the stream's position.
    async fn append<T: Serialize + DeserializeOwned>(
        &self,
        ctx: &CommandContext,
        access: Access,
        reads: Reads,
        changes: Changes,
        status: StatusCode,
        answer: T,
    ) -> Result<Result<Reply<T>, AppendError>, ApiError> {
        let reply = |answer, position, replayed| {
            Ok(Ok(Reply {
                status,
                body: Positioned { answer, position },
                replayed,
            }))
        };
        if changes.streams.iter().all(|s| s.events.is_empty()) {
            if reads == Reads::Memory {
                // Nothing to append means nothing checks what was read: decide on Postgres.
                return Ok(Err(AppendError::Empty));
            }
            let mut position = 0;
            for stream in &changes.streams {
                if let Some(info) = self.repo.store().stream_info(stream.stream_id).await? {
                    position = position.max(info.last_position);
                }
            }
            return reply(answer, position, false);
        }
        // The events carry the context of the span appending them, so the relay and the
        // projectors continue this trace. Without span export there is no such context, and the
        // caller's own headers are passed on unchanged.
        let (traceparent, tracestate) = match service::current_traceparent() {
            Some((traceparent, tracestate)) => (Some(traceparent), tracestate),
            None => (ctx.traceparent.clone(), ctx.tracestate.clone()),
        };
        let stored = serde_json::to_value(&answer).map_err(|e| ApiError::Internal(e.into()))?;
        let append = Append {
            streams: changes.streams,
            metadata: Metadata {
                actor_id: ctx.actor_id(),
                workspace_id: changes.workspace_id.or(access.workspace_id()),
                correlation_id: ctx.correlation_id,
                causation_id: None,
                traceparent,
                tracestate,
            },
            reservations: changes.reservations,
            releases: changes.releases,
            idempotency: self.idempotency(ctx, stored),
            // The workspace that authorised a decision made from memory must not have moved.
            unchanged: match (reads, access) {
                (Reads::Memory, Access::Workspace(workspace_id, _)) => self
                    .repo
                    .cached::<Workspace>(workspace_id)
                    .map(|w| StreamVersion {
                        stream_id: workspace_id,
                        version: w.version,
                    })
                    .into_iter()
                    .collect(),
                _ => vec![],
            },
        };
        let started = Instant::now();
        let result = self.repo.store().append(append).await;
        metrics::histogram!("command_append_seconds").record(started.elapsed().as_secs_f64());
        let appended = match result {
            Ok(appended) => appended,
            Err(error) => {
                if let AppendError::WrongExpectedVersion { .. } = error {
                    metrics::counter!("command_append_conflicts_total").increment(1);
                }
                return match error {
                    AppendError::Database(e) => Err(ApiError::Internal(e.into())),
                    refused => Ok(Err(refused)),
                };
            }
        };
        for (stream_id, remember) in changes.decided {
            if let Some(stream) = appended.streams.iter().find(|s| s.stream_id == stream_id) {
                if !appended.replayed {
                    remember(&self.repo, stream.version);
                }
            }
        }
        // A concurrent request with the same key appended first: answer as it was answered.
        let answer = match appended.response {
            Some(first) if appended.replayed => {
                serde_json::from_value(first).map_err(|e| ApiError::Internal(e.into()))?
            }
            _ => answer,
        };
        reply(answer, appended.position, appended.replayed)
    }

    fn idempotency(&self, ctx: &CommandContext, response: Value) -> Option<Idempotency> {
        ctx.idempotency.as_ref().map(|(key, hash)| Idempotency {
            scope: ctx.idempotency_scope(),
            key: key.clone(),
            request_hash: hash.clone(),
            response,
        })
    }
}

/// A stored answer that is only an id, e.g. of a created workspace or test case.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Created {
    pub id: Uuid,
}
