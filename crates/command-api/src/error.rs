//! The command API's one error type. Every failure a client can cause is a 4xx with
//! `{error, message, details?}`; internal failures are a bare 500 and a log line.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::{DomainError, FieldError};
use event_store::{AppendError, LoadError};
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{message}")]
    Conflict {
        message: String,
        /// For cards: the version the client should have edited.
        current_version: Option<u32>,
    },
    /// A card name another card of the workspace holds.
    #[error("the name {0:?} is already taken by another card of the workspace")]
    NameTaken(String),
    #[error("the request body is larger than this server accepts")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request is invalid: {}", summary(.0))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    Unprocessable(String),
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError::new(field, message)])
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict { .. } | ApiError::NameTaken(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

fn summary(fields: &[FieldError]) -> String {
    fields
        .iter()
        .map(|f| format!("{} {}", f.field, f.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut body = json!({ "error": code, "message": self.to_string() });
        match &self {
            ApiError::Invalid(fields) => body["details"] = json!(fields),
            ApiError::Conflict {
                current_version: Some(v),
                ..
            } => {
                body["current_version"] = json!(v);
                body["details"] = json!({ "current_version": v });
            }
            ApiError::NameTaken(name) => body["details"] = json!({ "name": name }),
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "Request failed with an internal error.");
                body["message"] = Value::from("internal error");
            }
            _ => {}
        }
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::RateLimited { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Invalid(fields) => ApiError::Invalid(fields),
            DomainError::Forbidden(m) => ApiError::Forbidden(m),
            DomainError::NotFound(m) => ApiError::NotFound(m),
            DomainError::Conflict(m) => ApiError::Conflict {
                message: m,
                current_version: None,
            },
            DomainError::VersionMismatch { current, .. } => ApiError::Conflict {
                message: error.to_string(),
                current_version: Some(current),
            },
        }
    }
}

impl From<AppendError> for ApiError {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::WrongExpectedVersion { .. } => ApiError::Conflict {
                message: "the resource was changed concurrently; reload and retry".into(),
                current_version: None,
            },
            AppendError::Reserved { .. } | AppendError::DuplicateEvent(_) => ApiError::Conflict {
                message: error.to_string(),
                current_version: None,
            },
            AppendError::IdempotencyKeyReused => {
                ApiError::Unprocessable("the Idempotency-Key was already used with a different request".into())
            }
            AppendError::Empty => ApiError::Internal(anyhow::anyhow!("append without events")),
            AppendError::Database(e) => ApiError::Internal(e.into()),
        }
    }
}

impl From<auth::AuthError> for ApiError {
    fn from(error: auth::AuthError) -> Self {
        match error {
            auth::AuthError::Unauthorized(message) => ApiError::Unauthorized(message),
            auth::AuthError::Internal(message) => ApiError::Internal(anyhow::anyhow!(message)),
        }
    }
}

impl From<LoadError> for ApiError {
    fn from(error: LoadError) -> Self {
        ApiError::Internal(error.into())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::Internal(error.into())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let message = rejection.body_text();
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::UnsupportedMediaType("send the body as JSON with Content-Type: application/json".into())
            }
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::Invalid(vec![FieldError::new(
                "body",
                message.trim_start_matches("Failed to deserialize the JSON body into the target type: "),
            )]),
            _ => ApiError::BadRequest(message),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(format!("invalid path: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(format!("the query string is invalid: {}", rejection.body_text()))
    }
}
