use command_api::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::init_telemetry("command-api");
    let settings = Settings::from_env()?;
    let app = Application::build(settings).await?;
    let result = app.run_until_stopped().await;
    service::shutdown_telemetry();
    result
}
