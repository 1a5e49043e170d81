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
pub mod model_graded;
mod schema;

pub use engine::{combine, evaluate, grade, outcome, Outcome};
pub use kind::{AssertionType, Kind, UnknownType};

pub const MAX_ASSERTIONS: usize = 100;

/// One assertion as promptfoo writes it: `{type, value?, threshold?, weight?, provider?,
/// rubricPrompt?}`. `value` may contain `{{ var }}` placeholders, rendered with the test case's
/// vars at run time. `provider` and `rubricPrompt` only mean something to model-graded types.
///
/// `kind` stays the string the client sent, so an unknown type survives deserialising and is
/// reported by [`check_assertions`] with the field it is in; [`Assertion::assertion_type`] parses it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Assertion {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// The grading model of a model-graded assertion: a provider id (`openai:chat:gpt-4.1-mini`,
    /// `openai:embedding:text-embedding-3-small` for `similar`) or `{id, config}`. When absent,
    /// the default grading provider grades.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Value>,
    /// Replaces the default grading prompt: a template (text, or chat messages as a JSON list of
    /// `{role, content}`), or for `g-eval` `{steps?, evaluate?}`.
    #[serde(default, rename = "rubricPrompt", skip_serializing_if = "Option::is_none")]
    pub rubric_prompt: Option<Value>,
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
        // llm-rubric's value is checked with its rubricPrompt in `check_assertions`.
        Kind::LlmRubric => (
            value.is_none_or(|v| is_non_empty_string(v) || v.is_object()),
            "must be the rubric: a non-empty string",
        ),
        Kind::ModelGradedClosedqa | Kind::Factuality | Kind::ModelGradedFactuality => {
            (value.is_some_and(is_non_empty_string), "must be a non-empty string")
        }
        Kind::Similar | Kind::GEval => (
            value.is_some_and(|v| {
                is_non_empty_string(v)
                    || v.as_array()
                        .is_some_and(|items| !items.is_empty() && items.iter().all(is_non_empty_string))
            }),
            "must be a non-empty string or a non-empty list of them",
        ),
    };
    (!valid).then_some(problem)
}

/// What is wrong with a model-graded assertion's `provider`, if anything: an id, or
/// `{id, config?}`. `similar` needs an embedding model, the others a chat model.
fn provider_problem(kind: Kind, provider: &Value) -> Option<String> {
    let id = match provider {
        Value::String(id) => id.as_str(),
        Value::Object(spec) => {
            if spec.keys().any(|k| k != "id" && k != "config") {
                return Some("must be a provider id or {id, config}".into());
            }
            if spec.get("config").is_some_and(|c| !c.is_object() && !c.is_null()) {
                return Some("config must be an object".into());
            }
            match spec.get("id").and_then(Value::as_str) {
                Some(id) => id,
                None => return Some("must have an id".into()),
            }
        }
        _ => return Some("must be a provider id or {id, config}".into()),
    };
    let model = |prefixes: &[&str]| {
        prefixes
            .iter()
            .any(|p| id.strip_prefix(p).is_some_and(|m| !m.trim().is_empty()))
    };
    let embedding = model(model_graded::EMBEDDING_PREFIXES);
    if kind == Kind::Similar {
        return (!embedding).then(|| format!("{id:?} is not an embedding model; use openai:embedding:<model>"));
    }
    let chat = !embedding && model(&["openai:", "anthropic:messages:", "ollama:chat:"]);
    (!chat).then(|| {
        format!("{id:?} is not a grading chat model; use openai:chat:<model>, anthropic:messages:<model> or ollama:chat:<model>")
    })
}

/// What is wrong with a `rubricPrompt`, if anything.
fn rubric_prompt_problem(kind: Kind, prompt: &Value) -> Option<&'static str> {
    let is_message =
        |m: &Value| m.get("role").is_some_and(Value::is_string) && m.get("content").is_some_and(Value::is_string);
    match prompt {
        _ if kind == Kind::Similar => Some("similar compares embeddings and takes no rubricPrompt"),
        Value::String(s) if s.starts_with("file://") => {
            Some("prompts from files (file://) are not supported; give the prompt inline")
        }
        Value::String(s) if !s.trim().is_empty() => None,
        Value::Array(messages) if !messages.is_empty() && messages.iter().all(is_message) => None,
        Value::Object(parts) if kind == Kind::GEval => {
            let known = parts.keys().all(|k| k == "steps" || k == "evaluate");
            (!known || !parts.values().all(|v| v.as_str().is_some_and(|s| !s.trim().is_empty())))
                .then_some("must be {steps?, evaluate?}, each a non-empty template")
        }
        _ => Some("must be a template, or a list of {role, content} messages"),
    }
}

