//! A consumer process killed mid-burst resumes at once when started again: its consumer groups
//! are static members (`group.instance.id`), so the broker hands the restarted process its
//! partitions back without waiting for the dead member's session to expire.

use crate::support::{eventually, Load, Stack};
use std::time::{Duration, Instant};

/// How long every sink may take to reach the topic's end once the load stops. Well under the
/// 10 s session timeout a dynamic member would wait for, and far under the minutes a consumer
/// group sat still before static membership.
const CATCH_UP: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_projector_killed_mid_burst_catches_up_within_seconds_of_its_restart() {
    let mut stack = Stack::start().await;
    let clients = futures::future::join_all((0..6).map(|_| stack.client())).await;
    let load = Load::start(&clients);
    load.until_more(60).await;
    stack.kill("projector");
    load.until_more(60).await;
    let restarted = Instant::now();
    stack.start_process("projector").await;
    let ready = restarted.elapsed();
    load.until_more(30).await;
    let acknowledged = load.stop().await;
    let caught_up = stack.drained(CATCH_UP).await;
    eprintln!(
        "projector: ready {ready:?} after restart; every sink at the topic's end {caught_up:?} after the load stopped"
    );

    stack.assert_every_card_once(&acknowledged).await;
    stack.assert_projections_equal_the_store().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runner_killed_mid_burst_finishes_every_run_once_after_its_restart() {
    let mut stack = Stack::start().await;
    let client = stack.client().await;
    let card = client.create_card("Runner burst").await;
    for word in ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"] {
        client.create_case(card, word).await;
    }
    // 8 cases x 1 provider x 2 repetitions per run.
    let per_run = 16;
    let mut runs = Vec::new();
    for _ in 0..30 {
        runs.push(client.request_run(card).await);
    }
    // Kill the runner once some results are recorded and most runs are still to do.
    eventually(Duration::from_secs(60), "the runner records a first result", || async {
        (results(&stack).await > 0).then_some(())
    })
    .await;
    stack.kill("runner");
    for _ in 0..10 {
        runs.push(client.request_run(card).await);
    }
    let before = results(&stack).await;
    let restarted = Instant::now();
    stack.start_process("runner").await;

    // A restarted static member resumes at once; a dynamic one would wait out the dead
    // member's 10 s session before recording anything.
    let resumed = eventually(CATCH_UP / 2, "the restarted runner records a result", || async {
        (results(&stack).await > before).then(|| restarted.elapsed())
    })
    .await;
    let finished = eventually(
        Duration::from_secs(60),
        "every run completes after the restart",
        || async {
            let done: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM read.test_runs WHERE status = 'COMPLETED' AND completed = total",
            )
            .fetch_one(&stack.pool)
            .await
            .unwrap();
            (done == runs.len() as i64).then(|| restarted.elapsed())
        },
    )
    .await;
    let caught_up = stack.drained(CATCH_UP).await;
    eprintln!(
        "runner: first result {resumed:?} after the restart, all {} runs completed after {finished:?}; groups drained {caught_up:?} later",
        runs.len()
    );

    for run in &runs {
        let recorded: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE stream_id = $1 AND event_type = 'TestResultRecorded'",
        )
        .bind(run)
        .fetch_one(&stack.pool)
        .await
        .unwrap();
        assert_eq!(
            recorded, per_run,
            "run {run} recorded {recorded} results, not {per_run}"
        );
    }
    stack.assert_projections_equal_the_store().await;
}

async fn results(stack: &Stack) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'TestResultRecorded'")
        .fetch_one(&stack.pool)
        .await
        .unwrap()
}
