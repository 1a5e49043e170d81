//! The alert rules' evaluator: a consumer group of its own on the events topic (a projector
//! [`Sink`]), which re-measures a workspace's rules whenever one of its runs completes, and a
//! schedule that re-measures the daily cost and the latency from ClickHouse. Each measurement
//! goes to the rule as `Evaluate`; the rule alone decides whether it fires or resolves, so a
//! redelivered event or a measurement taken twice never fires twice.

use crate::figures;
use domain::alert::{AlertKind, AlertRule, AlertRuleCommand, Figure};
use domain::names::stream_types;
use domain::run::RunEvent;
use domain::DomainError;
use event_store::{AppendError, ExecuteError, Metadata, RecordedEvent, Repository};
use projector::Sink;
use serde_json::Value;
use sqlx::PgPool;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// What a completed run was, as the read models hold it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct FinishedRun {
    workspace_id: Uuid,
    card_id: Uuid,
    card_version: i32,
    providers: Value,
}

impl FinishedRun {
    fn used(&self, provider: &str) -> bool {
        self.providers
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["id"].as_str() == Some(provider)))
    }
}

#[derive(Clone)]
pub struct Evaluator {
    pool: PgPool,
    repo: Repository,
    /// How long a completed run may take to reach the read models before the batch is
    /// retried (the consumer holds its offsets meanwhile).
    settle: Duration,
}

impl Evaluator {
    pub fn new(repo: Repository, settle: Duration) -> Self {
        Self {
            pool: repo.store().pool().clone(),
            repo,
            settle,
        }
    }

    /// Re-measures, from the read models, each rule of the run's workspace the run concerns.
    #[tracing::instrument(skip_all, fields(run_id = %event.stream_id), err)]
    pub async fn run_completed(&self, event: &RecordedEvent) -> anyhow::Result<usize> {
        let run_id = event.stream_id;
        // Most workspaces have no rules: they neither wait for the read models nor read them.
        let Some(workspace_id) = event.workspace_id else {
            return Ok(0);
        };
        let rules = self.rules(workspace_id).await?;
        if rules.is_empty() {
            return Ok(0);
        }
        self.wait_for_read_models(run_id, event.version).await?;
        let run: FinishedRun = sqlx::query_as(
            "SELECT workspace_id, card_id, card_version, providers FROM read.test_runs WHERE run_id = $1",
        )
        .bind(run_id)
        .fetch_one(&self.pool)
        .await?;
        let mut evaluated = 0;
        for (rule_id, rule) in rules {
            let spec = rule.spec.as_ref().expect("a live rule has its spec");
            if !self.concerns(&run, spec).await? {
                continue;
            }
            let figure = figures::from_read_models(&self.pool, run.workspace_id, spec).await?;
            self.evaluate(rule_id, run.workspace_id, figure, Some(run_id)).await?;
            evaluated += 1;
        }
        Ok(evaluated)
    }

    /// Whether the run's end can move the rule's figure.
    async fn concerns(&self, run: &FinishedRun, spec: &domain::alert::RuleSpec) -> anyhow::Result<bool> {
        if spec.card_id.is_some_and(|card| card != run.card_id) {
            return Ok(false);
        }
        if let Some(provider) = &spec.provider {
            if !run.used(provider) {
                return Ok(false);
            }
        }
        if let Some(label) = &spec.label {
            let labelled: Option<i32> =
                sqlx::query_scalar("SELECT (labels ->> $2)::int FROM read.prompt_cards WHERE card_id = $1")
                    .bind(run.card_id)
                    .bind(label)
                    .fetch_optional(&self.pool)
                    .await?
                    .flatten();
            return Ok(labelled == Some(run.card_version));
        }
        Ok(true)
    }

