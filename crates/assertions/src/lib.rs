//! Test-case assertions, named as promptfoo names them, and their evaluation with promptfoo's
//! semantics ([`evaluate`], [`grade`]), so a config graded here and by promptfoo's CLI gets the
//! same verdicts (`tests/promptfoo` runs both). Pure functions, no I/O.
//!
//! An assertion type is a [`Kind`] (in `kind.rs`); [`check_assertions`] refuses what promptfoo
//! would refuse to run, and `engine.rs` evaluates. The JavaScript behaviour promptfoo inherits
//! from Node (number printing, `JSON.parse`, regular expressions, Ajv's JSON Schema) is
//! reproduced in `js.rs`, `js_regex.rs` and `schema.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod engine;
mod js;
mod js_regex;
mod json;
mod kind;
mod schema;

pub use engine::{evaluate, grade};
pub use kind::{AssertionType, Kind, UnknownType};

pub const MAX_ASSERTIONS: usize = 100;

/// One assertion as promptfoo writes it: `{type, value?, threshold?, weight?}`. `value` may
/// contain `{{ var }}` placeholders, rendered with the test case's vars at run time.
///
/// `kind` stays the string the client sent, so an unknown type survives deserialising and is
/// reported by [`check_assertions`] with the field it is in; [`Assertion::assertion_type`] parses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assertion {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

impl Assertion {
    /// The type's kind and whether `not-` negates it.
    pub fn assertion_type(&self) -> Result<AssertionType, UnknownType> {
        self.kind.parse()
    }
}

fn is_text(value: &Value) -> bool {
    value.is_string() || value.is_number()
}

fn is_non_empty_string(value: &Value) -> bool {
    value.as_str().is_some_and(|s| !s.is_empty())
}

fn is_text_list(value: &Value) -> bool {
    match value {
        // promptfoo also accepts a comma-separated string
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty() && items.iter().all(is_text),
        _ => false,
    }
}

fn is_word_count(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.as_u64().is_some(),
        Value::Object(bounds) => {
            let bound = |k: &str| bounds.get(k).map(|v| v.as_u64().is_some());
            let (min, max) = (bound("min"), bound("max"));
            bounds.keys().all(|k| k == "min" || k == "max")
                && (min.is_some() || max.is_some())
                && min.unwrap_or(true)
                && max.unwrap_or(true)
        }
        _ => false,
    }
}

/// What is wrong with an assertion's value, if anything. promptfoo refuses to run `contains`,
/// `starts-with` and the like with an empty value (or, for starts-with and regex, a number), so
/// they are refused here rather than at run time.
fn value_problem(kind: Kind, value: Option<&Value>) -> Option<&'static str> {
    let (valid, problem) = match kind {
        Kind::Equals => (value.is_some(), "is required"),
        Kind::Contains | Kind::Icontains => (
            value.is_some_and(|v| is_text(v) && v != ""),
            "must be a non-empty string or a number",
        ),
        Kind::StartsWith | Kind::Regex => (value.is_some_and(is_non_empty_string), "must be a non-empty string"),
        Kind::Levenshtein => (value.is_some_and(Value::is_string), "must be a string"),
        Kind::ContainsAny | Kind::ContainsAll | Kind::IcontainsAny | Kind::IcontainsAll => {
            (value.is_some_and(is_text_list), "must be a non-empty list of strings")
        }
        Kind::WordCount => (value.is_some_and(is_word_count), "must be a word count or {min, max}"),
        Kind::IsJson | Kind::ContainsJson => (
            value.is_none_or(Value::is_object),
            "must be a JSON schema object when given",
        ),
        Kind::Latency | Kind::Cost => return None,
    };
    (!valid).then_some(problem)
}

/// Whether the type compares against `threshold` and means nothing without one.
fn requires_threshold(kind: Kind) -> bool {
    match kind {
        Kind::Latency | Kind::Cost => true,
        Kind::Equals
        | Kind::Contains
        | Kind::Icontains
        | Kind::ContainsAny
        | Kind::ContainsAll
        | Kind::IcontainsAny
        | Kind::IcontainsAll
        | Kind::StartsWith
        | Kind::Regex
        | Kind::IsJson
        | Kind::ContainsJson
        | Kind::Levenshtein
        | Kind::WordCount => false,
    }
}

