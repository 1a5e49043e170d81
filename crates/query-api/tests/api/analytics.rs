//! `analytics` from ClickHouse's `test_results`: an empty answer when there are no results, and
//! pass rates, cost and latency that match a hand count, with a retried row collapsed by FINAL.

use crate::support::*;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

const ANALYTICS: &str = "query A($ws: ID!, $from: DateTime, $to: DateTime, $card: ID, $bucket: Bucket) {
  analytics(workspaceId: $ws, from: $from, to: $to) {
    passRate(cardId: $card, bucket: $bucket) { bucket total passed rate }
    costByProvider { provider results costMicroUsd costUsd }
    latency(cardId: $card) { count p50Ms p95Ms p99Ms }
  }
}";

/// 2024-03-01T00:00:00Z.
const DAY_1: i64 = 1_709_251_200;
const DAY_2: i64 = DAY_1 + 86_400;
const HOUR: i64 = 3_600;

struct Row {
    workspace_id: Uuid,
    run_id: Uuid,
    card_id: Uuid,
    case_id: Uuid,
    provider: &'static str,
    passed: bool,
    latency_ms: u32,
    cost_micro_usd: i64,
    at: i64,
}

impl Row {
    fn values(&self) -> String {
        format!(
            "('{}', '{}', '{}', '{}', 1, '{}', '{}', 0, {}, {}, {}, 10, 20, {}, '', {}, {}, 30, 4, {})",
            Uuid::new_v4(),
            self.run_id,
            self.workspace_id,
            self.card_id,
            self.case_id,
            self.provider,
            u8::from(self.passed),
            if self.passed { 1.0 } else { 0.0 },
            self.latency_ms,
            self.cost_micro_usd,
            self.at,
            self.at * 1_000,
            // Grading cost: the latency, so that each provider's sum is known.
            self.latency_ms,
        )
    }
}

async fn insert(db: &ScratchDatabase, rows: &[&Row]) {
    let values: Vec<String> = rows.iter().map(|r| r.values()).collect();
    db.client()
        .query(&format!(
            "INSERT INTO test_results (result_id, run_id, workspace_id, card_id, card_version, test_case_id, provider,
                                       repetition, passed, score, latency_ms, prompt_tokens, completion_tokens,
                                       cost_micro_usd, error, recorded_at, recorded_at_ms,
                                       grading_prompt_tokens, grading_completion_tokens, grading_cost_micro_usd)
             VALUES {}",
            values.join(", ")
        ))
        .execute()
        .await
        .expect("the rows insert");
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, 0).unwrap()
}