    /// The live rules of a workspace, as the event store holds them.
    async fn rules(&self, workspace_id: Uuid) -> anyhow::Result<Vec<(Uuid, AlertRule)>> {
        let mut rules = Vec::new();
        for rule_id in self
            .repo
            .store()
            .streams_of(workspace_id, stream_types::ALERT_RULE)
            .await?
        {
            let rule = self.repo.load::<AlertRule>(rule_id).await?.state;
            if rule.is_live() {
                rules.push((rule_id, rule));
            }
        }
        Ok(rules)
    }

    /// Waits until the read models hold the run at `version`; an error once `settle` ran out.
    async fn wait_for_read_models(&self, run_id: Uuid, version: i64) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.settle;
        loop {
            let applied: Option<i64> =
                sqlx::query_scalar("SELECT version FROM read.stream_versions WHERE stream_id = $1")
                    .bind(run_id)
                    .fetch_optional(&self.pool)
                    .await?;
            if applied.is_some_and(|v| v >= version) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the read models have not reached version {version} of run {run_id} within {:?}",
                self.settle
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Hands a measurement to the rule, deciding again on a newer state when another evaluation
    /// appended first. A rule deleted meanwhile is left alone.
    pub async fn evaluate(
        &self,
        rule_id: Uuid,
        workspace_id: Uuid,
        figure: Option<Figure>,
        run_id: Option<Uuid>,
    ) -> anyhow::Result<()> {
        let command = AlertRuleCommand::Evaluate {
            alert_id: Uuid::now_v7(),
            figure,
            run_id,
        };
        let metadata = Metadata {
            workspace_id: Some(workspace_id),
            correlation_id: run_id.unwrap_or(rule_id),
            ..Default::default()
        };
        loop {
            match self
                .repo
                .execute::<AlertRule>(rule_id, command.clone(), metadata.clone())
                .await
            {
                Ok(executed) => {
                    let outcome = match (executed.events, executed.state.firing) {
                        (0, _) => "unchanged",
                        (_, Some(_)) => "fired",
                        (_, None) => "resolved",
                    };
                    metrics::counter!("alerts_evaluations_total", "outcome" => outcome).increment(1);
                    if outcome != "unchanged" {
                        tracing::info!(rule_id = %rule_id, outcome, "An alert rule changed state.");
                    }
                    return Ok(());
                }
                Err(ExecuteError::Refused(DomainError::NotFound(_))) => return Ok(()),
                Err(ExecuteError::Append(AppendError::WrongExpectedVersion { .. })) => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// One round of the schedule: every daily-cost and latency rule re-measured from ClickHouse.
    /// Returns how many rules it measured.
    pub async fn scheduled(&self, clickhouse: &clickhouse::Client) -> anyhow::Result<usize> {
        let rules: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT rule_id, workspace_id FROM read.alert_rules WHERE kind IN ($1, $2) ORDER BY rule_id",
        )
        .bind(AlertKind::DailyCostAbove.as_str())
        .bind(AlertKind::LatencyP95Above.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut measured = 0;
        for (rule_id, workspace_id) in rules {
            let rule = self.repo.load::<AlertRule>(rule_id).await?.state;
            let Some(spec) = rule.spec.as_ref().filter(|_| rule.is_live()) else {
                continue;
            };
            let figure = figures::from_analytics(clickhouse, workspace_id, spec).await?;
            self.evaluate(rule_id, workspace_id, figure, None).await?;
            measured += 1;
        }
        Ok(measured)
    }

    /// Runs the schedule until the process stops.
    pub async fn run_schedule(self, clickhouse: clickhouse::Client, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = self.scheduled(&clickhouse).await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "The scheduled alert evaluation failed; it runs again at the next tick."
                );
            }
        }
    }
}

impl Sink for Evaluator {
    fn name(&self) -> &'static str {
        "alerts"
    }

    async fn apply(&self, events: &[RecordedEvent]) -> anyhow::Result<()> {
        for event in events
            .iter()
            .filter(|e| e.stream_type == stream_types::TEST_RUN && e.event_type == RunEvent::TEST_RUN_COMPLETED)
        {
            self.run_completed(event).await?;
        }
        Ok(())
    }
}
