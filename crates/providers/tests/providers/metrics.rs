//! Calls are counted by outcome and timed, in the process-wide Prometheus recorder the runner
//! serves at `/metrics`. Each test uses a provider id of its own, since the recorder is shared.

use crate::common::{providers, serve, settings, spec, Reply};
use serde_json::{json, Value};
use std::time::Duration;

fn sample(rendered: &str, name: &str, labels: &[&str]) -> Option<f64> {
    rendered
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn calls_are_counted_by_outcome_and_timed() {
    let handle = service::metrics_handle();
    let fake = serve(|n, seen| match (seen.body["model"].as_str(), n) {
        (Some("metrics-slow"), _) => Reply::Hang,
        (_, 0) => Reply::text(502, "bad gateway"),
        _ => Reply::json(200, json!({"choices": [{"message": {"content": "ok"}}]})),
    })
    .await;
    let mut settings = settings(&fake);
    settings.timeout = Duration::from_millis(200);
    let providers = providers(settings);
    providers
        .complete(&spec("openai:metrics-ok", Value::Null), "Hi")
        .await
        .unwrap();
    providers
        .complete(&spec("openai:metrics-slow", Value::Null), "Hi")
        .await
        .unwrap_err();
    providers
        .complete(&spec("openai:metrics-bad", json!({"apiKey": "no"})), "Hi")
        .await
        .unwrap_err();

    let rendered = handle.render();
    let calls = |provider: &str, outcome: &str| {
        sample(
            &rendered,
            "runner_provider_calls_total",
            &[&format!("provider=\"{provider}\""), &format!("outcome=\"{outcome}\"")],
        )
    };
    assert_eq!(calls("openai:metrics-ok", "retry"), Some(1.0), "{rendered}");
    assert_eq!(calls("openai:metrics-ok", "ok"), Some(1.0));
    assert_eq!(calls("openai:metrics-slow", "timeout"), Some(1.0));
    assert_eq!(calls("openai:metrics-bad", "error"), Some(1.0));
    assert_eq!(
        sample(
            &rendered,
            "runner_provider_call_seconds_count",
            &["provider=\"openai:metrics-ok\""]
        ),
        Some(1.0)
    );
}
