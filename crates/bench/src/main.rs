//! `cargo run --release --bin bench -- [--quick] [--json] [--only GROUP]`
//!
//! Drives the running stack (`deploy/local/up`) as clients would and prints one figure per
//! line: a table, or `{"metric", "value", "unit"}` JSON lines with `--json`. `--only` runs
//! one group of figures (the part of their names before the dot: `append`, `replay`, ...).
//! Settings: `COMMAND_API_URL`, `QUERY_API_URL`, `DATABASE_URL` (dev defaults).

mod figures;
mod playground;
mod scenarios;
mod webhooks;

use figures::Report;
use std::time::Duration;

pub struct Config {
    pub command_api: String,
    pub query_api: String,
    pub database_url: String,
    /// Concurrent clients for the throughput figures.
    pub concurrency: usize,
    /// How long each throughput figure runs.
    pub duration: Duration,
    /// Commands per second during the freshness figure.
    pub freshness_rate: u32,
    pub subscribers: usize,
    /// Test cases of the runner figure's card, and how often each runs.
    pub run_cases: usize,
    pub run_repeat: u32,
    /// Events in the store the replay figure rebuilds from.
    pub replay_events: usize,
    /// The one group of figures to run, if not all.
    pub only: Option<String>,
}

impl Config {
    pub fn runs(&self, group: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == group)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    const USAGE: &str =
        "usage: bench [--quick] [--json] [--only append|append.store|compare|playground|serve|freshness|graphql|subscriptions|runner|runner.graded|webhooks|replay|rss]";
    let (mut quick, mut json, mut only) = (false, false, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--json" => json = true,
            "--only" => {
                only = Some(
                    args.next()
                        .ok_or_else(|| anyhow::anyhow!("--only needs a group; {USAGE}"))?,
                )
            }
            _ => anyhow::bail!("unknown argument {arg}; {USAGE}"),
        }
    }
    if let Some(group) = &only {
        anyhow::ensure!(
            scenarios::GROUPS.contains(&group.as_str())
                || group == scenarios::STORE_ONLY
                || group == scenarios::GRADED_ONLY,
            "no figures named {group}.*; {USAGE}"
        );
    }
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let config = Config {
        command_api: env("COMMAND_API_URL", "http://127.0.0.1:8080"),
        query_api: env("QUERY_API_URL", "http://127.0.0.1:8081"),
        database_url: env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/promptcards"),
        concurrency: if quick { 8 } else { 16 },
        duration: Duration::from_secs(if quick { 10 } else { 30 }),
        freshness_rate: if quick { 100 } else { 200 },
        subscribers: if quick { 250 } else { 1000 },
        run_cases: 200,
        run_repeat: if quick { 25 } else { 100 },
        replay_events: if quick { 100_000 } else { 1_000_000 },
        only,
    };
    let mut report = Report::new(json);
    scenarios::run_all(&config, &mut report).await?;
    report.finish();
    Ok(())
}
