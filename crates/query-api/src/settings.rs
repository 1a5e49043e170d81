//! Typed settings from the environment, with development defaults; those the processes share
//! are in `service::settings`.

use service::{env_or, settings, Secret};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub database_url: Secret,
    pub redis_url: Secret,
    pub clickhouse_url: String,
    pub clickhouse_database: String,
    pub jwt_secret: Secret,
    /// The longest an `X-Min-Position` request waits for the read models.
    pub min_position_wait: Duration,
    pub max_depth: usize,
    pub max_complexity: usize,
    /// Longest accepted query text, in bytes.
    pub max_query_bytes: usize,
    /// `QUERY_RATE_LIMIT_PER_SECOND` / `_BURST`: queries and new subscriptions per caller.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// `WORKSPACE_RATE_LIMIT_PER_SECOND` / `_BURST`: the same per workspace, all callers.
    pub workspace_rate_limit_per_second: u32,
    pub workspace_rate_limit_burst: u32,
    /// `CORS_ALLOWED_ORIGINS`: origins browsers may call from; empty allows none.
    pub cors_allowed_origins: Vec<String>,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            addr: env_or("QUERY_API_ADDR", "127.0.0.1:8081").parse()?,
            database_url: settings::database_url(),
            redis_url: settings::redis_url(),
            clickhouse_url: settings::clickhouse_url(),
            clickhouse_database: settings::clickhouse_database(),
            jwt_secret: settings::jwt_secret(),
            min_position_wait: Duration::from_millis(env_or("MIN_POSITION_WAIT_MS", "3000").parse()?),
            max_depth: env_or("GRAPHQL_MAX_DEPTH", "10").parse()?,
            max_complexity: env_or("GRAPHQL_MAX_COMPLEXITY", "1000").parse()?,
            max_query_bytes: env_or("GRAPHQL_MAX_QUERY_BYTES", "16384").parse()?,
            rate_limit_per_second: env_or("QUERY_RATE_LIMIT_PER_SECOND", "2000").parse()?,
            rate_limit_burst: env_or("QUERY_RATE_LIMIT_BURST", "4000").parse()?,
            workspace_rate_limit_per_second: env_or("WORKSPACE_RATE_LIMIT_PER_SECOND", "5000").parse()?,
            workspace_rate_limit_burst: env_or("WORKSPACE_RATE_LIMIT_BURST", "10000").parse()?,
            cors_allowed_origins: service::cors::allowed_origins_from_env(),
        })
    }
}
