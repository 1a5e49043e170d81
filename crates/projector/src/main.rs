use event_store::EventStore;
use projector::clickhouse_sink::ClickHouseSink;
use projector::postgres::PostgresSink;
use projector::redis_sink::RedisSink;
use projector::{Settings, Sink, Worker};
use std::sync::Arc;
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::init_telemetry("projector");
    let settings = Settings::from_env()?;
    // Listen for SIGTERM from the first moment: start-up itself can wait on a service.
    let result = tokio::select! {
        result = run(settings) => result,
        _ = service::shutdown_signal() => Ok(()),
    };
    service::shutdown_telemetry();
    result
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    // Postgres may be restarting as this process starts: wait for it rather than exit.
    let store = service::retry("connecting to Postgres", || {
        EventStore::connect(settings.database_url.expose(), 8)
    })
    .await;
    service::retry("migrating Postgres", || store.migrate()).await;

    let readiness: service::ReadinessCheck = {
        let (store, settings) = (store.clone(), settings.clone());
        Arc::new(move || {
            let (store, settings) = (store.clone(), settings.clone());
            Box::pin(async move { ready(&store, &settings).await })
        })
    };
    tokio::spawn(service::serve_ops(settings.addr, readiness));

    service::retry("creating the events topic", || {
        kafka::ensure_topic(&settings.kafka_brokers, &settings.topic, settings.topic_partitions)
    })
    .await;
    spawn_worker(&settings, &store, PostgresSink::new(store.pool().clone()))?;
    let redis = service::retry("connecting to Redis", || {
        RedisSink::connect(settings.redis_url.expose())
    })
    .await;
    spawn_worker(&settings, &store, redis)?;
    service::retry("migrating ClickHouse", || {
        ClickHouseSink::migrate(&settings.clickhouse_url, &settings.clickhouse_database)
    })
    .await;
    let clickhouse = ClickHouseSink::new(service::clickhouse::client(
        &settings.clickhouse_url,
        &settings.clickhouse_database,
    ));
    spawn_worker(&settings, &store, clickhouse)?;
    std::future::pending().await
}

fn spawn_worker<S: Sink>(settings: &Settings, store: &EventStore, sink: S) -> anyhow::Result<()> {
    let group = format!("{}.{}", settings.group_prefix, sink.name());
    let instance = settings.instance_id.as_deref();
    let worker = Worker::new(
        &settings.kafka_brokers,
        &group,
        instance,
        &settings.topic,
        sink,
        store.clone(),
        settings.batch_size,
    )?;
    tokio::spawn(worker.run());
    Ok(())
}

async fn ready(store: &EventStore, settings: &Settings) -> Result<serde_json::Value, serde_json::Value> {
    let postgres = sqlx::query("SELECT 1").execute(store.pool()).await.is_ok();
    let redis = async {
        let client = redis::Client::open(settings.redis_url.expose()).ok()?;
        let mut connection = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING").query_async::<String>(&mut connection).await.ok()
    };
    let redis = tokio::time::timeout(Duration::from_secs(2), redis)
        .await
        .ok()
        .flatten()
        .is_some();
    let clickhouse = service::clickhouse::client(&settings.clickhouse_url, "default")
        .query("SELECT 1")
        .fetch_one::<u8>();
    let clickhouse = tokio::time::timeout(Duration::from_secs(2), clickhouse)
        .await
        .is_ok_and(|r| r.is_ok());
    let kafka = kafka::answers(&settings.kafka_brokers).await;
    let checks = serde_json::json!({ "postgres": postgres, "kafka": kafka, "redis": redis, "clickhouse": clickhouse });
    if postgres && kafka && redis && clickhouse {
        Ok(checks)
    } else {
        Err(checks)
    }
}
