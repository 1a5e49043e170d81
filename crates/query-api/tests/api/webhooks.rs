//! `webhooks`, `webhookDeliveries`, `alerts` and `alertRules`: what they show, to whom, and
//! what they never show (the signing secret).

use crate::support::*;
use domain::alert::{AlertKind, AlertRule, AlertRuleCommand, Figure, RuleSpec};
use domain::webhook::{Webhook, WebhookCommand};
use domain::Role;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

const SEALED: &str = "v1.abcd1234.bm9uY2U.c2VhbGVk";

async fn register(app: &TestApp, tenant: &Tenant, url: &str) -> Uuid {
    let webhook_id = Uuid::now_v7();
    let command = WebhookCommand::Create {
        webhook_id,
        workspace_id: tenant.workspace_id,
        url: url.into(),
        events: vec!["run.completed".into(), "alert.fired".into()],
        sealed_secret: SEALED.into(),
    };
    app.execute::<Webhook>(webhook_id, command, Some(tenant.workspace_id), Some(tenant.user_id))
        .await;
    webhook_id
}

/// A delivery with `attempts` attempts, the last one `status`, as the deliverer records them.
async fn delivery(app: &TestApp, tenant: &Tenant, webhook_id: Uuid, status: &str, attempts: &[Option<i32>]) -> Uuid {
    let delivery_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO webhooks.deliveries (delivery_id, webhook_id, workspace_id, event_id, event_position, event_type,
                                          body, event_recorded_at, status, delivered_at)
         VALUES ($1, $2, $3, $4, 7, 'run.completed', '{}', now(), $5, CASE WHEN $5 = 'delivered' THEN now() END)",
    )
    .bind(delivery_id)
    .bind(webhook_id)
    .bind(tenant.workspace_id)
    .bind(Uuid::now_v7())
    .bind(status)
    .execute(&app.pool)
    .await
    .unwrap();
    for (i, code) in attempts.iter().enumerate() {
        sqlx::query(
            "INSERT INTO webhooks.attempts (delivery_id, attempt, at, status, latency_ms, error, response_excerpt)
             VALUES ($1, $2, now(), $3, 12, CASE WHEN $3 IS NULL THEN 'connection refused' END, 'ok')",
        )
        .bind(delivery_id)
        .bind(i as i32 + 1)
        .bind(code)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    delivery_id
}

