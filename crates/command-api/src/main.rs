use command_api::{telemetry, Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("command-api");
    let settings = Settings::from_env()?;
    let app = Application::build(settings).await?;
    app.run_until_stopped().await
}
