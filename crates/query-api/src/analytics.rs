//! Test-result analytics from ClickHouse's `test_results`, and playground executions from its
//! `events`. An empty result is a valid answer.
//! `FINAL` collapses rows a retried batch wrote twice.

use crate::context::{access, parse_id, state};
use crate::errors::{bad_request, internal};
use crate::money::micro_usd_to_string;
use async_graphql::{Context, Enum, Object, Result, SimpleObject, ID};
use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum Bucket {
    Hour,
    Day,
}

pub struct Analytics {
    pub workspace_id: Uuid,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, SimpleObject)]
pub struct PassRatePoint {
    pub bucket: DateTime<Utc>,
    pub total: u64,
    pub passed: u64,
    /// `passed / total`, 0 to 1.
    pub rate: f64,
}

#[derive(Debug, SimpleObject)]
pub struct ProviderCost {
    pub provider: String,
    pub results: u64,
    pub cost_micro_usd: i64,
    /// The same amount in dollars, as an exact decimal string.
    pub cost_usd: String,
    /// What grading these results' model-graded assertions cost, apart from `costMicroUsd`.
    pub grading_cost_micro_usd: i64,
    pub grading_cost_usd: String,
    /// Tokens grading models read and wrote for these results.
    pub grading_tokens: u64,
}

