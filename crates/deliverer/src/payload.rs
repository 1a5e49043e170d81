//! Which events become deliveries, as which `type`, and the body they are sent with:
//! `{"type", "timestamp", "data"}` as the Standard Webhooks specification shapes it. `data` names
//! the event (`event_id`, `position`, `workspace_id`) and what it says, in the event's own terms.

use anyhow::Context;
use domain::alert::AlertRuleEvent;
use domain::card::CardEvent;
use domain::comparison::ComparisonEvent;
use domain::names::stream_types;
use domain::run::RunEvent;
use domain::webhook::event_types;
use event_store::{EventStore, RecordedEvent};
use serde_json::{json, Map, Value};

/// The delivery type of an event, if endpoints are told of it.
pub fn delivery_type(event: &RecordedEvent) -> Option<&'static str> {
    Some(match (event.stream_type.as_str(), event.event_type.as_str()) {
        (stream_types::PROMPT_CARD, "PromptCardCreated") => event_types::CARD_CREATED,
        (stream_types::PROMPT_CARD, "PromptCardUpdated") => event_types::CARD_UPDATED,
        (stream_types::PROMPT_CARD, "PromptCardLabelMoved") => event_types::LABEL_MOVED,
        (stream_types::TEST_RUN, RunEvent::TEST_RUN_COMPLETED) => event_types::RUN_COMPLETED,
        (stream_types::TEST_RUN, "TestRunFailed") => event_types::RUN_FAILED,
        (stream_types::COMPARISON, "ComparisonCompleted") => event_types::COMPARISON_COMPLETED,
        (stream_types::ALERT_RULE, AlertRuleEvent::ALERT_FIRED) => event_types::ALERT_FIRED,
        (stream_types::ALERT_RULE, AlertRuleEvent::ALERT_RESOLVED) => event_types::ALERT_RESOLVED,
        _ => return None,
    })
}

/// The body of the delivery of `event` as `kind`: the exact text every attempt sends.
pub async fn body(store: &EventStore, event: &RecordedEvent, kind: &str) -> anyhow::Result<String> {
    let mut data = Map::new();
    data.insert("event_id".into(), json!(event.event_id));
    data.insert("position".into(), json!(event.position));
    data.insert("workspace_id".into(), json!(event.workspace_id));
    let about = match event.stream_type.as_str() {
        stream_types::PROMPT_CARD => card(event)?,
        stream_types::TEST_RUN => run(store, event).await?,
        stream_types::ALERT_RULE => alert(event)?,
        stream_types::COMPARISON => comparison(event)?,
        other => anyhow::bail!("no delivery is made of {other} events"),
    };
    data.extend(about);
    Ok(json!({ "type": kind, "timestamp": event.recorded_at, "data": data }).to_string())
}

/// A comparison's end: its verdict, p-value, flip count, both sides' pass rates and whether it
/// promoted its candidate.
fn comparison(event: &RecordedEvent) -> anyhow::Result<Map<String, Value>> {
    let ComparisonEvent::ComparisonCompleted { report, promotion } = event.decode::<ComparisonEvent>()? else {
        anyhow::bail!("no delivery is made of {}", event.event_type);
    };
    Ok(object(json!({
        "comparison_id": event.stream_id,
        "verdict": report.overall.verdict,
        "p_value": report.overall.p_value,
        "baseline_pass_rate": report.overall.baseline.pass_rate,
        "candidate_pass_rate": report.overall.candidate.pass_rate,
        "flip_count": report.flip_count,
        "promotion": promotion,
    })))
}

fn card(event: &RecordedEvent) -> anyhow::Result<Map<String, Value>> {
    let card_id = event.stream_id;
    let data = match event.decode::<CardEvent>()? {
        CardEvent::PromptCardCreated { content, .. } => {
            json!({ "card_id": card_id, "version": 1, "title": content.title, "tags": content.tags })
        }
        CardEvent::PromptCardUpdated { version, content } => {
            json!({ "card_id": card_id, "version": version, "title": content.title, "tags": content.tags })
        }
        CardEvent::PromptCardLabelMoved {
            label,
            version,
            previous_version,
        } => json!({ "card_id": card_id, "label": label, "version": version, "previous_version": previous_version }),
        other => anyhow::bail!("no delivery is made of {other:?}"),
    };
    Ok(object(data))
}

/// A run's end, with what the run was (its card, version and providers), from the event that
/// requested it.
async fn run(store: &EventStore, event: &RecordedEvent) -> anyhow::Result<Map<String, Value>> {
    let run_id = event.stream_id;
    let requested = store
        .event_at_version(run_id, 1)
        .await?
        .with_context(|| format!("run {run_id} has no first event"))?;
    let RunEvent::TestRunRequested { plan, total, .. } = requested.decode::<RunEvent>()? else {
        anyhow::bail!("run {run_id} does not start with its request");
    };
    let providers: Vec<&str> = plan.providers.iter().map(|p| p.id.as_str()).collect();
    let mut data = object(json!({
        "run_id": run_id,
        "card_id": plan.card_id,
        "card_version": plan.card_version,
        "providers": providers,
        "total": total,
    }));
    let outcome = match event.decode::<RunEvent>()? {
        RunEvent::TestRunCompleted { passed, failed } => {
            let graded = passed + failed;
            json!({
                "status": "COMPLETED",
                "passed": passed,
                "failed": failed,
                "pass_rate": if graded == 0 { Value::Null } else { json!(passed as f64 / graded as f64) },
            })
        }
        RunEvent::TestRunFailed { reason } => json!({ "status": "FAILED", "reason": reason }),
        other => anyhow::bail!("no delivery is made of {other:?}"),
    };
    data.extend(object(outcome));
    Ok(data)
}

fn alert(event: &RecordedEvent) -> anyhow::Result<Map<String, Value>> {
    let (status, alert_id, spec, figure, run_id, message) = match event.decode::<AlertRuleEvent>()? {
        AlertRuleEvent::AlertFired {
            alert_id,
            spec,
            figure,
            run_id,
            message,
            ..
        } => ("firing", alert_id, spec, json!(figure), run_id, message),
        AlertRuleEvent::AlertResolved {
            alert_id,
            spec,
            figure,
            run_id,
            message,
            ..
        } => ("resolved", alert_id, spec, json!(figure), run_id, message),
        other => anyhow::bail!("no delivery is made of {other:?}"),
    };
    Ok(object(json!({
        "alert_id": alert_id, "rule_id": event.stream_id, "status": status, "rule": spec, "figure": figure,
        "run_id": run_id, "message": message,
    })))
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
