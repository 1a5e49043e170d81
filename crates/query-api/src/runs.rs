//! Test runs in GraphQL: `testRun`, `testRuns` and the live `testRunProgress`.

use crate::context::{access, parse_id, state};
use crate::errors::{internal, not_found};
use crate::metrics::SubscriberGuard;
use crate::money::micro_usd_to_string;
use crate::pagination::{decode_cursor, encode_cursor, page, page_size};
use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, Json, Object, Result, SimpleObject, Subscription, ID};
use chrono::{DateTime, Utc};
use domain::run::{RunEvent, RunStatus, TestResult, TestRun};
use domain::Aggregate;
use futures::{stream, Stream, StreamExt};
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "RunStatus")]
pub enum RunStatusGql {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl From<RunStatus> for RunStatusGql {
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Queued => Self::Queued,
            RunStatus::Running => Self::Running,
            RunStatus::Completed => Self::Completed,
            RunStatus::Failed => Self::Failed,
            RunStatus::Cancelled => Self::Cancelled,
        }
    }
}

fn parse_status(status: &str) -> RunStatusGql {
    match status {
        "RUNNING" => RunStatusGql::Running,
        "COMPLETED" => RunStatusGql::Completed,
        "FAILED" => RunStatusGql::Failed,
        "CANCELLED" => RunStatusGql::Cancelled,
        _ => RunStatusGql::Queued,
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunNode {
    pub run_id: Uuid,
    pub workspace_id: Uuid,
    pub card_id: Uuid,
    pub card_version: i32,
    pub providers: Value,
    pub repeat: i32,
    pub status: String,
    pub total: i64,
    pub completed: i64,
    pub passed: i64,
    pub failed: i64,
    pub failure: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const RUN_COLUMNS: &str = "run_id, workspace_id, card_id, card_version, providers, repeat, status, total, completed, passed, failed, failure, created_at, updated_at";

#[Object(name = "TestRun")]
impl RunNode {
    async fn id(&self) -> ID {
        ID(self.run_id.to_string())
    }
    async fn workspace_id(&self) -> ID {
        ID(self.workspace_id.to_string())
    }
    async fn card_id(&self) -> ID {
        ID(self.card_id.to_string())
    }
    async fn card_version(&self) -> i32 {
        self.card_version
    }
    async fn providers(&self) -> Json<&Value> {
        Json(&self.providers)
    }
    async fn repeat(&self) -> i32 {
        self.repeat
    }
    async fn status(&self) -> RunStatusGql {
        parse_status(&self.status)
    }
    async fn total(&self) -> i64 {
        self.total
    }
    async fn completed(&self) -> i64 {
        self.completed
    }
    async fn passed(&self) -> i64 {
        self.passed
    }
    async fn failed(&self) -> i64 {
        self.failed
    }
    async fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }
    /// Results in the order they were recorded.
    async fn results(&self, ctx: &Context<'_>, first: Option<i32>, offset: Option<i32>) -> Result<Vec<ResultNode>> {
        let limit = first.unwrap_or(1000).clamp(1, 10_000) as i64;
        let offset = offset.unwrap_or(0).max(0) as i64;
        sqlx::query_as(
            "SELECT case_id, provider, repetition, rendered_prompt, output, error, latency_ms, prompt_tokens,
                    completion_tokens, cost_micro_usd, passed, score, assertions,
                    grading_prompt_tokens, grading_completion_tokens, grading_cost_micro_usd
             FROM read.test_results WHERE run_id = $1 ORDER BY position LIMIT $2 OFFSET $3",
        )
        .bind(self.run_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&state(ctx).pool)
        .await
        .map_err(internal)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ResultNode {
    pub case_id: Uuid,
    pub provider: String,
    pub repetition: i32,
    pub rendered_prompt: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub latency_ms: i64,
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
    pub cost_micro_usd: i64,
    pub passed: bool,
    pub score: f64,
    pub assertions: Value,
    pub grading_prompt_tokens: i32,
    pub grading_completion_tokens: i32,
    pub grading_cost_micro_usd: i64,
}

impl From<&TestResult> for ResultNode {
    fn from(result: &TestResult) -> Self {
        Self {
            case_id: result.key.case_id,
            provider: result.key.provider.clone(),
            repetition: result.key.repetition as i32,
            rendered_prompt: result.rendered_prompt.clone(),
            output: result.output.clone(),
            error: result.error.clone(),
            latency_ms: result.latency_ms as i64,
            prompt_tokens: result.prompt_tokens as i32,
            completion_tokens: result.completion_tokens as i32,
            cost_micro_usd: result.cost_micro_usd,
            passed: result.passed,
            score: result.score,
            assertions: serde_json::to_value(&result.assertions).unwrap_or_default(),
            grading_prompt_tokens: i32::try_from(result.grading.grading_prompt_tokens).unwrap_or(i32::MAX),
            grading_completion_tokens: i32::try_from(result.grading.grading_completion_tokens).unwrap_or(i32::MAX),
            grading_cost_micro_usd: result.grading.grading_cost_micro_usd,
        }
    }
}

#[derive(Debug, Clone, SimpleObject)]
pub struct AssertionResult {
    #[graphql(name = "type")]
    pub kind: String,
    pub passed: bool,
    pub score: f64,
    pub reason: String,
}

#[Object(name = "TestResult")]
impl ResultNode {
    async fn test_case_id(&self) -> ID {
        ID(self.case_id.to_string())
    }
    async fn provider(&self) -> &str {
        &self.provider
    }
    async fn repetition(&self) -> i32 {
        self.repetition
    }
    async fn rendered_prompt(&self) -> &str {
        &self.rendered_prompt
    }
    async fn output(&self) -> Option<&str> {
        self.output.as_deref()
    }
    async fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
    async fn passed(&self) -> bool {
        self.passed
    }
    async fn score(&self) -> f64 {
        self.score
    }
    async fn latency_ms(&self) -> i64 {
        self.latency_ms
    }
    async fn prompt_tokens(&self) -> i32 {
        self.prompt_tokens
    }
    async fn completion_tokens(&self) -> i32 {
        self.completion_tokens
    }
    async fn cost_micro_usd(&self) -> i64 {
        self.cost_micro_usd
    }
    /// The cost in dollars, as an exact decimal string.
    async fn cost_usd(&self) -> String {
        micro_usd_to_string(self.cost_micro_usd)
    }
    /// Tokens the grading models of model-graded assertions read, apart from `promptTokens`.
    async fn grading_prompt_tokens(&self) -> i32 {
        self.grading_prompt_tokens
    }
    /// Tokens the grading models wrote, apart from `completionTokens`.
    async fn grading_completion_tokens(&self) -> i32 {
        self.grading_completion_tokens
    }
    /// What grading cost, apart from `costMicroUsd` (the tested call's).
    async fn grading_cost_micro_usd(&self) -> i64 {
        self.grading_cost_micro_usd
    }
    /// The grading cost in dollars, as an exact decimal string.
    async fn grading_cost_usd(&self) -> String {
        micro_usd_to_string(self.grading_cost_micro_usd)
    }
    async fn assertions(&self) -> Vec<AssertionResult> {
        self.assertions
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|v| AssertionResult {
                        kind: v["type"].as_str().unwrap_or_default().to_owned(),
                        passed: v["passed"].as_bool().unwrap_or(false),
                        score: v["score"].as_f64().unwrap_or(0.0),
                        reason: v["reason"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, SimpleObject)]
pub struct TestRunProgress {
    pub run_id: ID,
    pub status: RunStatusGql,
    pub completed: i64,
    pub total: i64,
    pub passed: i64,
    pub failed: i64,
    pub last_result: Option<ResultNode>,
}

fn progress(run_id: Uuid, run: &TestRun, last_result: Option<ResultNode>) -> TestRunProgress {
    TestRunProgress {
        run_id: ID(run_id.to_string()),
        status: run.status.into(),
        completed: run.completed() as i64,
        total: run.total() as i64,
        passed: run.passed as i64,
        failed: run.failed as i64,
        last_result,
    }
}

#[derive(Default)]
pub struct RunsQuery;

#[Object]
impl RunsQuery {
    async fn test_run(&self, ctx: &Context<'_>, id: ID) -> Result<Option<RunNode>> {
        let run_id = parse_id(&id, "id")?;
        access(ctx).principal()?;
        let state = state(ctx);
        let run: Option<RunNode> =
            sqlx::query_as(&format!("SELECT {} FROM read.test_runs WHERE run_id = $1", RUN_COLUMNS))
                .bind(run_id)
                .fetch_optional(&state.pool)
                .await
                .map_err(internal)?;
        match run {
            Some(run) if access(ctx).sees(state, run.workspace_id).await?.is_some() => Ok(Some(run)),
            _ => Ok(None),
        }
    }

    /// Runs of a workspace (optionally of one card), newest first.
    async fn test_runs(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        card_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, RunNode>> {
        let workspace_id = parse_id(&workspace_id, "workspaceId")?;
        let card_id = card_id.as_ref().map(|c| parse_id(c, "cardId")).transpose()?;
        let state = state(ctx);
        access(ctx).role_in(state, workspace_id).await?;
        let limit = page_size(first)?;
        let after: Option<(DateTime<Utc>, Uuid)> = after.as_deref().map(decode_cursor).transpose()?;
        let rows: Vec<RunNode> = sqlx::query_as(&format!(
            "SELECT {} FROM read.test_runs
             WHERE workspace_id = $1 AND ($2::uuid IS NULL OR card_id = $2)
               AND ($3::timestamptz IS NULL OR (created_at, run_id) < ($3, $4))
             ORDER BY created_at DESC, run_id DESC LIMIT $5",
            RUN_COLUMNS
        ))
        .bind(workspace_id)
        .bind(card_id)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit + 1)
        .fetch_all(&state.pool)
        .await
        .map_err(internal)?;
        Ok(page(rows, limit, after.is_some(), |run| {
            encode_cursor(&(run.created_at, run.run_id))
        }))
    }
}

#[derive(Default)]
pub struct RunsSubscription;

#[Subscription]
impl RunsSubscription {
    /// The run's current progress, then every change; completes after the terminal state.
    async fn test_run_progress(&self, ctx: &Context<'_>, run_id: ID) -> Result<impl Stream<Item = TestRunProgress>> {
        let run_id = parse_id(&run_id, "runId")?;
        run_progress(ctx, run_id).await
    }
}

/// The run's current state first, then one update per change, ending after the terminal
/// state. Subscribes before reading the state, and reads the state from the run's stream,
/// so no change falls between the two.
async fn run_progress(ctx: &Context<'_>, run_id: Uuid) -> Result<impl Stream<Item = TestRunProgress>> {
    let state = state(ctx);
    let access = access(ctx);
    access.principal()?;
    access.count_request(state, "anonymous")?;
    let pubsub = state.subscribe([domain::names::run_channel(run_id)]).await?;
    let loaded = state.repo.load::<TestRun>(run_id).await.map_err(internal)?;
    // A stranger gets the answer of a run that does not exist, as `testRun` gives them.
    let Some(workspace_id) = loaded.state.plan.as_ref().map(|p| p.workspace_id) else {
        return Err(not_found("test run"));
    };
    if access.sees(state, workspace_id).await?.is_none() {
        return Err(not_found("test run"));
    }
    let first = progress(run_id, &loaded.state, None);
    let finished = loaded.state.status.is_terminal();
    let guard = SubscriberGuard::count();
    let store = state.store.clone();
    let updates = stream::unfold(
        (
            pubsub.into_on_message(),
            store,
            loaded.state,
            loaded.version,
            finished,
            guard,
        ),
        move |(mut messages, store, mut run, mut version, mut finished, guard)| async move {
            while !finished {
                let message = messages.next().await?;
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                let Ok(entry) = serde_json::from_str::<Value>(&payload) else {
                    continue;
                };
                if entry["version"].as_i64().is_some_and(|v| v <= version) {
                    continue;
                }
                // Read what happened since the last update from the stream itself, so events
                // published together (or missed while subscribing) are all accounted for.
                let events = store.read_stream(run_id, version).await.ok()?;
                let mut last_result = None;
                for event in &events {
                    let decoded = event.decode::<RunEvent>().ok()?;
                    if let RunEvent::TestResultRecorded { result, .. } = &decoded {
                        last_result = Some(ResultNode::from(result));
                    }
                    run = run.evolve(&decoded);
                    version = event.version;
                }
                if events.is_empty() {
                    continue;
                }
                finished = run.status.is_terminal();
                let update = progress(run_id, &run, last_result);
                return Some((update, (messages, store, run, version, finished, guard)));
            }
            None
        },
    );
    Ok(stream::once(async move { first }).chain(updates))
}
