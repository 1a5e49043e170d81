//! Comparisons: two runs of one card's cases, a baseline version and a candidate version, and
//! the verdict on which is better. The two runs are requested with the comparison; when both
//! are over the runner computes the report ([`compare`]) from their results and finishes the
//! comparison, moving a label to the candidate when the comparison asked for that and the rule
//! of [`Promotion`] holds.

use crate::card::{CardCommand, PromptCard};
use crate::error::Problems;
use crate::run::TestResult;
use crate::stats::{fisher_exact, percentile, wilson_interval};
use crate::{Aggregate, DomainError, Event};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// A difference with a two-sided p-value under this is significant.
pub const SIGNIFICANCE: f64 = 0.05;
/// The most flips a report lists; `flip_count` still counts them all.
pub const MAX_FLIPS_LISTED: usize = 1_000;

/// One side of a comparison: the card version it runs (a label resolved when requested) and
/// its run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub version: u32,
    /// The label the request named, if it named one.
    pub label: Option<String>,
    pub run_id: Uuid,
}

/// Move `label` to the candidate when it is significantly better and its cost is at most
/// `max_cost_increase` (a fraction: 0.1 is 10%) above the baseline's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub label: String,
    #[serde(default)]
    pub max_cost_increase: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ComparisonStatus {
    #[default]
    Running,
    Completed,
    Failed,
}

impl ComparisonStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ComparisonStatus::Running => "RUNNING",
            ComparisonStatus::Completed => "COMPLETED",
            ComparisonStatus::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ComparisonVerdict {
    CandidateBetter,
    BaselineBetter,
    NoSignificantDifference,
}

impl ComparisonVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            ComparisonVerdict::CandidateBetter => "CANDIDATE_BETTER",
            ComparisonVerdict::BaselineBetter => "BASELINE_BETTER",
            ComparisonVerdict::NoSignificantDifference => "NO_SIGNIFICANT_DIFFERENCE",
        }
    }
}

/// The figures of one side, over all its results (each repetition counts as a trial).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SideStats {
    pub results: u64,
    pub passed: u64,
    pub pass_rate: f64,
    /// 95% Wilson score interval of the pass rate.
    pub low: f64,
    pub high: f64,
    pub latency_p50_ms: u64,
    pub latency_p95_ms: u64,
    pub tokens: u64,
    pub cost_micro_usd: i64,
}

/// Both sides for one provider, or overall, with the test of their difference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SidesCompared {
    pub baseline: SideStats,
    pub candidate: SideStats,
    /// Fisher's exact test, two-sided, on passed/failed of the two sides.
    pub p_value: f64,
    pub verdict: ComparisonVerdict,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderCompared {
    pub provider: String,
    #[serde(flatten)]
    pub sides: SidesCompared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    Pass,
    Fail,
}

/// A (case, provider) whose verdict differs between the sides. A (case, provider) passes when
/// every repetition of it passed; the outputs are those of its first repetition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flip {
    pub test_case_id: Uuid,
    pub provider: String,
    pub from: Outcome,
    pub to: Outcome,
    pub baseline_output: Option<String>,
    pub candidate_output: Option<String>,
    /// The assertion types whose verdict changed, e.g. `contains`, `not-regex`.
    pub changed_assertions: Vec<String>,
}

/// What a comparison found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonReport {
    #[serde(flatten)]
    pub overall: SidesCompared,
    pub providers: Vec<ProviderCompared>,
    pub flips: Vec<Flip>,
    pub flip_count: u64,
}

