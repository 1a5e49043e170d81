//! Typed settings from the environment, with development defaults.

use service::{env_or, Secret};
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
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            addr: env_or("QUERY_API_ADDR", "127.0.0.1:8081").parse()?,
            database_url: Secret::new(env_or("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/promptcards")),
            redis_url: Secret::new(env_or("REDIS_URL", "redis://127.0.0.1:6379")),
            clickhouse_url: env_or("CLICKHOUSE_URL", "http://127.0.0.1:8123"),
            clickhouse_database: env_or("CLICKHOUSE_DATABASE", "promptcards"),
            jwt_secret: Secret::new(env_or("JWT_SECRET", "dev-only-secret-change-me")),
            min_position_wait: Duration::from_millis(env_or("MIN_POSITION_WAIT_MS", "3000").parse()?),
            max_depth: env_or("GRAPHQL_MAX_DEPTH", "10").parse()?,
            max_complexity: env_or("GRAPHQL_MAX_COMPLEXITY", "1000").parse()?,
            max_query_bytes: env_or("GRAPHQL_MAX_QUERY_BYTES", "16384").parse()?,
        })
    }
}
