//! `regrade`: new assertions over a run's recorded outputs, recorded as an event of its own.

use crate::support::*;
use domain::run::RunEvent;
use event_store::EventStore;
use sqlx::PgPool;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn regrade_flips_exactly_the_cases_it_should(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let actor = Actor::new();
    actor.create_workspace(&store, &MEMBERS).await;
    let (card, _) = actor.create_card(&store, "Greeter").await;
    // Originally graded by `contains: Hello`.
    let (run, cases) = actor
        .run(
            &store,
            card,
            &[
                ("Ada", Some("Hello Ada!"), true),
                ("Bob", Some("Goodbye Bob."), false),
                ("Cy", Some("Hello Cy!"), true),
                ("Dee", None, false),
                ("Eve", Some("Goodbye Eve."), false),
            ],
        )
        .await;
    let before = store.read_stream(run, 0).await.unwrap();

    let file = std::env::temp_dir().join(format!("assertions-{}.yaml", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &file,
        "- type: icontains\n  value: bob\n- type: not-contains\n  value: Hello\n  weight: 0.5\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();

    let dry = promptcards(&pool, &["regrade", &run.to_string(), "--assertions", path, "--dry-run"])
        .await
        .success();
    assert!(dry.stdout.contains("dry run"), "{}", dry.stdout);
    assert_eq!(
        store.read_stream(run, 0).await.unwrap().len(),
        before.len(),
        "a dry run records nothing"
    );

    let output = promptcards(&pool, &["regrade", &run.to_string(), "--assertions", path, "--json"])
        .await
        .success();
    std::fs::remove_file(&file).unwrap();
    let lines = output.json_lines();
    let (results, summary) = lines.split_at(lines.len() - 1);
    let flips: Vec<(String, Option<&str>)> = results
        .iter()
        .map(|r| (r["case"].as_str().unwrap().to_owned(), r["flip"].as_str()))
        .collect();
    assert_eq!(
        flips,
        vec![
            ("Ada".to_owned(), Some("pass->fail")),
            ("Bob".to_owned(), Some("fail->pass")),
            ("Cy".to_owned(), Some("pass->fail")),
            ("Eve".to_owned(), None),
        ],
        "{}",
        output.stdout
    );
    assert_eq!(
        (summary[0]["pass_to_fail"].as_u64(), summary[0]["fail_to_pass"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(summary[0]["skipped"], 1, "the failed call has no output to grade");

    // The original history is untouched; the re-grade is one more event at the next version.
    let after = store.read_stream(run, 0).await.unwrap();
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(after.len(), before.len() + 1);
    let regraded = after.last().unwrap();
    assert_eq!(regraded.version, before.last().unwrap().version + 1);
    assert_eq!(regraded.workspace_id, Some(actor.workspace_id));
    let RunEvent::TestRunRegraded { assertions, results } = regraded.decode::<RunEvent>().unwrap() else {
        panic!("expected TestRunRegraded, got {}", regraded.event_type)
    };
    assert_eq!(assertions.len(), 2);
    let passed: Vec<(uuid::Uuid, bool)> = results.iter().map(|r| (r.key.case_id, r.passed)).collect();
    assert_eq!(
        passed,
        vec![
            (cases[0], false),
            (cases[1], true),
            (cases[2], false),
            (cases[4], false)
        ]
    );
    assert!(results.iter().all(|r| r.verdicts.len() == 2));

    // Text output names the flipped cases.
    let file = std::env::temp_dir().join(format!("assertions-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, r#"[{"type": "contains", "value": "Goodbye"}]"#).unwrap();
    let text = promptcards(
        &pool,
        &["regrade", &run.to_string(), "--assertions", file.to_str().unwrap()],
    )
    .await
    .success()
    .stdout;
    std::fs::remove_file(&file).unwrap();
    assert!(text.contains("2 pass->fail, 2 fail->pass, 0 unchanged"), "{text}");
    assert!(text.contains("Ada") && text.contains("Eve"), "{text}");

    let invalid = std::env::temp_dir().join(format!("assertions-{}.yaml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&invalid, "- type: javascript\n  value: output.length > 3\n").unwrap();
    let refused = promptcards(
        &pool,
        &["regrade", &run.to_string(), "--assertions", invalid.to_str().unwrap()],
    )
    .await;
    std::fs::remove_file(&invalid).unwrap();
    assert_eq!(refused.code, 3);
    assert!(refused.stderr.contains("assertions[0].type"), "{}", refused.stderr);
}

/// A grader speaking the OpenAI protocol: passes outputs that greet, fails the others. Keeps
/// the request bodies it received.
async fn greeting_grader() -> (String, std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    let app = axum::Router::new().route(
        "/chat/completions",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(body.clone());
                let greets = body["messages"][1]["content"].as_str().unwrap_or_default().contains("Hello");
                let judgement = serde_json::json!({"pass": greets, "score": if greets { 1.0 } else { 0.0 }, "reason": if greets { "greets" } else { "no greeting" }});
                axum::Json(serde_json::json!({
                    "choices": [{"message": {"role": "assistant", "content": judgement.to_string()}}],
                    "usage": {"prompt_tokens": 50, "completion_tokens": 10}
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, bodies)
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn regrade_calls_the_grader_again_for_model_graded_assertions(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let actor = Actor::new();
    actor.create_workspace(&store, &MEMBERS).await;
    let (card, _) = actor.create_card(&store, "Greeter").await;
    let (run, cases) = actor
        .run(
            &store,
            card,
            &[
                ("Ada", Some("Hello Ada!"), false),
                ("Bob", Some("Goodbye Bob."), true),
                ("Dee", None, false),
            ],
        )
        .await;
    let (url, bodies) = greeting_grader().await;
    let file = std::env::temp_dir().join(format!("assertions-{}.yaml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, "- type: llm-rubric\n  value: greets the person by name\n").unwrap();
    let output = promptcards_with(
        &pool,
        &[
            "regrade",
            &run.to_string(),
            "--assertions",
            file.to_str().unwrap(),
            "--json",
        ],
        &[
            ("OPENAI_BASE_URL", url),
            ("GRADING_PROVIDER", "openai:chat:judge".to_owned()),
            ("PRICES_FILE", String::new()),
        ],
    )
    .await
    .success();
    std::fs::remove_file(&file).unwrap();
    let lines = output.json_lines();
    let flips: Vec<(&str, Option<&str>, &str)> = lines[..2]
        .iter()
        .map(|r| {
            (
                r["case"].as_str().unwrap(),
                r["flip"].as_str(),
                r["verdicts"][0]["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flips,
        vec![
            ("Ada", Some("fail->pass"), "greets"),
            ("Bob", Some("pass->fail"), "no greeting")
        ],
        "{}",
        output.stdout
    );
    assert_eq!(lines[0]["grading_prompt_tokens"], 50);
    // Only the grader was called, once per recorded output, with the recorded output and rubric.
    let sent = bodies.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|b| b["model"] == "judge"));
    assert!(sent.iter().any(|b| b["messages"][1]["content"]
        .as_str()
        .unwrap()
        .contains("<Output>\nHello Ada!\n</Output>\n<Rubric>\ngreets the person by name\n</Rubric>")));

    let last = store.read_stream(run, 0).await.unwrap().pop().unwrap();
    let RunEvent::TestRunRegraded { results, .. } = last.decode::<RunEvent>().unwrap() else {
        panic!("expected TestRunRegraded, got {}", last.event_type)
    };
    let graded: Vec<(uuid::Uuid, bool, u32)> = results
        .iter()
        .map(|r| (r.key.case_id, r.passed, r.grading.grading_completion_tokens))
        .collect();
    assert_eq!(graded, vec![(cases[0], true, 10), (cases[1], false, 10)]);
}