/// Whether the type compares against `threshold` and means nothing without one.
fn requires_threshold(kind: Kind) -> bool {
    match kind {
        Kind::Latency | Kind::Cost => true,
        Kind::LlmRubric
        | Kind::ModelGradedClosedqa
        | Kind::Factuality
        | Kind::ModelGradedFactuality
        | Kind::Similar
        | Kind::GEval => false,
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
/// run with, missing or negative thresholds and weights, grading options where they mean nothing.
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
        let Ok(AssertionType { kind, negated }) = assertion.assertion_type() else {
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
        if kind == Kind::LlmRubric && assertion.value.is_none() && assertion.rubric_prompt.is_none() {
            problems.add(
                format!("{field}.value"),
                "is required (the rubric) unless rubricPrompt is given",
            );
        }
        // promptfoo ignores `not-` on these (the grader's verdict stands as is); refusing it
        // says so rather than grading something the author did not mean.
        if negated
            && matches!(
                kind,
                Kind::ModelGradedClosedqa | Kind::Factuality | Kind::ModelGradedFactuality
            )
        {
            problems.add(
                format!("{field}.type"),
                format!("{kind} cannot be negated (promptfoo ignores not- on it); write the criterion negated instead"),
            );
        }
        match (&assertion.provider, kind.is_model_graded()) {
            (None, _) => {}
            (Some(_), false) => problems.add(
                format!("{field}.provider"),
                "only model-graded assertions take a provider",
            ),
            (Some(provider), true) => {
                if let Some(message) = provider_problem(kind, provider) {
                    problems.add(format!("{field}.provider"), message);
                }
            }
        }
        match (&assertion.rubric_prompt, kind.is_model_graded()) {
            (None, _) => {}
            (Some(_), false) => problems.add(
                format!("{field}.rubricPrompt"),
                "only model-graded assertions take a rubricPrompt",
            ),
            (Some(prompt), true) => {
                if let Some(message) = rubric_prompt_problem(kind, prompt) {
                    problems.add(format!("{field}.rubricPrompt"), message);
                }
            }
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
            ..Default::default()
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
            let negatable = !matches!(base, "model-graded-closedqa" | "factuality" | "model-graded-factuality");
            let kinds = if negatable {
                vec![base.to_string(), format!("not-{base}")]
            } else {
                vec![base.to_string()]
            };
            for kind in kinds {
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
            assertion("javascript", Some(json!("output")), None),
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

    #[test]
    fn grading_options_are_checked_where_they_mean_something() {
        let with = |kind: &str, value: Value, provider: Option<Value>, rubric_prompt: Option<Value>| Assertion {
            kind: kind.into(),
            value: Some(value),
            provider,
            rubric_prompt,
            ..Default::default()
        };
        let ok = [
            with(
                "llm-rubric",
                json!("is polite"),
                Some(json!("openai:chat:gpt-4.1-mini")),
                None,
            ),
            with(
                "not-llm-rubric",
                json!("is rude"),
                Some(json!({"id": "openai:gpt-4.1-mini", "config": {"temperature": 0}})),
                Some(json!([{"role": "system", "content": "Grade {{ output }}"}])),
            ),
            with(
                "similar",
                json!(["Paris", "It is Paris"]),
                Some(json!("openai:embedding:text-embedding-3-small")),
                None,
            ),
            with(
                "g-eval",
                json!("coherent"),
                None,
                Some(json!({"steps": "List steps for {{criteria}}"})),
            ),
            with(
                "factuality",
                json!("Paris is in France"),
                None,
                Some(json!("Judge {{completion}}")),
            ),
            Assertion {
                kind: "llm-rubric".into(),
                rubric_prompt: Some(json!("Is {{ output }} polite? Answer JSON")),
                ..Default::default()
            },
        ];
        assert_eq!(problems_of(&ok), Vec::<String>::new());
        let bad = [
            with("contains", json!("x"), Some(json!("openai:chat:m")), None),
            with("similar", json!("x"), Some(json!("openai:chat:gpt-4.1-mini")), None),
            with(
                "llm-rubric",
                json!("x"),
                Some(json!("openai:embedding:text-embedding-3-small")),
                None,
            ),
            with("similar", json!([]), None, None),
            with("not-factuality", json!("x"), None, None),
            with("g-eval", json!("x"), None, Some(json!("file://steps.txt"))),
            with("equals", json!("x"), None, Some(json!("x"))),
            Assertion {
                kind: "llm-rubric".into(),
                ..Default::default()
            },
        ];
        assert_eq!(
            problems_of(&bad),
            vec![
                "assertions[0].provider",
                "assertions[1].provider",
                "assertions[2].provider",
                "assertions[3].value",
                "assertions[4].type",
                "assertions[5].rubricPrompt",
                "assertions[6].rubricPrompt",
                "assertions[7].value",
            ]
        );
    }
}
