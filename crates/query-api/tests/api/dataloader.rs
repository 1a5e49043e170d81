//! The DataLoader: a page of cards with their test cases answers every card's own cases, and
//! (when pg_stat_statements is loaded) costs one test-case query for the whole page.

use crate::support::*;
use assertions::Assertion;
use domain::test_case::TestCaseContent;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

const PAGE_WITH_CASES: &str = "query Page($ws: ID!) {
  promptCards(workspaceId: $ws, first: 20) {
    edges { node { id title testCases { id cardId name vars expectedOutput assertions } } }
  }
}";

fn case(card: usize, n: usize) -> TestCaseContent {
    TestCaseContent {
        name: format!("card {card} case {n}"),
        vars: json!({ "text": format!("input {card}.{n}") })
            .as_object()
            .unwrap()
            .clone(),
        expected_output: n.is_multiple_of(2).then(|| format!("output {card}.{n}")),
        assertions: vec![Assertion {
            kind: "contains".into(),
            value: Some(json!(format!("{card}.{n}"))),
            ..Default::default()
        }],
    }
}

/// The test case as GraphQL should show it.
fn expected(id: Uuid, card_id: Uuid, content: &TestCaseContent) -> Value {
    json!({
        "id": id,
        "cardId": card_id,
        "name": content.name,
        "vars": content.vars,
        "expectedOutput": content.expected_output,
        "assertions": serde_json::to_value(&content.assertions).unwrap(),
    })
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_page_of_cards_gets_each_cards_own_test_cases(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let ada = app.tenant("ada").await;
    let mut want: HashMap<Uuid, Vec<Value>> = HashMap::new();
    let mut order = Vec::new();
    for card in 0..20 {
        let (card_id, _) = app.create_card(&ada, titled(&format!("Card {card:02}"))).await;
        order.push(card_id);
        let cases = want.entry(card_id).or_default();
        // Card 7 has none; the others one to three.
        let n = if card == 7 { 0 } else { card % 3 + 1 };
        for i in 0..n {
            let content = case(card, i);
            let case_id = app.create_test_case(&ada, card_id, content.clone()).await;
            cases.push(expected(case_id, card_id, &content));
        }
    }
    // A deleted case is not listed.
    let deleted = app.create_test_case(&ada, order[3], case(3, 99)).await;
    app.delete_test_case(&ada, order[3], deleted).await;
    app.project().await;

    let statements = StatementCounter::start(&pool).await;
    let data = app
        .data(&ada.token, PAGE_WITH_CASES, json!({ "ws": ada.workspace_id }))
        .await;
    let edges = data["promptCards"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 20);
    let mut total = 0;
    for (edge, card_id) in edges.iter().zip(&order) {
        let node = &edge["node"];
        assert_eq!(node["id"], card_id.to_string());
        let got = node["testCases"].as_array().unwrap();
        assert_eq!(got, &want[card_id], "test cases of {}", node["title"]);
        total += got.len();
    }
    assert_eq!(total, 37, "every case once");

    if let Some(statements) = statements {
        let loads = statements.calls_touching(&pool, "read.test_cases").await;
        assert_eq!(loads, 1, "one test-case query for a page of 20 cards");
    }
}

/// Counts statements through pg_stat_statements, when the server has it loaded.
struct StatementCounter;

impl StatementCounter {
    async fn start(pool: &PgPool) -> Option<Self> {
        let ready = async {
            sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .execute(pool)
                .await?;
            sqlx::query("SELECT pg_stat_statements_reset()").execute(pool).await?;
            Ok::<_, sqlx::Error>(())
        };
        match ready.await {
            Ok(()) => Some(Self),
            Err(error) => {
                eprintln!("pg_stat_statements is not available ({error}); not counting statements");
                None
            }
        }
    }

    async fn calls_touching(&self, pool: &PgPool, table: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT COALESCE(sum(s.calls), 0)::bigint FROM pg_stat_statements s
             JOIN pg_database d ON d.oid = s.dbid
             WHERE d.datname = current_database() AND s.query LIKE '%' || $1 || '%'
               AND s.query NOT LIKE '%pg_stat_statements%'",
        )
        .bind(table)
        .fetch_one(pool)
        .await
        .unwrap()
    }
}