/// Compares the results of two runs.
pub fn compare(baseline: &[TestResult], candidate: &[TestResult]) -> ComparisonReport {
    let providers: Vec<String> = {
        let mut names: Vec<String> = baseline
            .iter()
            .chain(candidate)
            .map(|r| r.key.provider.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let of = |results: &[TestResult], provider: &str| -> Vec<TestResult> {
        results.iter().filter(|r| r.key.provider == provider).cloned().collect()
    };
    let providers = providers
        .iter()
        .map(|provider| ProviderCompared {
            provider: provider.clone(),
            sides: sides_compared(&of(baseline, provider), &of(candidate, provider)),
        })
        .collect();
    let (flips, flip_count) = flips(baseline, candidate);
    ComparisonReport {
        overall: sides_compared(baseline, candidate),
        providers,
        flips,
        flip_count,
    }
}

fn side_stats(results: &[TestResult]) -> SideStats {
    let passed = results.iter().filter(|r| r.passed).count() as u64;
    let total = results.len() as u64;
    let (low, high) = wilson_interval(passed, total);
    let mut latencies: Vec<u64> = results.iter().map(|r| r.latency_ms).collect();
    SideStats {
        results: total,
        passed,
        pass_rate: if total == 0 { 0.0 } else { passed as f64 / total as f64 },
        low,
        high,
        latency_p50_ms: percentile(&mut latencies, 50.0),
        latency_p95_ms: percentile(&mut latencies, 95.0),
        tokens: results
            .iter()
            .map(|r| u64::from(r.prompt_tokens) + u64::from(r.completion_tokens))
            .sum(),
        cost_micro_usd: results.iter().map(|r| r.cost_micro_usd).sum(),
    }
}

fn sides_compared(baseline: &[TestResult], candidate: &[TestResult]) -> SidesCompared {
    let (baseline, candidate) = (side_stats(baseline), side_stats(candidate));
    let p_value = fisher_exact(
        baseline.passed,
        baseline.results - baseline.passed,
        candidate.passed,
        candidate.results - candidate.passed,
    );
    let verdict = if p_value >= SIGNIFICANCE || baseline.pass_rate == candidate.pass_rate {
        ComparisonVerdict::NoSignificantDifference
    } else if candidate.pass_rate > baseline.pass_rate {
        ComparisonVerdict::CandidateBetter
    } else {
        ComparisonVerdict::BaselineBetter
    };
    SidesCompared {
        baseline,
        candidate,
        p_value,
        verdict,
    }
}

/// Per (case, provider): whether every repetition passed, and the first repetition's result.
fn by_slot(results: &[TestResult]) -> BTreeMap<(Uuid, &str), (bool, &TestResult)> {
    let mut slots: BTreeMap<(Uuid, &str), (bool, &TestResult)> = BTreeMap::new();
    for result in results {
        let slot = slots
            .entry((result.key.case_id, result.key.provider.as_str()))
            .or_insert((true, result));
        slot.0 &= result.passed;
        if result.key.repetition < slot.1.key.repetition {
            slot.1 = result;
        }
    }
    slots
}

fn flips(baseline: &[TestResult], candidate: &[TestResult]) -> (Vec<Flip>, u64) {
    let candidate = by_slot(candidate);
    let mut flips = Vec::new();
    let mut count = 0;
    for ((case_id, provider), (was, before)) in by_slot(baseline) {
        let Some((now, after)) = candidate.get(&(case_id, provider)) else {
            continue;
        };
        if was == *now {
            continue;
        }
        count += 1;
        if flips.len() == MAX_FLIPS_LISTED {
            continue;
        }
        let outcome = |passed: bool| if passed { Outcome::Pass } else { Outcome::Fail };
        let mut changed: Vec<String> = before
            .assertions
            .iter()
            .zip(&after.assertions)
            .filter(|(b, a)| b.kind != a.kind || b.passed != a.passed)
            .map(|(_, a)| a.kind.clone())
            .collect();
        // Assertion sets of different lengths: the extra ones changed by being there.
        let (longer, shorter) = if before.assertions.len() > after.assertions.len() {
            (&before.assertions, after.assertions.len())
        } else {
            (&after.assertions, before.assertions.len())
        };
        changed.extend(longer.iter().skip(shorter).map(|v| v.kind.clone()));
        flips.push(Flip {
            test_case_id: case_id,
            provider: provider.to_owned(),
            from: outcome(was),
            to: outcome(*now),
            baseline_output: before.output.clone(),
            candidate_output: after.output.clone(),
            changed_assertions: changed,
        });
    }
    (flips, count)
}

/// Whether a finished comparison moves its label, and why or why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionOutcome {
    pub label: String,
    /// The version the label was moved to, when it was.
    pub promoted_version: Option<u32>,
    pub reason: String,
}

impl Promotion {
    fn judge(&self, report: &ComparisonReport, candidate_version: u32) -> PromotionOutcome {
        let overall = &report.overall;
        let refuse = |reason: String| PromotionOutcome {
            label: self.label.clone(),
            promoted_version: None,
            reason,
        };
        if overall.verdict != ComparisonVerdict::CandidateBetter {
            return refuse(format!(
                "the candidate is not significantly better ({}, p = {:.4})",
                overall.verdict.as_str(),
                overall.p_value
            ));
        }
        let (before, after) = (overall.baseline.cost_micro_usd, overall.candidate.cost_micro_usd);
        let allowed = before as f64 * (1.0 + self.max_cost_increase);
        if after as f64 > allowed {
            return refuse(format!(
                "the candidate costs {after} micro-USD against the baseline's {before}, more than {:.0}% above it",
                self.max_cost_increase * 100.0
            ));
        }
        PromotionOutcome {
            label: self.label.clone(),
            promoted_version: Some(candidate_version),
            reason: format!(
                "the candidate is significantly better (p = {:.4}) and its cost is within the margin",
                overall.p_value
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonPlan {
    pub workspace_id: Uuid,
    pub card_id: Uuid,
    pub baseline: Side,
    pub candidate: Side,
    pub providers: Vec<String>,
    pub repeat: u32,
    pub promote: Option<Promotion>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    pub id: Option<Uuid>,
    pub plan: Option<ComparisonPlan>,
    pub status: ComparisonStatus,
    pub report: Option<ComparisonReport>,
    pub promotion: Option<PromotionOutcome>,
    pub failure: Option<String>,
}

impl Comparison {
    pub fn workspace_id(&self) -> Option<Uuid> {
        self.plan.as_ref().map(|p| p.workspace_id)
    }
}

#[derive(Debug, Clone)]
pub enum ComparisonCommand {
    /// Records a comparison whose two runs are requested in the same append.
    Request { comparison_id: Uuid, plan: ComparisonPlan },
    /// Finishes it with the report computed from both runs' results. `card` is the card as it
    /// stands, to know whether a promotion's label move would be accepted.
    Finish {
        report: ComparisonReport,
        card: Box<PromptCard>,
    },
    /// One of the runs failed or was cancelled: there is nothing to compare.
    Fail { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ComparisonEvent {
    ComparisonRequested {
        comparison_id: Uuid,
        #[serde(flatten)]
        plan: ComparisonPlan,
    },
    ComparisonCompleted {
        #[serde(flatten)]
        report: ComparisonReport,
        /// Present when the comparison asked to promote: what was decided and why.
        promotion: Option<PromotionOutcome>,
    },
    ComparisonFailed {
        reason: String,
    },
}

impl Event for ComparisonEvent {
    fn event_type(&self) -> &'static str {
        match self {
            ComparisonEvent::ComparisonRequested { .. } => "ComparisonRequested",
            ComparisonEvent::ComparisonCompleted { .. } => "ComparisonCompleted",
            ComparisonEvent::ComparisonFailed { .. } => "ComparisonFailed",
        }
    }
}

impl Comparison {
    fn ensure_running(&self) -> Result<&ComparisonPlan, DomainError> {
        let plan = self
            .plan
            .as_ref()
            .ok_or_else(|| DomainError::NotFound("comparison not found".into()))?;
        if self.status != ComparisonStatus::Running {
            return Err(DomainError::Conflict(format!(
                "the comparison is already {}",
                self.status.as_str().to_lowercase()
            )));
        }
        Ok(plan)
    }
}

impl Aggregate for Comparison {
    const STREAM_TYPE: &'static str = crate::names::stream_types::COMPARISON;
    type Command = ComparisonCommand;
    type Event = ComparisonEvent;

    fn decide(&self, command: ComparisonCommand) -> Result<Vec<ComparisonEvent>, DomainError> {
        match command {
            ComparisonCommand::Request { comparison_id, plan } => {
                if self.id.is_some() {
                    return Err(DomainError::Conflict("the comparison already exists".into()));
                }
                let mut problems = Problems::default();
                if plan.baseline.version == plan.candidate.version {
                    problems.add(
                        "candidate",
                        format!(
                            "is version {} like the baseline; compare two versions",
                            plan.candidate.version
                        ),
                    );
                }
                if let Some(promote) = &plan.promote {
                    if !crate::card::LABEL.is_match(&promote.label) {
                        problems.add(
                            "promote.label",
                            "must be 1 to 50 letters, digits, '_', '.' or '-', starting with a letter or digit",
                        );
                    }
                    if !(0.0..=100.0).contains(&promote.max_cost_increase) {
                        problems.add("promote.max_cost_increase", "must be a fraction from 0 to 100");
                    }
                }
                problems.into_result()?;
                Ok(vec![ComparisonEvent::ComparisonRequested { comparison_id, plan }])
            }
            ComparisonCommand::Finish { report, card } => {
                let plan = self.ensure_running()?;
                let promotion = plan.promote.as_ref().map(|promote| {
                    let outcome = promote.judge(&report, plan.candidate.version);
                    match outcome.promoted_version {
                        Some(version) => match card.decide(CardCommand::MoveLabel {
                            label: promote.label.clone(),
                            version,
                        }) {
                            Ok(_) => outcome,
                            Err(refusal) => PromotionOutcome {
                                promoted_version: None,
                                reason: format!("the card refused the label move: {refusal}"),
                                ..outcome
                            },
                        },
                        None => outcome,
                    }
                });
                Ok(vec![ComparisonEvent::ComparisonCompleted { report, promotion }])
            }
            ComparisonCommand::Fail { reason } => {
                self.ensure_running()?;
                Ok(vec![ComparisonEvent::ComparisonFailed { reason }])
            }
        }
    }

    fn evolve(mut self, event: &ComparisonEvent) -> Self {
        match event {
            ComparisonEvent::ComparisonRequested { comparison_id, plan } => {
                self.id = Some(*comparison_id);
                self.plan = Some(plan.clone());
            }
            ComparisonEvent::ComparisonCompleted { report, promotion } => {
                self.status = ComparisonStatus::Completed;
                self.report = Some(report.clone());
                self.promotion = promotion.clone();
            }
            ComparisonEvent::ComparisonFailed { reason } => {
                self.status = ComparisonStatus::Failed;
                self.failure = Some(reason.clone());
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::{CardContent, CardEvent};
    use crate::given_when;
    use crate::run::ResultKey;
    use assertions::Verdict;

    fn result(case: u128, provider: &str, repetition: u32, passed: bool, cost: i64) -> TestResult {
        TestResult {
            key: ResultKey {
                case_id: Uuid::from_u128(case),
                provider: provider.into(),
                repetition,
            },
            rendered_prompt: "p".into(),
            output: Some(format!("out {case} {passed}")),
            error: None,
            latency_ms: 10 * case as u64,
            prompt_tokens: 2,
            completion_tokens: 3,
            cost_micro_usd: cost,
            passed,
            score: if passed { 1.0 } else { 0.0 },
            assertions: vec![Verdict {
                kind: "contains".into(),
                passed,
                score: 0.0,
                reason: String::new(),
            }],
            grading: Default::default(),
        }
    }

    /// `passing` of `cases` cases pass, on one provider.
    fn side(cases: u128, passing: u128, cost: i64) -> Vec<TestResult> {
        (1..=cases).map(|c| result(c, "echo", 0, c <= passing, cost)).collect()
    }

    fn plan(promote: Option<Promotion>) -> ComparisonPlan {
        ComparisonPlan {
            workspace_id: Uuid::from_u128(100),
            card_id: Uuid::from_u128(101),
            baseline: Side {
                version: 1,
                label: Some("production".into()),
                run_id: Uuid::from_u128(102),
            },
            candidate: Side {
                version: 2,
                label: None,
                run_id: Uuid::from_u128(103),
            },
            providers: vec!["echo".into()],
            repeat: 1,
            promote,
        }
    }

    /// The card both sides run: two versions.
    fn card() -> Box<PromptCard> {
        let content = CardContent {
            title: "Greet".into(),
            description: String::new(),
            template: "Hi".into(),
            messages: vec![],
            variables: vec![],
            tags: vec![],
            config: Default::default(),
        };
        let events = [
            CardEvent::PromptCardCreated {
                card_id: Uuid::from_u128(101),
                workspace_id: Uuid::from_u128(100),
                name: "greet".into(),
                content: content.clone(),
            },
            CardEvent::PromptCardUpdated { version: 2, content },
        ];
        Box::new(PromptCard::fold(&events))
    }

    fn requested(promote: Option<Promotion>) -> ComparisonEvent {
        ComparisonEvent::ComparisonRequested {
            comparison_id: Uuid::from_u128(104),
            plan: plan(promote),
        }
    }

    #[test]
    fn a_clearly_better_candidate_wins_with_fishers_p_value() {
        let report = compare(&side(10, 0, 0), &side(10, 10, 0));
        assert_eq!(report.overall.verdict, ComparisonVerdict::CandidateBetter);
        assert!((report.overall.p_value - 1.082509e-05).abs() < 1e-10);
        assert_eq!(report.flip_count, 10);
        assert!(report
            .flips
            .iter()
            .all(|f| f.from == Outcome::Fail && f.to == Outcome::Pass));
        assert_eq!(report.flips[0].changed_assertions, vec!["contains".to_string()]);
        assert_eq!(report.providers.len(), 1);
        assert_eq!(report.overall.candidate.tokens, 50);
    }

    #[test]
    fn a_small_difference_is_not_significant() {
        let report = compare(&side(4, 1, 0), &side(4, 3, 0));
        assert_eq!(report.overall.verdict, ComparisonVerdict::NoSignificantDifference);
        assert_eq!(report.flip_count, 2);
        let report = compare(&side(10, 10, 0), &side(10, 0, 0));
        assert_eq!(report.overall.verdict, ComparisonVerdict::BaselineBetter);
    }

    #[test]
    fn a_slot_passes_only_when_every_repetition_passed() {
        let baseline = vec![result(1, "echo", 0, true, 0), result(1, "echo", 1, true, 0)];
        let candidate = vec![result(1, "echo", 0, true, 0), result(1, "echo", 1, false, 0)];
        let report = compare(&baseline, &candidate);
        assert_eq!(report.flip_count, 1);
        assert_eq!(report.flips[0].from, Outcome::Pass);
        assert_eq!(report.flips[0].to, Outcome::Fail);
        assert_eq!(report.overall.candidate.passed, 1);
    }

    #[test]
    fn promotion_needs_a_better_candidate_within_the_cost_margin() {
        let promote = Promotion {
            label: "production".into(),
            max_cost_increase: 0.1,
        };
        let given = [requested(Some(promote))];
        let better_and_cheap = compare(&side(10, 0, 100), &side(10, 10, 105));
        let events = given_when::<Comparison>(
            &given,
            ComparisonCommand::Finish {
                report: better_and_cheap,
                card: card(),
            },
        )
        .unwrap();
        let ComparisonEvent::ComparisonCompleted { promotion: Some(p), .. } = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(p.promoted_version, Some(2));

        let better_but_dear = compare(&side(10, 0, 100), &side(10, 10, 120));
        let events = given_when::<Comparison>(
            &given,
            ComparisonCommand::Finish {
                report: better_but_dear,
                card: card(),
            },
        )
        .unwrap();
        let ComparisonEvent::ComparisonCompleted { promotion: Some(p), .. } = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(p.promoted_version, None);
        assert!(p.reason.contains("costs"), "{}", p.reason);

        let not_better = compare(&side(10, 5, 0), &side(10, 6, 0));
        let events = given_when::<Comparison>(
            &given,
            ComparisonCommand::Finish {
                report: not_better,
                card: card(),
            },
        )
        .unwrap();
        let ComparisonEvent::ComparisonCompleted { promotion: Some(p), .. } = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(p.promoted_version, None);
        assert!(p.reason.contains("NO_SIGNIFICANT_DIFFERENCE"), "{}", p.reason);
    }

    #[test]
    fn an_archived_card_keeps_its_label_and_the_comparison_says_why() {
        let promote = Promotion {
            label: "production".into(),
            max_cost_increase: 0.0,
        };
        let archived = Box::new(card().evolve(&CardEvent::PromptCardArchived {}));
        let report = compare(&side(10, 0, 0), &side(10, 10, 0));
        let events = given_when::<Comparison>(
            &[requested(Some(promote))],
            ComparisonCommand::Finish { report, card: archived },
        )
        .unwrap();
        let ComparisonEvent::ComparisonCompleted { promotion: Some(p), .. } = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(p.promoted_version, None);
        assert!(p.reason.contains("archived"), "{}", p.reason);
    }

    #[test]
    fn a_finished_comparison_cannot_finish_again() {
        let report = compare(&side(2, 1, 0), &side(2, 1, 0));
        let done = ComparisonEvent::ComparisonCompleted {
            report: report.clone(),
            promotion: None,
        };
        let again = given_when::<Comparison>(
            &[requested(None), done],
            ComparisonCommand::Finish { report, card: card() },
        );
        assert!(matches!(again, Err(DomainError::Conflict(_))));
        let failed = given_when::<Comparison>(&[], ComparisonCommand::Fail { reason: "x".into() });
        assert!(matches!(failed, Err(DomainError::NotFound(_))));
    }

    #[test]
    fn the_same_version_on_both_sides_is_refused() {
        let mut same = plan(None);
        same.candidate.version = 1;
        let refused = given_when::<Comparison>(
            &[],
            ComparisonCommand::Request {
                comparison_id: Uuid::from_u128(1),
                plan: same,
            },
        );
        assert!(matches!(refused, Err(DomainError::Invalid(_))));
    }
}
