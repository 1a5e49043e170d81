//! The deliverer against a real receiver (an HTTP server in the test), the real Postgres and,
//! for its consumers, the real Kafka. Each test has its own database (`#[sqlx::test]`) and its
//! own receiver; the dispatcher is stepped by the test, so nothing waits on a timer it does not
//! need.

mod alerts;
mod consumer;
mod delivery;
mod outbox;
mod support;
mod targets;
