//! GraphQL errors carry `extensions.code`, one of the codes API.md lists.

use async_graphql::{Error, ErrorExtensions};

pub fn error(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message.into()).extend_with(|_, e| e.set("code", code))
}

pub fn unauthenticated() -> Error {
    error(
        "UNAUTHENTICATED",
        "send Authorization: Bearer <access token or API key>",
    )
}

pub fn not_found(what: &str) -> Error {
    error("NOT_FOUND", format!("{what} not found"))
}

/// Too many requests for `whom` (the caller, or the workspace); retry after the seconds given.
pub fn rate_limited(whom: &str, retry_after_secs: u64) -> Error {
    error(
        "RATE_LIMITED",
        format!("too many requests for this {whom}; retry in {retry_after_secs} s"),
    )
    .extend_with(|_, e| e.set("retryAfter", retry_after_secs))
}

pub fn forbidden(message: impl Into<String>) -> Error {
    error("FORBIDDEN", message)
}

pub fn bad_request(message: impl Into<String>) -> Error {
    error("BAD_REQUEST", message)
}

/// A failure of ours: logged, and reported without internals.
pub fn internal(err: impl std::fmt::Display) -> Error {
    tracing::error!(error = %err, "A query failed with an internal error.");
    error("INTERNAL", "internal error")
}
