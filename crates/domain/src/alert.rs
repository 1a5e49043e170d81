//! Alert rules of a workspace: a figure (a card's pass rate over its last runs, the day's cost,
//! a provider's p95 latency) and the bound it must keep. The figure is measured outside (from
//! the read models or the analytics store) and handed to `Evaluate`; the rule decides whether
//! that fires an alert or resolves the one firing. A rule fires once and then stays quiet until
//! it resolves, however often it is evaluated in between: no alert storms.

use crate::error::Problems;
use crate::{Aggregate, DomainError, Event};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const DEFAULT_WINDOW_RUNS: u32 = 10;
pub const MAX_WINDOW_RUNS: u32 = 1_000;
/// The largest daily budget a rule takes, in USD.
pub const MAX_DAILY_BUDGET_USD: f64 = 1_000_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The share of passing results over a card's (or a label's) last `window_runs` completed
    /// runs is below `threshold` (0 to 1).
    PassRateBelow,
    /// The cost of the results recorded today (UTC) is above `threshold` USD.
    DailyCostAbove,
    /// The 95th percentile latency of a provider's results over the last `window_runs` runs
    /// that used it is above `threshold` milliseconds.
    LatencyP95Above,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::PassRateBelow => "pass_rate_below",
            AlertKind::DailyCostAbove => "daily_cost_above",
            AlertKind::LatencyP95Above => "latency_p95_above",
        }
    }
}

/// What a rule watches and its bound, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub kind: AlertKind,
    pub card_id: Option<Uuid>,
    pub label: Option<String>,
    pub provider: Option<String>,
    /// As the client gave it: a pass rate (0 to 1), USD, or milliseconds.
    pub threshold: f64,
    /// For `daily_cost_above`, the threshold in micro-USD: money is compared in integers.
    pub threshold_micro_usd: Option<i64>,
    /// For the kinds measured over runs; `None` for the daily cost.
    pub window_runs: Option<u32>,
}

impl RuleSpec {
    /// Checks the fields each kind needs and fills in its defaults.
    fn validated(mut self) -> Result<Self, DomainError> {
        let mut problems = Problems::default();
        self.label = self.label.map(|l| l.trim().to_owned()).filter(|l| !l.is_empty());
        self.provider = self.provider.map(|p| p.trim().to_owned()).filter(|p| !p.is_empty());
        if !self.threshold.is_finite() {
            problems.add("threshold", "must be a number");
        }
        let over_runs = |window: Option<u32>, problems: &mut Problems| {
            let window = window.unwrap_or(DEFAULT_WINDOW_RUNS);
            if window == 0 || window > MAX_WINDOW_RUNS {
                problems.add("window_runs", format!("must be 1 to {MAX_WINDOW_RUNS}"));
            }
            Some(window)
        };
        match self.kind {
            AlertKind::PassRateBelow => {
                if !(0.0..=1.0).contains(&self.threshold) {
                    problems.add("threshold", "a pass rate is 0 to 1");
                }
                if self.card_id.is_none() && self.label.is_none() {
                    problems.add("card_id", "name the card, the label, or both, whose pass rate to watch");
                }
                self.window_runs = over_runs(self.window_runs, &mut problems);
            }
            AlertKind::DailyCostAbove => {
                if !(self.threshold > 0.0 && self.threshold <= MAX_DAILY_BUDGET_USD) {
                    problems.add(
                        "threshold",
                        format!("a daily budget is more than 0 and at most {MAX_DAILY_BUDGET_USD} USD"),
                    );
                }
                if self.label.is_some() {
                    problems.add(
                        "label",
                        "a daily cost is counted per workspace, card or provider, not per label",
                    );
                }
                if self.window_runs.is_some() {
                    problems.add("window_runs", "a daily cost is counted over the day, not over runs");
                }
                self.threshold_micro_usd = Some((self.threshold * 1_000_000.0).round() as i64);
            }
            AlertKind::LatencyP95Above => {
                if self.threshold <= 0.0 {
                    problems.add("threshold", "a latency bound is more than 0 milliseconds");
                }
                if self.provider.is_none() {
                    problems.add("provider", "name the provider whose latency to watch");
                }
                if self.label.is_some() {
                    problems.add("label", "latency is watched per provider (and card), not per label");
                }
                self.window_runs = over_runs(self.window_runs, &mut problems);
            }
        }
        if self.kind != AlertKind::DailyCostAbove {
            self.threshold_micro_usd = None;
        }
        problems.into_result().map(|()| self)
    }

