//! What every command request carries besides its body: the caller, its Idempotency-Key, and
//! the tracing and correlation ids recorded with the events.

use crate::auth::{authenticate, Principal};
use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use uuid::Uuid;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// SHA-256 of method, path and body, set by [`hash_idempotent_requests`] when the request
/// carries an Idempotency-Key.
#[derive(Debug, Clone)]
struct RequestHash(String);

/// Buffers the body of requests that carry an Idempotency-Key and records a hash of them, so a
/// retry can be told apart from a different request reusing the key.
pub async fn hash_idempotent_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !request.headers().contains_key(IDEMPOTENCY_KEY) {
        return Ok(next.run(request).await);
    }
    let (mut parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, state.settings.body_limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update([0]);
    hasher.update(parts.uri.path());
    hasher.update([0]);
    hasher.update(&bytes);
    parts.extensions.insert(RequestHash(hex::encode(hasher.finalize())));
    Ok(next.run(Request::from_parts(parts, Body::from(bytes))).await)
}

#[derive(Debug, Clone)]
pub struct CommandContext {
    principal: Option<Principal>,
    /// The peer's address, when the server was started with connection info.
    pub client_addr: Option<IpAddr>,
    /// The client's Idempotency-Key and the hash of its request.
    pub idempotency: Option<(String, String)>,
    pub correlation_id: Uuid,
    /// The caller's W3C trace context, recorded with the events as sent when this process does
    /// not export spans (with export on, the request span's own context is recorded instead).
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl CommandContext {
    /// The authenticated caller; 401 for anonymous requests.
    pub fn principal(&self) -> Result<Principal, ApiError> {
        self.principal
            .ok_or_else(|| ApiError::Unauthorized("send Authorization: Bearer <access token or API key>".into()))
    }

    pub fn actor_id(&self) -> Option<Uuid> {
        self.principal.map(|p| p.actor_id())
    }

    /// Idempotency keys are per caller: two users may pick the same key.
    pub fn idempotency_scope(&self) -> String {
        match self.principal {
            Some(Principal::User(id)) => format!("user:{id}"),
            Some(Principal::ApiKey { key_id, .. }) => format!("api_key:{key_id}"),
            None => "anonymous".into(),
        }
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl FromRequestParts<AppState> for CommandContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            Some(value) => {
                let value = value
                    .to_str()
                    .map_err(|_| ApiError::Unauthorized("the Authorization header must be 'Bearer <token>'".into()))?;
                let token = auth::bearer(value)?;
                Some(authenticate(state, token).await?)
            }
        };

        let client_addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let rate_key = match (principal, client_addr) {
            (Some(p), _) => p.actor_id().to_string(),
            (None, Some(ip)) => format!("ip:{ip}"),
            (None, None) => "anonymous".into(),
        };
        if let Err(retry_after_secs) = state.limiter.check(&rate_key) {
            return Err(ApiError::RateLimited { retry_after_secs });
        }

        // A key that is not visible ASCII reads as empty and is refused below, never ignored.
        let idempotency = match parts.headers.get(IDEMPOTENCY_KEY).map(|v| v.to_str().unwrap_or("")) {
            None => None,
            Some(key) => {
                if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(ApiError::BadRequest(
                        "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
                    ));
                }
                let hash = parts
                    .extensions
                    .get::<RequestHash>()
                    .map(|h| h.0.clone())
                    .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("request hash missing")))?;
                Some((key.to_owned(), hash))
            }
        };

        let correlation_id = header_str(&parts.headers, "x-correlation-id")
            .or_else(|| header_str(&parts.headers, "x-request-id"))
            .and_then(|v| Uuid::try_parse(v).ok())
            .unwrap_or_else(Uuid::now_v7);

        Ok(CommandContext {
            principal,
            client_addr,
            idempotency,
            correlation_id,
            traceparent: header_str(&parts.headers, "traceparent").map(str::to_owned),
            tracestate: header_str(&parts.headers, "tracestate").map(str::to_owned),
        })
    }
}
