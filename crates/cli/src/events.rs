//! `promptcards events`: the store's events in global order, filtered, or followed live.

use crate::output::{self, json_line, parse_time};
use crate::{Outcome, Settings};
use chrono::{DateTime, Utc};
use clap::Args;
use event_store::{Cursor, EventFilter, EventStore, RecordedEvent, EVENTS_CHANNEL};
use futures::TryStreamExt;
use std::io::Write;
use std::time::Duration;
use uuid::Uuid;

/// Shown by `--help` after the options.
pub const DETAILS: &str = "\
Events are listed in the store's global order, `(transaction id, position)`: the order in \
which tailing readers (the relay, the projectors) see them. Without `--follow` the listing \
is one consistent snapshot; with it, history matching the filters is printed first and \
then new events as they commit, until Ctrl-C.";

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events appended on behalf of this workspace.
    #[arg(long, value_name = "WORKSPACE_ID")]
    pub workspace: Option<Uuid>,
    /// Only this stream's events.
    #[arg(long, value_name = "STREAM_ID")]
    pub stream: Option<Uuid>,
    /// Only events of this type, e.g. PromptCardUpdated.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Lowest global position, inclusive.
    #[arg(long, value_name = "P")]
    pub from_position: Option<i64>,
    /// Highest global position, inclusive.
    #[arg(long, value_name = "P")]
    pub to_position: Option<i64>,
    /// Recorded at or after: RFC 3339, a date, or an age such as 15m, 2h, 7d.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Recorded before: RFC 3339, a date, or an age such as 15m, 2h, 7d.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Keep printing new events as they commit, until Ctrl-C.
    #[arg(long, short)]
    pub follow: bool,
    /// One JSON object per event and line instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl EventsArgs {
    fn filter(&self) -> EventFilter {
        EventFilter {
            workspace_id: self.workspace,
            stream_id: self.stream,
            event_type: self.event_type.clone(),
            from_position: self.from_position,
            to_position: self.to_position,
            since: self.since,
            until: self.until,
            limit: self.limit.map(|n| n.min(i64::MAX as u64) as i64),
        }
    }
}

pub async fn run(settings: &Settings, args: EventsArgs) -> anyhow::Result<Outcome> {
    let store = settings.store().await?;
    if args.follow {
        tokio::select! {
            result = follow(&store, &args) => result,
            _ = tokio::signal::ctrl_c() => Ok(Outcome::Done),
        }
    } else {
        list(&store, &args).await
    }
}

async fn list(store: &EventStore, args: &EventsArgs) -> anyhow::Result<Outcome> {
    let mut events = store.events(&args.filter());
    let mut out = std::io::stdout().lock();
    if args.json {
        while let Some(event) = events.try_next().await? {
            json_line(&mut out, &event)?;
        }
        return Ok(Outcome::Done);
    }
    let mut table = output::table([
        "POSITION",
        "RECORDED AT",
        "STREAM TYPE",
        "STREAM",
        "VER",
        "EVENT TYPE",
        "ACTOR",
        "WORKSPACE",
    ]);
    let mut count = 0u64;
    while let Some(event) = events.try_next().await? {
        table.add_row(row(&event));
        count += 1;
    }
    if count > 0 {
        writeln!(out, "{table}")?;
    }
    writeln!(out, "{count} event{}", if count == 1 { "" } else { "s" })?;
    Ok(Outcome::Done)
}

fn row(event: &RecordedEvent) -> Vec<String> {
    vec![
        event.position.to_string(),
        output::time(&event.recorded_at),
        event.stream_type.clone(),
        event.stream_id.to_string(),
        event.version.to_string(),
        event.event_type.clone(),
        output::optional(&event.actor_id),
        output::optional(&event.workspace_id),
    ]
}

/// Tails the store with its safe reader, which never passes a transaction that may still
/// commit, so nothing is skipped however late an append commits. Wakes on the store's append
/// notification and polls meanwhile, since an event can become safe to read without one.
async fn follow(store: &EventStore, args: &EventsArgs) -> anyhow::Result<Outcome> {
    let filter = EventFilter {
        limit: None,
        ..args.filter()
    };
    let mut listener = sqlx::postgres::PgListener::connect_with(store.pool()).await?;
    listener.listen(EVENTS_CHANNEL).await?;
    let mut cursor = Cursor::START;
    let mut printed = 0u64;
    let mut out = std::io::stdout();
    loop {
        let batch = store.read_all(cursor, 500).await?;
        for event in &batch {
            cursor = Cursor::after(event);
            if !filter.matches(event) {
                continue;
            }
            if args.json {
                json_line(&mut out, event)?;
            } else {
                writeln!(
                    out,
                    "{:>9}  {}  {:<12} {} v{:<4} {}",
                    event.position,
                    output::time(&event.recorded_at),
                    event.stream_type,
                    event.stream_id,
                    event.version,
                    event.event_type
                )?;
            }
            printed += 1;
            if args.limit.is_some_and(|limit| printed >= limit) {
                return Ok(Outcome::Done);
            }
        }
        out.flush()?;
        if batch.is_empty() {
            // Either a notification or the poll interval, whichever comes first; a listener
            // that lost its connection reconnects on the next call, so wait before it.
            if let Ok(Err(_)) = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