    /// Whether `figure` is on the wrong side of the bound.
    fn breached(&self, figure: &Figure) -> bool {
        match (self.kind, self.threshold_micro_usd, figure.cost_micro_usd) {
            (AlertKind::DailyCostAbove, Some(bound), Some(cost)) => cost > bound,
            (AlertKind::PassRateBelow, ..) => figure.value < self.threshold,
            (AlertKind::LatencyP95Above, ..) => figure.value > self.threshold,
            (AlertKind::DailyCostAbove, ..) => false,
        }
    }

    /// One sentence saying what the figure is against the bound.
    fn describe(&self, figure: &Figure) -> String {
        let runs = match figure.runs {
            1 => "the last run".to_owned(),
            n => format!("the last {n} runs"),
        };
        let subject = match (&self.card_id, &self.label) {
            (_, Some(label)) => format!("label {label:?}"),
            (Some(_), None) => "the card".to_owned(),
            (None, None) => "the workspace".to_owned(),
        };
        match self.kind {
            AlertKind::PassRateBelow => format!(
                "The pass rate of {subject} over {runs} is {:.1}% ({} of {} results); the rule wants at least {:.1}%.",
                figure.value * 100.0,
                figure.passed.unwrap_or(0),
                figure.results,
                self.threshold * 100.0
            ),
            AlertKind::DailyCostAbove => format!(
                "Today's cost is {:.6} USD over {} results; the budget is {:.6} USD.",
                figure.cost_micro_usd.unwrap_or(0) as f64 / 1_000_000.0,
                figure.results,
                self.threshold_micro_usd.unwrap_or(0) as f64 / 1_000_000.0
            ),
            AlertKind::LatencyP95Above => format!(
                "The p95 latency of {} over {runs} is {:.0} ms ({} results); the bound is {:.0} ms.",
                self.provider.as_deref().unwrap_or("the provider"),
                figure.value,
                figure.results,
                self.threshold
            ),
        }
    }
}

/// A measurement of a rule's figure and what it was measured over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// The pass rate (0 to 1), the cost in USD (for reading; compared as `cost_micro_usd`) or
    /// the p95 latency in milliseconds.
    pub value: f64,
    pub cost_micro_usd: Option<i64>,
    /// Runs measured over (0 for the daily cost).
    pub runs: u32,
    /// Results measured over.
    pub results: u64,
    /// Passing results, for the pass rate.
    pub passed: Option<u64>,
    /// Where the figure came from: `read_models` (when a run finished) or `analytics` (the
    /// scheduled evaluation).
    pub source: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertRule {
    pub id: Option<Uuid>,
    pub workspace_id: Option<Uuid>,
    pub spec: Option<RuleSpec>,
    pub deleted: bool,
    /// The alert firing now, if one is.
    pub firing: Option<Uuid>,
    pub last_figure: Option<Figure>,
}

impl AlertRule {
    pub fn is_live(&self) -> bool {
        self.id.is_some() && !self.deleted
    }
}

#[derive(Debug, Clone)]
pub enum AlertRuleCommand {
    Create {
        rule_id: Uuid,
        workspace_id: Uuid,
        spec: RuleSpec,
    },
    Delete,
    /// Judges a measurement. `alert_id` names the alert if this fires one; `None` means there
    /// was nothing to measure (no run yet), which changes nothing.
    Evaluate {
        alert_id: Uuid,
        figure: Option<Figure>,
        /// The run whose end caused this evaluation, if a run did.
        run_id: Option<Uuid>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum AlertRuleEvent {
    AlertRuleCreated {
        rule_id: Uuid,
        workspace_id: Uuid,
        #[serde(flatten)]
        spec: RuleSpec,
    },
    AlertRuleDeleted {},
    /// Carries the rule's bound and the figure that crossed it.
    AlertFired {
        alert_id: Uuid,
        rule_id: Uuid,
        #[serde(flatten)]
        spec: RuleSpec,
        figure: Figure,
        run_id: Option<Uuid>,
        message: String,
    },
    /// `figure` is the measurement back within bounds; `None` when the rule was deleted.
    AlertResolved {
        alert_id: Uuid,
        rule_id: Uuid,
        #[serde(flatten)]
        spec: RuleSpec,
        figure: Option<Figure>,
        run_id: Option<Uuid>,
        message: String,
    },
}

impl Event for AlertRuleEvent {
    fn event_type(&self) -> &'static str {
        match self {
            AlertRuleEvent::AlertRuleCreated { .. } => "AlertRuleCreated",
            AlertRuleEvent::AlertRuleDeleted { .. } => "AlertRuleDeleted",
            AlertRuleEvent::AlertFired { .. } => Self::ALERT_FIRED,
            AlertRuleEvent::AlertResolved { .. } => Self::ALERT_RESOLVED,
        }
    }
}

impl AlertRuleEvent {
    pub const ALERT_FIRED: &'static str = "AlertFired";
    pub const ALERT_RESOLVED: &'static str = "AlertResolved";
}

impl Aggregate for AlertRule {
    const STREAM_TYPE: &'static str = crate::names::stream_types::ALERT_RULE;
    type Command = AlertRuleCommand;
    type Event = AlertRuleEvent;

