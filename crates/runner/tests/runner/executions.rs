//! Playground executions in the runner, without Redis (its live updates are then skipped): the
//! outcome is recorded all the same, an ended execution is never called again, and one
//! cancelled before it started never calls its provider.

use crate::support::runner;
use domain::card::{CardCommand, CardContent, PromptCard};
use domain::execution::{Execution, ExecutionCommand, ExecutionRequest, ExecutionStatus};
use domain::run::ProviderSpec;
use domain::template::{VarType, Variable};
use domain::Aggregate;
use event_store::{EventStore, Metadata, Repository};
use serde_json::{json, Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

async fn request(store: &EventStore, provider: &str) -> Uuid {
    let (card_id, workspace_id, execution_id) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let content = CardContent {
        title: "Greeter".into(),
        template: "Say hi to {{ who }}".into(),
        variables: vec![Variable {
            name: "who".into(),
            kind: VarType::String,
            description: None,
            default: None,
            required: true,
        }],
        ..Default::default()
    };
    let created = PromptCard::default()
        .decide(CardCommand::Create {
            card_id,
            workspace_id,
            name: "greeter".into(),
            content,
        })
        .unwrap();
    let command = ExecutionCommand::Request {
        execution_id,
        request: Box::new(ExecutionRequest {
            card: PromptCard::fold(&created),
            version: None,
            template: None,
            messages: None,
            variables: Map::from_iter([("who".to_owned(), json!("Ada"))]),
            provider: ProviderSpec {
                id: provider.into(),
                config: Value::Null,
            },
        }),
    };
    let metadata = Metadata {
        workspace_id: Some(workspace_id),
        correlation_id: execution_id,
        ..Default::default()
    };
    Repository::new(store.clone(), 10)
        .execute::<Execution>(execution_id, command, metadata)
        .await
        .unwrap();
    execution_id
}

async fn load(store: &EventStore, id: Uuid) -> (Execution, usize) {
    let events = store.read_stream(id, 0).await.unwrap();
    (event_store::fold_recorded(&events).unwrap(), events.len())
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_execution_without_redis_is_recorded_once(pool: PgPool) {
    let store = EventStore::new(pool);
    let id = request(&store, "echo").await;
    let runner = runner(&store, "http://127.0.0.1:9");
    assert_eq!(runner.run_execution(id).await.unwrap(), ExecutionStatus::Finished);
    let (execution, events) = load(&store, id).await;
    let output = execution.output.unwrap();
    assert_eq!((output.output.as_str(), output.prompt_tokens), ("Say hi to Ada", 4));
    assert!(output.latency_ms >= output.first_token_ms);
    assert_eq!(runner.run_execution(id).await.unwrap(), ExecutionStatus::Finished);
    assert_eq!(
        load(&store, id).await.1,
        events,
        "an ended execution records nothing more"
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_provider_that_fails_fails_the_execution_with_its_error(pool: PgPool) {
    let store = EventStore::new(pool);
    let id = request(&store, "openai:chat:gpt-test").await;
    let runner = runner(&store, "http://127.0.0.1:9");
    assert_eq!(runner.run_execution(id).await.unwrap(), ExecutionStatus::Failed);
    let error = load(&store, id).await.0.error.unwrap();
    assert!(error.contains("could not be reached"), "{error}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_execution_cancelled_before_it_started_calls_nothing(pool: PgPool) {
    let store = EventStore::new(pool);
    // Were it called, this unreachable provider would fail the execution instead.
    let id = request(&store, "openai:chat:gpt-test").await;
    let (execution, _) = load(&store, id).await;
    let metadata = Metadata {
        workspace_id: execution.workspace_id(),
        correlation_id: id,
        ..Default::default()
    };
    Repository::new(store.clone(), 10)
        .execute::<Execution>(id, ExecutionCommand::Cancel, metadata)
        .await
        .unwrap();
    let runner = runner(&store, "http://127.0.0.1:9");
    assert_eq!(runner.run_execution(id).await.unwrap(), ExecutionStatus::Cancelled);
    assert_eq!(load(&store, id).await.0.status, ExecutionStatus::Cancelled);
}
