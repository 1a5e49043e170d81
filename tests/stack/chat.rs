//! A chat prompt end to end: created over the API, run on echo (which answers with what it was
//! sent), served by name, and shown as it was by `promptcards stream show`.

use crate::support::{binary_path, eventually, Stack};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chat_card_runs_is_served_and_travels_in_time() {
    let stack = Stack::start().await;
    let query_api = stack.url("query-api");
    let client = stack.client().await;
    let created = client
        .post(
            "/prompt-cards",
            json!({ "title": "Support reply", "name": "support-reply",
                "messages": [
                    { "role": "system", "content": "You answer support tickets." },
                    { "role": "user", "content": "Write to {{ customer }}." }
                ],
                "variables": [{ "name": "customer", "type": "string" }],
                "config": { "temperature": 0 } }),
        )
        .await;
    let card = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "support-reply", "{created}");
    client
        .post(
            &format!("/prompt-cards/{card}/test-cases"),
            json!({ "name": "ada", "vars": { "customer": "Ada" }, "assertions": [{ "type": "contains", "value": "Write to Ada." }] }),
        )
        .await;
    let run = client
        .post("/runs", json!({ "card_id": card, "providers": ["echo"] }))
        .await["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let query = "query($id: ID!) { testRun(id: $id) { status results { output passed } } }";
    let done = eventually(Duration::from_secs(60), "the chat run completes", || async {
        let data = client.graphql(&query_api, query, json!({ "id": run })).await;
        (data["testRun"]["status"] == "COMPLETED").then(|| data["testRun"].clone())
    })
    .await;
    let result = &done["results"][0];
    let output = result["output"].as_str().unwrap();
    assert!(
        output.contains("You answer support tickets.") && output.contains("Write to Ada."),
        "{output}"
    );
    assert_eq!(result["passed"], true, "{done}");

    let served = client.send(Method::GET, "/prompts/support-reply?version=1", None).await;
    assert_eq!(served.status(), 200);
    let served: Value = served.json().await.unwrap();
    assert_eq!(served["type"], "chat", "{served}");
    assert_eq!(served["messages"][1]["content"], "Write to {{ customer }}.");
    assert_eq!(served["config"], json!({ "temperature": 0 }));

    let output = tokio::process::Command::new(binary_path("promptcards"))
        .args(["stream", "show", &card, "--at-version", "1", "--json"])
        .env("DATABASE_URL", &stack.database_url)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let shown: Value = serde_json::from_slice(&output.stdout).unwrap();
    let text = shown.to_string();
    assert!(
        text.contains("\"chat\"") && text.contains("Write to {{ customer }}."),
        "{shown}"
    );
    assert!(text.contains("support-reply"), "{shown}");
}
