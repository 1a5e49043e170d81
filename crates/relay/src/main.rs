use event_store::EventStore;
use relay::{Leadership, Relay, RelayError, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    service::Process::new("relay")
        .metrics(relay::instruments::describe)
        .ops(settings.addr)
        .postgres(&settings.database_url, 4)
        .kafka(&settings.kafka)
        .run(|started| lead(settings, started.store()))
        .await
}

/// Leads until the leadership is lost (a Postgres restart ends the lock's session), then
/// competes for it again; never publishes without it.
async fn lead(settings: Settings, store: EventStore) -> anyhow::Result<()> {
    let producer = kafka::producer(&settings.kafka.brokers)?;
    let topic = &settings.kafka.topic;
    loop {
        let leadership = service::retry("taking the relay's leadership", || Leadership::acquire(&store, topic)).await;
        let relay = service::retry("reading the relay's checkpoint", || {
            Relay::new(store.clone(), producer.clone(), topic, settings.batch_size)
        })
        .await
        .lead(leadership);
        let Err(error) = relay.run().await;
        metrics::gauge!("relay_leader").set(0.0);
        match error {
            RelayError::LeadershipLost(reason) => {
                tracing::warn!(reason = %reason, "Lost the leadership; stopped publishing and competing for it again.");
            }
            error => {
                tracing::warn!(error = %error, "The relay stopped; competing for the leadership again.");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}