#[derive(Debug, SimpleObject)]
pub struct LatencyStats {
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Playground executions that finished, per provider.
#[derive(Debug, SimpleObject)]
pub struct ProviderExecutions {
    pub provider: String,
    pub executions: u64,
    pub tokens: u64,
    pub cost_micro_usd: i64,
    pub cost_usd: String,
    /// Median time to the answer's first piece, in milliseconds.
    pub first_token_p50_ms: f64,
    /// Median time to the answer's end, in milliseconds.
    pub latency_p50_ms: f64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct ExecutionsRow {
    provider: String,
    executions: u64,
    tokens: u64,
    cost: i64,
    first_token_p50: f64,
    latency_p50: f64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct BucketRow {
    bucket: u32,
    total: u64,
    passed: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct CostRow {
    provider: String,
    results: u64,
    cost: i64,
    grading_cost: i64,
    grading_tokens: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct LatencyRow {
    count: u64,
    quantiles: Vec<f64>,
}

impl Analytics {
    /// The WHERE clause shared by every figure; values are bound, never interpolated.
    fn filter(&self, card: bool) -> String {
        let mut filter =
            String::from("workspace_id = toUUID(?) AND recorded_at >= toDateTime(?) AND recorded_at <= toDateTime(?)");
        if card {
            filter.push_str(" AND card_id = toUUID(?)");
        }
        filter
    }

    fn bounds(&self) -> (u32, u32) {
        let from = self
            .from
            .map(|t| t.timestamp().clamp(0, u32::MAX as i64) as u32)
            .unwrap_or(0);
        let to = self
            .to
            .map(|t| t.timestamp().clamp(0, u32::MAX as i64) as u32)
            .unwrap_or(u32::MAX);
        (from, to)
    }

    fn query(&self, ctx: &Context<'_>, sql: &str, card_id: Option<Uuid>) -> clickhouse::query::Query {
        let (from, to) = self.bounds();
        let mut query = state(ctx)
            .clickhouse
            .query(sql)
            .bind(self.workspace_id.to_string())
            .bind(from)
            .bind(to);
        if let Some(card_id) = card_id {
            query = query.bind(card_id.to_string());
        }
        query
    }
}

fn card(card_id: &Option<ID>) -> Result<Option<Uuid>> {
    card_id.as_ref().map(|id| parse_id(id, "cardId")).transpose()
}

#[Object]
impl Analytics {
    /// Share of passing results per hour or day.
    async fn pass_rate(
        &self,
        ctx: &Context<'_>,
        card_id: Option<ID>,
        bucket: Option<Bucket>,
    ) -> Result<Vec<PassRatePoint>> {
        let card_id = card(&card_id)?;
        let start = match bucket.unwrap_or(Bucket::Day) {
            Bucket::Hour => "toStartOfHour(recorded_at)",
            Bucket::Day => "toStartOfDay(recorded_at)",
        };
        let sql = format!(
            "SELECT toUInt32({start}) AS bucket, count() AS total, sum(toUInt64(passed)) AS passed
             FROM test_results FINAL WHERE {} GROUP BY bucket ORDER BY bucket",
            self.filter(card_id.is_some())
        );
        let rows: Vec<BucketRow> = self.query(ctx, &sql, card_id).fetch_all().await.map_err(internal)?;
        Ok(rows
            .into_iter()
            .map(|row| PassRatePoint {
                bucket: Utc.timestamp_opt(row.bucket as i64, 0).single().unwrap_or_default(),
                total: row.total,
                passed: row.passed,
                rate: if row.total == 0 {
                    0.0
                } else {
                    row.passed as f64 / row.total as f64
                },
            })
            .collect())
    }

    /// Spend per provider, summed in integer micro-dollars.
    async fn cost_by_provider(&self, ctx: &Context<'_>) -> Result<Vec<ProviderCost>> {
        let sql = format!(
            "SELECT provider, count() AS results, toInt64(sum(cost_micro_usd)) AS cost,
                    toInt64(sum(grading_cost_micro_usd)) AS grading_cost,
                    toUInt64(sum(grading_prompt_tokens) + sum(grading_completion_tokens)) AS grading_tokens
             FROM test_results FINAL WHERE {} GROUP BY provider ORDER BY provider",
            self.filter(false)
        );
        let rows: Vec<CostRow> = self.query(ctx, &sql, None).fetch_all().await.map_err(internal)?;
        Ok(rows
            .into_iter()
            .map(|row| ProviderCost {
                provider: row.provider,
                results: row.results,
                cost_micro_usd: row.cost,
                cost_usd: micro_usd_to_string(row.cost),
                grading_cost_micro_usd: row.grading_cost,
                grading_cost_usd: micro_usd_to_string(row.grading_cost),
                grading_tokens: row.grading_tokens,
            })
            .collect())
    }

    /// Playground executions that finished, per provider, from their `ExecutionFinished` events.
    async fn executions(&self, ctx: &Context<'_>) -> Result<Vec<ProviderExecutions>> {
        // The events' data is flat JSON written by serde; a string value never holds an
        // unescaped `"name":`, so visitParamExtract* finds the event's own fields.
        let sql = format!(
            "SELECT visitParamExtractString(data, 'provider') AS provider, count() AS executions,
                    toUInt64(sum(visitParamExtractUInt(data, 'prompt_tokens') + visitParamExtractUInt(data, 'completion_tokens'))) AS tokens,
                    toInt64(sum(visitParamExtractInt(data, 'cost_micro_usd'))) AS cost,
                    toFloat64(quantile(0.5)(toFloat64(visitParamExtractUInt(data, 'first_token_ms')))) AS first_token_p50,
                    toFloat64(quantile(0.5)(toFloat64(visitParamExtractUInt(data, 'latency_ms')))) AS latency_p50
             FROM events FINAL WHERE {} AND event_type = 'ExecutionFinished' GROUP BY provider ORDER BY provider",
            self.filter(false)
        );
        let rows: Vec<ExecutionsRow> = self.query(ctx, &sql, None).fetch_all().await.map_err(internal)?;
        Ok(rows
            .into_iter()
            .map(|row| ProviderExecutions {
                provider: row.provider,
                executions: row.executions,
                tokens: row.tokens,
                cost_micro_usd: row.cost,
                cost_usd: micro_usd_to_string(row.cost),
                first_token_p50_ms: row.first_token_p50,
                latency_p50_ms: row.latency_p50,
            })
            .collect())
    }

    /// Latency percentiles of results, in milliseconds.
    async fn latency(&self, ctx: &Context<'_>, card_id: Option<ID>) -> Result<LatencyStats> {
        let card_id = card(&card_id)?;
        let sql = format!(
            "SELECT count() AS count, quantiles(0.5, 0.95, 0.99)(toFloat64(latency_ms)) AS quantiles
             FROM test_results FINAL WHERE {}",
            self.filter(card_id.is_some())
        );
        let row: LatencyRow = self.query(ctx, &sql, card_id).fetch_one().await.map_err(internal)?;
        let at = |i: usize| {
            (row.count > 0)
                .then(|| row.quantiles.get(i).copied())
                .flatten()
                .filter(|v| v.is_finite())
        };
        Ok(LatencyStats {
            count: row.count,
            p50_ms: at(0),
            p95_ms: at(1),
            p99_ms: at(2),
        })
    }
}

#[derive(Default)]
pub struct AnalyticsQuery;

#[Object]
impl AnalyticsQuery {
    /// Pass rates, cost and latency of test results, from ClickHouse.
    async fn analytics(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Analytics> {
        let workspace_id = parse_id(&workspace_id, "workspaceId")?;
        access(ctx).role_in(state(ctx), workspace_id).await?;
        if let (Some(from), Some(to)) = (from, to) {
            if from > to {
                return Err(bad_request("from must not be after to"));
            }
        }
        Ok(Analytics { workspace_id, from, to })
    }
}
