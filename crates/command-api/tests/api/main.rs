//! The command API driven in-process over HTTP, against a fresh PostgreSQL database per test.

mod helpers;

mod api_keys;
mod auth;
mod bad_input;
mod cards;
mod concurrency;
mod idempotency;
mod imports;
mod memory;
mod names;
mod provider_credentials;
mod rate_limit;
mod roles_and_tenancy;
mod sessions;
mod surface;
mod test_cases;
mod tracing;
mod webhooks;
