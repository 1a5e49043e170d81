//! The path every command takes after parsing: check access, replay an idempotent retry, or
//! append what the domain decided and answer with the global position.

use crate::auth::RoleIn;
use crate::context::CommandContext;
use crate::error::ApiError;
use crate::AppState;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::workspace::Workspace;
use domain::{Aggregate, Permission, Role};
use event_store::{
    Append, AppendError, ExpectedVersion, Idempotency, Loaded, Metadata, NewEvent, Reservation, StreamAppend,
};
use serde_json::Value;
use std::time::Instant;
use uuid::Uuid;

/// A command's answer: status, JSON body (with `position` once appended) and an optional ETag.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub etag: Option<u32>,
    /// True when this is the stored answer to an earlier request with the same key.
    pub replayed: bool,
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(version) = self.etag {
            if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
                response.headers_mut().insert(header::ETAG, value);
            }
        }
        response
    }
}

/// Events decided for one aggregate, appended at the version they were decided on.
pub fn stream_of<A: Aggregate>(stream_id: Uuid, loaded: &Loaded<A>, events: &[A::Event]) -> StreamAppend {
    StreamAppend {
        stream_id,
        stream_type: A::STREAM_TYPE.to_owned(),
        expected: if loaded.version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(loaded.version)
        },
        events: events.iter().map(NewEvent::from_domain).collect(),
    }
}

impl AppState {
    /// Loads a workspace and checks the caller may act there. Strangers get 404, so ids of
    /// other tenants' workspaces reveal nothing; members lacking the permission get 403.
    pub async fn workspace_access(
        &self,
        ctx: &CommandContext,
        workspace_id: Uuid,
        permission: Permission,
    ) -> Result<(Loaded<Workspace>, Role), ApiError> {
        let principal = ctx.principal()?;
        let workspace = self.repo.load::<Workspace>(workspace_id).await?;
        let role = principal
            .role_in(workspace_id, &workspace.state)
            .ok_or_else(|| ApiError::NotFound("workspace not found".into()))?;
        if !role.allows(permission) {
            return Err(ApiError::Forbidden(format!(
                "a {role} may not do this in the workspace"
            )));
        }
        Ok((workspace, role))
    }

    /// The first answer to a request sent earlier with the same Idempotency-Key, if any.
    pub async fn replay(&self, ctx: &CommandContext, status: StatusCode) -> Result<Option<Reply>, ApiError> {
        let Some(idempotency) = self.idempotency(ctx, Value::Null) else {
            return Ok(None);
        };
        let stored = self.repo.store().idempotent_result(&idempotency).await?;
        Ok(stored.map(|appended| reply_with_position(status, appended.response, appended.position, true)))
    }

    /// Appends atomically what was decided and answers `body` plus `position`. A command that
    /// changed nothing appends nothing and answers with the stream's current position.
    pub async fn commit(
        &self,
        ctx: &CommandContext,
        workspace_id: Option<Uuid>,
        streams: Vec<StreamAppend>,
        reservations: Vec<Reservation>,
        status: StatusCode,
        body: Value,
    ) -> Result<Reply, ApiError> {
        if streams.iter().all(|s| s.events.is_empty()) {
            let mut position = 0;
            for stream in &streams {
                if let Some(info) = self.repo.store().stream_info(stream.stream_id).await? {
                    position = position.max(info.last_position);
                }
            }
            return Ok(reply_with_position(status, Some(body), position, false));
        }
        // The events carry the context of the span appending them, so the relay and the
        // projectors continue this trace. Without span export there is no such context, and the
        // caller's own headers are passed on unchanged.
        let (traceparent, tracestate) = match service::current_traceparent() {
            Some((traceparent, tracestate)) => (Some(traceparent), tracestate),
            None => (ctx.traceparent.clone(), ctx.tracestate.clone()),
        };
        let append = Append {
            streams,
            metadata: Metadata {
                actor_id: ctx.actor_id(),
                workspace_id,
                correlation_id: ctx.correlation_id,
                causation_id: None,
                traceparent,
                tracestate,
            },
            reservations,
            idempotency: self.idempotency(ctx, body.clone()),
        };
        let started = Instant::now();
        let result = self.repo.store().append(append).await;
        metrics::histogram!("command_append_seconds").record(started.elapsed().as_secs_f64());
        if let Err(AppendError::WrongExpectedVersion { .. }) = result {
            metrics::counter!("command_append_conflicts_total").increment(1);
        }
        let appended = result?;
        Ok(reply_with_position(
            status,
            appended.response.or(Some(body)),
            appended.position,
            appended.replayed,
        ))
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

fn reply_with_position(status: StatusCode, body: Option<Value>, position: i64, replayed: bool) -> Reply {
    let mut body = body.unwrap_or_else(|| Value::Object(Default::default()));
    if let Value::Object(map) = &mut body {
        map.insert("position".into(), Value::from(position));
    }
    let etag = body
        .get("version")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok());
    Reply {
        status,
        body,
        etag,
        replayed,
    }
}
