//! Test runs: a card version's test cases run against providers. The request snapshots the
//! template, variables, cases and assertions, so later edits never change a past run. Each
//! (case, provider, repetition) is recorded at most once, which is what lets a restarted
//! runner resume without redoing or losing a result.
//!
//! Over 600 lines because the run's rules and their given/when/then tests belong together.

use crate::card::PromptCard;
use crate::error::Problems;
use crate::prompt::ChatMessage;
use crate::template::Variable;
use crate::test_case::TestCase;
use crate::{Aggregate, DomainError, Event};
use assertions::{check_assertions, Assertion, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use uuid::Uuid;

pub const MAX_PROVIDERS: usize = 10;
pub const MAX_REPEAT: u32 = 100;
pub const MAX_RESULTS: u64 = 100_000;

/// A test case as it was when the run was requested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCase {
    pub case_id: Uuid,
    pub name: String,
    pub vars: Map<String, Value>,
    pub expected_output: Option<String>,
    pub assertions: Vec<Assertion>,
}

/// A provider as promptfoo names it (`echo`, `openai:gpt-4o-mini`, ...) with its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderSpec {
    pub id: String,
    #[serde(default)]
    pub config: Value,
}

/// The provider with the card version's config beneath its own (the provider's keys win);
/// `model` is left out, since the provider id names the model a run or
/// execution calls.
pub fn with_card_config(provider: &ProviderSpec, card: &Map<String, Value>) -> ProviderSpec {
    if card.is_empty() {
        return provider.clone();
    }
    let mut config: Map<String, Value> = card
        .iter()
        .filter(|(k, _)| k.as_str() != "model")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Value::Object(own) = &provider.config {
        config.extend(own.clone());
    }
    ProviderSpec {
        id: provider.id.clone(),
        config: Value::Object(config),
    }
}

/// Identifies one result slot of a run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResultKey {
    pub case_id: Uuid,
    pub provider: String,
    pub repetition: u32,
}

/// One provider call and its grade. Carries computed values (rendered prompt, cost in
/// micro-USD) so projections do no arithmetic of their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    #[serde(flatten)]
    pub key: ResultKey,
    pub rendered_prompt: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub latency_ms: u64,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub cost_micro_usd: i64,
    pub passed: bool,
    pub score: f64,
    pub assertions: Vec<Verdict>,
    /// What the grading models of model-graded assertions used, apart from the tested call's
    /// tokens and cost above. Absent (0) in results recorded before graders existed.
    #[serde(flatten)]
    pub grading: GradingUsage,
}

/// Tokens and cost spent by grading models on one result (every grader call of its assertions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GradingUsage {
    #[serde(default)]
    pub grading_prompt_tokens: u32,
    #[serde(default)]
    pub grading_completion_tokens: u32,
    #[serde(default)]
    pub grading_cost_micro_usd: i64,
}

impl GradingUsage {
    pub fn add(&mut self, other: GradingUsage) {
        self.grading_prompt_tokens = self.grading_prompt_tokens.saturating_add(other.grading_prompt_tokens);
        self.grading_completion_tokens = self
            .grading_completion_tokens
            .saturating_add(other.grading_completion_tokens);
        self.grading_cost_micro_usd = self.grading_cost_micro_usd.saturating_add(other.grading_cost_micro_usd);
    }
}

/// A recorded result graded again under another assertion set, without calling a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegradedResult {
    #[serde(flatten)]
    pub key: ResultKey,
    pub passed: bool,
    pub score: f64,
    pub verdicts: Vec<Verdict>,
    /// What grading models used to grade it again (0 when no assertion is model-graded).
    #[serde(flatten)]
    pub grading: GradingUsage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    #[default]
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "QUEUED",
            RunStatus::Running => "RUNNING",
            RunStatus::Completed => "COMPLETED",
            RunStatus::Failed => "FAILED",
            RunStatus::Cancelled => "CANCELLED",
        }
    }
}

/// What a run executes, fixed at request time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPlan {
    pub workspace_id: Uuid,
    pub card_id: Uuid,
    pub card_version: u32,
    /// Empty when the version is a chat prompt.
    pub template: String,
    /// The chat prompt's messages; empty for a text template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<ChatMessage>,
    /// The version's model settings, under each provider's own config.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
    pub variables: Vec<Variable>,
    pub cases: Vec<RunCase>,
    pub providers: Vec<ProviderSpec>,
    pub repeat: u32,
    /// The comparison this run is one side of, if any; the runner finishes the comparison
    /// when both of its runs are over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison_id: Option<Uuid>,
}

