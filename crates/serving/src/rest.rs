//! The REST routes applications call; both APIs mount them (`router` for the query API, the
//! handlers one by one with their OpenAPI description for the command API).

use crate::{Prompt, Prompts, Selector, ServeError, Served};
use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::prompt::{ChatMessage, PromptKind, Rendered};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Clients may keep a copy but must revalidate it (a 304 is cheap); if this service fails,
/// they may go on using their copy for a day rather than fail their own users.
const CACHE_CONTROL: &str = "private, no-cache, stale-if-error=86400";

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ServeError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ServeError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ServeError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            ServeError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ServeError::Stale(_) => (StatusCode::SERVICE_UNAVAILABLE, "stale"),
            ServeError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let mut body = json!({ "error": code, "message": self.to_string() });
        match &self {
            ServeError::Invalid(fields) => body["details"] = json!(fields),
            ServeError::Internal(error) => {
                tracing::error!(error = %error, "Serving a prompt failed with an internal error.");
                body["message"] = Value::from("internal error");
            }
            _ => {}
        }
        let mut response = (status, Json(body)).into_response();
        if let ServeError::Stale(_) = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
        }
        response
    }
}

/// The caller and the `X-Min-Position` it waited for, taken from the request's headers.
pub struct Caller {
    principal: auth::Principal,
    min_position: Option<i64>,
}

impl<S> FromRequestParts<S> for Caller
where
    Prompts: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ServeError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ServeError> {
        let prompts = Prompts::from_ref(state);
        // The wait comes first: a key created by the command at that position (or a member
        // added by it) is known to the read models only once they reach it.
        let min_position = match parts.headers.get("x-min-position") {
            None => None,
            Some(value) => {
                let position = value
                    .to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .ok_or_else(|| {
                        ServeError::BadRequest("X-Min-Position must be a global position (an integer)".into())
                    })?;
                prompts.wait_for(position).await?;
                Some(position)
            }
        };
        let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let principal = prompts.authenticate(authorization).await?;
        Ok(Caller {
            principal,
            min_position,
        })
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Which {
    /// A label of the card, such as `production`.
    pub label: Option<String>,
    /// A version number.
    pub version: Option<u32>,
}

fn path_error(rejection: axum::extract::rejection::PathRejection) -> ServeError {
    ServeError::BadRequest(format!("invalid path: {}", rejection.body_text()))
}

/// Fetches a prompt by name: `?label=L` or `?version=N`; neither means the `production` label,
/// else the latest version. Answers 304 to an `If-None-Match` naming its ETag.
#[utoipa::path(get, path = "/v1/workspaces/{ws}/prompts/{name}", tag = "prompts",
    params(("ws" = Uuid, Path), ("name" = String, Path), Which,
        ("If-None-Match" = Option<String>, Header, description = "the ETag of a copy held"),
        ("X-Min-Position" = Option<i64>, Header, description = "wait until the read models reflect this position")),
    responses((status = 200, body = Prompt, description = "the prompt; ETag and Cache-Control set"),
        (status = 304, description = "the copy held is current"), (status = 401), (status = 404), (status = 422),
        (status = 503, description = "X-Min-Position not reached in time")))]
pub async fn get_prompt(
    State(prompts): State<Prompts>,
    caller: Caller,
    path: Result<Path<(Uuid, String)>, axum::extract::rejection::PathRejection>,
    Query(which): Query<Which>,
    headers: HeaderMap,
) -> Result<Response, ServeError> {
    let Path((workspace_id, name)) = path.map_err(path_error)?;
    let selector = Selector::new(which.label, which.version)?;
    let served = prompts
        .get(caller.principal, workspace_id, &name, &selector, caller.min_position)
        .await?;
    let etag = served.etag();
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|held| held.split(',').any(|tag| tag.trim().trim_start_matches("W/") == etag));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Json(&served.prompt).into_response()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    Ok(response)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenderRequest {
    /// A value for each variable; declared defaults fill the rest.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: Map<String, Value>,
    pub label: Option<String>,
    pub version: Option<u32>,
}

/// A prompt rendered: `text` for a text prompt, `messages` for a chat prompt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RenderReply {
    pub version: u32,
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "chat")]
    pub kind: PromptKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub messages: Option<Vec<ChatMessage>>,
}

impl RenderReply {
    pub fn of(served: &Served, rendered: Rendered) -> Self {
        let (text, messages) = match rendered {
            Rendered::Text(text) => (Some(text), None),
            Rendered::Chat(messages) => (None, Some(messages)),
        };
        RenderReply {
            version: served.prompt.version,
            kind: served.prompt.kind,
            text,
            messages,
        }
    }
}

/// Renders a prompt with the application's values; every missing, unknown or mistyped
/// variable is named in a 422's `details`.
#[utoipa::path(post, path = "/v1/workspaces/{ws}/prompts/{name}/render", tag = "prompts",
    request_body = RenderRequest, params(("ws" = Uuid, Path), ("name" = String, Path)),
    responses((status = 200, body = RenderReply), (status = 401), (status = 404),
        (status = 422, description = "details name each bad variable")))]
pub async fn render_prompt(
    State(prompts): State<Prompts>,
    caller: Caller,
    path: Result<Path<(Uuid, String)>, axum::extract::rejection::PathRejection>,
    body: Result<Json<RenderRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<RenderReply>, ServeError> {
    let Path((workspace_id, name)) = path.map_err(path_error)?;
    let Json(request) =
        body.map_err(|rejection| ServeError::Invalid(vec![domain::FieldError::new("body", rejection.body_text())]))?;
    let selector = Selector::new(request.label, request.version)?;
    let served: Arc<Served> = prompts
        .get(caller.principal, workspace_id, &name, &selector, caller.min_position)
        .await?;
    let rendered = served.render(&request.variables)?;
    Ok(Json(RenderReply::of(&served, rendered)))
}

/// The two routes on their own, for a service that is not describing them in OpenAPI.
pub fn router<S>() -> Router<S>
where
    Prompts: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/v1/workspaces/{ws}/prompts/{name}", get(get_prompt))
        .route("/v1/workspaces/{ws}/prompts/{name}/render", post(render_prompt))
}
