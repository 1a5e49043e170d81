use event_store::{EventStore, Repository};
use providers::{PriceTable, ProviderSettings, Providers};
use runner::{RunRequests, Runner, Settings};
use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::init_telemetry("runner");
    let settings = Settings::from_env()?;
    tokio::select! {
        result = run(settings) => result,
        _ = service::shutdown_signal() => Ok(()),
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    // Postgres may be restarting as this process starts: wait for it rather than exit.
    let store = service::retry("connecting to Postgres", || {
        EventStore::connect(settings.database_url.expose(), 8)
    })
    .await;
    service::retry("migrating Postgres", || store.migrate()).await;
    let readiness: service::ReadinessCheck = {
        let (store, brokers) = (store.clone(), settings.kafka_brokers.clone());
        Arc::new(move || {
            let (store, brokers) = (store.clone(), brokers.clone());
            Box::pin(async move { ready(&store, &brokers).await })
        })
    };
    tokio::spawn(service::serve_ops(settings.addr, readiness));

    let providers = Arc::new(Providers::new(ProviderSettings::from_env()?, PriceTable::from_env()?));
    let runner = Runner::new(Repository::new(store, 1_000), providers, settings.max_in_flight);
    service::retry("creating the events topic", || {
        kafka::ensure_topic(&settings.kafka_brokers, &settings.topic, settings.topic_partitions)
    })
    .await;
    let instance = settings.instance_id.as_deref();
    RunRequests::new(
        &settings.kafka_brokers,
        &settings.group_id,
        instance,
        &settings.topic,
        runner,
        settings.max_concurrent_runs,
    )?
    .run()
    .await
}

async fn ready(store: &EventStore, brokers: &str) -> Result<serde_json::Value, serde_json::Value> {
    let postgres = sqlx::query("SELECT 1").execute(store.pool()).await.is_ok();
    let kafka = kafka::answers(brokers).await;
    let checks = serde_json::json!({ "postgres": postgres, "kafka": kafka });
    if postgres && kafka {
        Ok(checks)
    } else {
        Err(checks)
    }
}
