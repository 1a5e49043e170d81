//! Loading aggregates through the repository, and INVARIANT 10 (lifecycle) on the write side.

use domain::card::{CardEvent, PromptCard};
use domain::template::VarType;
use domain::workspace::{Workspace, WorkspaceEvent};
use domain::Aggregate;
use event_store::{Append, EventStore, ExpectedVersion, Metadata, NewEvent, Repository, StreamAppend};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use ExpectedVersion::{Exact, NoStream};

fn append<A: Aggregate>(stream_id: Uuid, expected: ExpectedVersion, events: Vec<NewEvent>) -> Append {
    Append {
        streams: vec![StreamAppend {
            stream_id,
            stream_type: A::STREAM_TYPE.to_owned(),
            expected,
            events,
        }],
        metadata: Metadata {
            correlation_id: Uuid::now_v7(),
            ..Metadata::default()
        },
        ..Append::default()
    }
}

/// A card created the way version 1 of the schema stored it: variables as bare names.
fn created_v1(card_id: Uuid) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "PromptCardCreated".to_owned(),
        schema_version: 1,
        data: json!({
            "card_id": card_id,
            "workspace_id": Uuid::now_v7(),
            "title": "Answer",
            "description": "",
            "template": "{{ q }}",
            "variables": ["q"],
            "tags": [],
        }),
    }
}

fn archived() -> NewEvent {
    NewEvent::from_domain(&CardEvent::PromptCardArchived {})
}

fn label_moved(label: &str) -> NewEvent {
    NewEvent::from_domain(&CardEvent::PromptCardLabelMoved {
        label: label.to_owned(),
        version: 1,
        previous_version: None,
    })
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_event_of_an_old_schema_version_is_upcast_on_load(pool: PgPool) {
    // Given a card whose creation was stored at schema version 1
    let store = EventStore::new(pool);
    let card = Uuid::now_v7();
    store
        .append(append::<PromptCard>(card, NoStream, vec![created_v1(card)]))
        .await
        .unwrap();

    // When it is loaded
    let loaded = Repository::new(store.clone(), 100)
        .load::<PromptCard>(card)
        .await
        .unwrap();

    // Then its variable has the type and requiredness version 1 implied
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.state.id, Some(card));
    let variables = &loaded.state.current().unwrap().content.variables;
    assert_eq!(variables.len(), 1);
    assert_eq!(variables[0].name, "q");
    assert_eq!(variables[0].kind, VarType::String);
    assert!(variables[0].required);

    // And the stored event is left as it was written
    let stored = store.read_stream(card, 0).await.unwrap();
    assert_eq!(stored[0].schema_version, 1);
    assert_eq!(stored[0].data["variables"], json!(["q"]));
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_archived_card_keeps_its_history(pool: PgPool) {
    // Given a card with a label
    let store = EventStore::new(pool);
    let repository = Repository::new(store.clone(), 100);
    let card = Uuid::now_v7();
    store
        .append(append::<PromptCard>(
            card,
            NoStream,
            vec![created_v1(card), label_moved("production")],
        ))
        .await
        .unwrap();
    assert!(!repository.load::<PromptCard>(card).await.unwrap().state.archived);

    // When it is archived
    store
        .append(append::<PromptCard>(card, Exact(2), vec![archived()]))
        .await
        .unwrap();

    // Then it loads as archived, with everything it had, and its stream still has every event
    let loaded = repository.load::<PromptCard>(card).await.unwrap();
    assert!(loaded.state.archived);
    assert_eq!(loaded.version, 3);
    assert_eq!(loaded.state.version(), 1);
    assert_eq!(loaded.state.labels.get("production"), Some(&1));
    let types: Vec<String> = store
        .read_stream(card, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        ["PromptCardCreated", "PromptCardLabelMoved", "PromptCardArchived"]
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_cached_aggregate_sees_appends_made_by_another_replica(pool: PgPool) {
    // Given two replicas, the first of which has the card cached
    let store = EventStore::new(pool);
    let (here, there) = (Repository::new(store.clone(), 100), Repository::new(store.clone(), 100));
    let card = Uuid::now_v7();
    store
        .append(append::<PromptCard>(card, NoStream, vec![created_v1(card)]))
        .await
        .unwrap();
    let cached = here.load::<PromptCard>(card).await.unwrap();
    assert_eq!((cached.version, cached.state.archived), (1, false));

    // When the other replica loads the card and appends to it
    let seen_there = there.load::<PromptCard>(card).await.unwrap();
    there
        .store()
        .append(append::<PromptCard>(
            card,
            Exact(seen_there.version),
            vec![label_moved("staging"), archived()],
        ))
        .await
        .unwrap();

    // Then the first replica's next load reflects those appends
    let loaded = here.load::<PromptCard>(card).await.unwrap();
    assert_eq!(loaded.version, 3);
    assert!(loaded.state.archived);
    assert_eq!(loaded.state.labels.get("staging"), Some(&1));
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_stream_of_another_type_loads_as_empty(pool: PgPool) {
    // Given a workspace stream
    let store = EventStore::new(pool);
    let repository = Repository::new(store.clone(), 100);
    let workspace = Uuid::now_v7();
    let created = WorkspaceEvent::WorkspaceCreated {
        workspace_id: workspace,
        name: "Acme".to_owned(),
        owner_id: Uuid::now_v7(),
    };
    store
        .append(append::<Workspace>(
            workspace,
            NoStream,
            vec![NewEvent::from_domain(&created)],
        ))
        .await
        .unwrap();
    let as_workspace = repository.load::<Workspace>(workspace).await.unwrap();
    assert_eq!(as_workspace.version, 1);

    // When its id is loaded as a prompt card, even after it was cached as a workspace
    let as_card = repository.load::<PromptCard>(workspace).await.unwrap();

    // Then it reads as a card that does not exist
    assert_eq!(as_card.version, 0);
    assert_eq!(as_card.state, PromptCard::default());
}
