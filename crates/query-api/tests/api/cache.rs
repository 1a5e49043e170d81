//! The Redis document cache: a second read of a card is served from Redis, and once the
//! projector has applied a newer version, the cached document is never served again.

use crate::support::*;
use domain::card::CardCommand;
use serde_json::{json, Value};
use sqlx::PgPool;

const CARD: &str = "query Card($id: ID!) { promptCard(id: $id) { id title version archived } }";

/// `query_cache_requests_total{result="<result>"}` as `/metrics` shows it (0 before the first).
async fn cache_requests(app: &TestApp, result: &str) -> f64 {
    let (_, _, text) = app.get("/metrics").await;
    let wanted = format!("result=\"{result}\"");
    text.lines()
        .filter(|line| line.starts_with("query_cache_requests_total{") && line.contains(&wanted))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_card_is_served_from_redis_until_a_newer_version_is_projected(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ada = app.tenant("ada").await;
    let (card_id, _) = app.create_card(&ada, titled("Cached title")).await;
    app.project_with_redis(0).await;
    let doc_key = format!("promptcards:doc:card:{card_id}");
    let mut redis = redis().await;
    let variables = json!({ "id": card_id });

    // First read: a miss, which fills the cache.
    let first = app.data(&ada.token, CARD, variables.clone()).await;
    assert_eq!(first["promptCard"]["title"], "Cached title");
    let doc: Option<String> = redis::cmd("GET").arg(&doc_key).query_async(&mut redis).await.unwrap();
    let doc: Value = serde_json::from_str(&doc.expect("the first read caches the document")).unwrap();
    assert_eq!(doc["card"]["title"], "Cached title", "{doc}");

    // Second read: a hit. To tell a hit from a fresh read for certain, the cached copy is
    // marked; the answer carries the mark, so it came from Redis.
    let mut marked = doc.clone();
    marked["card"]["title"] = json!("Served from Redis");
    let _: () = redis::cmd("SET")
        .arg(&doc_key)
        .arg(marked.to_string())
        .query_async(&mut redis)
        .await
        .unwrap();
    let hits_before = cache_requests(&app, "hit").await;
    let second = app.data(&ada.token, CARD, variables.clone()).await;
    assert_eq!(
        second["promptCard"]["title"], "Served from Redis",
        "the second read is a cache hit"
    );
    assert!(
        cache_requests(&app, "hit").await >= hits_before + 1.0,
        "the hit is counted"
    );

    // An update projected to Postgres and Redis: the next read has the new title, never the
    // cached one, and caches the new document.
    let head = app.head().await;
    app.update_card(&ada, card_id, titled("Updated title")).await;
    app.project_with_redis(head).await;
    let stale_before = cache_requests(&app, "stale").await;
    let third = app.data(&ada.token, CARD, variables.clone()).await;
    assert_eq!(third["promptCard"]["title"], "Updated title", "{third}");
    assert_eq!(third["promptCard"]["version"], 2);
    assert!(
        cache_requests(&app, "stale").await >= stale_before + 1.0,
        "the old document was seen as stale"
    );
    let doc: Option<String> = redis::cmd("GET").arg(&doc_key).query_async(&mut redis).await.unwrap();
    let doc: Value = serde_json::from_str(&doc.unwrap()).unwrap();
    assert_eq!(
        doc["card"]["title"], "Updated title",
        "the new document replaced the old: {doc}"
    );
    let fourth = app.data(&ada.token, CARD, variables.clone()).await;
    assert_eq!(fourth["promptCard"]["title"], "Updated title");

    // Archiving: the cached document must not keep an archived card alive.
    let head = app.head().await;
    app.card_command(&ada, card_id, CardCommand::Archive).await;
    app.project_with_redis(head).await;
    let archived = app.data(&ada.token, CARD, variables).await;
    assert!(
        archived["promptCard"].is_null(),
        "an archived card is not served from the cache: {archived}"
    );

    let _: () = redis::cmd("DEL")
        .arg(&doc_key)
        .arg(domain::names::version_key(card_id))
        .query_async(&mut redis)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_test_case_added_to_a_card_is_seen_through_a_cached_card(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ada = app.tenant("ada").await;
    let (card_id, _) = app.create_card(&ada, titled("With cases")).await;
    app.project_with_redis(0).await;
    let query = "query($id: ID!) { promptCard(id: $id) { title testCases { name } } }";
    let variables = json!({ "id": card_id });
    let before = app.data(&ada.token, query, variables.clone()).await;
    assert_eq!(before["promptCard"]["testCases"], json!([]));

    let head = app.head().await;
    let case = domain::test_case::TestCaseContent {
        name: "added later".into(),
        vars: json!({ "text": "x" }).as_object().unwrap().clone(),
        expected_output: None,
        assertions: vec![],
    };
    app.create_test_case(&ada, card_id, case).await;
    app.project_with_redis(head).await;
    let after = app.data(&ada.token, query, variables).await;
    assert_eq!(after["promptCard"]["testCases"], json!([{ "name": "added later" }]));

    let _: () = redis::cmd("DEL")
        .arg(format!("promptcards:doc:card:{card_id}"))
        .arg(domain::names::version_key(card_id))
        .query_async(&mut redis().await)
        .await
        .unwrap();
}
