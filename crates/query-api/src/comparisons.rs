//! Comparisons in GraphQL: `comparison(id)`, `compareRuns(baselineRunId, candidateRunId)` for
//! any two finished runs of a workspace, and the live `comparisonProgress(id)`.
//!
//! A comparison is few events with its whole report in the last, so it is folded from its
//! stream (as time travel does) rather than kept in a read model; `compareRuns` computes the
//! same report with the domain's [`compare`] from the two runs' recorded results.

use crate::context::{access, parse_id, state};
use crate::errors::{bad_request, internal, not_found};
use crate::metrics::SubscriberGuard;
use crate::money::micro_usd_to_string;
use crate::runs::RunStatusGql;
use async_graphql::{Context, Enum, Object, Result, SimpleObject, Subscription, ID};
use domain::comparison::{
    compare, Comparison, ComparisonReport, ComparisonStatus, ComparisonVerdict, Outcome, PromotionOutcome, SideStats,
};
use domain::run::TestRun;
use futures::{stream, Stream, StreamExt, TryStreamExt};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "ComparisonStatus")]
pub enum StatusGql {
    Running,
    Completed,
    Failed,
}

impl From<ComparisonStatus> for StatusGql {
    fn from(status: ComparisonStatus) -> Self {
        match status {
            ComparisonStatus::Running => Self::Running,
            ComparisonStatus::Completed => Self::Completed,
            ComparisonStatus::Failed => Self::Failed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "ComparisonVerdict")]
pub enum VerdictGql {
    CandidateBetter,
    BaselineBetter,
    NoSignificantDifference,
}

impl From<ComparisonVerdict> for VerdictGql {
    fn from(verdict: ComparisonVerdict) -> Self {
        match verdict {
            ComparisonVerdict::CandidateBetter => Self::CandidateBetter,
            ComparisonVerdict::BaselineBetter => Self::BaselineBetter,
            ComparisonVerdict::NoSignificantDifference => Self::NoSignificantDifference,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "Outcome")]
pub enum OutcomeGql {
    Pass,
    Fail,
}

impl From<Outcome> for OutcomeGql {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Pass => Self::Pass,
            Outcome::Fail => Self::Fail,
        }
    }
}

/// One side's figures.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(name = "ComparisonSide")]
pub struct SideGql {
    pub results: i64,
    pub passed: i64,
    pub pass_rate: f64,
    /// 95% Wilson score interval of the pass rate.
    pub low: f64,
    pub high: f64,
    pub latency_p50_ms: i64,
    pub latency_p95_ms: i64,
    pub tokens: i64,
    /// Exact decimal, as `costUsd` elsewhere.
    pub cost_usd: String,
}

impl From<&SideStats> for SideGql {
    fn from(stats: &SideStats) -> Self {
        Self {
            results: stats.results as i64,
            passed: stats.passed as i64,
            pass_rate: stats.pass_rate,
            low: stats.low,
            high: stats.high,
            latency_p50_ms: stats.latency_p50_ms as i64,
            latency_p95_ms: stats.latency_p95_ms as i64,
            tokens: stats.tokens as i64,
            cost_usd: micro_usd_to_string(stats.cost_micro_usd),
        }
    }
}

#[derive(Debug, Clone, SimpleObject)]
#[graphql(name = "ProviderComparison")]
pub struct ProviderGql {
    pub provider: String,
    pub baseline: SideGql,
    pub candidate: SideGql,
    pub p_value: f64,
    pub verdict: VerdictGql,
}

#[derive(Debug, Clone, SimpleObject)]
#[graphql(name = "Flip")]
pub struct FlipGql {
    pub test_case_id: ID,
    pub provider: String,
    pub from: OutcomeGql,
    pub to: OutcomeGql,
    pub baseline_output: Option<String>,
    pub candidate_output: Option<String>,
    pub changed_assertions: Vec<String>,
}

#[derive(Debug, Clone, SimpleObject)]
#[graphql(name = "Promotion")]
pub struct PromotionGql {
    pub label: String,
    pub promoted_version: Option<i32>,
    pub reason: String,
}

impl From<&PromotionOutcome> for PromotionGql {
    fn from(p: &PromotionOutcome) -> Self {
        Self {
            label: p.label.clone(),
            promoted_version: p.promoted_version.map(|v| v as i32),
            reason: p.reason.clone(),
        }
    }
}

