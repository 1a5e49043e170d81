//! Measuring what alert rules watch. When a run finishes the figures come from the Postgres read
//! models (once they hold that run); on the schedule they come from ClickHouse's `test_results`.
//! Both measure the same things:
//! - the pass rate: passing results over all results of the last `window_runs` completed runs of
//!   the card (or of the version its label points at), of one provider when the rule names one;
//! - the daily cost: the cost of the results recorded since midnight UTC, of a card or provider
//!   when the rule names one;
//! - the p95 latency of a provider's results over the last `window_runs` completed runs that
//!   used it (of one card when the rule names one).
//!
//! `None` means there was nothing to measure (no run yet), which changes no alert.

use domain::alert::{AlertKind, Figure, RuleSpec};
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

pub const FROM_READ_MODELS: &str = "read_models";
pub const FROM_ANALYTICS: &str = "analytics";

fn window(spec: &RuleSpec) -> i64 {
    i64::from(spec.window_runs.unwrap_or(domain::alert::DEFAULT_WINDOW_RUNS))
}

/// The rule's figure from the read models.
pub async fn from_read_models(pool: &PgPool, workspace_id: Uuid, spec: &RuleSpec) -> sqlx::Result<Option<Figure>> {
    match spec.kind {
        AlertKind::PassRateBelow => {
            let (runs, results, passed): (i64, i64, i64) = sqlx::query_as(
                "WITH runs AS (
                     SELECT t.run_id FROM read.test_runs t
                     JOIN read.prompt_cards c ON c.card_id = t.card_id
                     WHERE t.workspace_id = $1 AND t.status = 'COMPLETED'
                       AND ($2::uuid IS NULL OR t.card_id = $2)
                       AND ($3::text IS NULL OR (c.labels ->> $3)::int = t.card_version)
                     ORDER BY t.updated_at DESC, t.run_id DESC LIMIT $4
                 )
                 SELECT (SELECT count(*) FROM runs), count(r.run_id), count(r.run_id) FILTER (WHERE r.passed)
                 FROM read.test_results r
                 WHERE r.run_id IN (SELECT run_id FROM runs) AND ($5::text IS NULL OR r.provider = $5)",
            )
            .bind(workspace_id)
            .bind(spec.card_id)
            .bind(&spec.label)
            .bind(window(spec))
            .bind(&spec.provider)
            .fetch_one(pool)
            .await?;
            Ok((results > 0).then(|| Figure {
                value: passed as f64 / results as f64,
                cost_micro_usd: None,
                runs: runs as u32,
                results: results as u64,
                passed: Some(passed as u64),
                source: FROM_READ_MODELS.into(),
            }))
        }
        AlertKind::DailyCostAbove => {
            let (cost, results): (i64, i64) = sqlx::query_as(
                "SELECT COALESCE(sum(r.cost_micro_usd), 0)::bigint, count(*)
                 FROM read.test_results r JOIN read.test_runs t ON t.run_id = r.run_id
                 WHERE t.workspace_id = $1 AND t.updated_at >= date_trunc('day', now(), 'UTC')
                   AND r.recorded_at >= date_trunc('day', now(), 'UTC')
                   AND ($2::uuid IS NULL OR t.card_id = $2) AND ($3::text IS NULL OR r.provider = $3)",
            )
            .bind(workspace_id)
            .bind(spec.card_id)
            .bind(&spec.provider)
            .fetch_one(pool)
            .await?;
            Ok(Some(cost_figure(cost, results as u64, FROM_READ_MODELS)))
        }
        AlertKind::LatencyP95Above => {
            let (runs, results, p95): (i64, i64, Option<f64>) = sqlx::query_as(
                "WITH runs AS (
                     SELECT t.run_id FROM read.test_runs t
                     WHERE t.workspace_id = $1 AND t.status = 'COMPLETED'
                       AND ($2::uuid IS NULL OR t.card_id = $2)
                       AND t.providers @> jsonb_build_array(jsonb_build_object('id', $3::text))
                     ORDER BY t.updated_at DESC, t.run_id DESC LIMIT $4
                 )
                 SELECT (SELECT count(*) FROM runs), count(*),
                        percentile_cont(0.95) WITHIN GROUP (ORDER BY r.latency_ms)
                 FROM read.test_results r
                 WHERE r.run_id IN (SELECT run_id FROM runs) AND r.provider = $3",
            )
            .bind(workspace_id)
            .bind(spec.card_id)
            .bind(&spec.provider)
            .bind(window(spec))
            .fetch_one(pool)
            .await?;
            Ok(p95
                .filter(|_| results > 0)
                .map(|p95| latency_figure(p95, runs as u32, results as u64, FROM_READ_MODELS)))
        }
    }
}

fn cost_figure(cost: i64, results: u64, source: &str) -> Figure {
    Figure {
        value: cost as f64 / 1_000_000.0,
        cost_micro_usd: Some(cost),
        runs: 0,
        results,
        passed: None,
        source: source.into(),
    }
}

fn latency_figure(p95: f64, runs: u32, results: u64, source: &str) -> Figure {
    Figure {
        value: p95,
        cost_micro_usd: None,
        runs,
        results,
        passed: None,
        source: source.into(),
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct CostRow {
    cost: i64,
    results: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct LatencyRow {
    runs: u64,
    results: u64,
    p95: f64,
}

/// The rule's figure from ClickHouse, for the kinds measured on the schedule (the daily cost,
/// which must also resolve when a new day starts, and the latency); `None` for the pass rate,
/// which only a finished run changes.
pub async fn from_analytics(
    client: &clickhouse::Client,
    workspace_id: Uuid,
    spec: &RuleSpec,
) -> clickhouse::error::Result<Option<Figure>> {
    // Values are bound; only the presence of optional conditions changes the text.
    let mut filter = String::from("workspace_id = toUUID(?)");
    let mut values = vec![workspace_id.to_string()];
    if let Some(card_id) = spec.card_id {
        filter.push_str(" AND card_id = toUUID(?)");
        values.push(card_id.to_string());
    }
    if let Some(provider) = &spec.provider {
        filter.push_str(" AND provider = ?");
        values.push(provider.clone());
    }
    let bind = |mut query: clickhouse::query::Query, times: usize| {
        for _ in 0..times {
            for value in &values {
                query = query.bind(value.as_str());
            }
        }
        query
    };
    match spec.kind {
        AlertKind::PassRateBelow => Ok(None),
        AlertKind::DailyCostAbove => {
            let sql = format!(
                "SELECT toInt64(sum(cost_micro_usd)) AS cost, count() AS results FROM test_results FINAL
                 WHERE {filter} AND recorded_at >= toStartOfDay(now())"
            );
            let row: CostRow = bind(client.query(&sql), 1).fetch_one().await?;
            Ok(Some(cost_figure(row.cost, row.results, FROM_ANALYTICS)))
        }
        AlertKind::LatencyP95Above => {
            let sql = format!(
                "SELECT uniqExact(run_id) AS runs, count() AS results, quantile(0.95)(toFloat64(latency_ms)) AS p95
                 FROM test_results FINAL
                 WHERE {filter} AND run_id IN (
                     SELECT run_id FROM test_results FINAL WHERE {filter}
                     GROUP BY run_id ORDER BY max(recorded_at_ms) DESC LIMIT {}
                 )",
                window(spec)
            );
            let row: LatencyRow = bind(client.query(&sql), 2).fetch_one().await?;
            Ok((row.results > 0 && row.p95.is_finite())
                .then(|| latency_figure(row.p95, row.runs as u32, row.results, FROM_ANALYTICS)))
        }
    }
}
