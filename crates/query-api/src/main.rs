use query_api::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::init_telemetry("query-api");
    let settings = Settings::from_env()?;
    let app = Application::build(settings).await?;
    app.run_until_stopped().await
}
