use event_store::Repository;
use providers::{PriceTable, ProviderSettings, Providers};
use runner::grading::{GradingSettings, SettingsGraders};
use runner::{RunRequests, Runner, Settings};
use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let providers = Arc::new(Providers::new(ProviderSettings::from_env()?, PriceTable::from_env()?));
    let sealer = Arc::new(service::sealing::Sealer::from_env()?);
    service::Process::new("runner")
        .metrics(runner::instruments::describe)
        .ops(settings.addr)
        .postgres(&settings.database_url, 8)
        .kafka(&settings.kafka)
        .redis(&settings.redis_url)
        .run(|started| async move {
            let graders = Arc::new(SettingsGraders::new(providers.clone(), GradingSettings::from_env()));
            let runner = Runner::new(
                Repository::new(started.store(), 1_000),
                providers,
                settings.max_in_flight,
            )
            .with_workspace_credentials(sealer, settings.environment_keys)
            .with_graders(graders)
            .with_live_updates(service::redis::connect_in_background(
                settings.redis_url.expose(),
                "connecting to Redis for executions' live updates",
            ));
            RunRequests::new(
                &settings.kafka.brokers,
                &settings.group_id,
                settings.instance_id.as_deref(),
                &settings.kafka.topic,
                runner,
                settings.max_concurrent_runs,
            )?
            .run()
            .await
        })
        .await
}
