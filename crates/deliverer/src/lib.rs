//! The deliverer: tells other systems what happened. Three parts, each restartable at any
//! moment without losing anything:
//! - [`fanout`]: a consumer group on the events topic that records one delivery per endpoint
//!   and event in the outbox (Postgres) before committing its offsets;
//! - [`dispatch`]: sends the outbox's deliveries, signed as the Standard Webhooks specification
//!   says, in order per endpoint, retried with backoff, every attempt recorded;
//! - [`alerts`]: a second consumer group that re-measures alert rules when runs complete, and a
//!   schedule that re-measures them from ClickHouse; firing and resolving are events, which the
//!   fan-out then delivers like any other.

pub mod alerts;
pub mod dispatch;
pub mod endpoints;
pub mod fanout;
pub mod figures;
pub mod instruments;
pub mod payload;
pub mod sender;

use dispatch::RetryPolicy;
use service::settings::{self, Kafka};
use service::{env_or, Secret};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use webhook::{Keyring, TargetPolicy};

#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub database_url: Secret,
    pub kafka: Kafka,
    /// The fan-out's consumer group.
    pub group_id: String,
    /// The alert evaluator's consumer group.
    pub alerts_group_id: String,
    /// Static group membership (see `kafka::consumer_config`), and the name this process
    /// leases endpoints under.
    pub instance_id: Option<String>,
    pub clickhouse_url: String,
    pub clickhouse_database: String,
    /// Most events handled per batch.
    pub batch_size: usize,
    /// How long one attempt may take, connection included.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Endpoints sent to at once.
    pub max_in_flight: usize,
    /// How often the dispatcher looks for retries come due.
    pub poll: Duration,
    /// How long an endpoint stays leased to this process without a word from it.
    pub lease: Duration,
    /// How often the daily cost and the latency are re-measured from ClickHouse.
    pub alerts_every: Duration,
    /// Opens the endpoints' signing secrets (`WEBHOOK_SECRETS_KEK`, `WEBHOOK_SECRETS_KEK_OLD`).
    pub keyring: Arc<Keyring>,
    /// Internal addresses deliveries may still go to (`WEBHOOK_ALLOWED_CIDRS`).
    pub targets: TargetPolicy,
}

fn seconds(name: &str, default: &str) -> anyhow::Result<Duration> {
    Ok(Duration::from_secs_f64(env_or(name, default).parse()?))
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            addr: env_or("DELIVERER_ADDR", "127.0.0.1:8085").parse()?,
            database_url: settings::database_url(),
            kafka: Kafka::from_env()?,
            group_id: env_or("DELIVERER_GROUP", "promptcards-deliverer"),
            alerts_group_id: env_or("ALERTS_GROUP", "promptcards-alerts"),
            instance_id: kafka::instance_id_from_env(),
            clickhouse_url: settings::clickhouse_url(),
            clickhouse_database: settings::clickhouse_database(),
            batch_size: env_or("DELIVERER_BATCH_SIZE", "500").parse()?,
            timeout: Duration::from_millis(env_or("WEBHOOK_TIMEOUT_MS", "10000").parse()?),
            retry: RetryPolicy {
                base: Duration::from_millis(env_or("WEBHOOK_RETRY_BASE_MS", "5000").parse()?),
                max_delay: seconds("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "3600")?,
                horizon: seconds("WEBHOOK_RETRY_HORIZON_SECONDS", "86400")?,
                disable_after: seconds("WEBHOOK_DISABLE_AFTER_SECONDS", "432000")?,
            },
            max_in_flight: env_or("WEBHOOK_MAX_IN_FLIGHT", "64").parse()?,
            poll: Duration::from_millis(env_or("DELIVERER_POLL_MS", "500").parse()?),
            lease: seconds("DELIVERER_LEASE_SECONDS", "30")?,
            alerts_every: seconds("ALERTS_EVALUATE_EVERY_SECONDS", "60")?,
            keyring: Arc::new(Keyring::from_env()?),
            targets: TargetPolicy::from_env().map_err(anyhow::Error::msg)?,
        })
    }

    /// The name this process leases endpoints under: its static member id, so that a restart
    /// takes its leases back at once, else one of its own.
    pub fn lease_owner(&self) -> String {
        self.instance_id
            .clone()
            .unwrap_or_else(|| format!("deliverer-{}", uuid::Uuid::now_v7()))
    }
}
