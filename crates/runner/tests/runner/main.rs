//! The runner against the real Postgres (and Kafka for the request consumer), with the echo
//! provider and a local server speaking the OpenAI protocol for slow or broken providers.

mod credentials;
mod executions;
mod graders;
mod support;

use domain::run::{RunEvent, RunStatus};
use event_store::EventStore;
use runner::RunOutcome;
use sqlx::PgPool;
use std::time::Duration;
use support::*;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_echo_run_records_every_slot_graded_and_completes(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let run_id = request_run(&store, 3, &["echo"], 2).await;
    let outcome = runner(&store, "http://127.0.0.1:9").execute(run_id).await.unwrap();
    assert_eq!(outcome, RunOutcome::Completed { recorded: 6 });

    let results = recorded_results(&store, run_id).await;
    assert_eq!(results.len(), 6);
    for result in &results {
        let case = case_number(result.key.case_id);
        // echo returns the rendered prompt, so the output names the case's var.
        assert_eq!(
            result.output.as_deref(),
            Some(format!("Say hello to person{case}").as_str())
        );
        assert_eq!(result.rendered_prompt, format!("Say hello to person{case}"));
        // `contains {{ who }}` passes, `not-contains person1` fails only for case 1.
        assert_eq!(result.passed, case != 1, "case {case}: {:?}", result.assertions);
        assert_eq!(result.assertions.len(), 2);
    }
    let run = load_run(&store, run_id).await;
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!((run.passed, run.failed), (4, 2));
    // A second execution of a finished run calls nothing and records nothing.
    assert_eq!(
        runner(&store, "http://127.0.0.1:9").execute(run_id).await.unwrap(),
        RunOutcome::AlreadyOver
    );
    assert_eq!(recorded_results(&store, run_id).await.len(), 6);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_runner_killed_mid_run_resumes_with_each_result_exactly_once(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let server = FakeOpenAi::start(Duration::from_millis(40)).await;
    let run_id = request_run(&store, 8, &["openai:fake-model"], 2).await;

    let first = runner(&store, &server.url);
    let task = tokio::spawn(async move { first.execute(run_id).await });
    eventually("a few results recorded", || async {
        (recorded_results(&store, run_id).await.len() >= 3).then_some(())
    })
    .await;
    task.abort();
    let _ = task.await;
    let before = recorded_results(&store, run_id).await.len();
    assert!(before < 16, "the run finished before it could be interrupted");

    let outcome = runner(&store, &server.url).execute(run_id).await.unwrap();
    assert!(matches!(outcome, RunOutcome::Completed { .. }), "{outcome:?}");
    let results = recorded_results(&store, run_id).await;
    let mut keys: Vec<_> = results.iter().map(|r| r.key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!((results.len(), keys.len()), (16, 16), "every slot exactly once");
    assert_eq!(load_run(&store, run_id).await.status, RunStatus::Completed);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn cancel_stops_further_provider_calls(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let server = FakeOpenAi::start(Duration::from_millis(50)).await;
    let run_id = request_run(&store, 30, &["openai:fake-model"], 1).await;

    let running = runner(&store, &server.url);
    let task = tokio::spawn(async move { running.execute(run_id).await });
    eventually("some results recorded", || async {
        (!recorded_results(&store, run_id).await.is_empty()).then_some(())
    })
    .await;
    cancel(&store, run_id).await;
    let outcome = task.await.unwrap().unwrap();
    assert!(matches!(outcome, RunOutcome::Cancelled { .. }), "{outcome:?}");

    let events = store.read_stream(run_id, 0).await.unwrap();
    let cancelled_at = events
        .iter()
        .find(|e| e.event_type == "TestRunCancelled")
        .unwrap()
        .version;
    assert!(
        events
            .iter()
            .all(|e| e.event_type != "TestResultRecorded" || e.version < cancelled_at),
        "no result is recorded after the cancel"
    );
    let calls_after_cancel = server.requests();
    tokio::time::sleep(Duration::from_millis(300)).await; // any stray call would show up here
    assert_eq!(
        server.requests(),
        calls_after_cancel,
        "no provider call after the run ended"
    );
    assert!(
        server.requests() < 30,
        "cancel stopped the remaining calls ({} made)",
        server.requests()
    );
    assert_eq!(load_run(&store, run_id).await.status, RunStatus::Cancelled);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_malformed_provider_answer_is_a_recorded_error_not_a_crash(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let server = FakeOpenAi::start_malformed().await;
    let run_id = request_run(&store, 2, &["openai:fake-model", "echo"], 1).await;
    let outcome = runner(&store, &server.url).execute(run_id).await.unwrap();
    assert_eq!(outcome, RunOutcome::Completed { recorded: 4 });
    for result in recorded_results(&store, run_id).await {
        if result.key.provider == "echo" {
            assert!(result.error.is_none());
        } else {
            let error = result.error.expect("the malformed answer is recorded as an error");
            assert!(!result.passed && result.output.is_none(), "{error}");
        }
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn run_requests_on_the_topic_are_executed(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let topic = create_topic(&kafka_brokers(), "runner-test", 3).await;
    let run_id = request_run(&store, 2, &["echo"], 1).await;

    // Other tests' open transactions can hold the safe reader back for a moment: step until
    // the request itself is published.
    let position = store.read_stream(run_id, 0).await.unwrap()[0].position;
    let mut relay = relay::Relay::new(store.clone(), kafka::producer(&kafka_brokers()).unwrap(), &topic, 100)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while relay.cursor().position < position {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay never published the request"
        );
        if relay.step().await.unwrap() == relay::Outcome::Idle {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    let consumer = runner::RunRequests::new(
        &kafka_brokers(),
        &format!("{topic}-runner"),
        None,
        &topic,
        runner(&store, "http://127.0.0.1:9"),
        2,
    )
    .unwrap();
    let task = tokio::spawn(consumer.run());
    eventually("the run completes", || async {
        (load_run(&store, run_id).await.status == RunStatus::Completed).then_some(())
    })
    .await;
    task.abort();
    let events = store.read_stream(run_id, 0).await.unwrap();
    assert_eq!(
        events.iter().filter(|e| e.event_type == "TestResultRecorded").count(),
        2
    );
    // Case 1 fails its `not-contains person1`; case 2 passes.
    assert!(events.iter().any(|e| e
        .decode::<RunEvent>()
        .is_ok_and(|ev| matches!(ev, RunEvent::TestRunCompleted { passed: 1, failed: 1 }))));
}
