//! The projector: one Kafka consumer group per sink (Postgres read models, Redis, ClickHouse),
//! each with its own committed offsets, so a slow or failing sink never stalls the others.
//! Offsets are committed only after the sink's effect is durable; redelivered events are
//! skipped by stream version (Postgres) or collapse by key (Redis, ClickHouse).

mod catch_up;
pub mod checksum;
pub mod clickhouse_sink;
pub mod instruments;
mod integrations;
pub mod postgres;
pub mod redis_sink;
mod worker;

pub use catch_up::catch_up;
pub use worker::{Outcome, Worker};

use event_store::RecordedEvent;
use service::settings::{self, Kafka};
use service::{env_or, Secret};
use std::future::Future;
use std::net::SocketAddr;

/// Somewhere events are projected to. `apply` must be idempotent for redelivered events.
pub trait Sink: Clone + Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// How long a batch may wait for more events after its first one arrived. Zero (the
    /// default) applies whatever has arrived at once.
    fn linger(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    fn apply(&self, events: &[RecordedEvent]) -> impl Future<Output = anyhow::Result<()>> + Send;
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub database_url: Secret,
    pub redis_url: Secret,
    pub kafka: Kafka,
    /// Consumer groups are named `<prefix>.<sink>`.
    pub group_prefix: String,
    /// Static group membership, so a restarted projector resumes at once (see `kafka::consumer_config`).
    pub instance_id: Option<String>,
    pub clickhouse_url: String,
    pub clickhouse_database: String,
    /// Most events applied per batch (and per transaction, for Postgres).
    pub batch_size: usize,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            addr: env_or("PROJECTOR_ADDR", "127.0.0.1:8082").parse()?,
            database_url: settings::database_url(),
            redis_url: settings::redis_url(),
            kafka: Kafka::from_env()?,
            group_prefix: env_or("PROJECTOR_GROUP_PREFIX", "promptcards-projector"),
            instance_id: kafka::instance_id_from_env(),
            clickhouse_url: settings::clickhouse_url(),
            clickhouse_database: settings::clickhouse_database(),
            batch_size: env_or("PROJECTOR_BATCH_SIZE", "500").parse()?,
        })
    }
}
