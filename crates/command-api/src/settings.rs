//! Typed settings from the environment, with development defaults; those the processes share
//! are in `service::settings`.

use service::sealing::Sealer;
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
    /// `REDIS_URL`: what served prompts are cached in, behind this process's memory.
    pub redis_url: Secret,
    /// `MIN_POSITION_WAIT_MS`: the longest a prompt fetch with `X-Min-Position` waits.
    pub min_position_wait: Duration,
    /// Failed logins allowed per email, then per client address, before attempts are refused
    /// (429) until `login_lockout` has passed since the last failure.
    pub login_failures_per_account: u32,
    pub login_failures_per_address: u32,
    pub login_lockout: Duration,
    /// Seals provider keys: `PROVIDER_KEYS_KEK`, and `PROVIDER_KEYS_KEK_OLD` during a rotation.
    pub provider_keys: Arc<Sealer>,
    /// `CORS_ALLOWED_ORIGINS`: origins browsers may call from; empty allows none.
    pub cors_allowed_origins: Vec<String>,
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
            redis_url: settings::redis_url(),
            min_position_wait: Duration::from_millis(env_or("MIN_POSITION_WAIT_MS", "3000").parse()?),
            login_failures_per_account: env_or("LOGIN_FAILURES_PER_ACCOUNT", "5").parse()?,
            login_failures_per_address: env_or("LOGIN_FAILURES_PER_ADDRESS", "20").parse()?,
            login_lockout: Duration::from_secs(env_or("LOGIN_LOCKOUT_SECONDS", "300").parse()?),
            provider_keys: Arc::new(Sealer::from_env()?),
            cors_allowed_origins: service::cors::allowed_origins_from_env(),
            webhook_keyring: Arc::new(Keyring::from_env()?),
            webhook_targets: TargetPolicy::from_env().map_err(anyhow::Error::msg)?,
        })
    }
}
