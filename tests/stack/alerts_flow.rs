//! The README's walk-through on a whole stack: an endpoint registered over REST is told of each
//! run's end; a pass-rate rule fires when a run fails its cases and resolves when the next run
//! passes, once each, delivered as webhooks and listed by GraphQL.

use crate::support::{eventually, Stack};
use serde_json::{json, Value};
use std::time::Duration;
use test_support::webhooks::Receiver;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_run_fires_an_alert_and_a_passing_one_resolves_it() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let client = stack.client().await;
    let hook = client
        .post(
            "/webhooks",
            json!({ "url": receiver.url(), "events": ["run.completed", "alert.fired", "alert.resolved"] }),
        )
        .await;
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let card = client.create_card("Watched").await;
    let case = |name: &str, expected: &str| json!({ "name": name, "vars": { "word": "alpha" }, "assertions": [{ "type": "contains", "value": expected }] });
    let good = client
        .post(&format!("/prompt-cards/{card}/test-cases"), case("good", "alpha"))
        .await;
    let bad = client
        .post(&format!("/prompt-cards/{card}/test-cases"), case("bad", "omega"))
        .await;
    client
        .post(
            "/alert-rules",
            json!({ "kind": "pass_rate_below", "card_id": card, "threshold": 0.75, "window_runs": 1 }),
        )
        .await;

    let mut runs = Vec::new();
    for case in [&good, &bad, &good] {
        let run = client
            .post(
                "/runs",
                json!({ "card_id": card, "providers": ["echo"], "test_case_ids": [case["id"]] }),
            )
            .await;
        let run_id = run["run_id"].as_str().unwrap().to_owned();
        // One run at a time, so each is the window's only run when it is measured.
        eventually(Duration::from_secs(60), "the run's end is delivered", || async {
            receiver
                .received()
                .iter()
                .any(|r| r.json()["data"]["run_id"] == run_id.as_str())
                .then_some(())
        })
        .await;
        runs.push(run_id);
    }
    eventually(Duration::from_secs(60), "the alert fires and resolves", || async {
        let alerts = receiver
            .received()
            .iter()
            .filter(|r| r.json()["type"].as_str().unwrap().starts_with("alert."))
            .count();
        (alerts >= 2).then_some(())
    })
    .await;
    // A little longer, for a second alert that must not come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received();

    let of_type = |kind: &str| -> Vec<Value> {
        received
            .iter()
            .filter(|r| r.json()["type"] == kind)
            .map(|r| {
                r.verify(&secret).unwrap();
                r.json()["data"].clone()
            })
            .collect()
    };
    let completed = of_type("run.completed");
    let pass_rates: Vec<Value> = runs
        .iter()
        .map(|run| completed.iter().find(|c| c["run_id"] == run.as_str()).unwrap()["pass_rate"].clone())
        .collect();
    assert_eq!(pass_rates, vec![json!(1.0), json!(0.0), json!(1.0)]);
    let (fired, resolved) = (of_type("alert.fired"), of_type("alert.resolved"));
    assert_eq!((fired.len(), resolved.len()), (1, 1), "{received:?}");
    assert_eq!(fired[0]["run_id"], runs[1].as_str());
    assert_eq!(fired[0]["figure"]["value"], 0.0);
    assert_eq!(resolved[0]["run_id"], runs[2].as_str());
    assert_eq!(fired[0]["alert_id"], resolved[0]["alert_id"]);

    let alerts = eventually(Duration::from_secs(10), "GraphQL lists the alert resolved", || async {
        let data = client
            .try_graphql(
                &stack.url("query-api"),
                &format!(
                    r#"{{ alerts(workspaceId: "{}") {{ status message runId }} }}"#,
                    client.workspace
                ),
            )
            .await?;
        (data["alerts"][0]["status"] == "RESOLVED").then_some(data["alerts"].clone())
    })
    .await;
    assert_eq!(alerts.as_array().unwrap().len(), 1);
    assert_eq!(alerts[0]["runId"], runs[1].as_str());
}
