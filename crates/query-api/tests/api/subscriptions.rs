//! `workspaceEvents` over a real WebSocket (graphql-transport-ws): a member receives what the
//! projector publishes for their workspace and nothing of others; a stranger is refused with
//! NOT_FOUND, the answer every query gives them.

use crate::support::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The longest a message that should come may take.
const DELIVERY: Duration = Duration::from_secs(10);
/// How long to listen for a message that must not come.
const QUIET: Duration = Duration::from_millis(500);

/// Serves the app on a real socket of its own.
async fn serve(app: &TestApp) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

async fn connect(addr: SocketAddr) -> Socket {
    let mut request = format!("ws://{addr}/graphql/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the WebSocket opens");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("graphql-transport-ws")
    );
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket.send(Message::Text(message.to_string().into())).await.unwrap();
}

/// The next protocol message, or `None` if the server closed the socket or `wait` ran out.
async fn next(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] == "ping" {
                    send(socket, json!({ "type": "pong" })).await;
                    continue;
                }
                return Some(message);
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Opens a connection authenticated with `token` and expects `connection_ack`.
async fn open(addr: SocketAddr, token: &str) -> Socket {
    let mut socket = connect(addr).await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }),
    )
    .await;
    let ack = next(&mut socket, DELIVERY).await;
    assert_eq!(
        ack.as_ref().map(|m| m["type"].clone()),
        Some(json!("connection_ack")),
        "{ack:?}"
    );
    socket
}

async fn subscribe(socket: &mut Socket, workspace_id: Uuid) {
    let query = format!(
        r#"subscription {{ workspaceEvents(workspaceId: "{workspace_id}") {{ position streamId eventType actorId recordedAt data }} }}"#
    );
    send(
        socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query } }),
    )
    .await;
}

