//! `promptcards`, the operator CLI: lists and follows events, shows a stream as it was at a
//! version or a time, diffs card versions, rebuilds the projections while the system runs,
//! verifies the store and everything derived from it, exports a workspace's audit trail and
//! grades a past run again under new assertions.
//!
//! Every command reads the event store through the `event-store` crate and folds streams with
//! the domain's own aggregates; replays and verifications project with the projector's own
//! sinks. Nothing here restates a rule of the domain or of a projection.

pub mod audit;
pub mod diff;
pub mod events;
pub mod gate;
pub mod output;
pub mod regrade;
pub mod replay;
pub mod shadow;
pub mod stream;
pub mod verify;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use event_store::EventStore;
use std::process::ExitCode;

/// Exit status when a check found a difference (`verify`).
pub const EXIT_DIFFERENCES: u8 = 1;
/// Exit status when the command could not do its work (a service unreachable, a bad id, ...).
pub const EXIT_ERROR: u8 = 3;
/// Exit status after Ctrl-C interrupted a long command.
pub const EXIT_INTERRUPTED: u8 = 130;

const EXIT_CODES: &str = "\
Exit status: 0 success; 1 a check found differences (verify); 2 bad usage; \
3 the command could not complete; 130 interrupted.";

#[derive(Debug, Parser)]
#[command(
    name = "promptcards",
    version,
    about = "Operator tooling for Promptcards: audit, time travel, replay and verification; and the CI gate.",
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the backing services are: flags, or else the services' own environment variables and
/// development defaults (`service::settings`, where each default is written once).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connections")]
pub struct Settings {
    /// The Postgres event store (and read models) [env: DATABASE_URL]
    #[arg(long, global = true, default_value_t = service::settings::database_url().expose().to_owned(), hide_default_value = true)]
    pub database_url: String,
    /// Kafka bootstrap servers [env: KAFKA_BROKERS]
    #[arg(long, global = true, default_value_t = service::settings::kafka_brokers())]
    pub kafka_brokers: String,
    /// The events topic [env: KAFKA_TOPIC]
    #[arg(long, global = true, default_value_t = service::settings::kafka_topic())]
    pub kafka_topic: String,
    /// Redis, holding the per-stream version keys [env: REDIS_URL]
    #[arg(long, global = true, default_value_t = service::settings::redis_url().expose().to_owned(), hide_default_value = true)]
    pub redis_url: String,
    /// ClickHouse over HTTP [env: CLICKHOUSE_URL]
    #[arg(long, global = true, default_value_t = service::settings::clickhouse_url())]
    pub clickhouse_url: String,
    /// The ClickHouse database holding `events` and `test_results` [env: CLICKHOUSE_DATABASE]
    #[arg(long, global = true, default_value_t = service::settings::clickhouse_database())]
    pub clickhouse_database: String,
}

impl Settings {
    /// The event store, with the store's own session settings.
    pub async fn store(&self) -> anyhow::Result<EventStore> {
        EventStore::connect(&self.database_url, 6)
            .await
            .with_context(|| format!("cannot connect to Postgres at {}", redact(&self.database_url)))
    }
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List events in the store's global order, or follow new ones as they commit.
    #[command(after_long_help = events::DETAILS)]
    Events(events::EventsArgs),
    /// Inspect one stream.
    #[command(subcommand)]
    Stream(StreamCommand),
    /// Show what changed between two versions of a prompt card.
    Diff(diff::DiffArgs),
    /// Rebuild projections from the event store while the system keeps running.
    #[command(after_long_help = replay::DETAILS)]
    Replay(replay::ReplayArgs),
    /// Check the store's integrity and that everything derived from it matches.
    #[command(after_long_help = verify::DETAILS)]
    Verify(verify::VerifyArgs),
    /// Audit trails.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Grade a past run's recorded outputs again under a new assertion set, without calling
    /// any provider; records the result as a `TestRunRegraded` event.
    #[command(after_long_help = regrade::DETAILS)]
    Regrade(regrade::RegradeArgs),
    /// The CI gate: compare a candidate with a baseline through the API and fail the build on
    /// a regression (exit 1); writes JUnit for the CI's test report.
    #[command(after_long_help = gate::DETAILS)]
    Gate(gate::GateArgs),
}

#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// A stream's events up to a version or a moment, and the state they fold into.
    Show(stream::ShowArgs),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Every event of one workspace, with actor, type, data, time, position and stream.
    #[command(after_long_help = audit::DETAILS)]
    Export(audit::ExportArgs),
}

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// A check found differences; they were reported.
    Differences,
    Interrupted,
}

pub async fn run(cli: Cli) -> ExitCode {
    let settings = cli.settings;
    let result = match cli.command {
        Command::Events(args) => events::run(&settings, args).await,
        Command::Stream(StreamCommand::Show(args)) => stream::run(&settings, args).await,
        Command::Diff(args) => diff::run(&settings, args).await,
        Command::Replay(args) => replay::run(&settings, args).await,
        Command::Verify(args) => verify::run(&settings, args).await,
        Command::Audit(AuditCommand::Export(args)) => audit::run(&settings, args).await,
        Command::Regrade(args) => regrade::run(&settings, args).await,
        // The gate talks to the API, not the store, and has exit codes of its own.
        Command::Gate(args) => return ExitCode::from(gate::run(args).await),
    };
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Differences) => ExitCode::from(EXIT_DIFFERENCES),
        Ok(Outcome::Interrupted) => ExitCode::from(EXIT_INTERRUPTED),
        // A reader that went away (`promptcards events | head`) is not a failure.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Logs go to stderr, so they never mix with output meant for pipes; `RUST_LOG` filters them
/// (warnings by default).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/db"),
            "postgres://postgres@127.0.0.1/db"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