const WEBHOOKS: &str = "query($ws: ID!) { webhooks(workspaceId: $ws) { id url events enabled disabledReason } }";
const DELIVERIES: &str = "query($id: ID!, $after: String) {
    webhookDeliveries(webhookId: $id, first: 2, after: $after) {
        pageInfo { hasNextPage endCursor }
        edges { node { id eventType status position deliveredAt nextAttemptAt
                       attempts { attempt status latencyMs error responseExcerpt } } }
    } }";

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn admins_see_endpoints_and_every_attempt_but_never_a_secret(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ada = app.tenant("ada").await;
    let (_, member) = app.member(&ada, Role::Member).await;
    let (_, admin) = app.member(&ada, Role::Admin).await;
    let bob = app.tenant("bob").await;
    let webhook_id = register(&app, &ada, "https://hooks.example.com/a").await;
    app.execute::<Webhook>(
        webhook_id,
        WebhookCommand::DisableFailing {
            reason: "failing since Monday".into(),
        },
        Some(ada.workspace_id),
        None,
    )
    .await;
    let first = delivery(&app, &ada, webhook_id, "delivered", &[Some(500), None, Some(204)]).await;
    let second = delivery(&app, &ada, webhook_id, "failed", &[Some(410)]).await;
    let third = delivery(&app, &ada, webhook_id, "pending", &[]).await;
    app.project().await;

    let answer = app.graphql(&admin, WEBHOOKS, json!({ "ws": ada.workspace_id })).await;
    assert!(!answer.to_string().contains(SEALED), "{answer}");
    assert_eq!(
        answer["data"]["webhooks"],
        json!([{ "id": webhook_id, "url": "https://hooks.example.com/a", "events": ["alert.fired", "run.completed"],
                 "enabled": false, "disabledReason": "failing since Monday" }])
    );
    assert_refused(
        &app.graphql(&member, WEBHOOKS, json!({ "ws": ada.workspace_id })).await,
        "FORBIDDEN",
        "a member",
    );
    assert_refused(
        &app.graphql(&bob.token, WEBHOOKS, json!({ "ws": ada.workspace_id }))
            .await,
        "NOT_FOUND",
        "a stranger",
    );

    let page = app.data(&ada.token, DELIVERIES, json!({ "id": webhook_id })).await;
    let page = &page["webhookDeliveries"];
    let nodes: Vec<Value> = page["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    assert_eq!(ids(&nodes), vec![third, second], "newest first");
    assert_eq!(nodes[0]["status"], "PENDING");
    assert!(nodes[0]["nextAttemptAt"].is_string());
    assert_eq!(nodes[1]["status"], "FAILED");
    assert_eq!(
        nodes[1]["attempts"],
        json!([{ "attempt": 1, "status": 410, "latencyMs": 12, "error": null, "responseExcerpt": "ok" }])
    );
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let rest = app
        .data(
            &ada.token,
            DELIVERIES,
            json!({ "id": webhook_id, "after": page["pageInfo"]["endCursor"] }),
        )
        .await;
    let node = &rest["webhookDeliveries"]["edges"][0]["node"];
    assert_eq!(node["id"], json!(first));
    assert_eq!(node["status"], "DELIVERED");
    let statuses: Vec<Value> = node["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!(500), Value::Null, json!(204)]);
    assert_eq!(node["attempts"][1]["error"], "connection refused");

    assert_refused(
        &app.graphql(&member, DELIVERIES, json!({ "id": webhook_id })).await,
        "FORBIDDEN",
        "a member",
    );
    assert_refused(
        &app.graphql(&bob.token, DELIVERIES, json!({ "id": webhook_id })).await,
        "NOT_FOUND",
        "a stranger",
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn alerts_show_what_fired_and_whether_it_resolved(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ada = app.tenant("ada").await;
    let (_, viewer) = app.member(&ada, Role::Viewer).await;
    let rule_id = Uuid::now_v7();
    let spec = RuleSpec {
        kind: AlertKind::PassRateBelow,
        card_id: None,
        label: Some("production".into()),
        provider: None,
        threshold: 0.9,
        threshold_micro_usd: None,
        window_runs: Some(3),
    };
    let ws = Some(ada.workspace_id);
    app.execute::<AlertRule>(
        rule_id,
        AlertRuleCommand::Create {
            rule_id,
            workspace_id: ada.workspace_id,
            spec,
        },
        ws,
        Some(ada.user_id),
    )
    .await;
    let evaluate = |value: f64| AlertRuleCommand::Evaluate {
        alert_id: Uuid::now_v7(),
        figure: Some(Figure {
            value,
            cost_micro_usd: None,
            runs: 3,
            results: 6,
            passed: Some((value * 6.0).round() as u64),
            source: "read_models".into(),
        }),
        run_id: None,
    };
    for value in [0.5, 1.0, 0.0] {
        app.execute::<AlertRule>(rule_id, evaluate(value), ws, None).await;
    }
    app.project().await;
    let query = "query($ws: ID!, $status: AlertStatus) {
        alerts(workspaceId: $ws, status: $status) { ruleId kind status threshold figure message resolvedFigure }
        alertRules(workspaceId: $ws) { id kind label threshold windowRuns firing } }";
    let all = app.data(&viewer, query, json!({ "ws": ada.workspace_id })).await;
    let alerts = all["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2);
    assert_eq!(
        (alerts[0]["status"].clone(), alerts[1]["status"].clone()),
        (json!("FIRING"), json!("RESOLVED"))
    );
    assert_eq!(alerts[0]["figure"]["value"], 0.0);
    assert_eq!(alerts[1]["figure"]["value"], 0.5);
    assert_eq!(alerts[1]["resolvedFigure"]["value"], 1.0);
    assert!(
        alerts[1]["message"].as_str().unwrap().contains("label \"production\""),
        "{}",
        alerts[1]
    );
    assert_eq!(
        all["alertRules"],
        json!([{ "id": rule_id, "kind": "pass_rate_below", "label": "production", "threshold": 0.9, "windowRuns": 3, "firing": true }])
    );
    let firing = app
        .data(&viewer, query, json!({ "ws": ada.workspace_id, "status": "FIRING" }))
        .await;
    assert_eq!(firing["alerts"].as_array().unwrap().len(), 1);
}
