//! Cursor pagination of `promptCards`: every card exactly once, in a stable order, even when a
//! card is added while a client walks the pages.

use crate::support::*;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

const PAGE: &str = "query Page($ws: ID!, $first: Int, $after: String) {
  promptCards(workspaceId: $ws, first: $first, after: $after) {
    edges { cursor node { id title } }
    pageInfo { hasNextPage endCursor }
  }
}";

/// One page: (card ids, hasNextPage, endCursor).
async fn page(app: &TestApp, tenant: &Tenant, first: i32, after: Option<&str>) -> (Vec<Uuid>, bool, Option<String>) {
    let data = app
        .data(
            &tenant.token,
            PAGE,
            json!({ "ws": tenant.workspace_id, "first": first, "after": after }),
        )
        .await;
    let connection = &data["promptCards"];
    let nodes: Vec<Value> = connection["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    let end = connection["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    (
        ids(&nodes),
        connection["pageInfo"]["hasNextPage"].as_bool().unwrap(),
        end,
    )
}

async fn cards(app: &TestApp, tenant: &Tenant, n: usize) -> Vec<Uuid> {
    let mut created = Vec::new();
    for i in 0..n {
        created.push(app.create_card(tenant, titled(&format!("Card {i:02}"))).await.0);
    }
    created
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn pages_of_ten_return_every_card_once_in_creation_order(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ada = app.tenant("ada").await;
    let created = cards(&app, &ada, 25).await;
    // Another workspace's cards never show up in Ada's pages.
    let bob = app.tenant("bob").await;
    cards(&app, &bob, 3).await;
    app.project().await;

    let mut seen = Vec::new();
    let mut shape = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (ids, has_next, end) = page(&app, &ada, 10, after.as_deref()).await;
        shape.push((ids.len(), has_next));
        seen.extend(ids);
        if !has_next {
            break;
        }
        assert!(shape.len() < 10, "pagination does not end: {shape:?}");
        after = Some(end.expect("a page with a next page has an end cursor"));
    }
    assert_eq!(shape, vec![(10, true), (10, true), (5, false)]);
    assert_eq!(seen, created, "every card once, none missing, oldest first");

    // The cursor of an edge is a valid `after` too, and paging from the 10th edge resumes there.
    let data = app
        .data(&ada.token, PAGE, json!({ "ws": ada.workspace_id, "first": 10 }))
        .await;
    let tenth_cursor = data["promptCards"]["edges"][9]["cursor"].as_str().unwrap().to_owned();
    let (ids, _, _) = page(&app, &ada, 3, Some(&tenth_cursor)).await;
    assert_eq!(ids, created[10..13]);

    // Without `first`, a page is 20 cards.
    let data = app.data(&ada.token, PAGE, json!({ "ws": ada.workspace_id })).await;
    assert_eq!(data["promptCards"]["edges"].as_array().unwrap().len(), 20);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_card_added_between_pages_comes_last_without_shifting_the_others(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ada = app.tenant("ada").await;
    let mut created = cards(&app, &ada, 25).await;
    app.project().await;

    let (first, has_next, end) = page(&app, &ada, 10, None).await;
    assert!(has_next);
    let (late, _) = app.create_card(&ada, titled("Late arrival")).await;
    created.push(late);
    app.project().await;

    let (second, has_next, end) = page(&app, &ada, 10, end.as_deref()).await;
    assert!(has_next);
    let (third, has_next, _) = page(&app, &ada, 10, end.as_deref()).await;
    assert!(!has_next, "the last page says so");
    assert_eq!((first.len(), second.len(), third.len()), (10, 10, 6));
    let walked: Vec<Uuid> = [first, second, third].concat();
    assert_eq!(walked, created, "no card twice, none skipped, the new one at the end");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn page_sizes_and_cursors_are_checked(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ada = app.tenant("ada").await;
    app.project().await;
    for first in [0, -1, 101] {
        let answer = app
            .graphql(&ada.token, PAGE, json!({ "ws": ada.workspace_id, "first": first }))
            .await;
        assert_refused(&answer, "BAD_REQUEST", &format!("first: {first}"));
    }
    for after in ["not a cursor", "eyJub3QiOiJvdXJzIn0"] {
        let answer = app
            .graphql(&ada.token, PAGE, json!({ "ws": ada.workspace_id, "after": after }))
            .await;
        assert_refused(&answer, "BAD_REQUEST", &format!("after: {after:?}"));
    }
    let answer = app.graphql(&ada.token, PAGE, json!({ "ws": "not-a-uuid" })).await;
    assert_refused(&answer, "BAD_REQUEST", "a workspace id that is not a UUID");
    // An empty workspace is an empty page.
    let (ids, has_next, end) = page(&app, &ada, 10, None).await;
    assert_eq!((ids.len(), has_next, end), (0, false, None));
}
