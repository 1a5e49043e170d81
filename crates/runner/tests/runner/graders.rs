//! Model-graded assertions graded by a local grader speaking the OpenAI protocol: verdicts,
//! what the grader was sent, grading usage recorded apart, and graders that fail.

use crate::support::*;
use runner::RunOutcome;
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;

async fn graded_once(
    pool: &PgPool,
    judgement: Judgement,
    assertions: Vec<serde_json::Value>,
    timeout: Duration,
) -> (FakeGrader, domain::run::TestResult) {
    let store = event_store::EventStore::new(pool.clone());
    let server = FakeGrader::start(judgement).await;
    let run_id = request_graded_run(&store, assertions).await;
    let outcome = grading_runner(&store, &server.url, timeout)
        .execute(run_id)
        .await
        .unwrap();
    assert_eq!(outcome, RunOutcome::Completed { recorded: 1 });
    let mut results = recorded_results(&store, run_id).await;
    assert_eq!(results.len(), 1);
    (server, results.remove(0))
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_rubric_the_grader_passes_passes_and_its_usage_is_recorded_apart(pool: PgPool) {
    let (server, result) = graded_once(
        &pool,
        Judgement::Says(r#"{"reason": "It names Paris.", "pass": true, "score": 0.9}"#.into()),
        vec![json!({"type": "llm-rubric", "value": "Answers about {{ country }}"})],
        Duration::from_secs(5),
    )
    .await;
    assert!(result.passed, "{:?}", result.assertions);
    assert_eq!(result.score, 0.9);
    assert_eq!(result.assertions[0].reason, "It names Paris.");
    // The tested call's usage is its own; the grader's is counted and priced apart.
    assert_eq!((result.prompt_tokens, result.completion_tokens), (5, 5));
    assert_eq!(
        (
            result.grading.grading_prompt_tokens,
            result.grading.grading_completion_tokens
        ),
        (100, 20)
    );
    assert_eq!(result.grading.grading_cost_micro_usd, 140);
    // The grader got the default prompt, with the output and the rendered rubric, as JSON mode.
    let sent = server.grader_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["model"], "judge");
    assert_eq!(sent[0]["response_format"], json!({"type": "json_object"}));
    assert_eq!(sent[0]["messages"][0]["role"], "system");
    assert_eq!(
        sent[0]["messages"][1]["content"],
        "<Output>\nCapital of France?\n</Output>\n<Rubric>\nAnswers about France\n</Rubric>"
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_rubric_the_grader_fails_fails_and_not_inverts_it(pool: PgPool) {
    let (_, result) = graded_once(
        &pool,
        Judgement::Says(r#"{"reason": "Not polite.", "pass": false, "score": 0.1}"#.into()),
        vec![
            json!({"type": "llm-rubric", "value": "is polite", "provider": "openai:chat:strict-judge"}),
            json!({"type": "not-llm-rubric", "value": "is polite"}),
            json!({"type": "contains", "value": "France"}),
        ],
        Duration::from_secs(5),
    )
    .await;
    let verdicts: Vec<(bool, f64)> = result.assertions.iter().map(|v| (v.passed, v.score)).collect();
    assert_eq!(verdicts, vec![(false, 0.1), (true, 0.9), (true, 1.0)]);
    assert!(!result.passed);
    assert_eq!(result.assertions[0].reason, "Not polite.");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_garbage_answer_is_a_failed_assertion_quoting_it(pool: PgPool) {
    let (_, result) = graded_once(
        &pool,
        Judgement::Says("I would say it is fine, mostly.".into()),
        vec![
            json!({"type": "llm-rubric", "value": "is polite"}),
            json!({"type": "factuality", "value": "Paris"}),
            json!({"type": "model-graded-closedqa", "value": "names a city"}),
            json!({"type": "g-eval", "value": "coherent"}),
        ],
        Duration::from_secs(5),
    )
    .await;
    assert!(!result.passed);
    assert!(result.error.is_none(), "the tested call itself succeeded");
    for verdict in &result.assertions {
        assert!(!verdict.passed, "{verdict:?}");
        assert!(
            verdict.reason.contains("I would say it is fine, mostly."),
            "{verdict:?}"
        );
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_grader_that_times_out_fails_its_assertions_not_the_run(pool: PgPool) {
    let (server, result) = graded_once(
        &pool,
        Judgement::Sleeps(Duration::from_secs(3)),
        vec![
            json!({"type": "not-llm-rubric", "value": "is rude"}),
            json!({"type": "contains", "value": "France"}),
        ],
        Duration::from_millis(300),
    )
    .await;
    assert!(!result.passed);
    assert_eq!(result.output.as_deref(), Some("Capital of France?"));
    let timed_out = &result.assertions[0];
    assert!(!timed_out.passed, "a grader error is no pass, even negated");
    assert!(
        timed_out.reason.contains("did not answer within"),
        "{}",
        timed_out.reason
    );
    assert!(result.assertions[1].passed);
    assert_eq!(server.grader_requests().len(), 1, "a timeout is not retried");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn similar_compares_embeddings_from_the_embeddings_route(pool: PgPool) {
    // The tested model answers "Capital of France?" ([0.6, 0.8]); "Paris" embeds as [1, 0]
    // (cosine 0.6) and "France's capital" as [0.6, 0.8] (cosine 1).
    let (server, result) = graded_once(
        &pool,
        Judgement::Says(String::new()),
        vec![
            json!({"type": "similar", "value": "Paris"}),
            json!({"type": "similar", "value": "Paris", "threshold": 0.5, "provider": "openai:embedding:other-embedder"}),
            json!({"type": "similar", "value": ["Paris", "France's capital"]}),
            json!({"type": "not-similar", "value": "Paris"}),
        ],
        Duration::from_secs(5),
    )
    .await;
    let verdicts: Vec<(bool, String)> = result
        .assertions
        .iter()
        .map(|v| (v.passed, format!("{:.2}", v.score)))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            (false, "0.60".into()),
            (true, "0.60".into()),
            (true, "1.00".into()),
            (true, "0.40".into()),
        ]
    );
    assert_eq!(
        result.assertions[0].reason,
        "Similarity 0.60 is less than threshold 0.75"
    );
    let sent = server.bodies("embeddings");
    assert!(sent.iter().any(|b| b["model"] == "other-embedder"));
    assert!(sent
        .iter()
        .all(|b| b["model"] == "embedder" || b["model"] == "other-embedder"));
    assert!(sent.iter().any(|b| b["input"] == "Capital of France?"));
    // Each embedding reported 7 prompt tokens.
    assert_eq!(result.grading.grading_prompt_tokens, 7 * sent.len() as u32);
    assert_eq!(result.grading.grading_completion_tokens, 0);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_comparison_sees_the_flip_a_grader_judged(pool: PgPool) {
    // The baseline answers "Capital of France?" (cosine 0.6 to "Paris": fails), the candidate
    // "Paris is the capital of France." (cosine 1: passes); only the grader tells them apart.
    let store = event_store::EventStore::new(pool.clone());
    let server = FakeGrader::start(Judgement::Says(String::new())).await;
    let similar = || vec![json!({"type": "similar", "value": "Paris"})];
    let baseline = request_graded_run_of(&store, "Capital of {{ country }}?", similar()).await;
    let candidate = request_graded_run_of(&store, "Paris is the capital of {{ country }}.", similar()).await;
    let runner = grading_runner(&store, &server.url, Duration::from_secs(5));
    for run in [baseline, candidate] {
        assert_eq!(
            runner.execute(run).await.unwrap(),
            RunOutcome::Completed { recorded: 1 }
        );
    }
    let report = domain::comparison::compare(
        &recorded_results(&store, baseline).await,
        &recorded_results(&store, candidate).await,
    );
    assert_eq!(report.flip_count, 1);
    let flip = &report.flips[0];
    assert_eq!(
        (flip.from, flip.to),
        (domain::comparison::Outcome::Fail, domain::comparison::Outcome::Pass)
    );
    assert_eq!(flip.changed_assertions, ["similar"]);
    assert_eq!(
        (report.overall.baseline.passed, report.overall.candidate.passed),
        (0, 1)
    );
}
