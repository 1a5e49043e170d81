//! The browser policy both APIs share: `CORS_ALLOWED_ORIGINS`, a comma-separated list of
//! origins (`https://app.example.com`), or `*` for any. Empty, the default, allows none: no
//! CORS header is sent, so browsers refuse cross-origin calls.

use axum::http::{header, HeaderName, HeaderValue, Method};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The origins `CORS_ALLOWED_ORIGINS` lists.
pub fn allowed_origins_from_env() -> Vec<String> {
    parse_origins(&crate::env_or("CORS_ALLOWED_ORIGINS", ""))
}

pub fn parse_origins(list: &str) -> Vec<String> {
    list.split(',')
        .map(|origin| origin.trim().trim_end_matches('/').to_owned())
        .filter(|origin| !origin.is_empty())
        .collect()
}

/// The layer for `origins`; origins that are not valid header values are left out.
pub fn layer(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-min-position"),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-correlation-id"),
        ])
        .expose_headers([
            header::ETAG,
            header::RETRY_AFTER,
            header::LOCATION,
            HeaderName::from_static("x-request-id"),
        ])
        .max_age(Duration::from_secs(600))
}