/// A comparison of two runs; the figures are null until it has completed.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(name = "Comparison")]
pub struct ComparisonGql {
    /// Null for `compareRuns`, which records nothing.
    pub id: Option<ID>,
    pub status: StatusGql,
    pub baseline_run_id: ID,
    pub candidate_run_id: ID,
    pub baseline_version: i32,
    pub candidate_version: i32,
    pub verdict: Option<VerdictGql>,
    /// Fisher's exact test, two-sided, on passed/failed of both sides.
    pub p_value: Option<f64>,
    pub baseline: Option<SideGql>,
    pub candidate: Option<SideGql>,
    pub providers: Vec<ProviderGql>,
    /// Every (case, provider) whose verdict differs, up to 1,000; `flipCount` counts them all.
    pub flips: Vec<FlipGql>,
    pub flip_count: i64,
    /// True when the comparison moved its promotion label to the candidate.
    pub promoted: bool,
    pub promotion: Option<PromotionGql>,
    pub failure: Option<String>,
}

impl ComparisonGql {
    fn new(id: Option<Uuid>, status: ComparisonStatus, runs: (Uuid, Uuid), versions: (u32, u32)) -> Self {
        Self {
            id: id.map(|id| ID(id.to_string())),
            status: status.into(),
            baseline_run_id: ID(runs.0.to_string()),
            candidate_run_id: ID(runs.1.to_string()),
            baseline_version: versions.0 as i32,
            candidate_version: versions.1 as i32,
            verdict: None,
            p_value: None,
            baseline: None,
            candidate: None,
            providers: vec![],
            flips: vec![],
            flip_count: 0,
            promoted: false,
            promotion: None,
            failure: None,
        }
    }

    fn with_report(mut self, report: &ComparisonReport) -> Self {
        self.verdict = Some(report.overall.verdict.into());
        self.p_value = Some(report.overall.p_value);
        self.baseline = Some((&report.overall.baseline).into());
        self.candidate = Some((&report.overall.candidate).into());
        self.providers = report
            .providers
            .iter()
            .map(|p| ProviderGql {
                provider: p.provider.clone(),
                baseline: (&p.sides.baseline).into(),
                candidate: (&p.sides.candidate).into(),
                p_value: p.sides.p_value,
                verdict: p.sides.verdict.into(),
            })
            .collect();
        self.flips = report
            .flips
            .iter()
            .map(|f| FlipGql {
                test_case_id: ID(f.test_case_id.to_string()),
                provider: f.provider.clone(),
                from: f.from.into(),
                to: f.to.into(),
                baseline_output: f.baseline_output.clone(),
                candidate_output: f.candidate_output.clone(),
                changed_assertions: f.changed_assertions.clone(),
            })
            .collect();
        self.flip_count = report.flip_count as i64;
        self
    }

    fn of(id: Uuid, comparison: &Comparison) -> Option<Self> {
        let plan = comparison.plan.as_ref()?;
        let mut node = Self::new(
            Some(id),
            comparison.status,
            (plan.baseline.run_id, plan.candidate.run_id),
            (plan.baseline.version, plan.candidate.version),
        );
        if let Some(report) = &comparison.report {
            node = node.with_report(report);
        }
        node.promoted = comparison
            .promotion
            .as_ref()
            .is_some_and(|p| p.promoted_version.is_some());
        node.promotion = comparison.promotion.as_ref().map(PromotionGql::from);
        node.failure = comparison.failure.clone();
        Some(node)
    }
}

/// Loads a comparison the caller may see; a stranger is told it does not exist.
async fn visible(ctx: &Context<'_>, id: Uuid) -> Result<Option<Comparison>> {
    access(ctx).principal()?;
    let state = state(ctx);
    let comparison = state.repo.load::<Comparison>(id).await.map_err(internal)?.state;
    match comparison.workspace_id() {
        Some(workspace_id) if access(ctx).role_in(state, workspace_id).await.is_ok() => Ok(Some(comparison)),
        _ => Ok(None),
    }
}

#[derive(Default)]
pub struct ComparisonsQuery;

#[Object]
impl ComparisonsQuery {
    /// A comparison started with `POST .../prompt-cards/{card}/comparisons`.
    async fn comparison(&self, ctx: &Context<'_>, id: ID) -> Result<Option<ComparisonGql>> {
        let id = parse_id(&id, "id")?;
        Ok(visible(ctx, id).await?.and_then(|c| ComparisonGql::of(id, &c)))
    }

