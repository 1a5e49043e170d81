//! Extractors whose rejections are [`ApiError`]s, so malformed input gets the JSON error shape.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// `axum::Json` with our error body on rejection. It also refuses strings containing NUL
/// (`\u0000`): PostgreSQL stores that character neither in `text` nor in `jsonb`, so letting it
/// through would turn a client's mistake into a 500.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::from(JsonRejection::from(
                axum::extract::rejection::MissingJsonContentType::default(),
            )));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::from(JsonRejection::from(e)))?;
        // Only a body spelling the escape can hold the character (a raw NUL is invalid JSON).
        if bytes.windows(6).any(|w| w == br"\u0000") {
            if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
                if let Some(field) = nul_at(&value, String::new()) {
                    return Err(ApiError::invalid(
                        &field,
                        "must not contain the NUL character (\\u0000)",
                    ));
                }
            }
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(Json(value))
    }
}

/// The media type of the body, lowercased and without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

/// As `axum::Json`: `application/json` or `application/<anything>+json`, parameters allowed.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(essence) = media_type(headers) else {
        return false;
    };
    match essence.split_once('/') {
        Some((kind, subtype)) => kind == "application" && (subtype == "json" || subtype.ends_with("+json")),
        None => false,
    }
}

/// The path, as clients name fields (`vars.text`, `tags[1]`), of a string or key holding NUL.
fn nul_at(value: &Value, path: String) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::String(s) if s.contains('\0') => Some(if path.is_empty() { "body".into() } else { path }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_at(item, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                Some(join(&key.replace('\0', "\\u0000")))
            } else {
                nul_at(item, join(key))
            }
        }),
        _ => None,
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path` with our error body on rejection (e.g. a malformed UUID).
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query` with our error body on rejection (a missing or unknown parameter).
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// A YAML document (JSON is YAML too) as a JSON value, for bodies such as promptfoo configs.
/// Accepts `application/yaml` (also `application/x-yaml`, `text/yaml`, `text/x-yaml`) and the
/// JSON types; YAML merge keys are applied.
#[derive(Debug, Clone)]
pub struct Yaml(pub Value);

impl<S: Send + Sync> FromRequest<S> for Yaml {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_yaml(req.headers()) && !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "send the document as YAML with Content-Type: application/yaml".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::from(JsonRejection::from(e)))?;
        let text =
            std::str::from_utf8(&bytes).map_err(|_| ApiError::BadRequest("the body is not UTF-8 text".into()))?;
        let value = domain::promptfoo::parse_yaml(text)
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid YAML: {e}")))?;
        if let Some(field) = nul_at(&value, String::new()) {
            return Err(ApiError::invalid(
                &field,
                "must not contain the NUL character (\\u0000)",
            ));
        }
        Ok(Yaml(value))
    }
}

fn is_yaml(headers: &HeaderMap) -> bool {
    matches!(
        media_type(headers).as_deref(),
        Some("application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml")
    )
}
