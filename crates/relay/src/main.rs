use event_store::EventStore;
use relay::{acquire_leadership, Relay, Settings};
use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::init_telemetry("relay");
    let settings = Settings::from_env()?;
    // Listen for SIGTERM from the first moment: start-up itself can wait (for leadership).
    let result = tokio::select! {
        result = run(settings) => result,
        _ = service::shutdown_signal() => Ok(()),
    };
    service::shutdown_telemetry();
    result
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let store = EventStore::connect(settings.database_url.expose(), 4).await?;
    store.migrate().await?;

    let readiness_store = store.clone();
    let brokers = settings.kafka_brokers.clone();
    let readiness: service::ReadinessCheck = Arc::new(move || {
        let store = readiness_store.clone();
        let brokers = brokers.clone();
        Box::pin(async move { ready(&store, &brokers).await })
    });
    tokio::spawn(service::serve_ops(settings.addr, readiness));

    service::retry("creating the events topic", || {
        kafka::ensure_topic(&settings.kafka_brokers, &settings.topic, settings.topic_partitions)
    })
    .await;
    let _leadership = acquire_leadership(&store, &settings.topic).await?;
    let relay = Relay::new(store, kafka::producer(&settings.kafka_brokers)?, &settings.topic, settings.batch_size).await?;
    relay.run().await
}

async fn ready(store: &EventStore, brokers: &str) -> Result<serde_json::Value, serde_json::Value> {
    let postgres = sqlx::query("SELECT 1").execute(store.pool()).await.is_ok();
    let kafka = kafka::answers(brokers).await;
    let checks = serde_json::json!({ "postgres": postgres, "kafka": kafka });
    if postgres && kafka { Ok(checks) } else { Err(checks) }
}
