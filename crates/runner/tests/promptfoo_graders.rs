//! Parity with promptfoo for model-graded assertions: promptfoo's CLI and Promptcards grade the
//! same outputs with the same assertions, both asking the same local OpenAI-compatible server,
//! which answers each case with a fixed judgement (picked by a marker in the output, which both
//! grading prompts carry). Every assertion's pass, score and reason must agree.
//!
//! The grading prompts themselves differ by design (ours ask for the same things in our own
//! words), so what the server received is compared only for what both must carry: the output,
//! the rubric and the expected answer. Where promptfoo's reason for an unreadable answer stops,
//! ours goes on to quote the answer; there ours must start with promptfoo's.
//!
//! Needs promptfoo under `.local/promptfoo` (deploy/local/lib.sh `ensure_promptfoo`, which
//! deploy/local/test runs); without it the test fails and says how to install it.

use assertions::{Assertion, Observation};
use providers::{PriceTable, ProviderSettings, Providers};
use runner::grading::{grade, GradingSettings, SettingsGraders};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Case {
    output: &'static str,
    assertion: Value,
    /// The grader's answer (for g-eval: the steps answer, then the score answer).
    answers: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let c = |output, assertion, answers| Case {
        output,
        assertion,
        answers,
    };
    vec![
        c(
            "CASE1 Hello Ada!",
            json!({"type": "llm-rubric", "value": "greets"}),
            &[r#"{"reason": "It greets.", "pass": true, "score": 0.9}"#],
        ),
        c(
            "CASE2 Hello Ada!",
            json!({"type": "llm-rubric", "value": "greets", "threshold": 0.95}),
            &[r#"{"reason": "ok", "pass": true, "score": 0.9}"#],
        ),
        c(
            "CASE3 Hello Ada!",
            json!({"type": "llm-rubric", "value": "greets"}),
            &["I cannot decide."],
        ),
        c(
            "CASE4 Hello Ada!",
            json!({"type": "not-llm-rubric", "value": "is rude"}),
            &[r#"{"reason": "rude", "pass": true, "score": 0.75}"#],
        ),
        c(
            "CASE5 Hello Ada!",
            json!({"type": "llm-rubric", "value": "greets"}),
            &[r#"Sure: {"pass": "yes", "score": "0.4"}"#],
        ),
        c(
            "CASE6 Lyon",
            json!({"type": "factuality", "value": "Paris is the capital"}),
            &[r#"{"category": "D", "reason": "Lyon is not the capital."}"#],
        ),
        c(
            "CASE7 Paris",
            json!({"type": "factuality", "value": "Paris"}),
            &[r#"{"category": "b"}"#],
        ),
        c(
            "CASE8 Paris",
            json!({"type": "factuality", "value": "Paris"}),
            &["(A) It is a subset."],
        ),
        c(
            "CASE9 Paris",
            json!({"type": "model-graded-closedqa", "value": "names a city"}),
            &["It names Paris.\nY\nY"],
        ),
        c(
            "CASE10 Paris",
            json!({"type": "model-graded-closedqa", "value": "names a city"}),
            &["Hard to say."],
        ),
        c(
            "CASE11 A coherent reply",
            json!({"type": "g-eval", "value": "CASE11 coherent"}),
            &[
                r#"{"steps":["Read it","Judge flow"]}"#,
                r#"{"score":8,"reason":"Flows well."}"#,
            ],
        ),
        c(
            "CASE12 A coherent reply",
            json!({"type": "g-eval", "value": "CASE12 concise", "threshold": 0.9}),
            &[r#"{"steps":["Read it"]}"#, r#"{"score":6,"reason":"Some jumps."}"#],
        ),
        c("CASE13 BETA", json!({"type": "similar", "value": "ALPHA"}), &[]),
        c(
            "CASE14 BETA",
            json!({"type": "similar", "value": "ALPHA", "threshold": 0.5}),
            &[],
        ),
        c("CASE15 BETA", json!({"type": "not-similar", "value": "ALPHA"}), &[]),
    ]
}

/// The fixed judgements: the case marker in the grading prompt picks the case; a g-eval
/// evaluation prompt (it lists the steps) gets the second answer.
async fn grader(cases: &[Case]) -> (String, Arc<Mutex<Vec<Value>>>) {
    let answers: Vec<(String, Vec<String>)> = cases
        .iter()
        .map(|case| {
            let marker = case.output.split_whitespace().next().unwrap().to_owned();
            (marker, case.answers.iter().map(|a| (*a).to_owned()).collect())
        })
        .collect();
    let answers = Arc::new(answers);
    let received = Arc::new(Mutex::new(Vec::new()));
    let seen = received.clone();
    let app = axum::Router::new()
        .route(
            "/chat/completions",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let (answers, seen) = (answers.clone(), seen.clone());
                async move {
                    seen.lock().unwrap().push(body.clone());
                    let text: String = body["messages"]
                        .as_array()
                        .map(|m| m.iter().filter_map(|m| m["content"].as_str()).collect::<Vec<_>>().join("\n"))
                        .unwrap_or_default();
                    // The longest marker first, so CASE1 does not answer for CASE10.
                    let mut sorted: Vec<&(String, Vec<String>)> = answers.iter().collect();
                    sorted.sort_by_key(|(marker, _)| std::cmp::Reverse(marker.len()));
                    let found = sorted.iter().find(|(marker, _)| {
                        text.match_indices(marker.as_str())
                            .any(|(i, _)| !text[i + marker.len()..].starts_with(|c: char| c.is_ascii_digit()))
                    });
                    let second = text.contains("**Evaluation Steps**");
                    let answer = found
                        .and_then(|(_, a)| a.get(usize::from(second)).or(a.first()))
                        .cloned()
                        .unwrap_or_default();
                    axum::Json(json!({
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
                    }))
                }
            }),
        )
        .route(
            "/embeddings",
            axum::routing::post(|axum::Json(body): axum::Json<Value>| async move {
                let text = body["input"].as_str().unwrap_or_default();
                let vector = if text.contains("ALPHA") {
                    json!([1.0, 0.0])
                } else if text.contains("BETA") {
                    json!([0.6, 0.8])
                } else {
                    json!([0.0, 1.0])
                };
                axum::Json(json!({
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                    "model": body["model"],
                    "usage": {"prompt_tokens": 3, "total_tokens": 3}
                }))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// promptfoo's verdicts `(pass, score, reason)` per case, graded through the server at `url`.
fn promptfoo_verdicts(cases: &[Case], url: &str) -> Vec<(bool, f64, String)> {
    let binary = repo_root().join(".local/promptfoo/node_modules/.bin/promptfoo");
    assert!(
        binary.exists(),
        "promptfoo is not installed at {}: run deploy/local/test (ensure_promptfoo in deploy/local/lib.sh)",
        binary.display()
    );
    let chat = json!({"id": "openai:chat:judge", "config": {"apiBaseUrl": url, "apiKey": "sk-local"}});
    let embedding = json!({"id": "openai:embedding:embedder", "config": {"apiBaseUrl": url, "apiKey": "sk-local"}});
    let tests: Vec<Value> = cases
        .iter()
        .map(|case| {
            let mut assertion = case.assertion.clone();
            let similar = assertion["type"].as_str().unwrap().ends_with("similar");
            assertion["provider"] = if similar { embedding.clone() } else { chat.clone() };
            json!({"vars": {"output": case.output}, "assert": [assertion]})
        })
        .collect();
    let config = json!({"prompts": ["{{ output }}"], "providers": ["echo"], "tests": tests});
    let dir = std::env::temp_dir().join(format!("promptcards-graders-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("home")).unwrap();
    std::fs::write(dir.join("promptfooconfig.json"), config.to_string()).unwrap();
    let output = std::process::Command::new(&binary)
        .args([
            "eval",
            "-c",
            "promptfooconfig.json",
            "-o",
            "results.json",
            "--no-cache",
            "--no-table",
            "--no-progress-bar",
            "-j",
            "1",
        ])
        .current_dir(&dir)
        .env("HOME", dir.join("home"))
        .env("PROMPTFOO_CONFIG_DIR", dir.join("home/.promptfoo"))
        .env("PROMPTFOO_DISABLE_TELEMETRY", "1")
        .env("PROMPTFOO_DISABLE_UPDATE", "1")
        .env("PROMPTFOO_DISABLE_SHARING", "1")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .output()
        .expect("run promptfoo");
    let results = std::fs::read_to_string(dir.join("results.json")).unwrap_or_else(|_| {
        panic!(
            "promptfoo wrote no results:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
    let report: Value = serde_json::from_str(&results).unwrap();
    let mut rows: Vec<&Value> = report["results"]["results"].as_array().unwrap().iter().collect();
    rows.sort_by_key(|r| r["testIdx"].as_u64());
    rows.iter()
        .map(|row| {
            let component = &row["gradingResult"]["componentResults"][0];
            (
                component["pass"].as_bool().unwrap(),
                component["score"].as_f64().unwrap(),
                component["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_graded_verdicts_match_promptfoo_on_the_same_judgements() {
    let cases = cases();
    let (url, received) = grader(&cases).await;
    let theirs = {
        let (cases, url) = (&cases, url.clone());
        tokio::task::block_in_place(|| promptfoo_verdicts(cases, &url))
    };
    let their_requests = received.lock().unwrap().drain(..).collect::<Vec<_>>();

    let providers = Arc::new(Providers::new(
        ProviderSettings::for_base_url(&url, Duration::from_secs(10)),
        PriceTable::empty(),
    ));
    let graders = SettingsGraders::new(
        providers,
        GradingSettings {
            default_provider: "openai:chat:judge".into(),
            default_embedding_provider: "openai:embedding:embedder".into(),
        },
    );
    let vars = Map::new();
    let mut ours = Vec::new();
    for case in &cases {
        let assertion: Assertion = serde_json::from_value(case.assertion.clone()).unwrap();
        let observation = Observation {
            output: case.output,
            vars: &vars,
            latency_ms: 1,
            cost_micro_usd: None,
        };
        let graded = grade(
            &graders,
            uuid::Uuid::nil(),
            &providers::Credentials::environment(),
            &[assertion],
            &observation,
            case.output,
        )
        .await;
        let verdict = &graded.grade.verdicts[0];
        ours.push((verdict.passed, verdict.score, verdict.reason.clone()));
    }
    let our_requests = received.lock().unwrap().clone();

    assert_eq!(ours.len(), theirs.len());
    for ((case, ours), theirs) in cases.iter().zip(&ours).zip(&theirs) {
        let what = format!("{} {}", case.output, case.assertion);
        assert_eq!(ours.0, theirs.0, "pass of {what}: ours {ours:?}, promptfoo {theirs:?}");
        assert!(
            (ours.1 - theirs.1).abs() < 1e-9,
            "score of {what}: ours {ours:?}, promptfoo {theirs:?}"
        );
        if ours.2 != theirs.2 {
            assert!(
                ours.2.starts_with(&theirs.2) && case.output.starts_with("CASE3 "),
                "reason of {what}: ours {:?}, promptfoo {:?}",
                ours.2,
                theirs.2
            );
        }
    }
    // Both sides asked the grader as often, and each grading prompt carried the output.
    assert_eq!(our_requests.len(), their_requests.len());
    for case in &cases {
        let marker = format!("{}\n", case.output);
        let carried = |requests: &[Value]| {
            requests
                .iter()
                .any(|r| r["messages"].to_string().contains(&marker.replace('\n', "\\n")))
        };
        if !case.assertion["type"].as_str().unwrap().ends_with("similar")
            && !case.assertion["type"].as_str().unwrap().contains("g-eval")
        {
            assert!(
                carried(&their_requests),
                "promptfoo's prompt for {} lacks the output",
                case.output
            );
            assert!(
                carried(&our_requests),
                "our prompt for {} lacks the output",
                case.output
            );
        }
    }
}