impl RunPlan {
    pub fn total(&self) -> u64 {
        self.cases.len() as u64 * self.providers.len() as u64 * self.repeat as u64
    }

    /// Every result slot, in a stable order: case, then provider, then repetition.
    pub fn keys(&self) -> impl Iterator<Item = ResultKey> + '_ {
        self.cases.iter().flat_map(move |case| {
            self.providers.iter().flat_map(move |provider| {
                (0..self.repeat).map(move |repetition| ResultKey {
                    case_id: case.case_id,
                    provider: provider.id.clone(),
                    repetition,
                })
            })
        })
    }

    fn check(&self) -> Result<(), DomainError> {
        let mut problems = Problems::default();
        if self.providers.is_empty() || self.providers.len() > MAX_PROVIDERS {
            problems.add("providers", format!("give 1 to {MAX_PROVIDERS} providers"));
        }
        let mut ids = BTreeSet::new();
        for (i, provider) in self.providers.iter().enumerate() {
            if !crate::run::is_known_provider(&provider.id) {
                problems.add(
                    format!("providers[{i}]"),
                    format!(
                        "{:?} is not a supported provider; use echo, openai:<model>, ollama:chat:<model> or anthropic:messages:<model>",
                        provider.id
                    ),
                );
            }
            if !ids.insert(provider.id.as_str()) {
                problems.add(format!("providers[{i}]"), "is listed twice");
            }
        }
        if self.repeat == 0 || self.repeat > MAX_REPEAT {
            problems.add("repeat", format!("must be 1 to {MAX_REPEAT}"));
        }
        if self.cases.is_empty() {
            problems.add("test_case_ids", "the run has no test cases to run");
        }
        if self.total() > MAX_RESULTS {
            problems.add(
                "repeat",
                format!("the run would produce more than {MAX_RESULTS} results"),
            );
        }
        problems.into_result()
    }
}

