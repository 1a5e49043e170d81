//! `promptCards(search:, tag:)`: full-text search over title, description and template, a tag
//! filter, and archived cards left out of every list.

use crate::support::*;
use domain::card::CardCommand;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

const LIST: &str = "query List($ws: ID!, $search: String, $tag: String) {
  promptCards(workspaceId: $ws, search: $search, tag: $tag, first: 100) { edges { node { id title archived } } }
}";

async fn list(app: &TestApp, tenant: &Tenant, search: Option<&str>, tag: Option<&str>) -> Vec<Uuid> {
    let data = app
        .data(
            &tenant.token,
            LIST,
            json!({ "ws": tenant.workspace_id, "search": search, "tag": tag }),
        )
        .await;
    let nodes: Vec<_> = data["promptCards"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    assert!(
        nodes.iter().all(|n| n["archived"] == false),
        "a list showed an archived card: {data}"
    );
    ids(&nodes)
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn search_matches_title_description_and_template_and_tags_filter(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ada = app.tenant("ada").await;
    let (in_title, _) = app
        .create_card(
            &ada,
            content(
                "Quarterly revenue summary",
                "For the board",
                "Summarise {{ report }}",
                &["report"],
                &["finance"],
            ),
        )
        .await;
    let (in_description, _) = app
        .create_card(
            &ada,
            content(
                "Bug triage",
                "Classify incoming zephyr reports",
                "Label {{ issue }}",
                &["issue"],
                &["support"],
            ),
        )
        .await;
    let (in_template, _) = app
        .create_card(
            &ada,
            content(
                "Poem",
                "",
                "Write a haiku about {{ subject }} in marmalade style",
                &["subject"],
                &["fun", "finance"],
            ),
        )
        .await;
    let (unrelated, _) = app
        .create_card(&ada, content("Greeting", "", "Hello {{ name }}", &["name"], &[]))
        .await;
    // Matches every search and tag below, but is archived.
    let (archived, _) = app
        .create_card(
            &ada,
            content(
                "Quarterly zephyr",
                "zephyr marmalade",
                "quarterly marmalade {{ x }}",
                &["x"],
                &["finance", "support"],
            ),
        )
        .await;
    app.card_command(&ada, archived, CardCommand::Archive).await;
    // Another workspace's matching card stays there.
    let bob = app.tenant("bob").await;
    app.create_card(&bob, content("Quarterly zephyr marmalade", "", "t", &[], &["finance"]))
        .await;
    app.project().await;

    assert_eq!(
        list(&app, &ada, Some("quarterly"), None).await,
        vec![in_title],
        "a word of a title"
    );
    assert_eq!(
        list(&app, &ada, Some("Revenue"), None).await,
        vec![in_title],
        "case does not matter"
    );
    assert_eq!(
        list(&app, &ada, Some("zephyr"), None).await,
        vec![in_description],
        "a word of a description"
    );
    assert_eq!(
        list(&app, &ada, Some("marmalade"), None).await,
        vec![in_template],
        "a word of a template"
    );
    assert_eq!(
        list(&app, &ada, Some("haiku marmalade"), None).await,
        vec![in_template],
        "all the words"
    );
    assert_eq!(
        list(&app, &ada, Some("haiku zephyr"), None).await,
        Vec::<Uuid>::new(),
        "words of different cards"
    );
    assert_eq!(
        list(&app, &ada, Some("haiku or zephyr"), None).await,
        vec![in_description, in_template]
    );
    assert_eq!(
        list(&app, &ada, Some("nonexistentword"), None).await,
        Vec::<Uuid>::new()
    );
    assert_eq!(
        list(&app, &ada, Some("   "), None).await.len(),
        4,
        "a blank search is no search"
    );

    assert_eq!(
        list(&app, &ada, None, Some("finance")).await,
        vec![in_title, in_template]
    );
    assert_eq!(list(&app, &ada, None, Some("support")).await, vec![in_description]);
    assert_eq!(
        list(&app, &ada, None, Some("fin")).await,
        Vec::<Uuid>::new(),
        "tags match whole"
    );
    assert_eq!(
        list(&app, &ada, Some("quarterly"), Some("finance")).await,
        vec![in_title],
        "both filters"
    );
    assert_eq!(
        list(&app, &ada, Some("haiku"), Some("support")).await,
        Vec::<Uuid>::new(),
        "both filters"
    );

    assert_eq!(
        list(&app, &ada, None, None).await,
        vec![in_title, in_description, in_template, unrelated],
        "every live card, never the archived one"
    );
    // The archived card's history is still there to read.
    let data = app
        .data(
            &ada.token,
            "query($id: ID!) { promptCard(id: $id, version: 1) { title archived } }",
            json!({ "id": archived }),
        )
        .await;
    assert_eq!(data["promptCard"]["title"], "Quarterly zephyr");
    assert_eq!(data["promptCard"]["archived"], true);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_update_changes_what_search_finds(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ada = app.tenant("ada").await;
    let (card, _) = app
        .create_card(&ada, content("Old words", "", "t", &[], &["draft"]))
        .await;
    app.update_card(&ada, card, content("New words", "", "t", &[], &["final"]))
        .await;
    app.project().await;
    assert_eq!(list(&app, &ada, Some("new"), None).await, vec![card]);
    assert_eq!(
        list(&app, &ada, Some("old"), None).await,
        Vec::<Uuid>::new(),
        "the old title is not searched"
    );
    assert_eq!(list(&app, &ada, None, Some("final")).await, vec![card]);
    assert_eq!(
        list(&app, &ada, None, Some("draft")).await,
        Vec::<Uuid>::new(),
        "nor the old tags"
    );
}