/// Subscribers of a workspace's channel, as Redis counts them (the server answers nothing
/// when a subscription is set up, so this is how a test knows it is).
async fn subscribers(workspace_id: Uuid) -> i64 {
    let channel = domain::names::workspace_channel(workspace_id);
    let (_, count): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&channel)
        .query_async(&mut redis().await)
        .await
        .unwrap();
    count
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_member_receives_the_workspaces_events_as_they_are_published(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ada = app.tenant("ada").await;
    let bob = app.tenant("bob").await;
    app.project().await;
    let addr = serve(&app).await;

    let mut socket = open(addr, &ada.token).await;
    subscribe(&mut socket, ada.workspace_id).await;
    eventually("the subscription listens on Redis", || async {
        (subscribers(ada.workspace_id).await >= 1).then_some(())
    })
    .await;
    assert!(
        next(&mut socket, QUIET).await.is_none(),
        "nothing is sent before anything happens"
    );

    // Another workspace's event first, then Ada's: only Ada's arrives.
    let head = app.head().await;
    app.create_card(&bob, titled("Bob's card")).await;
    app.project_with_redis(head).await;
    let head = app.head().await;
    let (card_id, appended) = app.create_card(&ada, titled("Ada's card")).await;
    app.project_with_redis(head).await;

    let message = next(&mut socket, DELIVERY).await.expect("the event is delivered");
    assert_eq!(message["type"], "next", "{message}");
    assert_eq!(message["id"], "1");
    let entry = &message["payload"]["data"]["workspaceEvents"];
    assert_eq!(entry["position"], appended.position, "{message}");
    assert_eq!(entry["streamId"], card_id.to_string());
    assert_eq!(entry["eventType"], "PromptCardCreated");
    assert_eq!(entry["actorId"], ada.user_id.to_string());
    assert_eq!(entry["data"]["title"], "Ada's card");
    assert!(message["payload"].get("errors").is_none(), "{message}");

    // A second event arrives too, in order.
    let head = app.head().await;
    let updated = app.update_card(&ada, card_id, titled("Ada's card, revised")).await;
    app.project_with_redis(head).await;
    let message = next(&mut socket, DELIVERY)
        .await
        .expect("the second event is delivered");
    assert_eq!(
        message["payload"]["data"]["workspaceEvents"]["position"],
        updated.position
    );
    assert_eq!(
        message["payload"]["data"]["workspaceEvents"]["eventType"],
        "PromptCardUpdated"
    );

    // Stopping the subscription releases its Redis subscription.
    send(&mut socket, json!({ "id": "1", "type": "complete" })).await;
    eventually("the Redis subscription is released", || async {
        (subscribers(ada.workspace_id).await == 0).then_some(())
    })
    .await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_stranger_is_refused_and_receives_nothing(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ada = app.tenant("ada").await;
    let bob = app.tenant("bob").await;
    app.project().await;
    let addr = serve(&app).await;

    let mut socket = open(addr, &bob.token).await;
    subscribe(&mut socket, ada.workspace_id).await;
    let refusal = next(&mut socket, DELIVERY).await.expect("the refusal is sent");
    let errors = match refusal["type"].as_str() {
        Some("next") => refusal["payload"]["errors"].clone(),
        Some("error") => refusal["payload"].clone(),
        _ => panic!("expected an error, got {refusal}"),
    };
    assert_eq!(errors[0]["extensions"]["code"], "NOT_FOUND", "{refusal}");
    assert!(refusal["payload"]["data"].is_null(), "{refusal}");
    let after = next(&mut socket, DELIVERY).await;
    assert_eq!(
        after.as_ref().map(|m| m["type"].clone()),
        Some(json!("complete")),
        "{after:?}"
    );
    assert_eq!(
        subscribers(ada.workspace_id).await,
        0,
        "a refused subscription does not listen"
    );

    // Ada's events do not reach Bob's socket.
    let head = app.head().await;
    app.create_card(&ada, titled("Not for Bob")).await;
    app.project_with_redis(head).await;
    assert!(
        next(&mut socket, QUIET).await.is_none(),
        "nothing more reaches the stranger"
    );

    // Without a credential the subscription is refused as well.
    let mut anonymous = connect(addr).await;
    send(&mut anonymous, json!({ "type": "connection_init", "payload": {} })).await;
    assert_eq!(next(&mut anonymous, DELIVERY).await.unwrap()["type"], "connection_ack");
    subscribe(&mut anonymous, ada.workspace_id).await;
    let refusal = next(&mut anonymous, DELIVERY).await.expect("the refusal is sent");
    assert!(
        !refusal["payload"]["errors"][0]["extensions"]["code"].is_null(),
        "{refusal}"
    );
    assert!(refusal["payload"]["data"].is_null(), "{refusal}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_forged_token_closes_the_connection(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ada = app.tenant("ada").await;
    app.project().await;
    let addr = serve(&app).await;
    let forged = auth::TokenKeys::new("not-the-secret", Duration::from_secs(60), Duration::from_secs(60))
        .issue(ada.user_id)
        .unwrap()
        .access_token;

    let mut socket = connect(addr).await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {forged}") } }),
    )
    .await;
    let answer = tokio::time::timeout(DELIVERY, socket.next())
        .await
        .expect("the server answers");
    match answer {
        Some(Ok(Message::Close(frame))) => {
            let frame = frame.expect("a close reason");
            assert!(frame.reason.contains("invalid"), "{frame:?}");
        }
        None | Some(Err(_)) => {}
        other => panic!("a forged token must not be acknowledged: {other:?}"),
    }
}

/// An echo result of "Hi" in a slot, passed or not.
fn echo_result(key: domain::run::ResultKey, passed: bool) -> domain::run::TestResult {
    domain::run::TestResult {
        key,
        rendered_prompt: "Hi".into(),
        output: Some("Hi".into()),
        error: None,
        latency_ms: 3,
        prompt_tokens: 1,
        completion_tokens: 1,
        cost_micro_usd: 0,
        passed,
        score: if passed { 1.0 } else { 0.0 },
        assertions: vec![],
        grading: Default::default(),
    }
}

/// A revoked API key is refused by the next query, and a WebSocket it opened is closed (4403)
/// within a second, releasing its subscriptions; a user's connection beside it stays open.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn revoking_an_api_key_refuses_it_and_closes_its_subscriptions_within_a_second(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ada = app.tenant("ada").await;
    let (key_id, key) = app.api_key_with_id(&ada, domain::Role::Viewer).await;
    app.project().await;
    let addr = serve(&app).await;
    let me = "{ workspace(id: \"WS\") { id } }".replace("WS", &ada.workspace_id.to_string());
    assert_eq!(
        app.data(&key, &me, json!({})).await["workspace"]["id"],
        ada.workspace_id.to_string()
    );

    let mut by_key = open(addr, &key).await;
    subscribe(&mut by_key, ada.workspace_id).await;
    let mut by_user = open(addr, &ada.token).await;
    subscribe(&mut by_user, ada.workspace_id).await;
    eventually("both subscriptions listen on Redis", || async {
        (subscribers(ada.workspace_id).await >= 2).then_some(())
    })
    .await;

    let revoked = std::time::Instant::now();
    let head = app.head().await;
    app.revoke_api_key(&ada, key_id).await;
    assert_refused(
        &app.graphql(&key, &me, json!({})).await,
        "UNAUTHENTICATED",
        "a revoked key",
    );
    let closed = loop {
        match tokio::time::timeout(DELIVERY, by_key.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(Message::Text(_)))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let elapsed = revoked.elapsed();
    let frame = closed.expect("a close reason");
    assert_eq!(u16::from(frame.code), 4403, "{frame:?}");
    assert!(frame.reason.contains("revoked"), "{frame:?}");
    assert!(elapsed < Duration::from_secs(1), "closed after {elapsed:?}");
    eprintln!("revoke -> WebSocket closed: {elapsed:?}");
    eventually("the revoked connection's Redis subscription is released", || async {
        (subscribers(ada.workspace_id).await == 1).then_some(())
    })
    .await;

    // The user's own connection still delivers.
    app.project_with_redis(head).await;
    let message = next(&mut by_user, DELIVERY)
        .await
        .expect("the user's subscription lives");
    assert_eq!(
        message["payload"]["data"]["workspaceEvents"]["eventType"], "ApiKeyRevoked",
        "{message}"
    );
}

mod run_progress {
    use super::*;
    use domain::run::{ProviderSpec, ResultKey, RunCase, RunCommand, RunPlan, TestResult, TestRun};

    async fn request_run(app: &TestApp, tenant: &Tenant) -> (Uuid, ResultKey) {
        let run_id = Uuid::now_v7();
        let case_id = Uuid::now_v7();
        let plan = RunPlan {
            workspace_id: tenant.workspace_id,
            card_id: Uuid::now_v7(),
            card_version: 1,
            template: "Hi".into(),
            messages: vec![],
            config: Default::default(),
            variables: vec![],
            cases: vec![RunCase {
                case_id,
                name: "greets".into(),
                vars: Default::default(),
                expected_output: None,
                assertions: vec![],
            }],
            providers: vec![ProviderSpec {
                id: "echo".into(),
                config: Value::Null,
            }],
            repeat: 1,
            comparison_id: None,
        };
        app.execute::<TestRun>(
            run_id,
            RunCommand::Request { run_id, plan },
            Some(tenant.workspace_id),
            Some(tenant.user_id),
        )
        .await;
        (
            run_id,
            ResultKey {
                case_id,
                provider: "echo".into(),
                repetition: 0,
            },
        )
    }

    fn result(key: ResultKey) -> TestResult {
        TestResult {
            grading: domain::run::GradingUsage {
                grading_prompt_tokens: 120,
                grading_completion_tokens: 30,
                grading_cost_micro_usd: 1_250,
            },
            ..echo_result(key, true)
        }
    }

    async fn subscribe_progress(socket: &mut Socket, run_id: Uuid) {
        let query = format!(
            "subscription {{ testRunProgress(runId: \"{run_id}\") {{ status completed total passed failed lastResult {{ output passed costUsd gradingPromptTokens gradingCompletionTokens gradingCostUsd }} }} }}"
        );
        send(
            socket,
            json!({ "id": "7", "type": "subscribe", "payload": { "query": query } }),
        )
        .await;
    }

    #[sqlx::test(migrator = "event_store::MIGRATOR")]
    async fn a_late_subscriber_to_a_finished_run_gets_the_final_state_and_completion(pool: PgPool) {
        let app = TestApp::new(pool).await;
        let ada = app.tenant("ada").await;
        app.project().await;
        let (run_id, key) = request_run(&app, &ada).await;
        let ws = Some(ada.workspace_id);
        app.execute::<TestRun>(
            run_id,
            RunCommand::Record {
                results: vec![result(key)],
            },
            ws,
            None,
        )
        .await;
        app.execute::<TestRun>(run_id, RunCommand::Complete, ws, None).await;
        let addr = serve(&app).await;

        let mut socket = open(addr, &ada.token).await;
        subscribe_progress(&mut socket, run_id).await;
        let first = next(&mut socket, DELIVERY)
            .await
            .expect("the current state is sent first");
        let progress = &first["payload"]["data"]["testRunProgress"];
        assert_eq!(progress["status"], "COMPLETED", "{first}");
        assert_eq!(
            (progress["completed"].as_i64(), progress["total"].as_i64()),
            (Some(1), Some(1))
        );
        assert_eq!(progress["passed"], 1);
        let done = next(&mut socket, DELIVERY).await.expect("the subscription completes");
        assert_eq!(done["type"], "complete", "{done}");
    }

    #[sqlx::test(migrator = "event_store::MIGRATOR")]
    async fn a_live_subscriber_sees_each_result_then_the_end(pool: PgPool) {
        let app = TestApp::new(pool).await;
        let ada = app.tenant("ada").await;
        app.project().await;
        let (run_id, key) = request_run(&app, &ada).await;
        let addr = serve(&app).await;

        let mut socket = open(addr, &ada.token).await;
        subscribe_progress(&mut socket, run_id).await;
        let first = next(&mut socket, DELIVERY)
            .await
            .expect("the current state is sent first");
        assert_eq!(
            first["payload"]["data"]["testRunProgress"]["status"], "QUEUED",
            "{first}"
        );

        let ws = Some(ada.workspace_id);
        let head = app.head().await;
        app.execute::<TestRun>(
            run_id,
            RunCommand::Record {
                results: vec![result(key)],
            },
            ws,
            None,
        )
        .await;
        app.project_with_redis(head).await;
        let update = next(&mut socket, DELIVERY).await.expect("the result is delivered");
        let progress = &update["payload"]["data"]["testRunProgress"];
        assert_eq!(progress["status"], "RUNNING", "{update}");
        assert_eq!(progress["completed"], 1);
        assert_eq!(progress["lastResult"]["output"], "Hi");
        // Grading usage is reported apart from the tested call's.
        assert_eq!(
            (
                &progress["lastResult"]["costUsd"],
                &progress["lastResult"]["gradingPromptTokens"],
                &progress["lastResult"]["gradingCompletionTokens"],
                &progress["lastResult"]["gradingCostUsd"],
            ),
            (&json!("0.000000"), &json!(120), &json!(30), &json!("0.001250"))
        );

        let head = app.head().await;
        app.execute::<TestRun>(run_id, RunCommand::Complete, ws, None).await;
        app.project_with_redis(head).await;
        let last = next(&mut socket, DELIVERY)
            .await
            .expect("the terminal state is delivered");
        assert_eq!(
            last["payload"]["data"]["testRunProgress"]["status"], "COMPLETED",
            "{last}"
        );
        let done = next(&mut socket, DELIVERY).await.expect("the subscription completes");
        assert_eq!(done["type"], "complete", "{done}");
    }

    #[sqlx::test(migrator = "event_store::MIGRATOR")]
    async fn a_stranger_cannot_follow_a_run(pool: PgPool) {
        let app = TestApp::new(pool).await;
        let ada = app.tenant("ada").await;
        let bob = app.tenant("bob").await;
        app.project().await;
        let (run_id, _) = request_run(&app, &ada).await;
        let addr = serve(&app).await;
        let mut socket = open(addr, &bob.token).await;
        subscribe_progress(&mut socket, run_id).await;
        let refused = next(&mut socket, DELIVERY).await.expect("an answer");
        assert_eq!(
            refused["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{refused}"
        );
    }
}

mod comparison_progress {
    use super::*;
    use domain::card::PromptCard;
    use domain::comparison::{compare, Comparison, ComparisonCommand, ComparisonPlan, Side};
    use domain::run::{ProviderSpec, ResultKey, RunCase, RunCommand, RunPlan, TestRun};

    /// A comparison of versions 1 and 2 of one case on echo, both runs requested.
    async fn request(app: &TestApp, tenant: &Tenant) -> (Uuid, [(Uuid, ResultKey); 2]) {
        let comparison_id = Uuid::now_v7();
        let case_id = Uuid::now_v7();
        let card_id = Uuid::now_v7();
        let ws = Some(tenant.workspace_id);
        let mut sides = Vec::new();
        for version in [1, 2] {
            let run_id = Uuid::now_v7();
            let plan = RunPlan {
                workspace_id: tenant.workspace_id,
                card_id,
                card_version: version,
                template: "Hi".into(),
                messages: vec![],
                config: Default::default(),
                variables: vec![],
                cases: vec![RunCase {
                    case_id,
                    name: "greets".into(),
                    vars: Default::default(),
                    expected_output: None,
                    assertions: vec![],
                }],
                providers: vec![ProviderSpec {
                    id: "echo".into(),
                    config: Value::Null,
                }],
                repeat: 1,
                comparison_id: Some(comparison_id),
            };
            app.execute::<TestRun>(run_id, RunCommand::Request { run_id, plan }, ws, Some(tenant.user_id))
                .await;
            let key = ResultKey {
                case_id,
                provider: "echo".into(),
                repetition: 0,
            };
            sides.push((run_id, key));
        }
        let side = |i: usize, version| Side {
            version,
            label: None,
            run_id: sides[i].0,
        };
        let plan = ComparisonPlan {
            workspace_id: tenant.workspace_id,
            card_id,
            baseline: side(0, 1),
            candidate: side(1, 2),
            providers: vec!["echo".into()],
            repeat: 1,
            promote: None,
        };
        app.execute::<Comparison>(
            comparison_id,
            ComparisonCommand::Request { comparison_id, plan },
            ws,
            Some(tenant.user_id),
        )
        .await;
        (comparison_id, [sides[0].clone(), sides[1].clone()])
    }

    async fn subscribe(socket: &mut Socket, comparison_id: Uuid) {
        let query = format!(
            "subscription {{ comparisonProgress(id: \"{comparison_id}\") {{ status verdict baseline {{ status completed total }} candidate {{ status completed }} }} }}"
        );
        send(
            socket,
            json!({ "id": "9", "type": "subscribe", "payload": { "query": query } }),
        )
        .await;
    }

    #[sqlx::test(migrator = "event_store::MIGRATOR")]
    async fn a_subscriber_sees_both_runs_progress_then_the_verdict_then_the_end(pool: PgPool) {
        let app = TestApp::new(pool).await;
        let ada = app.tenant("ada").await;
        app.project().await;
        let (comparison_id, [(baseline, baseline_key), (candidate, candidate_key)]) = request(&app, &ada).await;
        let addr = serve(&app).await;
        let mut socket = open(addr, &ada.token).await;
        subscribe(&mut socket, comparison_id).await;
        let first = next(&mut socket, DELIVERY)
            .await
            .expect("the current state is sent first");
        let progress = &first["payload"]["data"]["comparisonProgress"];
        assert_eq!(progress["status"], "RUNNING", "{first}");
        assert_eq!(progress["baseline"]["status"], "QUEUED");
        assert_eq!(progress["baseline"]["total"], 1);

        let ws = Some(ada.workspace_id);
        let head = app.head().await;
        let (baseline_result, candidate_result) = (echo_result(baseline_key, true), echo_result(candidate_key, false));
        app.execute::<TestRun>(
            baseline,
            RunCommand::Record {
                results: vec![baseline_result.clone()],
            },
            ws,
            None,
        )
        .await;
        app.execute::<TestRun>(baseline, RunCommand::Complete, ws, None).await;
        app.project_with_redis(head).await;
        let update = next(&mut socket, DELIVERY)
            .await
            .expect("the baseline's progress is delivered");
        let progress = &update["payload"]["data"]["comparisonProgress"];
        assert_eq!(progress["baseline"]["status"], "COMPLETED", "{update}");
        assert_eq!(progress["candidate"]["completed"], 0);

        let head = app.head().await;
        app.execute::<TestRun>(
            candidate,
            RunCommand::Record {
                results: vec![candidate_result.clone()],
            },
            ws,
            None,
        )
        .await;
        app.execute::<TestRun>(candidate, RunCommand::Complete, ws, None).await;
        let report = compare(&[baseline_result], &[candidate_result]);
        let finish = ComparisonCommand::Finish {
            report,
            card: Box::new(PromptCard::default()),
        };
        app.execute::<Comparison>(comparison_id, finish, ws, None).await;
        app.project_with_redis(head).await;
        let mut last = Value::Null;
        while let Some(message) = next(&mut socket, DELIVERY).await {
            if message["type"] == "complete" {
                break;
            }
            last = message;
        }
        let progress = &last["payload"]["data"]["comparisonProgress"];
        assert_eq!(progress["status"], "COMPLETED", "{last}");
        assert_eq!(progress["verdict"], "NO_SIGNIFICANT_DIFFERENCE");
        assert_eq!(progress["candidate"]["status"], "COMPLETED");
    }

    #[sqlx::test(migrator = "event_store::MIGRATOR")]
    async fn a_stranger_cannot_follow_a_comparison(pool: PgPool) {
        let app = TestApp::new(pool).await;
        let ada = app.tenant("ada").await;
        let bob = app.tenant("bob").await;
        app.project().await;
        let (comparison_id, _) = request(&app, &ada).await;
        let addr = serve(&app).await;
        let mut socket = open(addr, &bob.token).await;
        subscribe(&mut socket, comparison_id).await;
        let refused = next(&mut socket, DELIVERY).await.expect("an answer");
        assert_eq!(
            refused["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{refused}"
        );
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn alerts_firing_and_resolving_reach_the_workspaces_subscribers(pool: PgPool) {
    use domain::alert::{AlertKind, AlertRule, AlertRuleCommand, Figure, RuleSpec};
    let app = TestApp::new(pool).await;
    let ada = app.tenant("ada").await;
    let rule_id = Uuid::now_v7();
    let ws = Some(ada.workspace_id);
    let spec = RuleSpec {
        kind: AlertKind::PassRateBelow,
        card_id: Some(Uuid::now_v7()),
        label: None,
        provider: None,
        threshold: 0.9,
        threshold_micro_usd: None,
        window_runs: Some(1),
    };
    let create = AlertRuleCommand::Create {
        rule_id,
        workspace_id: ada.workspace_id,
        spec,
    };
    app.execute::<AlertRule>(rule_id, create, ws, Some(ada.user_id)).await;
    app.project().await;
    let addr = serve(&app).await;
    let mut socket = open(addr, &ada.token).await;
    subscribe(&mut socket, ada.workspace_id).await;
    eventually("the subscription listens on Redis", || async {
        (subscribers(ada.workspace_id).await >= 1).then_some(())
    })
    .await;

    let evaluate = |value: f64| AlertRuleCommand::Evaluate {
        alert_id: Uuid::now_v7(),
        figure: Some(Figure {
            value,
            cost_micro_usd: None,
            runs: 1,
            results: 2,
            passed: Some((value * 2.0) as u64),
            source: "read_models".into(),
        }),
        run_id: None,
    };
    for (value, event_type) in [(0.5, "AlertFired"), (1.0, "AlertResolved")] {
        let head = app.head().await;
        app.execute::<AlertRule>(rule_id, evaluate(value), ws, None).await;
        app.project_with_redis(head).await;
        let message = next(&mut socket, DELIVERY).await.expect("the alert event is delivered");
        let entry = &message["payload"]["data"]["workspaceEvents"];
        assert_eq!(entry["eventType"], event_type, "{message}");
        assert_eq!(entry["streamId"], rule_id.to_string());
        assert_eq!(entry["data"]["figure"]["value"], value);
        assert_eq!(entry["data"]["threshold"], 0.9);
    }
}
