//! Typed settings from the environment, with development defaults; those the processes share
//! are in `service::settings`.

pub use service::Secret;
use service::{env_or, settings};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use webhook::{Keyring, TargetPolicy};

#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub database_url: Secret,
    pub database_max_connections: u32,
    pub jwt_secret: Secret,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// Largest request body accepted, in bytes; larger gets 413.
    pub body_limit: usize,
    /// Sustained commands per second per user, API key or anonymous client address.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// Seals webhook signing secrets (`WEBHOOK_SECRETS_KEK`).
    pub webhook_keyring: Arc<Keyring>,
    /// Internal addresses webhooks may still target (`WEBHOOK_ALLOWED_CIDRS`).
    pub webhook_targets: TargetPolicy,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            addr: env_or("COMMAND_API_ADDR", "127.0.0.1:8080").parse()?,
            database_url: settings::database_url(),
            database_max_connections: env_or("DATABASE_MAX_CONNECTIONS", "20").parse()?,
            jwt_secret: settings::jwt_secret(),
            access_token_ttl: Duration::from_secs(env_or("ACCESS_TOKEN_TTL_SECONDS", "900").parse()?),
            refresh_token_ttl: Duration::from_secs(env_or("REFRESH_TOKEN_TTL_SECONDS", "2592000").parse()?),
            body_limit: env_or("BODY_LIMIT_BYTES", "1048576").parse()?,
            rate_limit_per_second: env_or("RATE_LIMIT_PER_SECOND", "1000").parse()?,
            rate_limit_burst: env_or("RATE_LIMIT_BURST", "2000").parse()?,
            webhook_keyring: Arc::new(Keyring::from_env()?),
            webhook_targets: TargetPolicy::from_env().map_err(anyhow::Error::msg)?,
        })
    }
}
