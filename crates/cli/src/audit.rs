//! `promptcards audit export`: one workspace's whole history, for auditors.

use crate::output::{json_line, parse_time};
use crate::{Outcome, Settings};
use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, ValueEnum};
use event_store::{EventFilter, RecordedEvent};
use futures::TryStreamExt;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per event and line.
    Jsonl,
    /// A header and one row per event; `data` is a JSON string column.
    Csv,
}

/// Shown by `--help` after the options.
pub const DETAILS: &str = "\
Exports every event appended on behalf of the workspace, and nothing of another, in the \
store's global order, from one consistent snapshot.";

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The workspace's id.
    #[arg(long, value_name = "WORKSPACE_ID")]
    pub workspace: Uuid,
    #[arg(long, value_enum)]
    pub format: Format,
    /// Only events recorded at or after: RFC 3339, a date, or an age such as 7d.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Write to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

const COLUMNS: [&str; 13] = [
    "position",
    "recorded_at",
    "workspace_id",
    "stream_type",
    "stream_id",
    "version",
    "event_type",
    "schema_version",
    "actor_id",
    "event_id",
    "correlation_id",
    "causation_id",
    "data",
];

pub async fn run(settings: &Settings, args: ExportArgs) -> anyhow::Result<Outcome> {
    let store = settings.store().await?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let filter = EventFilter {
        workspace_id: Some(args.workspace),
        since: args.since,
        ..EventFilter::default()
    };
    let mut events = store.events(&filter);
    let mut count = 0u64;
    match args.format {
        Format::Jsonl => {
            while let Some(event) = events.try_next().await? {
                json_line(&mut out, &record(&event))?;
                count += 1;
            }
        }
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(&mut out);
            writer.write_record(COLUMNS)?;
            while let Some(event) = events.try_next().await? {
                writer.write_record(row(&event))?;
                count += 1;
            }
            writer.flush()?;
        }
    }
    out.flush()?;
    if let Some(path) = &args.output {
        eprintln!(
            "{count} events of workspace {} written to {}",
            args.workspace,
            path.display()
        );
    }
    Ok(Outcome::Done)
}

fn record(event: &RecordedEvent) -> serde_json::Value {
    json!({
        "position": event.position,
        "recorded_at": timestamp(&event.recorded_at),
        "workspace_id": event.workspace_id,
        "stream_type": event.stream_type,
        "stream_id": event.stream_id,
        "version": event.version,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "actor_id": event.actor_id,
        "event_id": event.event_id,
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "data": event.data,
    })
}

fn row(event: &RecordedEvent) -> [String; 13] {
    let optional = |id: Option<Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
    [
        event.position.to_string(),
        timestamp(&event.recorded_at),
        optional(event.workspace_id),
        event.stream_type.clone(),
        event.stream_id.to_string(),
        event.version.to_string(),
        event.event_type.clone(),
        event.schema_version.to_string(),
        optional(event.actor_id),
        event.event_id.to_string(),
        event.correlation_id.to_string(),
        optional(event.causation_id),
        event.data.to_string(),
    ]
}

/// Microseconds, as Postgres keeps them, so an export loses nothing.
fn timestamp(moment: &DateTime<Utc>) -> String {
    moment.to_rfc3339_opts(SecondsFormat::Micros, true)
}
