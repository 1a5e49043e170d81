//! Webhook endpoints and alert rules through the command API: who may register them, what is
//! stored (never the secret in the clear), and targets inside the network refused.

use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;
use webhook::{Keyring, SigningSecret, TargetPolicy};

/// A public address, so that no test depends on resolving a name.
const PUBLIC_URL: &str = "https://93.184.216.34/promptcards";

fn webhooks_path(workspace_id: Uuid) -> String {
    format!("/v1/workspaces/{workspace_id}/webhooks")
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_admin_registers_an_endpoint_and_sees_its_secret_once(pool: PgPool) {
    let app = TestApp::new(pool);
    let (owner, _, workspace_id) = app.signup("owner@example.com").await;
    let (status, headers, body) = app
        .json(
            axum::http::Method::POST,
            &webhooks_path(workspace_id),
            &owner,
            json!({ "url": PUBLIC_URL, "events": ["run.completed", "alert.fired", "run.completed"] }),
            &[("idempotency-key", "hook-1")],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let _ = headers;
    let id = uuid_at(&body, "id");
    let secret = body["secret"].as_str().unwrap();
    let secret = SigningSecret::parse(secret).unwrap_or_else(|_| panic!("{secret} is not a whsec_ secret"));
    assert_eq!(body["events"], json!(["alert.fired", "run.completed"]));
    assert_eq!(body["enabled"], true);
    assert!(body["position"].as_i64().unwrap() > 0);

    // The event holds the secret sealed: not in the clear, and it opens to the one shown.
    let data: Value = sqlx::query_scalar("SELECT data FROM events WHERE stream_id = $1 AND version = 1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let shown = secret.expose();
    let stored = data.to_string();
    assert!(!stored.contains(shown.trim_start_matches("whsec_")), "{stored}");
    let keyring = Keyring::new(WEBHOOK_KEK, None).unwrap();
    assert_eq!(
        keyring.open(data["sealed_secret"].as_str().unwrap(), id).unwrap(),
        secret
    );

    // A retry with the same key appends nothing and does not show the secret again.
    let before = app.events_count().await;
    let retry = app
        .json(
            axum::http::Method::POST,
            &webhooks_path(workspace_id),
            &owner,
            json!({ "url": PUBLIC_URL, "events": ["run.completed", "alert.fired", "run.completed"] }),
            &[("idempotency-key", "hook-1")],
        )
        .await;
    assert_error(&retry, StatusCode::CONFLICT, "conflict", "shown once");
    assert_eq!(app.events_count().await, before);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn only_admins_manage_endpoints_and_strangers_see_nothing(pool: PgPool) {
    let app = TestApp::new(pool);
    let (owner, _, workspace_id) = app.signup("owner@example.com").await;
    let (member, _, _) = app.signup("member@example.com").await;
    let (admin, _, _) = app.signup("admin@example.com").await;
    let (stranger, _, _) = app.signup("stranger@example.com").await;
    app.add_member(&owner, workspace_id, "member@example.com", "member")
        .await;
    app.add_member(&owner, workspace_id, "admin@example.com", "admin").await;
    let body = json!({ "url": PUBLIC_URL, "events": ["*"] });
    let path = webhooks_path(workspace_id);
    assert_error(
        &app.post(&path, &member, body.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "member",
    );
    assert_error(
        &app.post(&path, &stranger, body.clone()).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "workspace",
    );
    let (status, _, created) = app.post(&path, &admin, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let hook = format!("{path}/{}", uuid_at(&created, "id"));

    let (status, _, updated) = app
        .patch(&hook, &admin, json!({ "events": ["card.created"], "enabled": false }))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        (updated["events"].clone(), updated["enabled"].clone()),
        (json!(["card.created"]), json!(false))
    );
    assert_error(
        &app.patch(&hook, &member, json!({ "enabled": true })).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "member",
    );
    let (status, _, deleted) = app.delete(&hook, &admin).await;
    assert_eq!((status, deleted["deleted"].clone()), (StatusCode::OK, json!(true)));
    assert_error(
        &app.delete(&hook, &admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "webhook",
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn targets_inside_the_network_are_refused_unless_the_operator_allows_them(pool: PgPool) {
    let app = TestApp::new(pool.clone());
    let (owner, _, workspace_id) = app.signup("owner@example.com").await;
    let path = webhooks_path(workspace_id);
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://localhost:8080/hook",
        "http://192.168.0.10/",
    ] {
        let answer = app.post(&path, &owner, json!({ "url": url, "events": ["*"] })).await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "inside this network",
        );
        assert_eq!(invalid_fields(&answer.2), vec!["url"], "{url}");
    }
    let answer = app
        .post(
            &path,
            &owner,
            json!({ "url": "ftp://example.com/", "events": ["run.exploded"] }),
        )
        .await;
    assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.2);
    assert_eq!(app.count_events_of_type("WebhookCreated").await, 0);

    // Moving an endpoint inside is refused as well.
    let (_, _, created) = app
        .post(&path, &owner, json!({ "url": PUBLIC_URL, "events": ["*"] }))
        .await;
    let hook = format!("{path}/{}", uuid_at(&created, "id"));
    let answer = app.patch(&hook, &owner, json!({ "url": "http://127.0.0.1/" })).await;
    assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.2);

    let mut settings = settings();
    settings.webhook_targets = TargetPolicy::parse("127.0.0.0/8").unwrap();
    let allowing = TestApp::with_settings(pool, settings);
    let (status, _, body) = allowing
        .post(
            &path,
            &owner,
            json!({ "url": "http://127.0.0.1:9000/hook", "events": ["*"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let answer = allowing
        .post(&path, &owner, json!({ "url": "http://10.1.2.3/hook", "events": ["*"] }))
        .await;
    assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.2);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_redelivery_names_a_delivery_of_that_endpoint(pool: PgPool) {
    let app = TestApp::new(pool);
    let (owner, _, workspace_id) = app.signup("owner@example.com").await;
    let path = webhooks_path(workspace_id);
    let (_, _, created) = app
        .post(&path, &owner, json!({ "url": PUBLIC_URL, "events": ["*"] }))
        .await;
    let webhook_id = uuid_at(&created, "id");
    let delivery_id = Uuid::now_v7();
    let redeliver = format!("{path}/{webhook_id}/deliveries/{delivery_id}/redeliver");
    assert_error(
        &app.post(&redeliver, &owner, Value::Null).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "delivery",
    );
    sqlx::query(
        "INSERT INTO webhooks.deliveries (delivery_id, webhook_id, workspace_id, event_id, event_position, event_type,
                                          body, event_recorded_at, status)
         VALUES ($1, $2, $3, $4, 1, 'card.created', '{}', now(), 'failed')",
    )
    .bind(delivery_id)
    .bind(webhook_id)
    .bind(workspace_id)
    .bind(Uuid::now_v7())
    .execute(&app.pool)
    .await
    .unwrap();
    let (status, _, body) = app.post(&redeliver, &owner, Value::Null).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let data: Value = sqlx::query_scalar("SELECT data FROM events WHERE event_type = 'WebhookRedeliveryRequested'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(data, json!({ "delivery_id": delivery_id }));

    // A disabled endpoint sends nothing, so asking it to is a conflict.
    app.patch(&format!("{path}/{webhook_id}"), &owner, json!({ "enabled": false }))
        .await;
    assert_error(
        &app.post(&redeliver, &owner, Value::Null).await,
        StatusCode::CONFLICT,
        "conflict",
        "disabled",
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn alert_rules_are_checked_per_kind_and_watch_cards_of_their_workspace(pool: PgPool) {
    let app = TestApp::new(pool);
    let (owner, _, workspace_id) = app.signup("owner@example.com").await;
    let (other, _, other_workspace) = app.signup("other@example.com").await;
    let card = app.create_card(&owner, workspace_id, "Watched").await;
    let foreign = app.create_card(&other, other_workspace, "Foreign").await;
    let path = format!("/v1/workspaces/{workspace_id}/alert-rules");

    let (status, _, body) = app
        .post(
            &path,
            &owner,
            json!({ "kind": "pass_rate_below", "card_id": card, "threshold": 0.8 }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["window_runs"], 10);
    let (status, _, body) = app
        .post(&path, &owner, json!({ "kind": "daily_cost_above", "threshold": 2.5 }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let data: Value = sqlx::query_scalar(
        "SELECT data FROM events WHERE event_type = 'AlertRuleCreated' AND data->>'kind' = 'daily_cost_above'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(data["threshold_micro_usd"], 2_500_000);

    let answer = app
        .post(
            &path,
            &owner,
            json!({ "kind": "latency_p95_above", "threshold": -5, "label": "prod" }),
        )
        .await;
    assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.2);
    assert_eq!(invalid_fields(&answer.2), vec!["threshold", "provider", "label"]);
    assert_error(
        &app.post(
            &path,
            &owner,
            json!({ "kind": "pass_rate_below", "card_id": foreign, "threshold": 0.5 }),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        "prompt card",
    );
    let answer = app
        .post(&path, &owner, json!({ "kind": "cost_spike", "threshold": 1 }))
        .await;
    assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.2);

    let rule = uuid_at(&body, "id");
    let (status, _, _) = app.delete(&format!("{path}/{rule}"), &owner).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.count_events_of_type("AlertRuleDeleted").await, 1);
}
