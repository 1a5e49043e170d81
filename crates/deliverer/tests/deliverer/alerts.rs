//! Alert rules on crafted runs: a rule fires once when its figure crosses the bound, stays
//! quiet while it stays there (however often it is evaluated), resolves once when it comes
//! back, and both are delivered as webhooks. The figures agree between the read models and
//! ClickHouse.

use crate::support::*;
use deliverer::alerts::Evaluator;
use deliverer::figures;
use domain::alert::{AlertKind, AlertRule, AlertRuleCommand, RuleSpec};
use domain::run::{ProviderSpec, ResultKey, RunCase, RunEvent, RunPlan, TestResult};
use event_store::{ExpectedVersion, NewEvent, RecordedEvent};
use projector::clickhouse_sink::ClickHouseSink;
use projector::postgres::PostgresSink;
use projector::Sink;
use serde_json::{json, Map, Value};
use sqlx::PgPool;
use std::time::Duration;
use test_support::clickhouse::ScratchDatabase;
use uuid::Uuid;

/// Appends a completed run of `card_id` with one result per entry of `passed`, each taking
/// `latency_ms` and costing 3 micro-USD; returns its `TestRunCompleted`.
async fn run(world: &World, card_id: Uuid, passed: &[bool], latency_ms: u64) -> RecordedEvent {
    let (run_id, case_id) = (Uuid::now_v7(), Uuid::now_v7());
    let repeat = passed.len() as u32;
    let plan = RunPlan {
        workspace_id: world.actor.workspace_id,
        card_id,
        card_version: 1,
        template: "Say {{ word }}.".into(),
        messages: vec![],
        config: Default::default(),
        variables: vec![],
        cases: vec![RunCase {
            case_id,
            name: "says it".into(),
            vars: Map::new(),
            expected_output: None,
            assertions: vec![],
        }],
        providers: vec![ProviderSpec {
            id: "echo".into(),
            config: Value::Null,
        }],
        repeat,
        comparison_id: None,
    };
    let mut events = vec![RunEvent::TestRunRequested {
        run_id,
        plan,
        total: u64::from(repeat),
    }];
    for (repetition, passed) in passed.iter().enumerate() {
        events.push(RunEvent::TestResultRecorded {
            card_id,
            card_version: 1,
            result: TestResult {
                key: ResultKey {
                    case_id,
                    provider: "echo".into(),
                    repetition: repetition as u32,
                },
                rendered_prompt: "Say it.".into(),
                output: Some("Say it.".into()),
                error: None,
                latency_ms,
                prompt_tokens: 2,
                completion_tokens: 2,
                cost_micro_usd: 3,
                passed: *passed,
                score: if *passed { 1.0 } else { 0.0 },
                assertions: vec![],
                grading: Default::default(),
            },
        });
    }
    let passes = passed.iter().filter(|p| **p).count() as u64;
    events.push(RunEvent::TestRunCompleted {
        passed: passes,
        failed: passed.len() as u64 - passes,
    });
    let events: Vec<NewEvent> = events.iter().map(NewEvent::from_domain).collect();
    world
        .actor
        .append(
            &world.store,
            false,
            vec![stream(run_id, "test_run", ExpectedVersion::NoStream, events)],
        )
        .await;
    // The read models have it before the evaluator looks (it would wait for them otherwise).
    let history = world.events().await;
    PostgresSink::new(world.pool.clone()).apply(&history).await.unwrap();
    history
        .into_iter()
        .rfind(|e| e.stream_id == run_id && e.event_type == RunEvent::TEST_RUN_COMPLETED)
        .unwrap()
}

async fn create_rule(world: &World, spec: RuleSpec) -> Uuid {
    let rule_id = Uuid::now_v7();
    let command = AlertRuleCommand::Create {
        rule_id,
        workspace_id: world.actor.workspace_id,
        spec,
    };
    world
        .repo
        .execute::<AlertRule>(rule_id, command, world.metadata())
        .await
        .unwrap();
    rule_id
}

fn spec(kind: AlertKind, card_id: Option<Uuid>, threshold: f64) -> RuleSpec {
    RuleSpec {
        kind,
        card_id,
        label: None,
        provider: (kind == AlertKind::LatencyP95Above).then(|| "echo".to_owned()),
        threshold,
        threshold_micro_usd: None,
        window_runs: (kind != AlertKind::DailyCostAbove).then_some(2),
    }
}

