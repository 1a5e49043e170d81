use event_store::EventStore;
use relay::{Leadership, Relay, RelayError, Settings};
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
    // Postgres may be restarting as this process starts: wait for it rather than exit.
    let store = service::retry("connecting to Postgres", || {
        EventStore::connect(settings.database_url.expose(), 4)
    })
    .await;
    service::retry("migrating Postgres", || store.migrate()).await;

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
    let producer = kafka::producer(&settings.kafka_brokers)?;
    // Lead until the leadership is lost (a Postgres restart ends the lock's session), then
    // compete for it again; never publish without it.
    loop {
        let leadership = service::retry("taking the relay's leadership", || {
            Leadership::acquire(&store, &settings.topic)
        })
        .await;
        let relay = service::retry("reading the relay's checkpoint", || {
            Relay::new(store.clone(), producer.clone(), &settings.topic, settings.batch_size)
        })
        .await
        .lead(leadership);
        match relay.run().await {
            Err(RelayError::LeadershipLost(reason)) => {
                metrics::gauge!("relay_leader").set(0.0);
                tracing::warn!(reason = %reason, "Lost the leadership; stopped publishing and competing for it again.");
            }
            Err(error) => {
                metrics::gauge!("relay_leader").set(0.0);
                tracing::warn!(error = %error, "The relay stopped; competing for the leadership again.");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Ok(()) => {}
        }
    }
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
