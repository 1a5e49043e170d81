//! What `/readyz` asks: one probe per backing service, written once, and the set of them a
//! process declares. The answer is `{"postgres": true, "kafka": false, ...}`, one key per probe.

use futures::future::{join_all, BoxFuture};
use serde_json::{Map, Value};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// Whether one backing service answers now.
pub type Probe = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// How long a probe of a network service waits before it counts as not answering.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The probes a process needs to answer, each under the name `/readyz` reports it by.
#[derive(Clone, Default)]
pub struct Readiness {
    probes: Vec<(&'static str, Probe)>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, name: &'static str, probe: Probe) -> Self {
        self.probes.push((name, probe));
        self
    }

    /// Runs every probe at once; `Ok` when all answered, and either way which did.
    pub async fn check(&self) -> Result<Value, Value> {
        let answers = join_all(self.probes.iter().map(|(_, probe)| probe())).await;
        let ready = answers.iter().all(|answered| *answered);
        let checks: Map<String, Value> = self
            .probes
            .iter()
            .zip(answers)
            .map(|((name, _), answered)| ((*name).to_owned(), Value::Bool(answered)))
            .collect();
        if ready {
            Ok(Value::Object(checks))
        } else {
            Err(Value::Object(checks))
        }
    }

    /// The check `ops_router` serves at `/readyz`.
    pub fn into_check(self) -> crate::ReadinessCheck {
        let readiness = Arc::new(self);
        Arc::new(move || {
            let readiness = readiness.clone();
            Box::pin(async move { readiness.check().await })
        })
    }
}

/// Postgres answers a query through the pool (waiting as long as the pool's acquire timeout).
pub fn postgres(pool: PgPool) -> Probe {
    Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move { sqlx::query("SELECT 1").execute(&pool).await.is_ok() })
    })
}

/// Redis answers `PING` on a new connection; never, when the URL does not parse.
pub fn redis(url: &str) -> Probe {
    redis_client(redis::Client::open(url).ok())
}

/// Redis answers `PING` on a new connection of `client`; never, without a client.
pub fn redis_client(client: Option<redis::Client>) -> Probe {
    Arc::new(move || {
        let client = client.clone();
        Box::pin(async move {
            let ping = async {
                let mut connection = client?.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING").query_async::<String>(&mut connection).await.ok()
            };
            tokio::time::timeout(PROBE_TIMEOUT, ping).await.ok().flatten().is_some()
        })
    })
}

/// ClickHouse answers `SELECT 1` through `client`.
pub fn clickhouse(client: clickhouse::Client) -> Probe {
    Arc::new(move || {
        let client = client.clone();
        Box::pin(async move {
            let select = client.query("SELECT 1").fetch_one::<u8>();
            tokio::time::timeout(PROBE_TIMEOUT, select)
                .await
                .is_ok_and(|r| r.is_ok())
        })
    })
}

/// The brokers answer a metadata request (see `kafka::answers`).
#[cfg(feature = "kafka")]
pub fn kafka(brokers: &str) -> Probe {
    let brokers = brokers.to_owned();
    Arc::new(move || {
        let brokers = brokers.clone();
        Box::pin(async move { kafka::answers(&brokers).await })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(answer: bool) -> Probe {
        Arc::new(move || Box::pin(async move { answer }))
    }

    #[tokio::test]
    async fn ready_only_when_every_probe_answers_and_each_is_named() {
        let all = Readiness::new()
            .with("postgres", fixed(true))
            .with("kafka", fixed(true));
        assert_eq!(
            all.check().await,
            Ok(serde_json::json!({ "postgres": true, "kafka": true }))
        );
        let one_down = all.with("redis", fixed(false));
        assert_eq!(
            one_down.check().await,
            Err(serde_json::json!({ "postgres": true, "kafka": true, "redis": false }))
        );
    }

    #[tokio::test]
    async fn a_service_that_is_not_there_does_not_answer() {
        // Nothing listens on port 9 of this machine.
        assert!(!redis("redis://127.0.0.1:9")().await);
        assert!(!redis("not a url")().await);
        assert!(!clickhouse(crate::clickhouse::client("http://127.0.0.1:9", "default"))().await);
    }
}