/// `passRate` as (bucket start, total, passed, rate).
fn pass_rate(data: &Value) -> Vec<(DateTime<Utc>, u64, u64, f64)> {
    data["analytics"]["passRate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["bucket"].as_str().unwrap().parse().unwrap(),
                p["total"].as_u64().unwrap(),
                p["passed"].as_u64().unwrap(),
                p["rate"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn analytics_match_a_hand_count_and_collapse_retried_rows(pool: PgPool) {
    let db = ScratchDatabase::create().await;
    let app = TestApp::with_settings(pool, analytics_settings(&db)).await;
    let ada = app.tenant("ada").await;
    let bob = app.tenant("bob").await;
    app.project().await;
    let ws = ada.workspace_id;

    // No results yet: every figure is empty, which is a valid answer.
    let empty = app.data(&ada.token, ANALYTICS, json!({ "ws": ws })).await;
    assert_eq!(
        empty["analytics"],
        json!({
            "passRate": [],
            "costByProvider": [],
            "latency": { "count": 0, "p50Ms": null, "p95Ms": null, "p99Ms": null },
        })
    );

    let (card_x, card_y, run) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let row = |card_id, provider, passed, latency_ms, cost_micro_usd, at| Row {
        workspace_id: ws,
        run_id: run,
        card_id,
        case_id: Uuid::new_v4(),
        provider,
        passed,
        latency_ms,
        cost_micro_usd,
        at,
    };
    let r1 = row(card_x, "echo", true, 100, 1_500, DAY_1 + 10 * HOUR);
    let r2 = row(
        card_x,
        "openai:gpt-4o-mini",
        false,
        200,
        250_000,
        DAY_1 + 10 * HOUR + 1_800,
    );
    let r3 = row(card_x, "openai:gpt-4o-mini", true, 900, 1_234_567, DAY_1 + 14 * HOUR);
    let r4 = row(card_x, "echo", false, 400, 0, DAY_2 + 9 * HOUR);
    let r5 = row(card_y, "echo", true, 300, 500, DAY_2 + 9 * HOUR + 2_700);
    let bobs = Row {
        workspace_id: bob.workspace_id,
        ..row(card_x, "echo", false, 5_000, 9_999_999, DAY_1 + 12 * HOUR)
    };
    // No background merge may collapse the duplicate below before the queries run: only FINAL.
    db.client()
        .query(&format!("SYSTEM STOP MERGES {}.test_results", db.name))
        .execute()
        .await
        .unwrap();
    insert(&db, &[&r1, &r2, &r3, &r4, &r5, &bobs]).await;
    // A retried batch writes r3 again: same sorting key, so FINAL counts it once.
    insert(&db, &[&r3]).await;
    let raw: u64 = db
        .client()
        .query("SELECT count() FROM test_results")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(raw, 7, "the duplicate is really stored twice before a merge");

    let all = app.data(&ada.token, ANALYTICS, json!({ "ws": ws })).await;
    // Per day: day 1 has r1, r2, r3 (2 passed); day 2 has r4, r5 (1 passed).
    assert_eq!(
        pass_rate(&all),
        vec![(at(DAY_1), 3, 2, 2.0 / 3.0), (at(DAY_2), 2, 1, 0.5)]
    );
    // Micro-dollars summed as integers, and printed exactly.
    assert_eq!(
        all["analytics"]["costByProvider"],
        json!([
            { "provider": "echo", "results": 3, "costMicroUsd": 2_000, "costUsd": "0.002000" },
            { "provider": "openai:gpt-4o-mini", "results": 2, "costMicroUsd": 1_484_567, "costUsd": "1.484567" },
        ])
    );
    // Grading is summed apart from the tested calls' cost (34 grading tokens per row).
    let grading = app
        .data(
            &ada.token,
            "query G($ws: ID!) { analytics(workspaceId: $ws) { costByProvider { provider gradingCostMicroUsd gradingCostUsd gradingTokens } } }",
            json!({ "ws": ws }),
        )
        .await;
    assert_eq!(
        grading["analytics"]["costByProvider"],
        json!([
            { "provider": "echo", "gradingCostMicroUsd": 800, "gradingCostUsd": "0.000800", "gradingTokens": 102 },
            { "provider": "openai:gpt-4o-mini", "gradingCostMicroUsd": 1_100, "gradingCostUsd": "0.001100", "gradingTokens": 68 },
        ])
    );
    // Latencies 100, 200, 300, 400, 900: the median is 300 (350 if the duplicate counted).
    assert_eq!(all["analytics"]["latency"]["count"], 5);
    assert_eq!(all["analytics"]["latency"]["p50Ms"], 300.0);
    let p95 = all["analytics"]["latency"]["p95Ms"].as_f64().unwrap();
    assert!((400.0..=900.0).contains(&p95), "p95 {p95}");

    // Per hour.
    let hourly = app
        .data(&ada.token, ANALYTICS, json!({ "ws": ws, "bucket": "HOUR" }))
        .await;
    assert_eq!(
        pass_rate(&hourly),
        vec![
            (at(DAY_1 + 10 * HOUR), 2, 1, 0.5),
            (at(DAY_1 + 14 * HOUR), 1, 1, 1.0),
            (at(DAY_2 + 9 * HOUR), 2, 1, 0.5),
        ]
    );

    // One card.
    let card = app
        .data(&ada.token, ANALYTICS, json!({ "ws": ws, "card": card_y }))
        .await;
    assert_eq!(pass_rate(&card), vec![(at(DAY_2), 1, 1, 1.0)]);
    assert_eq!(card["analytics"]["latency"]["count"], 1);
    assert_eq!(card["analytics"]["latency"]["p50Ms"], 300.0);
    let card = app
        .data(&ada.token, ANALYTICS, json!({ "ws": ws, "card": card_x }))
        .await;
    assert_eq!(
        pass_rate(&card),
        vec![(at(DAY_1), 3, 2, 2.0 / 3.0), (at(DAY_2), 1, 0, 0.0)]
    );
    assert_eq!(card["analytics"]["latency"]["count"], 4);

    // A time window: only day 2, then only day 1.
    let day_2 = app
        .data(&ada.token, ANALYTICS, json!({ "ws": ws, "from": at(DAY_2) }))
        .await;
    assert_eq!(pass_rate(&day_2), vec![(at(DAY_2), 2, 1, 0.5)]);
    assert_eq!(
        day_2["analytics"]["costByProvider"],
        json!([{ "provider": "echo", "results": 2, "costMicroUsd": 500, "costUsd": "0.000500" }])
    );
    let day_1 = app
        .data(&ada.token, ANALYTICS, json!({ "ws": ws, "to": at(DAY_2 - 1) }))
        .await;
    assert_eq!(pass_rate(&day_1), vec![(at(DAY_1), 3, 2, 2.0 / 3.0)]);
    assert_eq!(day_1["analytics"]["latency"]["count"], 3);
    let backwards = app
        .graphql(
            &ada.token,
            ANALYTICS,
            json!({ "ws": ws, "from": at(DAY_2), "to": at(DAY_1) }),
        )
        .await;
    assert_refused(&backwards, "BAD_REQUEST", "from after to");

    // Bob sees his own row only.
    let bobs = app.data(&bob.token, ANALYTICS, json!({ "ws": bob.workspace_id })).await;
    assert_eq!(pass_rate(&bobs), vec![(at(DAY_1), 1, 0, 0.0)]);
    assert_eq!(bobs["analytics"]["costByProvider"][0]["costUsd"], "9.999999");

    // The private database goes away with the test.
    let name = db.name.clone();
    drop(db);
    let left: u64 = service::clickhouse::client(&clickhouse_url(), "default")
        .query("SELECT count() FROM system.databases WHERE name = ?")
        .bind(name)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(left, 0, "the test database is dropped");
}
