use event_store::EventStore;
use projector::clickhouse_sink::ClickHouseSink;
use projector::postgres::PostgresSink;
use projector::redis_sink::RedisSink;
use projector::{Settings, Sink, Worker};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    service::Process::new("projector")
        .metrics(projector::instruments::describe)
        .ops(settings.addr)
        .postgres(&settings.database_url, 8)
        .kafka(&settings.kafka)
        .redis(&settings.redis_url)
        .clickhouse(&settings.clickhouse_url)
        .run(|started| project(settings, started.store()))
        .await
}

/// One worker per sink, each started as soon as its sink answers, so a sink that is down
/// delays only itself.
async fn project(settings: Settings, store: EventStore) -> anyhow::Result<()> {
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
    let worker = Worker::new(
        &settings.kafka.brokers,
        &group,
        settings.instance_id.as_deref(),
        &settings.kafka.topic,
        sink,
        store.clone(),
        settings.batch_size,
    )?;
    tokio::spawn(worker.run());
    Ok(())
}
