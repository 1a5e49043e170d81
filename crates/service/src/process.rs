//! The one way a process starts: telemetry, metrics described at zero, the ops endpoints and
//! the shutdown listener from the first moment, then the backing services it declared (waited
//! for, never given up on), then its work; telemetry is flushed however it ends.

use crate::readiness::{self, Probe, Readiness};
use crate::settings::Secret;
use event_store::EventStore;
use sqlx::PgPool;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

/// A process to start: what it serves, what it needs, and the metrics it emits.
///
/// ```no_run
/// # async fn example(addr: std::net::SocketAddr, url: service::Secret) -> anyhow::Result<()> {
/// service::Process::new("relay")
///     .ops(addr)
///     .postgres(&url, 4)
///     .run(|started| async move {
///         let _store = started.store();
///         Ok(())
///     })
///     .await
/// # }
/// ```
pub struct Process {
    name: &'static str,
    describe_metrics: Vec<fn()>,
    ops: Option<SocketAddr>,
    postgres: Option<(Secret, u32)>,
    /// The migrated store's pool, set once start-up connected, for the `postgres` probe.
    pool: Arc<OnceLock<PgPool>>,
    #[cfg(feature = "kafka")]
    kafka: Option<crate::settings::Kafka>,
    probes: Readiness,
}

/// What start-up connected, handed to the work.
pub struct Started {
    store: Option<EventStore>,
}

impl Started {
    /// The migrated event store.
    ///
    /// # Panics
    /// When the process did not declare [`Process::postgres`]: a mistake in its `main`.
    pub fn store(&self) -> EventStore {
        self.store
            .clone()
            .expect("the process declares `.postgres(..)` before it uses the store")
    }
}

impl Process {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            describe_metrics: Vec::new(),
            ops: None,
            postgres: None,
            pool: Arc::new(OnceLock::new()),
            #[cfg(feature = "kafka")]
            kafka: None,
            probes: Readiness::new(),
        }
    }

    /// Describes and registers (at zero) the metrics the process emits, so the first scrape
    /// already lists them.
    pub fn metrics(mut self, describe: fn()) -> Self {
        self.describe_metrics.push(describe);
        self
    }

    /// Serves `/healthz`, `/readyz` (the declared probes) and `/metrics` on `addr` from the
    /// start, for a process without an HTTP surface of its own.
    pub fn ops(mut self, addr: SocketAddr) -> Self {
        self.ops = Some(addr);
        self
    }

    /// Connects to Postgres and applies the migrations before the work starts, retrying while
    /// Postgres does not answer; `/readyz` reports `postgres` false until then.
    pub fn postgres(mut self, url: &Secret, max_connections: u32) -> Self {
        self.probes = self.probes.with("postgres", postgres_once(self.pool.clone()));
        self.postgres = Some((url.clone(), max_connections));
        self
    }

    /// Creates the events topic (when absent) before the work starts, retrying while the
    /// brokers do not answer; `/readyz` probes the brokers.
    #[cfg(feature = "kafka")]
    pub fn kafka(mut self, kafka: &crate::settings::Kafka) -> Self {
        self.probes = self.probes.with("kafka", readiness::kafka(&kafka.brokers));
        self.kafka = Some(kafka.clone());
        self
    }

    /// `/readyz` probes Redis.
    pub fn redis(mut self, url: &Secret) -> Self {
        self.probes = self.probes.with("redis", readiness::redis(url.expose()));
        self
    }

    /// `/readyz` probes ClickHouse (the server, whatever database the process uses).
    pub fn clickhouse(mut self, url: &str) -> Self {
        let client = crate::clickhouse::client(url, "default");
        self.probes = self.probes.with("clickhouse", readiness::clickhouse(client));
        self
    }

    /// Starts, then runs `work` until it ends or SIGTERM arrives, when it is dropped: for work
    /// whose every step may stop at any await (consumers commit only after the effect).
    pub async fn run<F, W>(self, work: F) -> anyhow::Result<()>
    where
        F: FnOnce(Started) -> W,
        W: Future<Output = anyhow::Result<()>>,
    {
        self.start(work, false).await
    }

    /// Starts, then runs `work` to its end: for work that stops itself on
    /// [`crate::shutdown_signal`] and finishes what is in flight (an HTTP server draining).
    pub async fn run_draining<F, W>(self, work: F) -> anyhow::Result<()>
    where
        F: FnOnce(Started) -> W,
        W: Future<Output = anyhow::Result<()>>,
    {
        self.start(work, true).await
    }

    async fn start<F, W>(self, work: F, drains: bool) -> anyhow::Result<()>
    where
        F: FnOnce(Started) -> W,
        W: Future<Output = anyhow::Result<()>>,
    {
        crate::init_telemetry(self.name);
        crate::listen_for_shutdown();
        // The recorder first: descriptions given before it exists would go nowhere.
        crate::metrics_handle();
        for describe in &self.describe_metrics {
            describe();
        }
        let result = self.start_then_work(work, drains).await;
        if let Err(error) = &result {
            tracing::error!(error = format!("{error:#}"), "The process stopped on an error.");
        }
        crate::shutdown_telemetry();
        result
    }

    async fn start_then_work<F, W>(self, work: F, drains: bool) -> anyhow::Result<()>
    where
        F: FnOnce(Started) -> W,
        W: Future<Output = anyhow::Result<()>>,
    {
        if let Some(addr) = self.ops {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tokio::spawn(crate::serve_ops(listener, self.probes.into_check()));
        }
        let starting = async {
            let mut store = None;
            if let Some((url, max_connections)) = &self.postgres {
                let connected = connect(url, *max_connections).await;
                let _ = self.pool.set(connected.pool().clone());
                store = Some(connected);
            }
            #[cfg(feature = "kafka")]
            if let Some(settings) = &self.kafka {
                crate::retry("creating the events topic", || {
                    kafka::ensure_topic(&settings.brokers, &settings.topic, settings.topic_partitions)
                })
                .await;
            }
            Started { store }
        };
        let started = tokio::select! {
            started = starting => started,
            _ = crate::shutdown_signal() => return Ok(()),
        };
        if drains {
            return work(started).await;
        }
        tokio::select! {
            result = work(started) => result,
            _ = crate::shutdown_signal() => Ok(()),
        }
    }
}

/// Postgres may be restarting as the process starts: wait for it rather than exit.
async fn connect(url: &Secret, max_connections: u32) -> EventStore {
    let store = crate::retry("connecting to Postgres", || {
        EventStore::connect(url.expose(), max_connections)
    })
    .await;
    crate::retry("migrating Postgres", || store.migrate()).await;
    store
}

fn postgres_once(pool: Arc<OnceLock<PgPool>>) -> Probe {
    Arc::new(move || match pool.get() {
        Some(pool) => readiness::postgres(pool.clone())(),
        None => Box::pin(async { false }),
    })
}
