//! `stream show` at a version and at a moment, and `diff` between versions.

use crate::support::*;
use domain::card::CardEvent;
use event_store::EventStore;
use sqlx::PgPool;

/// A card with three versions recorded an hour apart (10:00, 11:00, 12:00), the `production`
/// label on version 2 at 11:30.
async fn card_with_history(pool: &PgPool) -> uuid::Uuid {
    let store = EventStore::new(pool.clone());
    let actor = Actor::new();
    actor.create_workspace(&store, &MEMBERS).await;
    let (card, _) = actor.create_card(&store, "First").await;
    let mut version = 1;
    version = actor
        .card_events(
            &store,
            card,
            version,
            vec![CardEvent::PromptCardUpdated {
                version: 2,
                content: content("Second", "Hi {{ name }}!"),
            }],
        )
        .await;
    version = actor
        .card_events(
            &store,
            card,
            version,
            vec![CardEvent::PromptCardLabelMoved {
                label: "production".to_owned(),
                version: 2,
                previous_version: None,
            }],
        )
        .await;
    let mut third = content("Third", "Hi {{ name }}!\nWelcome back.");
    third.tags = vec!["demo".to_owned(), "greeting".to_owned()];
    actor
        .card_events(
            &store,
            card,
            version,
            vec![CardEvent::PromptCardUpdated {
                version: 3,
                content: third,
            }],
        )
        .await;
    // recorded_at is not part of the hash chain; fixed times make the moments exact.
    for (stream_version, at) in [(1, "10:00"), (2, "11:00"), (3, "11:30"), (4, "12:00")] {
        sqlx::query(&format!(
            "UPDATE events SET recorded_at = '2026-01-01T{at}:00Z' WHERE stream_id = $1 AND version = $2"
        ))
        .bind(card)
        .bind(stream_version)
        .execute(pool)
        .await
        .unwrap();
    }
    card
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn stream_show_folds_the_card_at_a_version_and_at_a_moment(pool: PgPool) {
    let card = card_with_history(&pool).await;
    let id = card.to_string();

    let now = promptcards(&pool, &["stream", "show", &id]).await.success();
    assert!(
        now.stdout.contains("Third") && now.stdout.contains("Welcome back."),
        "{}",
        now.stdout
    );
    assert!(now.stdout.contains("version   4 of 4"), "{}", now.stdout);

    let at_two = promptcards(&pool, &["stream", "show", &id, "--at-version", "2"])
        .await
        .success();
    assert!(at_two.stdout.contains("Second"), "{}", at_two.stdout);
    assert!(
        !at_two.stdout.contains("Third") && !at_two.stdout.contains("production"),
        "{}",
        at_two.stdout
    );
    assert!(at_two.stdout.contains("PromptCardUpdated") && !at_two.stdout.contains("PromptCardLabelMoved"));

    // Between the label move (11:30) and the third version (12:00).
    let json = promptcards(
        &pool,
        &["stream", "show", &id, "--at-time", "2026-01-01T11:45:00Z", "--json"],
    )
    .await
    .success();
    let document = &json.json_lines()[0];
    assert_eq!(document["stream"]["type"], "prompt_card");
    assert_eq!(document["stream"]["version"], 3);
    assert_eq!(document["stream"]["current_version"], 4);
    assert_eq!(document["state"]["title"], "Second");
    assert_eq!(document["state"]["version"], 2);
    assert_eq!(document["state"]["labels"]["production"], 2);
    assert_eq!(document["state"]["template"], "Hi {{ name }}!");
    assert_eq!(document["events"].as_array().unwrap().len(), 3);

    let before = promptcards(&pool, &["stream", "show", &id, "--at-time", "2026-01-01T09:00:00Z"])
        .await
        .success();
    assert!(before.stdout.contains("no events yet"), "{}", before.stdout);

    let beyond = promptcards(&pool, &["stream", "show", &id, "--at-version", "9"]).await;
    assert_eq!(beyond.code, 3);
    assert!(beyond.stderr.contains("versions 1 to 4"), "{}", beyond.stderr);
    let unknown = promptcards(&pool, &["stream", "show", &uuid::Uuid::now_v7().to_string()]).await;
    assert_eq!(unknown.code, 3);
    assert!(unknown.stderr.contains("no stream"), "{}", unknown.stderr);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn stream_show_folds_workspaces_and_runs_too(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let actor = Actor::new();
    actor.create_workspace(&store, &MEMBERS).await;
    let (card, _) = actor.create_card(&store, "Card").await;
    let (run, _) = actor
        .run(
            &store,
            card,
            &[("Ada", Some("Hello Ada!"), true), ("Bob", Some("Bye"), false)],
        )
        .await;

    let workspace = promptcards(&pool, &["stream", "show", &actor.workspace_id.to_string(), "--json"])
        .await
        .success();
    let state = &workspace.json_lines()[0]["state"];
    assert_eq!(state["members"][actor.actor_id.to_string()], "owner");

    let shown = promptcards(&pool, &["stream", "show", &run.to_string(), "--json"])
        .await
        .success();
    let state = &shown.json_lines()[0]["state"];
    assert_eq!(
        (
            state["status"].as_str(),
            state["passed"].as_u64(),
            state["failed"].as_u64()
        ),
        (Some("COMPLETED"), Some(1), Some(1))
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn diff_shows_the_template_lines_and_the_fields_that_changed(pool: PgPool) {
    let card = card_with_history(&pool).await.to_string();
    let text = promptcards(&pool, &["diff", &card, "1", "3"]).await.success().stdout;
    for expected in [
        "title:       \"First\" -> \"Third\"",
        "tags:        +greeting",
        "-Hello {{ name }}!",
        "+Hi {{ name }}!",
        "+Welcome back.",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
    assert!(!text.contains("variables:"), "{text}");

    let json = promptcards(&pool, &["diff", &card, "2", "3", "--json"]).await.success();
    let diff = &json.json_lines()[0];
    assert_eq!(diff["title"]["to"], "Third");
    assert_eq!(diff["tags"]["added"], serde_json::json!(["greeting"]));
    assert!(diff["template"].as_str().unwrap().contains("+Welcome back."));

    let same = promptcards(&pool, &["diff", &card, "2", "2"]).await.success();
    assert!(same.stdout.contains("no changes"));
    let missing = promptcards(&pool, &["diff", &card, "1", "7"]).await;
    assert_eq!(missing.code, 3);
    assert!(missing.stderr.contains("versions 1 to 3"), "{}", missing.stderr);
}

/// A card written before variables were typed (schema version 1: bare names) is read through
/// the upcaster everywhere: `stream show`, and the read models `replay` rebuilds.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn version_one_events_are_upcast_on_the_cli_and_projector_read_paths(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let actor = Actor::new();
    actor.create_workspace(&store, &MEMBERS).await;
    let card = uuid::Uuid::now_v7();
    let v1 = event_store::NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: "PromptCardCreated".into(),
        schema_version: 1,
        data: serde_json::json!({
            "card_id": card, "workspace_id": actor.workspace_id, "title": "Legacy",
            "description": "", "template": "Hi {{ name }}", "variables": ["name"], "tags": [],
        }),
    };
    actor
        .append(
            &store,
            false,
            vec![stream(
                card,
                "prompt_card",
                event_store::ExpectedVersion::NoStream,
                vec![v1],
            )],
        )
        .await;
    let typed = serde_json::json!([{"name": "name", "type": "string", "required": true}]);

    let shown = promptcards(&pool, &["stream", "show", &card.to_string(), "--json"])
        .await
        .success();
    let document = &shown.json_lines()[0];
    assert_eq!(document["state"]["title"], "Legacy");
    assert_eq!(document["state"]["variables"], typed, "{document}");

    promptcards(&pool, &["replay", "postgres"]).await.success();
    let (card_vars, version_vars): (serde_json::Value, serde_json::Value) = sqlx::query_as(
        "SELECT c.variables, v.variables FROM read.prompt_cards c JOIN read.card_versions v USING (card_id) WHERE card_id = $1",
    )
    .bind(card)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(card_vars, typed);
    assert_eq!(version_vars, typed);
}
