//! Time travel: a card at one of its versions, or as it was at a moment, folded from its
//! history; and the label history with who moved each label.

use crate::support::*;
use chrono::{DateTime, Utc};
use domain::card::CardCommand;
use domain::Role;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;

const AT: &str = "query At($id: ID!, $version: Int, $asOf: DateTime) {
  promptCard(id: $id, version: $version, asOf: $asOf) { id title version labels archived }
}";

/// Appends are stamped with their transaction's start time; a pause makes each distinct.
const BETWEEN_WRITES: Duration = Duration::from_millis(30);

fn midpoint(a: DateTime<Utc>, b: DateTime<Utc>) -> DateTime<Utc> {
    a + (b - a) / 2
}

async fn read_card(
    app: &TestApp,
    tenant: &Tenant,
    card_id: uuid::Uuid,
    version: Option<i32>,
    as_of: Option<DateTime<Utc>>,
) -> Value {
    let answer = app
        .graphql(
            &tenant.token,
            AT,
            json!({ "id": card_id, "version": version, "asOf": as_of }),
        )
        .await;
    assert!(
        answer.get("errors").is_none(),
        "version {version:?} as of {as_of:?}: {answer}"
    );
    answer["data"]["promptCard"].clone()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_card_reads_as_it_was_at_a_version_or_a_moment(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ada = app.tenant("ada").await;
    let (bob, _) = app.member(&ada, Role::Member).await;
    let (card_id, _) = app.create_card(&ada, titled("Version one")).await;
    tokio::time::sleep(BETWEEN_WRITES).await;
    app.card_command(
        &ada,
        card_id,
        CardCommand::MoveLabel {
            label: "production".into(),
            version: 1,
        },
    )
    .await;
    tokio::time::sleep(BETWEEN_WRITES).await;
    app.update_card(&ada, card_id, titled("Version two")).await;
    tokio::time::sleep(BETWEEN_WRITES).await;
    app.card_command_by(
        &ada,
        bob,
        card_id,
        CardCommand::MoveLabel {
            label: "production".into(),
            version: 2,
        },
    )
    .await;
    tokio::time::sleep(BETWEEN_WRITES).await;
    app.update_card(&ada, card_id, titled("Version three")).await;
    app.project().await;

    let history = app.store.read_stream(card_id, 0).await.unwrap();
    let at: Vec<DateTime<Utc>> = history.iter().map(|e| e.recorded_at).collect();
    let kinds: Vec<&str> = history.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "PromptCardCreated",
            "PromptCardLabelMoved",
            "PromptCardUpdated",
            "PromptCardLabelMoved",
            "PromptCardUpdated"
        ]
    );
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "each write at its own moment: {at:?}"
    );

    let read = |version: Option<i32>, as_of: Option<DateTime<Utc>>| read_card(&app, &ada, card_id, version, as_of);
    let title = |card: &Value| card["title"].as_str().map(str::to_owned);

    // By version.
    for (version, expected) in [(1, "Version one"), (2, "Version two"), (3, "Version three")] {
        let card = read(Some(version), None).await;
        assert_eq!(title(&card).as_deref(), Some(expected));
        assert_eq!(card["version"], version);
    }
    assert!(read(Some(4), None).await.is_null(), "a version not written yet");

    // By moment: between the first label move and the first update, v1 was current and
    // production pointed at it.
    let card = read(None, Some(midpoint(at[1], at[2]))).await;
    assert_eq!(title(&card).as_deref(), Some("Version one"));
    assert_eq!(card["version"], 1);
    assert_eq!(card["labels"], json!({ "production": 1 }));
    // Before the label moved, there was no label.
    let card = read(None, Some(midpoint(at[0], at[1]))).await;
    assert_eq!(title(&card).as_deref(), Some("Version one"));
    assert_eq!(card["labels"], json!({}));
    // Between the second move and the last update: v2, labelled production.
    let card = read(None, Some(midpoint(at[3], at[4]))).await;
    assert_eq!(title(&card).as_deref(), Some("Version two"));
    assert_eq!(card["labels"], json!({ "production": 2 }));
    // Exactly at a write, the write counts; before the card existed, there is no card.
    assert_eq!(title(&read(None, Some(at[2])).await).as_deref(), Some("Version two"));
    assert!(read(None, Some(at[0] - chrono::Duration::seconds(1))).await.is_null());
    assert_eq!(
        title(&read(None, Some(Utc::now())).await).as_deref(),
        Some("Version three")
    );

    // Both: a version that existed at the moment, and one that did not yet.
    let then = Some(midpoint(at[3], at[4]));
    assert_eq!(title(&read(Some(1), then).await).as_deref(), Some("Version one"));
    assert!(read(Some(3), then).await.is_null(), "v3 did not exist yet");

    // The current card (from the read model) agrees with the fold.
    let now = app
        .data(
            &ada.token,
            "query($id: ID!) { promptCard(id: $id) { title version labels } }",
            json!({ "id": card_id }),
        )
        .await;
    assert_eq!(
        now["promptCard"],
        json!({ "title": "Version three", "version": 3, "labels": { "production": 2 } })
    );

    let answer = app
        .graphql(&ada.token, AT, json!({ "id": card_id, "version": 0 }))
        .await;
    assert_refused(&answer, "BAD_REQUEST", "version 0");

    // Who moved each label, oldest first.
    let moves = app
        .data(
            &ada.token,
            "query($id: ID!) { promptCard(id: $id) { labelHistory { label version previousVersion actorId movedAt position } } }",
            json!({ "id": card_id }),
        )
        .await;
    let moves = moves["promptCard"]["labelHistory"].as_array().unwrap().clone();
    assert_eq!(moves.len(), 2, "{moves:?}");
    let expected = [(1, Value::Null, ada.user_id, 1usize), (2, json!(1), bob, 3usize)];
    for (moved, (version, previous, actor, event)) in moves.iter().zip(expected) {
        assert_eq!(moved["label"], "production");
        assert_eq!(moved["version"], version);
        assert_eq!(moved["previousVersion"], previous);
        assert_eq!(moved["actorId"], actor.to_string());
        assert_eq!(moved["position"], history[event].position);
        let moved_at: DateTime<Utc> = moved["movedAt"].as_str().unwrap().parse().unwrap();
        assert_eq!(moved_at, at[event]);
    }
}
