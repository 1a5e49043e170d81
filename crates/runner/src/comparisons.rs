//! Finishing comparisons. Each run that is one side of a comparison settles the comparison when
//! it is over: if the other side is over too, the report is computed from both runs' results
//! and the comparison completes (or fails, when a side did not complete), and a promotion moves
//! its label in the same append, with the comparison as the move's cause.
//!
//! Both runs may end at the same moment on two runners: each settles after its own run's end is
//! committed, so the one that settles last sees both ends, and an append that lost the race to
//! the other is decided again (and then finds the comparison finished).

use domain::card::{CardCommand, PromptCard};
use domain::comparison::{compare, Comparison, ComparisonCommand, ComparisonStatus};
use domain::run::{RunStatus, TestResult, TestRun};
use event_store::{Append, AppendError, Metadata, Repository};
use futures::TryStreamExt;
use uuid::Uuid;

/// Settles the comparison `run_id` belongs to, if any. Returns the comparison's status after,
/// or `None` when the run is not part of one.
#[tracing::instrument(skip_all, fields(run_id = %run_id), err)]
pub async fn settle(repo: &Repository, run_id: Uuid) -> anyhow::Result<Option<ComparisonStatus>> {
    let run = repo.load::<TestRun>(run_id).await?.state;
    let Some(comparison_id) = run.plan.as_ref().and_then(|plan| plan.comparison_id) else {
        return Ok(None);
    };
    loop {
        let comparison = repo.load::<Comparison>(comparison_id).await?;
        let Some(plan) = comparison.state.plan.clone() else {
            anyhow::bail!("run {run_id} names comparison {comparison_id}, which does not exist");
        };
        if comparison.state.status != ComparisonStatus::Running {
            return Ok(Some(comparison.state.status));
        }
        let baseline = repo.load::<TestRun>(plan.baseline.run_id).await?.state;
        let candidate = repo.load::<TestRun>(plan.candidate.run_id).await?.state;
        if !baseline.status.is_terminal() || !candidate.status.is_terminal() {
            return Ok(Some(ComparisonStatus::Running));
        }
        let card = repo.load::<PromptCard>(plan.card_id).await?;
        let command = match (baseline.status, candidate.status) {
            (RunStatus::Completed, RunStatus::Completed) => {
                let report = compare(
                    &results(repo, plan.baseline.run_id).await?,
                    &results(repo, plan.candidate.run_id).await?,
                );
                ComparisonCommand::Finish {
                    report,
                    card: Box::new(card.state.clone()),
                }
            }
            (RunStatus::Completed, _) => ComparisonCommand::Fail {
                reason: ended("candidate", &candidate),
            },
            _ => ComparisonCommand::Fail {
                reason: ended("baseline", &baseline),
            },
        };
        let decided = comparison.decide(comparison_id, command)?;
        let mut streams = vec![decided.append];
        let promoted = decided
            .state
            .promotion
            .as_ref()
            .and_then(|p| Some((p.label.clone(), p.promoted_version?)));
        if let Some((label, version)) = promoted {
            let moved = card.decide(plan.card_id, CardCommand::MoveLabel { label, version })?;
            if !moved.append.events.is_empty() {
                streams.push(moved.append);
            }
        }
        let append = Append {
            streams,
            metadata: Metadata {
                workspace_id: Some(plan.workspace_id),
                correlation_id: comparison_id,
                causation_id: Some(comparison_id),
                ..Default::default()
            },
            ..Default::default()
        };
        match repo.store().append(append).await {
            Ok(_) => return Ok(Some(decided.state.status)),
            // The other side's runner settled it first, or the card moved: decide again.
            Err(AppendError::WrongExpectedVersion { .. }) => continue,
            Err(other) => return Err(other.into()),
        }
    }
}

fn ended(side: &str, run: &TestRun) -> String {
    match &run.failure {
        Some(reason) => format!("the {side} run ended {}: {reason}", run.status.as_str().to_lowercase()),
        None => format!("the {side} run ended {}", run.status.as_str().to_lowercase()),
    }
}

/// A run's recorded results, in the order they were recorded.
async fn results(repo: &Repository, run_id: Uuid) -> anyhow::Result<Vec<TestResult>> {
    Ok(repo.store().run_results(run_id, None).try_collect().await?)
}