    /// Compares any two finished runs of one workspace, computed now and recorded nowhere.
    async fn compare_runs(
        &self,
        ctx: &Context<'_>,
        baseline_run_id: ID,
        candidate_run_id: ID,
    ) -> Result<ComparisonGql> {
        let baseline_id = parse_id(&baseline_run_id, "baselineRunId")?;
        let candidate_id = parse_id(&candidate_run_id, "candidateRunId")?;
        access(ctx).principal()?;
        let state = state(ctx);
        let mut runs = Vec::with_capacity(2);
        for run_id in [baseline_id, candidate_id] {
            let run = state.repo.load::<TestRun>(run_id).await.map_err(internal)?.state;
            let Some(workspace_id) = run.plan.as_ref().map(|p| p.workspace_id) else {
                return Err(not_found("test run"));
            };
            if access(ctx).role_in(state, workspace_id).await.is_err() {
                return Err(not_found("test run"));
            }
            runs.push((run, workspace_id));
        }
        let (baseline, candidate) = (&runs[0], &runs[1]);
        if baseline.1 != candidate.1 {
            return Err(bad_request("the two runs belong to different workspaces"));
        }
        for (run, name) in [(&baseline.0, "baseline"), (&candidate.0, "candidate")] {
            if !run.status.is_terminal() {
                return Err(bad_request(format!(
                    "the {name} run is still {}; compare finished runs",
                    run.status.as_str().to_lowercase()
                )));
            }
        }
        let results = |run_id| async move {
            state
                .store
                .run_results(run_id, None)
                .try_collect::<Vec<_>>()
                .await
                .map_err(internal)
        };
        let report = compare(&results(baseline_id).await?, &results(candidate_id).await?);
        let version = |run: &TestRun| run.plan.as_ref().map(|p| p.card_version).unwrap_or(0);
        Ok(ComparisonGql::new(
            None,
            ComparisonStatus::Completed,
            (baseline_id, candidate_id),
            (version(&baseline.0), version(&candidate.0)),
        )
        .with_report(&report))
    }
}

/// A run's progress within a comparison.
#[derive(Debug, Clone, SimpleObject)]
pub struct SideProgress {
    pub run_id: ID,
    pub status: RunStatusGql,
    pub completed: i64,
    pub total: i64,
    pub passed: i64,
    pub failed: i64,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct ComparisonProgress {
    pub comparison_id: ID,
    pub status: StatusGql,
    pub baseline: SideProgress,
    pub candidate: SideProgress,
    /// Set once the comparison has completed.
    pub verdict: Option<VerdictGql>,
    pub promoted: bool,
}

#[derive(Default)]
pub struct ComparisonsSubscription;

#[Subscription]
impl ComparisonsSubscription {
    /// The comparison's progress now, then on every change of either run or of the comparison;
    /// completes once the comparison has completed or failed.
    async fn comparison_progress(&self, ctx: &Context<'_>, id: ID) -> Result<impl Stream<Item = ComparisonProgress>> {
        let comparison_id = parse_id(&id, "id")?;
        access(ctx).principal()?;
        let state = state(ctx).clone();
        access(ctx).count_request(&state, "anonymous")?;
        let Some(comparison) = visible(ctx, comparison_id).await? else {
            return Err(not_found("comparison"));
        };
        let plan = comparison.plan.clone().expect("a visible comparison has a plan");
        let pubsub = state
            .subscribe([
                domain::names::comparison_channel(comparison_id),
                domain::names::run_channel(plan.baseline.run_id),
                domain::names::run_channel(plan.candidate.run_id),
            ])
            .await?;
        let read = move |state: crate::context::AppState| async move {
            let comparison = state.repo.load::<Comparison>(comparison_id).await.ok()?.state;
            let plan = comparison.plan.as_ref()?;
            let side = async |run_id: Uuid| {
                let run = state.repo.load::<TestRun>(run_id).await.ok()?.state;
                Some(SideProgress {
                    run_id: ID(run_id.to_string()),
                    status: run.status.into(),
                    completed: run.completed() as i64,
                    total: run.total() as i64,
                    passed: run.passed as i64,
                    failed: run.failed as i64,
                })
            };
            Some(ComparisonProgress {
                comparison_id: ID(comparison_id.to_string()),
                status: comparison.status.into(),
                baseline: side(plan.baseline.run_id).await?,
                candidate: side(plan.candidate.run_id).await?,
                verdict: comparison.report.as_ref().map(|r| r.overall.verdict.into()),
                promoted: comparison
                    .promotion
                    .as_ref()
                    .is_some_and(|p| p.promoted_version.is_some()),
            })
        };
        let first = read(state.clone())
            .await
            .ok_or_else(|| internal("reading the comparison failed"))?;
        let guard = SubscriberGuard::count();
        let finished = first.status != StatusGql::Running;
        let updates = stream::unfold(
            (pubsub.into_on_message(), state, finished, guard),
            move |(mut messages, state, finished, guard)| async move {
                if finished {
                    return None;
                }
                messages.next().await?;
                let update = read(state.clone()).await?;
                let finished = update.status != StatusGql::Running;
                Some((update, (messages, state, finished, guard)))
            },
        );
        Ok(stream::once(async move { first }).chain(updates))
    }
}
