use deliverer::alerts::Evaluator;
use deliverer::dispatch::{Dispatcher, Sending};
use deliverer::endpoints::Endpoints;
use deliverer::fanout::FanOut;
use deliverer::sender::Sender;
use deliverer::Settings;
use event_store::EventStore;
use event_store::Repository;
use projector::{Sink, Worker};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long a completed run may take to reach the read models before the evaluator's batch is
/// tried again; under the 10 s a consumer's batch may take.
const SETTLE: Duration = Duration::from_secs(8);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    service::Process::new("deliverer")
        .metrics(deliverer::instruments::describe)
        .ops(settings.addr)
        .postgres(&settings.database_url, 10)
        .kafka(&settings.kafka)
        .run(|started| async move {
            let store = started.store();
            let allowed: Vec<String> = settings.targets.allowed().iter().map(ToString::to_string).collect();
            if !allowed.is_empty() {
                tracing::warn!(allowed = allowed.join(","),
                    "Webhooks may reach these internal addresses (WEBHOOK_ALLOWED_CIDRS); leave it empty in production.");
            }
            let repo = Repository::new(store.clone(), 10_000);
            let endpoints = Endpoints::new(store.clone());
            let wake = Arc::new(Notify::new());
            let fanout = FanOut::new(store.clone(), endpoints.clone(), wake.clone());
            tokio::spawn(consumer(&settings, &store, &settings.group_id, fanout)?.run());
            let evaluator = Evaluator::new(repo.clone(), SETTLE);
            tokio::spawn(consumer(&settings, &store, &settings.alerts_group_id, evaluator.clone())?.run());
            let clickhouse = service::clickhouse::client(&settings.clickhouse_url, &settings.clickhouse_database);
            tokio::spawn(evaluator.run_schedule(clickhouse, settings.alerts_every));
            let sending = Sending {
                keyring: settings.keyring.clone(),
                sender: Sender::new(settings.targets.clone(), settings.timeout)?,
                retry: settings.retry.clone(),
                owner: settings.lease_owner(),
                lease: settings.lease,
                max_in_flight: settings.max_in_flight,
            };
            let dispatcher = Dispatcher::new(repo, endpoints, sending, wake);
            dispatcher.run(settings.poll).await;
            Ok(())
        })
        .await
}

/// A consumer of the events topic in `group`, applying its batches to `sink`.
fn consumer<S: Sink>(settings: &Settings, store: &EventStore, group: &str, sink: S) -> anyhow::Result<Worker<S>> {
    let kafka = &settings.kafka;
    let instance = settings.instance_id.as_deref();
    Worker::new(
        &kafka.brokers,
        group,
        instance,
        &kafka.topic,
        sink,
        store.clone(),
        settings.batch_size,
    )
}