    fn decide(&self, command: AlertRuleCommand) -> Result<Vec<AlertRuleEvent>, DomainError> {
        match command {
            AlertRuleCommand::Create {
                rule_id,
                workspace_id,
                spec,
            } => {
                if self.id.is_some() {
                    return Err(DomainError::Conflict("the alert rule already exists".into()));
                }
                Ok(vec![AlertRuleEvent::AlertRuleCreated {
                    rule_id,
                    workspace_id,
                    spec: spec.validated()?,
                }])
            }
            AlertRuleCommand::Delete => {
                let (rule_id, spec) = self.live()?;
                let mut events = Vec::new();
                if let Some(alert_id) = self.firing {
                    events.push(AlertRuleEvent::AlertResolved {
                        alert_id,
                        rule_id,
                        spec: spec.clone(),
                        figure: None,
                        run_id: None,
                        message: "The rule was deleted.".into(),
                    });
                }
                events.push(AlertRuleEvent::AlertRuleDeleted {});
                Ok(events)
            }
            AlertRuleCommand::Evaluate {
                alert_id,
                figure,
                run_id,
            } => {
                let (rule_id, spec) = self.live()?;
                let Some(figure) = figure else { return Ok(vec![]) };
                let message = spec.describe(&figure);
                let spec = spec.clone();
                Ok(match (spec.breached(&figure), self.firing) {
                    (true, None) => vec![AlertRuleEvent::AlertFired {
                        alert_id,
                        rule_id,
                        spec,
                        figure,
                        run_id,
                        message,
                    }],
                    (false, Some(alert_id)) => vec![AlertRuleEvent::AlertResolved {
                        alert_id,
                        rule_id,
                        spec,
                        figure: Some(figure),
                        run_id,
                        message,
                    }],
                    // Still firing, or still fine: nothing to say.
                    _ => vec![],
                })
            }
        }
    }

