//! The runner calls providers with the run's workspace credentials, opened from their sealed
//! form; the environment's keys serve other workspaces only when the operator allows it; and a
//! finished run's cost is counted against its workspace's budget.

use crate::support::*;
use axum::http::HeaderMap;
use domain::workspace::{ProviderKind, Workspace, WorkspaceCommand};
use domain::Role;
use event_store::{EventStore, Metadata, Repository};
use providers::{PriceTable, ProviderSettings, Providers};
use runner::{RunOutcome, Runner};
use serde_json::{json, Value};
use service::sealing::{provider_key_context, Sealer};
use service::Secret;
use sqlx::PgPool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// An OpenAI-compatible server that remembers the Authorization header of each call.
async fn recording_server() -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/chat/completions",
        axum::routing::post(move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
            let record = record.clone();
            async move {
                let authorization = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                record.lock().unwrap().push(authorization);
                let prompt = body["messages"][0]["content"].as_str().unwrap_or_default().to_owned();
                axum::Json(json!({
                    "choices": [{"message": {"role": "assistant", "content": prompt}}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 5}
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn sealer() -> Arc<Sealer> {
    Arc::new(Sealer::new(&Secret::new("cnVubmVyLXRlc3Qta2VrLTAxMjM0NTY3ODlhYmNkZWY="), None).unwrap())
}

/// A workspace; with `key`, its openai credentials point at `base_url` with that key, sealed.
async fn workspace(repo: &Repository, sealer: &Sealer, base_url: &str, key: Option<&str>) -> Uuid {
    let workspace_id = Uuid::now_v7();
    let metadata = Metadata {
        workspace_id: Some(workspace_id),
        correlation_id: Uuid::new_v4(),
        ..Default::default()
    };
    let create = WorkspaceCommand::Create {
        workspace_id,
        name: "Acme".into(),
        owner_id: Uuid::new_v4(),
    };
    repo.execute::<Workspace>(workspace_id, create, metadata.clone())
        .await
        .unwrap();
    if let Some(key) = key {
        let set = WorkspaceCommand::SetProviderCredential {
            actor_role: Role::Owner,
            provider: ProviderKind::OpenAi,
            base_url: Some(base_url.to_owned()),
            default_model: None,
            api_key: Some(sealer.seal(key, &provider_key_context(workspace_id, ProviderKind::OpenAi))),
            updated_at: chrono::Utc::now(),
        };
        repo.execute::<Workspace>(workspace_id, set, metadata).await.unwrap();
    }
    workspace_id
}

fn runner_with(store: &EventStore, base_url: &str, environment_keys: bool) -> Runner {
    let mut settings = ProviderSettings::for_base_url(base_url, Duration::from_secs(5));
    settings.openai_api_key = Some(Secret::new("sk-operator"));
    let providers = Providers::new(settings, PriceTable::builtin());
    Runner::new(Repository::new(store.clone(), 100), Arc::new(providers), 4)
        .with_workspace_credentials(sealer(), environment_keys)
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn runs_use_their_workspaces_key_and_the_operators_only_when_allowed(pool: PgPool) {
    let store = EventStore::new(pool);
    let repo = Repository::new(store.clone(), 100);
    let (own_url, own_calls) = recording_server().await;
    let (default_url, default_calls) = recording_server().await;
    let sealer = sealer();
    let with_key = workspace(&repo, &sealer, &own_url, Some("sk-workspace-a")).await;
    let without = workspace(&repo, &sealer, &own_url, None).await;

    let run = request_run_in(&store, with_key, 2, &["openai:gpt-4o"], 1).await;
    let outcome = runner_with(&store, &default_url, false).execute(run).await.unwrap();
    assert_eq!(outcome, RunOutcome::Completed { recorded: 2 });
    assert_eq!(
        *own_calls.lock().unwrap(),
        vec![Some("Bearer sk-workspace-a".to_owned()); 2],
        "the workspace's key, at the workspace's base URL"
    );
    assert!(default_calls.lock().unwrap().is_empty());

    // A workspace with no credentials: the operator's key is not sent by default...
    let run = request_run_in(&store, without, 1, &["openai:gpt-4o"], 1).await;
    runner_with(&store, &default_url, false).execute(run).await.unwrap();
    assert_eq!(*default_calls.lock().unwrap(), vec![None]);
    // ...and is when the operator chose it as the default.
    let run = request_run_in(&store, without, 1, &["openai:gpt-4o"], 1).await;
    runner_with(&store, &default_url, true).execute(run).await.unwrap();
    assert_eq!(
        default_calls.lock().unwrap().last().unwrap().as_deref(),
        Some("Bearer sk-operator")
    );

    // What the first run cost is counted once against its workspace.
    let cost = load_run(&store, run).await.cost_micro_usd;
    assert!(cost > 0, "gpt-4o has a published price");
    let spent = repo.load::<Workspace>(with_key).await.unwrap().state.spent_micro_usd;
    assert_eq!(spent, 2 * cost, "two results of the same cost");
    let again = runner_with(&store, &default_url, false).execute(run).await.unwrap();
    assert_eq!(again, RunOutcome::AlreadyOver);
    assert_eq!(
        repo.load::<Workspace>(without).await.unwrap().state.spent_micro_usd,
        2 * cost
    );
}