/// Provider ids Promptcards can call.
pub fn is_known_provider(id: &str) -> bool {
    let non_empty = |rest: Option<&str>| rest.is_some_and(|m| !m.trim().is_empty());
    id == "echo"
        || non_empty(id.strip_prefix("openai:"))
        || non_empty(id.strip_prefix("ollama:chat:"))
        || non_empty(id.strip_prefix("anthropic:messages:"))
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestRun {
    pub id: Option<Uuid>,
    pub plan: Option<RunPlan>,
    pub status: RunStatus,
    pub recorded: BTreeSet<ResultKey>,
    pub passed: u64,
    pub failed: u64,
    pub failure: Option<String>,
    /// What the recorded results cost, in micro-USD.
    pub cost_micro_usd: u64,
}

impl TestRun {
    pub fn total(&self) -> u64 {
        self.plan.as_ref().map(RunPlan::total).unwrap_or(0)
    }

    pub fn completed(&self) -> u64 {
        self.recorded.len() as u64
    }

    /// Result slots not recorded yet, in plan order.
    pub fn pending(&self) -> Vec<ResultKey> {
        match &self.plan {
            Some(plan) => plan.keys().filter(|k| !self.recorded.contains(k)).collect(),
            None => vec![],
        }
    }
}

/// A run of a card's test cases as the card stands. The rules that need the card (an archived
/// card cannot run; a case must belong to the card) apply when it is decided.
#[derive(Debug, Clone)]
pub struct CardRunRequest {
    /// The card as loaded.
    pub card: PromptCard,
    /// Defaults to the card's current version.
    pub card_version: Option<u32>,
    /// The cases to run, from [`cases_to_run`].
    pub case_ids: Vec<Uuid>,
    /// Those cases as loaded; the order of `case_ids` is the run's order.
    pub cases: Vec<TestCase>,
    pub providers: Vec<ProviderSpec>,
    pub repeat: u32,
    /// The comparison the run belongs to, if any.
    pub comparison_id: Option<Uuid>,
}

/// The cases a request runs: the ones it names, or every case of the card.
pub fn cases_to_run(card: &PromptCard, named: Option<Vec<Uuid>>) -> Vec<Uuid> {
    named.unwrap_or_else(|| card.test_cases.clone())
}

impl CardRunRequest {
    /// Snapshots the plan from the card and its cases.
    fn plan(self) -> Result<RunPlan, DomainError> {
        let card = &self.card;
        let (Some(card_id), Some(workspace_id)) = (card.id, card.workspace_id) else {
            return Err(DomainError::NotFound("prompt card not found".into()));
        };
        if card.archived {
            return Err(DomainError::Conflict("the prompt card is archived".into()));
        }
        let card_version = self.card_version.unwrap_or(card.version());
        let content = card
            .at_version(card_version)
            .ok_or_else(|| {
                DomainError::Invalid(vec![crate::FieldError::new(
                    "card_version",
                    format!("must be an existing version, 1 to {}", card.version()),
                )])
            })?
            .content
            .clone();
        let mut problems = Problems::default();
        let mut cases = Vec::new();
        for (i, case_id) in self.case_ids.iter().enumerate() {
            if !card.test_cases.contains(case_id) {
                problems.add(format!("test_case_ids[{i}]"), "is not a test case of this card");
                continue;
            }
            let loaded = self.cases.iter().find(|case| case.id == Some(*case_id));
            let Some(case) = loaded.and_then(|case| case.content.clone()) else {
                continue;
            };
            cases.push(RunCase {
                case_id: *case_id,
                name: case.name,
                vars: case.vars,
                expected_output: case.expected_output,
                assertions: case.assertions,
            });
        }
        problems.into_result()?;
        Ok(RunPlan {
            workspace_id,
            card_id,
            card_version,
            template: content.template,
            messages: content.messages,
            config: content.config,
            variables: content.variables,
            cases,
            providers: self.providers,
            repeat: self.repeat,
            comparison_id: self.comparison_id,
        })
    }
}

#[derive(Debug, Clone)]
pub enum RunCommand {
    /// Requests a run of a plan already snapshotted (tests and tools seed runs this way).
    Request {
        run_id: Uuid,
        plan: RunPlan,
    },
    /// Requests a run of a card's cases, snapshotting the plan from the card.
    RequestForCard {
        run_id: Uuid,
        request: CardRunRequest,
    },
    Start,
    /// Records results; ones already recorded are skipped, so a resumed runner is harmless.
    Record {
        results: Vec<TestResult>,
    },
    Complete,
    Fail {
        reason: String,
    },
    Cancel,
    /// Records grades of recorded results under a new assertion set (computed by the caller
    /// with `assertions::grade`); the original verdicts stay as they were recorded.
    Regrade {
        assertions: Vec<Assertion>,
        results: Vec<RegradedResult>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum RunEvent {
    TestRunRequested {
        run_id: Uuid,
        #[serde(flatten)]
        plan: RunPlan,
        total: u64,
    },
    TestRunStarted {},
    /// Names the card and version again so analytics need no lookup.
    TestResultRecorded {
        card_id: Uuid,
        card_version: u32,
        #[serde(flatten)]
        result: TestResult,
    },
    TestRunCompleted {
        passed: u64,
        failed: u64,
    },
    TestRunFailed {
        reason: String,
    },
    TestRunCancelled {},
    TestRunRegraded {
        assertions: Vec<Assertion>,
        results: Vec<RegradedResult>,
    },
}

impl Event for RunEvent {
    fn event_type(&self) -> &'static str {
        match self {
            RunEvent::TestRunRequested { .. } => Self::TEST_RUN_REQUESTED,
            RunEvent::TestRunStarted { .. } => "TestRunStarted",
            RunEvent::TestResultRecorded { .. } => Self::TEST_RESULT_RECORDED,
            RunEvent::TestRunCompleted { .. } => Self::TEST_RUN_COMPLETED,
            RunEvent::TestRunFailed { .. } => "TestRunFailed",
            RunEvent::TestRunCancelled { .. } => "TestRunCancelled",
            RunEvent::TestRunRegraded { .. } => "TestRunRegraded",
        }
    }
}

impl RunEvent {
    /// The stored name of `TestRunRequested`, for the runner that picks requests off the topic.
    pub const TEST_RUN_REQUESTED: &'static str = "TestRunRequested";
    /// The stored name of `TestResultRecorded`, for readers that skip other events undecoded.
    pub const TEST_RESULT_RECORDED: &'static str = "TestResultRecorded";
    /// The stored name of `TestRunCompleted`, for readers that act on a run's end alone.
    pub const TEST_RUN_COMPLETED: &'static str = "TestRunCompleted";
}

impl TestRun {
    fn ensure_open(&self) -> Result<(), DomainError> {
        if self.id.is_none() {
            return Err(DomainError::NotFound("test run not found".into()));
        }
        if self.status.is_terminal() {
            return Err(DomainError::Conflict(format!(
                "the run is already {}",
                self.status.as_str().to_lowercase()
            )));
        }
        Ok(())
    }
}

impl Aggregate for TestRun {
    const STREAM_TYPE: &'static str = crate::names::stream_types::TEST_RUN;
    type Command = RunCommand;
    type Event = RunEvent;

    fn decide(&self, command: RunCommand) -> Result<Vec<RunEvent>, DomainError> {
        match command {
            RunCommand::RequestForCard { run_id, request } => self.decide(RunCommand::Request {
                run_id,
                plan: request.plan()?,
            }),
            RunCommand::Request { run_id, plan } => {
                if self.id.is_some() {
                    return Err(DomainError::Conflict("the run already exists".into()));
                }
                plan.check()?;
                let total = plan.total();
                Ok(vec![RunEvent::TestRunRequested { run_id, plan, total }])
            }
            RunCommand::Start => {
                self.ensure_open()?;
                Ok(match self.status {
                    RunStatus::Queued => vec![RunEvent::TestRunStarted {}],
                    _ => vec![],
                })
            }
            RunCommand::Record { results } => {
                self.ensure_open()?;
                let plan = self.plan.as_ref().expect("an open run has a plan");
                let mut seen = BTreeSet::new();
                let mut events = Vec::new();
                for result in results {
                    let known = plan.keys().any(|k| k == result.key);
                    if !known {
                        return Err(DomainError::Invalid(vec![crate::FieldError::new(
                            "results",
                            format!("{:?} is not a slot of this run", result.key),
                        )]));
                    }
                    if self.recorded.contains(&result.key) || !seen.insert(result.key.clone()) {
                        continue;
                    }
                    events.push(RunEvent::TestResultRecorded {
                        card_id: plan.card_id,
                        card_version: plan.card_version,
                        result,
                    });
                }
                if self.status == RunStatus::Queued && !events.is_empty() {
                    events.insert(0, RunEvent::TestRunStarted {});
                }
                Ok(events)
            }
            RunCommand::Complete => {
                self.ensure_open()?;
                if self.completed() < self.total() {
                    return Err(DomainError::Conflict(format!(
                        "{} of {} results are recorded",
                        self.completed(),
                        self.total()
                    )));
                }
                Ok(vec![RunEvent::TestRunCompleted {
                    passed: self.passed,
                    failed: self.failed,
                }])
            }
            RunCommand::Fail { reason } => {
                self.ensure_open()?;
                Ok(vec![RunEvent::TestRunFailed { reason }])
            }
            RunCommand::Cancel => {
                self.ensure_open()?;
                Ok(vec![RunEvent::TestRunCancelled {}])
            }
            RunCommand::Regrade { assertions, results } => {
                if self.id.is_none() {
                    return Err(DomainError::NotFound("test run not found".into()));
                }
                let mut problems = Problems::default();
                if assertions.is_empty() {
                    problems.add("assertions", "give at least one assertion");
                }
                problems.extend(check_assertions(&assertions));
                if results.is_empty() {
                    problems.add("results", "the run has no recorded results to grade again");
                }
                let mut seen = BTreeSet::new();
                for (i, result) in results.iter().enumerate() {
                    if !self.recorded.contains(&result.key) {
                        problems.add(
                            format!("results[{i}]"),
                            format!("{:?} has no recorded result", result.key),
                        );
                    } else if !seen.insert(&result.key) {
                        problems.add(format!("results[{i}]"), "is listed twice");
                    }
                }
                problems.into_result()?;
                Ok(vec![RunEvent::TestRunRegraded { assertions, results }])
            }
        }
    }

    fn evolve(mut self, event: &RunEvent) -> Self {
        match event {
            RunEvent::TestRunRequested { run_id, plan, .. } => {
                self.id = Some(*run_id);
                self.plan = Some(plan.clone());
            }
            RunEvent::TestRunStarted {} => self.status = RunStatus::Running,
            RunEvent::TestResultRecorded { result, .. } => {
                if self.recorded.insert(result.key.clone()) {
                    self.cost_micro_usd = self
                        .cost_micro_usd
                        .saturating_add(result.cost_micro_usd.max(0).unsigned_abs());
                    if result.passed {
                        self.passed += 1;
                    } else {
                        self.failed += 1;
                    }
                }
            }
            RunEvent::TestRunCompleted { .. } => self.status = RunStatus::Completed,
            RunEvent::TestRunFailed { reason } => {
                self.status = RunStatus::Failed;
                self.failure = Some(reason.clone());
            }
            RunEvent::TestRunCancelled {} => self.status = RunStatus::Cancelled,
            // A re-grade is an analysis kept in the run's history; the run's own verdicts,
            // counts and status are those recorded when it ran.
            RunEvent::TestRunRegraded { .. } => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::given_when;

    fn plan(cases: usize, providers: &[&str], repeat: u32) -> RunPlan {
        RunPlan {
            workspace_id: Uuid::new_v4(),
            card_id: Uuid::new_v4(),
            card_version: 1,
            template: "Hi {{ name }}".into(),
            messages: vec![],
            config: Map::new(),
            variables: vec![],
            cases: (0..cases)
                .map(|i| RunCase {
                    case_id: Uuid::from_u128(i as u128 + 1),
                    name: format!("case {i}"),
                    vars: Map::new(),
                    expected_output: None,
                    assertions: vec![],
                })
                .collect(),
            providers: providers
                .iter()
                .map(|id| ProviderSpec {
                    id: (*id).into(),
                    config: Value::Null,
                })
                .collect(),
            repeat,
            comparison_id: None,
        }
    }

    fn result(key: ResultKey, passed: bool) -> TestResult {
        TestResult {
            key,
            rendered_prompt: "Hi".into(),
            output: Some("Hi".into()),
            error: None,
            latency_ms: 1,
            prompt_tokens: 1,
            completion_tokens: 1,
            cost_micro_usd: 0,
            passed,
            score: if passed { 1.0 } else { 0.0 },
            assertions: vec![],
            grading: Default::default(),
        }
    }

    fn requested(plan: RunPlan) -> RunEvent {
        let total = plan.total();
        RunEvent::TestRunRequested {
            run_id: Uuid::new_v4(),
            plan,
            total,
        }
    }

    #[test]
    fn a_request_snapshots_the_plan_and_counts_every_slot() {
        let events = given_when::<TestRun>(
            &[],
            RunCommand::Request {
                run_id: Uuid::new_v4(),
                plan: plan(3, &["echo", "openai:gpt-4o-mini"], 2),
            },
        )
        .unwrap();
        let run = TestRun::fold(&events);
        assert_eq!(run.total(), 12);
        assert_eq!(run.pending().len(), 12);
        assert_eq!(run.status, RunStatus::Queued);
    }

    #[test]
    fn unknown_providers_and_bad_repeat_are_named() {
        let mut bad = plan(1, &["gpt4", "echo", "echo"], 0);
        bad.cases.clear();
        let err = given_when::<TestRun>(
            &[],
            RunCommand::Request {
                run_id: Uuid::new_v4(),
                plan: bad,
            },
        )
        .unwrap_err();
        let DomainError::Invalid(fields) = err else {
            panic!("expected invalid")
        };
        let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, vec!["providers[0]", "providers[2]", "repeat", "test_case_ids"]);
    }

    #[test]
    fn a_result_is_recorded_once_however_often_it_is_sent() {
        let p = plan(1, &["echo"], 2);
        let key = p.keys().next().unwrap();
        let recorded = RunEvent::TestResultRecorded {
            card_id: p.card_id,
            card_version: 1,
            result: result(key.clone(), true),
        };
        let given = [requested(p), RunEvent::TestRunStarted {}, recorded];
        let events = given_when::<TestRun>(
            &given,
            RunCommand::Record {
                results: vec![result(key.clone(), true), result(key, false)],
            },
        )
        .unwrap();
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn the_first_result_starts_a_queued_run_and_completion_needs_every_result() {
        let p = plan(1, &["echo"], 1);
        let key = p.keys().next().unwrap();
        let given = [requested(p)];
        let events = given_when::<TestRun>(
            &given,
            RunCommand::Record {
                results: vec![result(key, false)],
            },
        )
        .unwrap();
        assert!(matches!(events[0], RunEvent::TestRunStarted {}));
        let run = TestRun::fold(given.iter().chain(&events));
        assert_eq!((run.completed(), run.passed, run.failed), (1, 0, 1));
        assert_eq!(
            run.decide(RunCommand::Complete).unwrap(),
            vec![RunEvent::TestRunCompleted { passed: 0, failed: 1 }]
        );
        let unfinished = TestRun::fold(&given);
        assert!(matches!(
            unfinished.decide(RunCommand::Complete),
            Err(DomainError::Conflict(_))
        ));
    }

    #[test]
    fn a_cancelled_run_takes_no_more_results() {
        let p = plan(1, &["echo"], 1);
        let key = p.keys().next().unwrap();
        let given = [requested(p), RunEvent::TestRunCancelled {}];
        let err = given_when::<TestRun>(
            &given,
            RunCommand::Record {
                results: vec![result(key, true)],
            },
        )
        .unwrap_err();
        assert!(matches!(err, DomainError::Conflict(_)));
        assert!(matches!(
            given_when::<TestRun>(&given, RunCommand::Cancel),
            Err(DomainError::Conflict(_))
        ));
    }

    #[test]
    fn a_regrade_covers_recorded_results_only_and_leaves_the_original_verdicts() {
        let p = plan(2, &["echo"], 1);
        let keys: Vec<ResultKey> = p.keys().collect();
        let recorded = RunEvent::TestResultRecorded {
            card_id: p.card_id,
            card_version: 1,
            result: result(keys[0].clone(), true),
        };
        let given = [requested(p), recorded];
        let contains: Assertion =
            serde_json::from_value(serde_json::json!({"type": "contains", "value": "x"})).unwrap();
        let regraded = |key: &ResultKey| RegradedResult {
            key: key.clone(),
            passed: false,
            score: 0.0,
            verdicts: vec![],
            grading: Default::default(),
        };
        let events = given_when::<TestRun>(
            &given,
            RunCommand::Regrade {
                assertions: vec![contains.clone()],
                results: vec![regraded(&keys[0])],
            },
        )
        .unwrap();
        assert!(matches!(&events[..], [RunEvent::TestRunRegraded { results, .. }] if results.len() == 1));
        let run = TestRun::fold(given.iter().chain(&events));
        assert_eq!((run.passed, run.failed), (1, 0));

        let err = given_when::<TestRun>(
            &given,
            RunCommand::Regrade {
                assertions: vec![],
                results: vec![regraded(&keys[1]), regraded(&keys[0]), regraded(&keys[0])],
            },
        )
        .unwrap_err();
        let DomainError::Invalid(fields) = err else {
            panic!("expected invalid")
        };
        let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, vec!["assertions", "results[0]", "results[2]"]);
    }

    #[test]
    fn a_result_for_a_slot_outside_the_plan_is_refused() {
        let p = plan(1, &["echo"], 1);
        let stray = ResultKey {
            case_id: Uuid::new_v4(),
            provider: "echo".into(),
            repetition: 0,
        };
        let err = given_when::<TestRun>(
            &[requested(p)],
            RunCommand::Record {
                results: vec![result(stray, true)],
            },
        )
        .unwrap_err();
        assert!(matches!(err, DomainError::Invalid(_)));
    }

    /// A card with one test case, and that case.
    fn card_with_a_case() -> (PromptCard, TestCase) {
        use crate::card::{CardContent, CardEvent};
        use crate::test_case::{TestCaseContent, TestCaseEvent};
        let (card_id, workspace_id, case_id) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let card = PromptCard::fold(&[
            CardEvent::PromptCardCreated {
                card_id,
                workspace_id,
                name: "greeter".into(),
                content: CardContent {
                    title: "Greeter".into(),
                    template: "Hi".into(),
                    ..Default::default()
                },
            },
            CardEvent::TestCaseAttached { case_id },
        ]);
        let case = TestCase::fold(&[TestCaseEvent::TestCaseCreated {
            case_id,
            card_id,
            workspace_id,
            content: TestCaseContent {
                name: "greets".into(),
                vars: Map::new(),
                expected_output: None,
                assertions: vec![],
            },
        }]);
        (card, case)
    }

    fn request_for(card: PromptCard, case_ids: Vec<Uuid>, cases: Vec<TestCase>) -> RunCommand {
        RunCommand::RequestForCard {
            run_id: Uuid::new_v4(),
            request: CardRunRequest {
                card,
                card_version: None,
                case_ids,
                cases,
                providers: vec![ProviderSpec {
                    id: "echo".into(),
                    config: Value::Null,
                }],
                repeat: 1,
                comparison_id: None,
            },
        }
    }

    #[test]
    fn a_request_for_a_card_snapshots_its_current_version_and_cases() {
        let (card, case) = card_with_a_case();
        let case_ids = cases_to_run(&card, None);
        let events = given_when::<TestRun>(&[], request_for(card.clone(), case_ids, vec![case.clone()])).unwrap();
        let plan = TestRun::fold(&events).plan.unwrap();
        assert_eq!((plan.card_id, plan.card_version), (card.id.unwrap(), 1));
        assert_eq!(plan.cases.len(), 1);
        assert_eq!(Some(plan.cases[0].case_id), case.id);
    }

    #[test]
    fn an_archived_card_cannot_run() {
        let (card, case) = card_with_a_case();
        let archived = card.evolve(&crate::card::CardEvent::PromptCardArchived {});
        let case_ids = cases_to_run(&archived, None);
        let err = given_when::<TestRun>(&[], request_for(archived, case_ids, vec![case])).unwrap_err();
        assert_eq!(err, DomainError::Conflict("the prompt card is archived".into()));
    }

    #[test]
    fn a_case_of_another_card_cannot_run() {
        let (card, case) = card_with_a_case();
        let (_, stranger) = card_with_a_case();
        let case_ids = cases_to_run(&card, Some(vec![case.id.unwrap(), stranger.id.unwrap()]));
        let err = given_when::<TestRun>(&[], request_for(card, case_ids, vec![case, stranger])).unwrap_err();
        let DomainError::Invalid(fields) = err else {
            panic!("expected invalid")
        };
        assert_eq!(
            fields,
            vec![crate::FieldError::new(
                "test_case_ids[1]",
                "is not a test case of this card"
            )]
        );
    }

    #[test]
    fn a_version_the_card_never_had_cannot_run() {
        let (card, case) = card_with_a_case();
        let case_ids = cases_to_run(&card, None);
        let RunCommand::RequestForCard { run_id, mut request } = request_for(card, case_ids, vec![case]) else {
            unreachable!()
        };
        request.card_version = Some(2);
        let err = given_when::<TestRun>(&[], RunCommand::RequestForCard { run_id, request }).unwrap_err();
        let DomainError::Invalid(fields) = err else {
            panic!("expected invalid")
        };
        assert_eq!(fields[0].field, "card_version");
    }

    #[test]
    fn results_recorded_before_graders_decode_with_no_grading_usage() {
        let old = serde_json::json!({
            "type": "TestResultRecorded",
            "data": {
                "card_id": Uuid::nil(), "card_version": 1,
                "case_id": Uuid::nil(), "provider": "echo", "repetition": 0,
                "rendered_prompt": "Hi", "output": "Hi", "error": null, "latency_ms": 1,
                "prompt_tokens": 1, "completion_tokens": 1, "cost_micro_usd": 0,
                "passed": true, "score": 1.0, "assertions": []
            }
        });
        let RunEvent::TestResultRecorded { result, .. } = serde_json::from_value(old).unwrap() else {
            panic!("a recorded result");
        };
        assert_eq!(result.grading, GradingUsage::default());
        let mut graded = result.clone();
        graded.grading.grading_prompt_tokens = 7;
        let json = serde_json::to_value(&graded).unwrap();
        assert_eq!(json["grading_prompt_tokens"], 7);
        assert_eq!(serde_json::from_value::<TestResult>(json).unwrap(), graded);
    }
}