    fn evolve(mut self, event: &AlertRuleEvent) -> Self {
        match event {
            AlertRuleEvent::AlertRuleCreated {
                rule_id,
                workspace_id,
                spec,
            } => {
                self.id = Some(*rule_id);
                self.workspace_id = Some(*workspace_id);
                self.spec = Some(spec.clone());
            }
            AlertRuleEvent::AlertRuleDeleted {} => self.deleted = true,
            AlertRuleEvent::AlertFired { alert_id, figure, .. } => {
                self.firing = Some(*alert_id);
                self.last_figure = Some(figure.clone());
            }
            AlertRuleEvent::AlertResolved { figure, .. } => {
                self.firing = None;
                if figure.is_some() {
                    self.last_figure = figure.clone();
                }
            }
        }
        self
    }
}

impl AlertRule {
    fn live(&self) -> Result<(Uuid, &RuleSpec), DomainError> {
        match (self.id, &self.spec) {
            (Some(id), Some(spec)) if !self.deleted => Ok((id, spec)),
            _ => Err(DomainError::NotFound("alert rule not found".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::given_when;

    fn spec(kind: AlertKind, threshold: f64) -> RuleSpec {
        RuleSpec {
            kind,
            card_id: Some(Uuid::from_u128(7)),
            label: None,
            provider: Some("echo".into()),
            threshold,
            threshold_micro_usd: None,
            window_runs: None,
        }
    }

    fn created(spec: RuleSpec) -> Vec<AlertRuleEvent> {
        given_when::<AlertRule>(
            &[],
            AlertRuleCommand::Create {
                rule_id: Uuid::from_u128(1),
                workspace_id: Uuid::from_u128(2),
                spec,
            },
        )
        .unwrap()
    }

    fn pass_rate(value: f64) -> Option<Figure> {
        Some(Figure {
            value,
            cost_micro_usd: None,
            runs: 5,
            results: 10,
            passed: Some((value * 10.0) as u64),
            source: "read_models".into(),
        })
    }

    fn evaluate(figure: Option<Figure>) -> AlertRuleCommand {
        AlertRuleCommand::Evaluate {
            alert_id: Uuid::now_v7(),
            figure,
            run_id: None,
        }
    }

    /// Evaluates each figure in turn and returns the names of the events they produced.
    fn run(mut history: Vec<AlertRuleEvent>, figures: Vec<Option<Figure>>) -> Vec<&'static str> {
        let mut names = Vec::new();
        for figure in figures {
            let events = given_when::<AlertRule>(&history, evaluate(figure)).unwrap();
            names.extend(events.iter().map(|e| e.event_type()));
            history.extend(events);
        }
        names
    }

    #[test]
    fn a_rule_fires_once_while_breached_and_resolves_once_when_back() {
        let history = created(spec(AlertKind::PassRateBelow, 0.8));
        let figures = vec![
            pass_rate(0.9),
            pass_rate(0.5),
            pass_rate(0.4),
            pass_rate(0.6),
            None,
            pass_rate(0.8),
            pass_rate(1.0),
            pass_rate(0.1),
        ];
        assert_eq!(run(history, figures), vec!["AlertFired", "AlertResolved", "AlertFired"]);
    }

    #[test]
    fn the_resolution_names_the_alert_it_ends_and_carries_both_figures() {
        let mut history = created(spec(AlertKind::PassRateBelow, 0.8));
        let fired = given_when::<AlertRule>(&history, evaluate(pass_rate(0.5))).unwrap();
        let AlertRuleEvent::AlertFired { alert_id, message, .. } = &fired[0] else {
            panic!("expected AlertFired, got {fired:?}")
        };
        assert_eq!(
            message,
            "The pass rate of the card over the last 5 runs is 50.0% (5 of 10 results); the rule wants at least 80.0%."
        );
        let alert_id = *alert_id;
        history.extend(fired);
        let resolved = given_when::<AlertRule>(&history, evaluate(pass_rate(0.9))).unwrap();
        assert!(
            matches!(&resolved[..], [AlertRuleEvent::AlertResolved { alert_id: a, figure: Some(f), .. }]
            if *a == alert_id && f.value == 0.9)
        );
    }

    #[test]
    fn money_is_compared_in_micro_usd() {
        let history = created(RuleSpec {
            card_id: None,
            provider: None,
            ..spec(AlertKind::DailyCostAbove, 0.1)
        });
        let AlertRuleEvent::AlertRuleCreated { spec, .. } = &history[0] else {
            unreachable!()
        };
        assert_eq!(spec.threshold_micro_usd, Some(100_000));
        let cost = |micro: i64| {
            Some(Figure {
                value: micro as f64 / 1e6,
                cost_micro_usd: Some(micro),
                runs: 0,
                results: 3,
                passed: None,
                source: "analytics".into(),
            })
        };
        assert_eq!(run(history.clone(), vec![cost(100_000)]), Vec::<&str>::new());
        assert_eq!(
            run(history, vec![cost(100_001), cost(0)]),
            vec!["AlertFired", "AlertResolved"]
        );
    }

    #[test]
    fn each_kind_checks_its_own_fields() {
        let cases = [
            (
                RuleSpec {
                    card_id: None,
                    window_runs: Some(0),
                    ..spec(AlertKind::PassRateBelow, 1.5)
                },
                vec!["threshold", "card_id", "window_runs"],
            ),
            (
                RuleSpec {
                    label: Some("prod".into()),
                    window_runs: Some(3),
                    ..spec(AlertKind::DailyCostAbove, 0.0)
                },
                vec!["threshold", "label", "window_runs"],
            ),
            (
                RuleSpec {
                    provider: Some("  ".into()),
                    ..spec(AlertKind::LatencyP95Above, -1.0)
                },
                vec!["threshold", "provider"],
            ),
        ];
        for (spec, expected) in cases {
            let command = AlertRuleCommand::Create {
                rule_id: Uuid::from_u128(1),
                workspace_id: Uuid::from_u128(2),
                spec,
            };
            let Err(DomainError::Invalid(fields)) = given_when::<AlertRule>(&[], command) else {
                panic!("expected invalid")
            };
            let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
            assert_eq!(names, expected);
        }
    }

    #[test]
    fn deleting_a_firing_rule_resolves_its_alert_first() {
        let mut history = created(spec(AlertKind::LatencyP95Above, 100.0));
        let latency = Some(Figure {
            value: 250.0,
            cost_micro_usd: None,
            runs: 2,
            results: 4,
            passed: None,
            source: "read_models".into(),
        });
        history.extend(given_when::<AlertRule>(&history, evaluate(latency)).unwrap());
        let events = given_when::<AlertRule>(&history, AlertRuleCommand::Delete).unwrap();
        let names: Vec<_> = events.iter().map(|e| e.event_type()).collect();
        assert_eq!(names, vec!["AlertResolved", "AlertRuleDeleted"]);
        history.extend(events);
        assert!(matches!(
            given_when::<AlertRule>(&history, evaluate(None)),
            Err(DomainError::NotFound(_))
        ));
    }
}
