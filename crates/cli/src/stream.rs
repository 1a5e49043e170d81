//! `promptcards stream show`: time travel. A stream's events up to a version or a moment, and
//! the state the domain's own aggregates fold them into.

use crate::output::{self, json_line, parse_time};
use crate::{Outcome, Settings};
use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use clap::Args;
use domain::card::PromptCard;
use domain::run::TestRun;
use domain::test_case::TestCase;
use domain::user::User;
use domain::workspace::Workspace;
use domain::Aggregate;
use event_store::{fold_recorded, EventStore, RecordedEvent};
use serde_json::{json, Map, Value};
use std::io::Write;
use uuid::Uuid;

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The stream's id (a card's, a test case's, a workspace's, a user's or a run's id).
    pub id: Uuid,
    /// Show the stream as it was at this stream version (a card's stream also counts label
    /// moves, archiving and test cases, so it can be ahead of the card's own version).
    #[arg(long, value_name = "N", conflicts_with = "at_time")]
    pub at_version: Option<i64>,
    /// Show the stream as it was at this moment (events recorded at or before it): RFC 3339,
    /// a date, or an age such as 2h.
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub at_time: Option<DateTime<Utc>>,
    /// One JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(settings: &Settings, args: ShowArgs) -> anyhow::Result<Outcome> {
    let store = settings.store().await?;
    let shown = load(&store, &args).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let document = json!({
            "stream": {
                "id": shown.stream_id,
                "type": shown.stream_type,
                "workspace_id": shown.workspace_id,
                "current_version": shown.current_version,
                "version": shown.version(),
            },
            "at_version": args.at_version,
            "at_time": args.at_time,
            "events": shown.events,
            "state": shown.state.as_ref().map(|fields| Value::Object(fields.iter().cloned().collect::<Map<_, _>>())),
        });
        json_line(&mut out, &document)?;
        return Ok(Outcome::Done);
    }

    writeln!(out, "stream    {} ({})", shown.stream_id, shown.stream_type)?;
    if let Some(workspace_id) = shown.workspace_id {
        writeln!(out, "workspace {workspace_id}")?;
    }
    let at = match (args.at_version, args.at_time) {
        (Some(version), _) => format!(" at version {version}"),
        (_, Some(moment)) => format!(" as of {}", output::time(&moment)),
        _ => String::new(),
    };
    writeln!(out, "version   {} of {}{at}", shown.version(), shown.current_version)?;
    writeln!(out)?;
    if shown.events.is_empty() {
        writeln!(out, "The stream had no events yet{at}.")?;
        return Ok(Outcome::Done);
    }
    let mut events = output::table(["VER", "POSITION", "RECORDED AT", "EVENT TYPE", "ACTOR"]);
    for event in &shown.events {
        events.add_row(vec![
            event.version.to_string(),
            event.position.to_string(),
            output::time(&event.recorded_at),
            event.event_type.clone(),
            output::optional(&event.actor_id),
        ]);
    }
    writeln!(out, "{events}")?;
    writeln!(out)?;
    match &shown.state {
        None => writeln!(
            out,
            "No aggregate folds {} streams; the events above are the whole story.",
            shown.stream_type
        )?,
        Some(fields) => {
            let mut state = output::table(["STATE", "VALUE"]);
            for (field, value) in fields {
                let variables = (field == "variables")
                    .then(|| serde_json::from_value::<Vec<domain::template::Variable>>(value.clone()).ok())
                    .flatten();
                let text = match variables {
                    Some(variables) if !variables.is_empty() => variables
                        .iter()
                        .map(crate::diff::describe)
                        .collect::<Vec<_>>()
                        .join("\n"),
                    _ => readable(value),
                };
                state.add_row(vec![field.to_owned(), text]);
            }
            writeln!(out, "{state}")?;
        }
    }
    Ok(Outcome::Done)
}

/// A stream cut at a version or a moment, and its folded state.
struct Shown {
    stream_id: Uuid,
    stream_type: String,
    workspace_id: Option<Uuid>,
    current_version: i64,
    events: Vec<RecordedEvent>,
    /// Field name and value, in the order they read best; `None` for stream types without an
    /// aggregate.
    state: Option<Vec<(String, Value)>>,
}

impl Shown {
    fn version(&self) -> i64 {
        self.events.last().map(|e| e.version).unwrap_or(0)
    }
}

async fn load(store: &EventStore, args: &ShowArgs) -> anyhow::Result<Shown> {
    let info = store
        .stream_info(args.id)
        .await?
        .with_context(|| format!("no stream {} in the event store", args.id))?;
    if let Some(version) = args.at_version {
        if version < 1 || version > info.version {
            bail!("stream {} has versions 1 to {}, not {version}", args.id, info.version);
        }
    }
    let mut events = store.read_stream(args.id, 0).await?;
    events
        .retain(|e| args.at_version.is_none_or(|v| e.version <= v) && args.at_time.is_none_or(|t| e.recorded_at <= t));
    let state = if events.is_empty() {
        None
    } else {
        state(&info.stream_type, &events)?
    };
    Ok(Shown {
        stream_id: info.stream_id,
        stream_type: info.stream_type,
        workspace_id: info.workspace_id,
        current_version: info.version,
        events,
        state,
    })
}

