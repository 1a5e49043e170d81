//! Provider credentials per workspace: set, listed without the key, removed; the key sealed
//! in the event, never in clear; admins only; and a spent budget refuses new runs.

use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

const KEY: &str = "sk-this-must-never-be-shown-0123456789";

fn path(workspace_id: Uuid, provider: &str) -> String {
    format!("/v1/workspaces/{workspace_id}/provider-credentials/{provider}")
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_key_is_sealed_never_answered_and_only_admins_set_it(pool: PgPool) {
    let app = TestApp::new(pool.clone());
    let (owner, _, workspace_id) = app.signup("ada@example.com").await;
    let body = json!({ "api_key": KEY, "base_url": "https://llm.internal.example/v1", "default_model": "gpt-4o-mini" });
    let (status, _, set) = app.put(&path(workspace_id, "openai"), &owner, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["provider"], "openai");
    assert_eq!(set["key_set"], true);
    assert_eq!(set["default_model"], "gpt-4o-mini");
    assert!(set["position"].as_i64().unwrap() > 0);
    assert!(!set.to_string().contains(KEY));

    // Changing the model without a key keeps the key.
    let (status, _, changed) = app
        .put(
            &path(workspace_id, "openai"),
            &owner,
            json!({ "default_model": "gpt-4o" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["key_set"], true);
    assert!(changed["base_url"].is_null());

    let list_path = format!("/v1/workspaces/{workspace_id}/provider-credentials");
    let (status, _, list) = app.get_as(&list_path, &owner).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["provider"], "openai");
    assert_eq!(list[0]["key_set"], true);
    assert_eq!(list[0]["default_model"], "gpt-4o");
    assert!(list[0]["updated_at"].is_string());
    assert!(!list.to_string().contains(KEY));

    // In the store the key is sealed: not in clear in any event, and it opens only with the
    // KEK, for this workspace and provider.
    let stored: Vec<String> = sqlx::query_scalar("SELECT data::text FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(
        stored.iter().all(|data| !data.contains(KEY)),
        "the key is in clear in an event"
    );
    let sealed: Value = sqlx::query_scalar(
        "SELECT data->'api_key' FROM events WHERE event_type = 'ProviderCredentialSet' ORDER BY position LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let sealed: domain::workspace::SealedSecret = serde_json::from_value(sealed).unwrap();
    let kek = service::sealing::Sealer::new(&command_api::Secret::new(TEST_KEK), None).unwrap();
    let context = service::sealing::provider_key_context(workspace_id, domain::workspace::ProviderKind::OpenAi);
    assert_eq!(kek.open(&sealed, &context).unwrap().expose(), KEY);
    let elsewhere = service::sealing::provider_key_context(Uuid::new_v4(), domain::workspace::ProviderKind::OpenAi);
    assert!(kek.open(&sealed, &elsewhere).is_err());

    // Members, viewers and strangers change nothing; an unknown provider is 404.
    let (member, _, _) = app.signup("bob@example.com").await;
    app.add_member(&owner, workspace_id, "bob@example.com", "member").await;
    let (stranger, _, _) = app.signup("eve@example.com").await;
    let before = app.events_count().await;
    let answer = app.put(&path(workspace_id, "anthropic"), &member, body.clone()).await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "member");
    let answer = app.delete(&path(workspace_id, "openai"), &member).await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "member");
    let answer = app.put(&path(workspace_id, "openai"), &stranger, body.clone()).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "workspace");
    let answer = app.get_as(&list_path, &stranger).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "workspace");
    let answer = app.put(&path(workspace_id, "mistral"), &owner, body.clone()).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "unknown provider");
    let answer = app
        .put(
            &path(workspace_id, "openai"),
            &owner,
            json!({ "base_url": "ftp://x", "api_key": "" }),
        )
        .await;
    assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.2);
    assert_eq!(app.events_count().await, before, "refused requests append nothing");
    // A member reads the list (no keys in it).
    let (status, _, _) = app.get_as(&list_path, &member).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, removed) = app.delete(&path(workspace_id, "openai"), &owner).await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    let (_, _, list) = app.get_as(&list_path, &owner).await;
    assert_eq!(list, json!([]));
    let answer = app.delete(&path(workspace_id, "openai"), &owner).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "openai");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_workspace_past_its_budget_starts_no_run(pool: PgPool) {
    let app = TestApp::new(pool);
    let (owner, _, workspace_id) = app.signup("ada@example.com").await;
    let card_id = app.create_card(&owner, workspace_id, "Budgeted").await;
    let case = json!({ "name": "one", "vars": { "text": "hi" }, "assertions": [] });
    let (status, _, body) = app
        .post(
            &format!("{}/test-cases", card_path(workspace_id, card_id)),
            &owner,
            case,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let runs = format!("/v1/workspaces/{workspace_id}/runs");
    let run = json!({ "card_id": card_id, "providers": ["echo"] });
    let (status, _, body) = app.post(&runs, &owner, run.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let budget = format!("/v1/workspaces/{workspace_id}/budget");
    let (status, _, body) = app.put(&budget, &owner, json!({ "limit_micro_usd": 0 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["limit_micro_usd"], 0);
    assert_eq!(body["spent_micro_usd"], 0);
    let before = app.events_count().await;
    let answer = app.post(&runs, &owner, run.clone()).await;
    assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.2);
    assert_eq!(invalid_fields(&answer.2), vec!["budget"]);
    assert!(answer.2["message"].as_str().unwrap().contains("budget"), "{}", answer.2);
    assert_eq!(app.events_count().await, before);

    let (status, _, body) = app.put(&budget, &owner, json!({ "limit_micro_usd": null })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = app.post(&runs, &owner, run).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, _, body) = app.get_as(&budget, &owner).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["limit_micro_usd"].is_null());
}
