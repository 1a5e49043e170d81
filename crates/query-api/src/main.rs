use query_api::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    service::Process::new("query-api")
        .metrics(query_api::metrics::describe)
        .run_draining(|_| async move { Application::build(settings).await?.run_until_stopped().await })
        .await
}