/// Folds the events with the aggregate of their stream type and describes the result.
pub fn state(stream_type: &str, events: &[RecordedEvent]) -> anyhow::Result<Option<Vec<(String, Value)>>> {
    let fields = match stream_type {
        PromptCard::STREAM_TYPE => card_state(&fold_recorded(events)?),
        TestCase::STREAM_TYPE => case_state(&fold_recorded(events)?),
        Workspace::STREAM_TYPE => workspace_state(&fold_recorded(events)?),
        User::STREAM_TYPE => user_state(&fold_recorded(events)?),
        TestRun::STREAM_TYPE => run_state(&fold_recorded(events)?),
        _ => return Ok(None),
    };
    Ok(Some(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

fn card_state(card: &PromptCard) -> Vec<(&'static str, Value)> {
    let current = card.current().map(|v| &v.content);
    vec![
        ("id", json!(card.id)),
        ("workspace_id", json!(card.workspace_id)),
        ("name", json!(card.name)),
        ("version", json!(card.version())),
        ("type", json!(current.map(|c| c.kind().as_str()))),
        ("title", json!(current.map(|c| &c.title))),
        ("description", json!(current.map(|c| &c.description))),
        ("tags", json!(current.map(|c| &c.tags))),
        ("variables", json!(current.map(|c| &c.variables))),
        ("labels", json!(card.labels)),
        ("archived", json!(card.archived)),
        ("test_cases", json!(card.test_cases)),
        ("template", json!(current.map(|c| &c.template))),
        ("messages", json!(current.map(|c| &c.messages))),
        ("config", json!(current.map(|c| &c.config))),
    ]
}

fn case_state(case: &TestCase) -> Vec<(&'static str, Value)> {
    let content = case.content.as_ref();
    vec![
        ("id", json!(case.id)),
        ("card_id", json!(case.card_id)),
        ("workspace_id", json!(case.workspace_id)),
        ("name", json!(content.map(|c| &c.name))),
        ("vars", json!(content.map(|c| &c.vars))),
        (
            "expected_output",
            json!(content.and_then(|c| c.expected_output.as_ref())),
        ),
        ("assertions", json!(content.map(|c| &c.assertions))),
        ("deleted", json!(case.deleted)),
    ]
}

fn workspace_state(workspace: &Workspace) -> Vec<(&'static str, Value)> {
    let members: Map<String, Value> = workspace
        .members
        .iter()
        .map(|(user, role)| (user.to_string(), json!(role.as_str())))
        .collect();
    // Secret hashes stay out of the output: the state shows what an operator needs.
    let keys: Vec<Value> = workspace
        .api_keys
        .iter()
        .map(|(id, key)| json!({ "key_id": id, "name": key.name, "role": key.role.as_str(), "revoked": key.revoked_at.is_some(), "revoked_at": key.revoked_at, "expires_at": key.expires_at }))
        .collect();
    vec![
        ("id", json!(workspace.id)),
        ("name", json!(workspace.name)),
        ("members", Value::Object(members)),
        ("api_keys", json!(keys)),
    ]
}

fn user_state(user: &User) -> Vec<(&'static str, Value)> {
    // The password hash is never printed.
    vec![("id", json!(user.id)), ("email", json!(user.email))]
}

fn run_state(run: &TestRun) -> Vec<(&'static str, Value)> {
    let plan = run.plan.as_ref();
    vec![
        ("id", json!(run.id)),
        ("status", json!(run.status.as_str())),
        ("card_id", json!(plan.map(|p| p.card_id))),
        ("card_version", json!(plan.map(|p| p.card_version))),
        (
            "providers",
            json!(plan.map(|p| p.providers.iter().map(|s| &s.id).collect::<Vec<_>>())),
        ),
        ("cases", json!(plan.map(|p| p.cases.len()))),
        ("repeat", json!(plan.map(|p| p.repeat))),
        ("total", json!(run.total())),
        ("completed", json!(run.completed())),
        ("passed", json!(run.passed)),
        ("failed", json!(run.failed)),
        ("failure", json!(run.failure)),
    ]
}

/// A value as a person reads it: text as is, lists of text joined, the rest as indented JSON.
fn readable(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
        }
        Value::Object(map) if map.is_empty() => "-".to_owned(),
        Value::Object(map) if map.values().all(|v| v.is_string() || v.is_number()) => map
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}: {}",
                    v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}
