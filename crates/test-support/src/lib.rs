//! What the integration tests of several crates share, so that each crate's `support.rs` keeps
//! only what is its own: bounded polling, the addresses of the machine's services, a ClickHouse
//! database and a Kafka topic of one test's own, the histories tests append, and the read-model
//! checksum a replay is compared with the live projection by, and a webhook receiver.
//!
//! The services are the machine's (Postgres on 127.0.0.1:5432, Kafka on 9092, ClickHouse over
//! HTTP on 8123, Redis on 6379) unless the variables the services read name others.

pub mod clickhouse;
pub mod history;
pub mod kafka;
pub mod read_models;
pub mod webhooks;

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// How long a condition may take to hold before the test fails. Generous: consumer groups join
/// and rebalance, and every open transaction anywhere in the Postgres cluster (other tests' too)
/// holds back what the store's tailing reader may see. It only bounds a failing test.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// Pause between two probes of a bounded poll loop; not a synchronisation point.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Probes until `probe` returns `Some`, failing the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(DEADLINE, POLL_INTERVAL, what, probe).await
}

/// Probes every `every` until `probe` returns `Some`, failing the test after `within`.
pub async fn eventually_within<T, F, Fut>(within: Duration, every: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// The Postgres server `#[sqlx::test]` makes its databases on.
pub fn database_url() -> String {
    service::env_or("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/promptcards_test")
}

pub fn kafka_brokers() -> String {
    service::env_or("KAFKA_BROKERS", "127.0.0.1:9092")
}

pub fn clickhouse_url() -> String {
    service::env_or("CLICKHOUSE_URL", "http://127.0.0.1:8123")
}

pub fn redis_url() -> String {
    service::env_or("REDIS_URL", "redis://127.0.0.1:6379")
}