/// The rule's alert events: (type, figure value, run id).
async fn alert_events(world: &World, rule_id: Uuid) -> Vec<(String, Value, Value)> {
    sqlx::query_as(
        "SELECT event_type, data->'figure'->'value', data->'run_id' FROM events
         WHERE stream_id = $1 AND event_type LIKE 'Alert%' AND event_type <> 'AlertRuleCreated' ORDER BY version",
    )
    .bind(rule_id)
    .fetch_all(&world.pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_pass_rate_rule_fires_once_and_resolves_once(pool: PgPool) {
    let world = World::new(pool).await;
    let receiver = Receiver::start().await;
    let (webhook_id, secret) = world
        .register(&receiver.url(), &["alert.fired", "alert.resolved"])
        .await;
    let card = world.create_card("Watched").await;
    let other = world.create_card("Unwatched").await;
    let rule = create_rule(&world, spec(AlertKind::PassRateBelow, Some(card), 0.75)).await;
    let quiet = create_rule(&world, spec(AlertKind::PassRateBelow, Some(other), 0.75)).await;
    let evaluator = Evaluator::new(world.repo.clone(), Duration::from_secs(10));

    // Over the last two runs: 2/2, then 2/4, 1/4 (twice: a redelivery), 3/4, 4/4.
    let mut runs = Vec::new();
    for passed in [
        vec![true, true],
        vec![false, false],
        vec![true, false],
        vec![true, true],
        vec![true, true],
    ] {
        let completed = run(&world, card, &passed, 10).await;
        assert_eq!(evaluator.run_completed(&completed).await.unwrap(), 1);
        if runs.len() == 2 {
            evaluator.run_completed(&completed).await.unwrap();
        }
        runs.push(completed.stream_id);
    }
    assert_eq!(
        alert_events(&world, rule).await,
        vec![
            ("AlertFired".to_owned(), json!(0.5), json!(runs[1])),
            ("AlertResolved".to_owned(), json!(0.75), json!(runs[3])),
        ]
    );
    assert!(alert_events(&world, quiet).await.is_empty());

    // Both are delivered, signed, with the figures that caused them.
    world.fan_out().await;
    world
        .dispatcher(loopback_allowed(), quick_retries())
        .step()
        .await
        .unwrap();
    let received = receiver.wait_for(2, Duration::from_secs(10)).await;
    let bodies: Vec<Value> = received.iter().map(|r| r.json()).collect();
    for request in &received {
        request.verify(&secret).unwrap();
    }
    assert_eq!(
        (bodies[0]["type"].clone(), bodies[1]["type"].clone()),
        (json!("alert.fired"), json!("alert.resolved"))
    );
    assert_eq!(bodies[0]["data"]["figure"]["passed"], 2);
    assert_eq!(bodies[0]["data"]["figure"]["results"], 4);
    assert_eq!(bodies[0]["data"]["rule"]["threshold"], 0.75);
    assert_eq!(bodies[0]["data"]["alert_id"], bodies[1]["data"]["alert_id"]);
    assert_eq!(world.deliveries(webhook_id).await.len(), 2);

    // The read models show the alert resolved.
    let resolved: Vec<(Value, Option<Value>)> =
        sqlx::query_as("SELECT figure->'value', resolved_figure->'value' FROM read.alerts WHERE rule_id = $1")
            .bind(rule)
            .fetch_all(&world.pool)
            .await
            .unwrap();
    assert_eq!(resolved, vec![(json!(0.5), Some(json!(0.75)))]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn cost_and_latency_rules_measure_the_same_in_the_read_models_and_in_clickhouse(pool: PgPool) {
    let world = World::new(pool).await;
    let card = world.create_card("Costly").await;
    let latency = create_rule(&world, spec(AlertKind::LatencyP95Above, None, 100.0)).await;
    let mut cost_spec = spec(AlertKind::DailyCostAbove, Some(card), 0.00001);
    cost_spec.threshold_micro_usd = Some(10);
    let cost = create_rule(&world, cost_spec.clone()).await;
    let evaluator = Evaluator::new(world.repo.clone(), Duration::from_secs(10));

    // Latencies over the last two runs: 50 ms; then 50 and 400; then 400 and 20.
    for (results, latency_ms) in [(2, 50), (2, 400), (2, 20)] {
        let completed = run(&world, card, &vec![true; results], latency_ms).await;
        evaluator.run_completed(&completed).await.unwrap();
    }
    let latency_events = alert_events(&world, latency).await;
    let kinds: Vec<&str> = latency_events.iter().map(|(t, ..)| t.as_str()).collect();
    assert_eq!(kinds, vec!["AlertFired"]);
    assert!(latency_events[0].1.as_f64().unwrap() > 100.0);
    // 6 micro-USD after the first run, 12 after the second: over the budget of 10.
    let cost_events = alert_events(&world, cost).await;
    assert_eq!(cost_events.len(), 1);
    assert_eq!(cost_events[0].1, json!(0.000012));

    let clickhouse = ScratchDatabase::create().await;
    ClickHouseSink::new(clickhouse.client())
        .apply(&world.events().await)
        .await
        .unwrap();
    let client = clickhouse.client();
    let workspace = world.actor.workspace_id;
    let from_clickhouse = figures::from_analytics(&client, workspace, &cost_spec)
        .await
        .unwrap()
        .unwrap();
    let from_postgres = figures::from_read_models(&world.pool, workspace, &cost_spec)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from_clickhouse.cost_micro_usd, Some(18));
    assert_eq!(from_clickhouse.cost_micro_usd, from_postgres.cost_micro_usd);
    let latency_spec = spec(AlertKind::LatencyP95Above, None, 100.0);
    let from_clickhouse = figures::from_analytics(&client, workspace, &latency_spec)
        .await
        .unwrap()
        .unwrap();
    let from_postgres = figures::from_read_models(&world.pool, workspace, &latency_spec)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((from_clickhouse.runs, from_clickhouse.results), (2, 4));
    assert_eq!((from_postgres.runs, from_postgres.results), (2, 4));
    assert!(from_clickhouse.value > 100.0 && from_postgres.value > 100.0);

    // The schedule measures both again; still over their bounds, nothing new is said.
    assert_eq!(evaluator.scheduled(&client).await.unwrap(), 2);
    assert_eq!(alert_events(&world, latency).await.len(), 1);
    assert_eq!(alert_events(&world, cost).await.len(), 1);
}
