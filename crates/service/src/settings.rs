//! The settings several processes share, each read from the environment with its development
//! default written here once; a process's own `Settings` composes these with its own fields.
//!
//! Defaults stay in the `env_or("NAME", "default")` form: the deployment checks read the
//! settings and their defaults from the sources in that form.

use std::fmt;

/// A setting from the environment, or its development default.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A value that must never reach a log line.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `DATABASE_URL`: the Postgres holding the event store and the read models.
pub fn database_url() -> Secret {
    Secret::new(env_or("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/promptcards"))
}

/// `REDIS_URL`: the read models' cache and the subscriptions' pub/sub.
pub fn redis_url() -> Secret {
    Secret::new(env_or("REDIS_URL", "redis://127.0.0.1:6379"))
}

/// `CLICKHOUSE_URL`: ClickHouse over HTTP.
pub fn clickhouse_url() -> String {
    env_or("CLICKHOUSE_URL", "http://127.0.0.1:8123")
}

/// `CLICKHOUSE_DATABASE`: the ClickHouse database of the analytics read models.
pub fn clickhouse_database() -> String {
    env_or("CLICKHOUSE_DATABASE", "promptcards")
}

/// `JWT_SECRET`: what access tokens are signed with.
pub fn jwt_secret() -> Secret {
    Secret::new(env_or("JWT_SECRET", "dev-only-secret-change-me"))
}

/// `KAFKA_BROKERS`: bootstrap servers, comma-separated.
pub fn kafka_brokers() -> String {
    env_or("KAFKA_BROKERS", "127.0.0.1:9092")
}

/// `KAFKA_TOPIC`: the events topic.
pub fn kafka_topic() -> String {
    env_or("KAFKA_TOPIC", domain::names::DEFAULT_TOPIC)
}

/// Where the events topic is, for the processes that produce to or consume from it.
#[derive(Debug, Clone)]
pub struct Kafka {
    /// `KAFKA_BROKERS`: bootstrap servers, comma-separated.
    pub brokers: String,
    /// `KAFKA_TOPIC`: the events topic.
    pub topic: String,
    /// `KAFKA_TOPIC_PARTITIONS`: partitions of the topic when this process is the one to
    /// create it.
    pub topic_partitions: i32,
}

impl Kafka {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            brokers: kafka_brokers(),
            topic: kafka_topic(),
            topic_partitions: env_or("KAFKA_TOPIC_PARTITIONS", "6").parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(secret.expose(), "hunter2");
    }
}