/// One invalid field of an assertion list, named the way the client sent it
/// (`assertions[2].value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Every problem of an assertion list at once: unknown types, values promptfoo would refuse to
/// run with, missing or negative thresholds and weights.
pub fn check_assertions(assertions: &[Assertion]) -> Vec<Problem> {
    let mut problems = Problems::default();
    if assertions.len() > MAX_ASSERTIONS {
        problems.add(
            "assertions",
            format!("at most {MAX_ASSERTIONS} assertions, got {}", assertions.len()),
        );
    }
    for (i, assertion) in assertions.iter().enumerate() {
        let field = format!("assertions[{i}]");
        let Ok(AssertionType { kind, .. }) = assertion.assertion_type() else {
            problems.add(
                format!("{field}.type"),
                format!(
                    "{:?} is not a supported assertion type; expected one of {} (each also with a not- prefix)",
                    assertion.kind,
                    Kind::names().join(", ")
                ),
            );
            continue;
        };
        if let Some(message) = value_problem(kind, assertion.value.as_ref()) {
            problems.add(format!("{field}.value"), message);
        }
        if requires_threshold(kind) && assertion.threshold.is_none() {
            problems.add(format!("{field}.threshold"), "is required");
        }
        if assertion.threshold.is_some_and(|t| !t.is_finite() || t < 0.0) {
            problems.add(format!("{field}.threshold"), "must be a non-negative number");
        }
        if assertion.weight.is_some_and(|w| !w.is_finite() || w < 0.0) {
            problems.add(format!("{field}.weight"), "must be a non-negative number");
        }
    }
    problems.0
}

/// What an assertion is checked against: one provider call's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation<'a> {
    /// The provider's output text ("" when the call failed).
    pub output: &'a str,
    /// The test case's vars; assertion values are templates rendered with them.
    pub vars: &'a serde_json::Map<String, Value>,
    pub latency_ms: u64,
    /// Cost of the call in micro-USD, when the provider reports usage.
    pub cost_micro_usd: Option<i64>,
}

/// One assertion's verdict, as promptfoo reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    #[serde(rename = "type")]
    pub kind: String,
    pub passed: bool,
    /// 0 to 1.
    pub score: f64,
    pub reason: String,
}

/// A test case's overall grade: promptfoo's weighted score and pass rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    pub passed: bool,
    pub score: f64,
    pub verdicts: Vec<Verdict>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn assertion(kind: &str, value: Option<Value>, threshold: Option<f64>) -> Assertion {
        Assertion {
            kind: kind.into(),
            value,
            threshold,
            weight: None,
        }
    }

    fn problems_of(assertions: &[Assertion]) -> Vec<String> {
        check_assertions(assertions).into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn every_promptfoo_type_and_its_negation_is_accepted() {
        for base in Kind::names() {
            let (value, threshold) = match base {
                "contains-any" | "contains-all" | "icontains-any" | "icontains-all" => (Some(json!(["a", "b"])), None),
                "word-count" => (Some(json!({"min": 1, "max": 5})), None),
                "is-json" | "contains-json" => (None, None),
                "latency" => (None, Some(1000.0)),
                "cost" => (None, Some(0.01)),
                _ => (Some(json!("x")), None),
            };
            for kind in [base.to_string(), format!("not-{base}")] {
                assert_eq!(
                    problems_of(&[assertion(&kind, value.clone(), threshold)]),
                    Vec::<String>::new(),
                    "{kind}"
                );
            }
        }
    }

    #[test]
    fn unknown_types_and_missing_values_are_named() {
        let problems = problems_of(&[
            assertion("llm-rubric", Some(json!("be nice")), None),
            assertion("contains", None, None),
            assertion("latency", None, None),
            assertion("word-count", Some(json!({"min": "1"})), None),
            assertion("not-contains-any", Some(json!([])), None),
            assertion("contains", Some(json!("")), None),
            assertion("starts-with", Some(json!(5)), None),
            assertion("icontains-all", Some(json!("")), None),
            assertion("contains", Some(json!(5)), None),
        ]);
        assert_eq!(
            problems,
            vec![
                "assertions[0].type",
                "assertions[1].value",
                "assertions[2].threshold",
                "assertions[3].value",
                "assertions[4].value",
                "assertions[5].value",
                "assertions[6].value",
                "assertions[7].value"
            ]
        );
    }
}
