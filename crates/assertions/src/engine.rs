//! Evaluating assertions against a provider call's outcome, with promptfoo's semantics
//! (promptfoo 0.121, `src/assertions/*.ts`): the same pass rules, scores and reasons.
//!
//! promptfoo distinguishes a failed assertion from one that cannot be run at all (an empty
//! `contains` value, a `cost` assertion on a provider that reports no cost): the latter throws
//! and turns the whole test into an error with score 0. [`grade`] reproduces that; [`evaluate`]
//! reports such an assertion as failed, with the error as its reason.

use crate::js;
use crate::js_regex::{JsRegex, RegexError};
use crate::json::{extract_objects, parse_yaml};
use crate::schema::Schema;
use crate::{Assertion, AssertionType, Grade, Kind, Observation, Verdict};
use serde_json::{Map, Value};
use std::sync::LazyLock;

/// Evaluates one assertion. An assertion promptfoo could not run fails with the error as reason.
pub fn evaluate(assertion: &Assertion, observation: &Observation<'_>) -> Verdict {
    run(assertion, observation).unwrap_or_else(|error| error)
}

/// One assertion's result before a test's grade combines it: `Err` when promptfoo could not
/// run the assertion at all (which fails the whole test with score 0).
pub type Outcome = Result<Verdict, Verdict>;

/// Grades a test case as promptfoo's `runAssertions` does (see [`combine`]). Model-graded
/// assertions need a grader, which this pure function cannot call: each fails, saying so. The
/// runner grades them through its graders and combines their verdicts with [`combine`].
pub fn grade(assertions: &[Assertion], observation: &Observation<'_>) -> Grade {
    let outcomes = assertions.iter().map(|a| outcome(a, observation)).collect();
    combine(assertions, outcomes)
}

/// Evaluates one assertion, telling a failed assertion (`Ok` with `passed: false`) from one that
/// could not be run (`Err`).
pub fn outcome(assertion: &Assertion, observation: &Observation<'_>) -> Outcome {
    run(assertion, observation)
}

/// Combines the outcomes of `assertions` (in the same order) as promptfoo's `runAssertions`
/// does. The score is the weighted mean of the assertion scores (weight defaults to 1; 0 when
/// all weights are 0), and the test passes when every assertion passed; an assertion with
/// weight 0 always passes and adds nothing to the score. No assertions: passed with score 1.
/// An assertion that cannot be run fails the test with score 0, as promptfoo's evaluator
/// records an error.
pub fn combine(assertions: &[Assertion], outcomes: Vec<Outcome>) -> Grade {
    if assertions.is_empty() {
        return Grade {
            passed: true,
            score: 1.0,
            verdicts: Vec::new(),
        };
    }
    let (mut total_score, mut total_weight) = (0.0, 0.0);
    let (mut passed, mut errored) = (true, false);
    let verdicts = assertions
        .iter()
        .zip(outcomes)
        .map(|(assertion, outcome)| match outcome {
            Ok(verdict) => {
                let weight = assertion.weight.unwrap_or(1.0);
                total_score += verdict.score * weight;
                total_weight += weight;
                passed &= verdict.passed;
                verdict
            }
            Err(verdict) => {
                errored = true;
                verdict
            }
        })
        .collect();
    if errored {
        return Grade {
            passed: false,
            score: 0.0,
            verdicts,
        };
    }
    Grade {
        passed,
        score: if total_weight > 0.0 {
            total_score / total_weight
        } else {
            0.0
        },
        verdicts,
    }
}

/// A handler's result before weight 0 is applied.
struct Check {
    pass: bool,
    score: f64,
    reason: String,
}

/// Pass scores 1 with "Assertion passed"; fail scores 0 with `failure` as the reason.
fn binary(pass: bool, failure: impl FnOnce() -> String) -> Check {
    Check {
        pass,
        score: if pass { 1.0 } else { 0.0 },
        reason: if pass { "Assertion passed".into() } else { failure() },
    }
}

/// `Ok` with the verdict, or `Err` with a failed verdict whose reason is what promptfoo throws.
fn run(assertion: &Assertion, observation: &Observation<'_>) -> Result<Verdict, Verdict> {
    let failed = |reason: String| Verdict {
        kind: assertion.kind.clone(),
        passed: false,
        score: 0.0,
        reason,
    };
    let check = check(assertion, observation).map_err(failed)?;
    Ok(Verdict {
        kind: assertion.kind.clone(),
        // promptfoo's runAssertion: "if (assertion.weight === 0) return {...result, pass: true}".
        passed: check.pass || assertion.weight == Some(0.0),
        score: check.score,
        reason: check.reason,
    })
}

fn check(assertion: &Assertion, observation: &Observation<'_>) -> Result<Check, String> {
    let value = render_value(assertion.value.as_ref(), observation.vars)?;
    let AssertionType { kind, negated: inverse } = assertion.assertion_type().map_err(|e| e.to_string())?;
    let value = value.as_ref();
    let output = observation.output;
    let not = if inverse { "not " } else { "" };
    let comparison = if inverse {
        "less than or equal to"
    } else {
        "greater than"
    };
    let invariant = |message: String| format!("Invariant failed: {message}");
    match kind {
        Kind::Equals => Ok(equals(value, output, inverse)),
        Kind::Contains | Kind::Icontains => {
            let needle = match value {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::Number(n)) if !js::json_number(n).is_nan() => js::to_string(&Value::Number(n.clone())),
                _ => {
                    return Err(invariant(format!(
                        "\"{kind}\" assertion type must have a string or number value"
                    )))
                }
            };
            let found = if kind == Kind::Icontains {
                output.to_lowercase().contains(&needle.to_lowercase())
            } else {
                output.contains(&needle)
            };
            Ok(binary(found != inverse, || {
                format!("Expected output to {not}contain \"{needle}\"")
            }))
        }
        Kind::ContainsAny | Kind::IcontainsAny | Kind::ContainsAll | Kind::IcontainsAll => {
            let items = list_value(kind, value)?;
            let fold = matches!(kind, Kind::IcontainsAny | Kind::IcontainsAll);
            let haystack = if fold { output.to_lowercase() } else { output.to_owned() };
            let contains = |(needle, _): &&(String, String)| {
                if fold {
                    haystack.contains(&needle.to_lowercase())
                } else {
                    haystack.contains(needle.as_str())
                }
            };
            let shown = |items: &[&(String, String)]| {
                items
                    .iter()
                    .map(|(_, shown)| shown.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let all: Vec<&(String, String)> = items.iter().collect();
            if matches!(kind, Kind::ContainsAny | Kind::IcontainsAny) {
                let pass = all.iter().any(contains) != inverse;
                Ok(binary(pass, || {
                    format!("Expected output to {not}contain one of \"{}\"", shown(&all))
                }))
            } else {
                let missing: Vec<&(String, String)> = all.iter().copied().filter(|item| !contains(item)).collect();
                let pass = missing.is_empty() != inverse;
                Ok(binary(pass, || {
                    format!(
                        "Expected output to {not}contain all of [{}]. Missing: [{}]",
                        shown(&all),
                        shown(&missing)
                    )
                }))
            }
        }
        Kind::StartsWith => {
            let Some(Value::String(prefix)) = value.filter(|v| truthy(v)) else {
                return Err(invariant(
                    "\"starts-with\" assertion type must have a string value".into(),
                ));
            };
            Ok(binary(output.starts_with(prefix.as_str()) != inverse, || {
                format!("Expected output to {not}start with \"{prefix}\"")
            }))
        }
        Kind::Regex => {
            let Some(Value::String(pattern)) = value.filter(|v| truthy(v)) else {
                return Err(invariant("\"regex\" assertion type must have a string value".into()));
            };
            let failed = |reason: String| Check {
                pass: false,
                score: 0.0,
                reason,
            };
            let regex = match JsRegex::new(pattern, false) {
                Ok(regex) => regex,
                Err(RegexError::Invalid(message)) => {
                    return Ok(failed(format!("Invalid regex pattern: {message}")));
                }
                Err(RegexError::Unsupported(message)) => {
                    return Ok(failed(format!("Unsupported regex pattern: {message}")));
                }
            };
            match regex.test(output) {
                Ok(matched) => Ok(binary(matched != inverse, || {
                    format!("Expected output to {not}match regex \"{pattern}\"")
                })),
                Err(message) => Ok(failed(format!("Regex could not be evaluated: {message}"))),
            }
        }
        Kind::IsJson => is_json(value, output, inverse),
        Kind::ContainsJson => contains_json(value, output, inverse),
        Kind::Levenshtein => {
            let Some(Value::String(expected)) = value else {
                return Err(invariant(
                    "\"levenshtein\" assertion type must have a string value".into(),
                ));
            };
            let distance = js::levenshtein(output, expected);
            let threshold = assertion.threshold.unwrap_or(5.0);
            Ok(binary((distance as f64 <= threshold) != inverse, || {
                format!(
                    "Levenshtein distance {distance} is {comparison} threshold {}",
                    js::number_to_string(threshold)
                )
            }))
        }
        Kind::WordCount => word_count(value, output, inverse),
        Kind::Latency => {
            let Some(threshold) = assertion.threshold else {
                return Err("Latency assertion must have a threshold in milliseconds".into());
            };
            let latency = observation.latency_ms;
            Ok(binary((latency as f64 <= threshold) != inverse, || {
                format!(
                    "Latency {latency}ms is {comparison} threshold {}ms",
                    js::number_to_string(threshold)
                )
            }))
        }
        Kind::LlmRubric
        | Kind::ModelGradedClosedqa
        | Kind::Factuality
        | Kind::ModelGradedFactuality
        | Kind::Similar
        | Kind::GEval => Err(format!(
            "{kind} is model-graded: it is graded by the runner's grading model, not here"
        )),
        Kind::Cost => {
            let Some(threshold) = assertion.threshold else {
                return Err("Cost assertion must have a threshold".into());
            };
            let Some(micro_usd) = observation.cost_micro_usd else {
                return Err("Cost assertion does not support providers that do not return cost".into());
            };
            let cost = micro_usd as f64 / 1e6;
            Ok(binary((cost <= threshold) != inverse, || {
                format!(
                    "Cost {} is {comparison} threshold {}",
                    js::to_precision(cost, 2),
                    js::number_to_string(threshold)
                )
            }))
        }
    }
}

/// JavaScript truthiness of a JSON value.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => {
            let n = js::json_number(n);
            n != 0.0 && !n.is_nan()
        }
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

fn equals(value: Option<&Value>, output: &str, inverse: bool) -> Check {
    let not = if inverse { "not " } else { "" };
    // `typeof value === "object"` holds for objects, arrays and null: compared as parsed JSON.
    let (pass, shown) = match value {
        Some(expected @ (Value::Object(_) | Value::Array(_) | Value::Null)) => {
            let equal = js::json_parse(output)
                .map(|parsed| js::deep_strict_equal(expected, &parsed) != inverse)
                .unwrap_or(inverse);
            (equal, js::json_stringify(expected))
        }
        Some(expected) => {
            let expected = js::to_string(expected);
            ((expected == output) != inverse, expected)
        }
        None => (("undefined" == output) != inverse, "undefined".into()),
    };
    binary(pass, || {
        format!("Expected output \"{output}\" to {not}equal \"{shown}\"")
    })
}

/// The items of a `contains-any`-style value: each as searched for (`String(item)`) and as
/// shown in reasons (`Array.prototype.join`, where null shows as nothing).
fn list_value(kind: Kind, value: Option<&Value>) -> Result<Vec<(String, String)>, String> {
    let Some(value) = value.filter(|v| truthy(v)) else {
        return Err(format!("Invariant failed: \"{kind}\" assertion type must have a value"));
    };
    match value {
        Value::String(s) => Ok(js::split_comma_separated(s)?
            .into_iter()
            .map(|item| (item.clone(), item))
            .collect()),
        Value::Array(items) => Ok(items
            .iter()
            .map(|item| {
                let shown = if item.is_null() {
                    String::new()
                } else {
                    js::to_string(item)
                };
                (js::to_string(item), shown)
            })
            .collect()),
        _ => Err(format!(
            "Invariant failed: \"{kind}\" assertion type must have an array value"
        )),
    }
}

/// The JSON schema an `is-json`/`contains-json` value gives, if any. Like promptfoo, only
/// resolved when there is JSON to check, so a bad schema on a non-JSON output is no error.
fn schema_of(kind: Kind, value: Option<&Value>) -> Result<Option<Value>, String> {
    let Some(value) = value.filter(|v| truthy(v)) else {
        return Ok(None);
    };
    let schema = match value {
        Value::String(s) if s.starts_with("file://") => {
            return Err(format!(
                "{kind} schemas from files (file://) are not supported by Promptcards; give the schema inline"
            ));
        }
        Value::String(s) => parse_yaml(s)?,
        Value::Object(_) => value.clone(),
        Value::Array(_) => Value::Array(Vec::new()),
        _ => return Err(format!("{kind} assertion must have a string or object value")),
    };
    if schema.is_object() || schema.is_boolean() {
        Ok(Some(schema))
    } else {
        Err("schema must be object or boolean".into())
    }
}

fn is_json(value: Option<&Value>, output: &str, inverse: bool) -> Result<Check, String> {
    let parsed = js::json_parse(output).ok();
    let mut pass = parsed.is_some() != inverse;
    if let Some(data) = &parsed {
        if let Some(schema) = schema_of(Kind::IsJson, value)? {
            let verdict = Schema::compile(&schema)?.validate(data);
            pass = verdict.is_ok() != inverse;
            if !pass {
                return Ok(Check {
                    pass,
                    score: 0.0,
                    reason: match verdict {
                        Ok(()) => "Output is JSON that conforms to the provided schema".into(),
                        Err(errors) => {
                            format!("JSON does not conform to the provided schema. Errors: {errors}")
                        }
                    },
                });
            }
        }
    }
    Ok(binary(pass, || "Expected output to be valid JSON".into()))
}

fn contains_json(value: Option<&Value>, output: &str, inverse: bool) -> Result<Check, String> {
    let objects = extract_objects(output);
    let mut pass = objects.is_empty() == inverse;
    let mut reason = "Expected output to contain valid JSON".to_owned();
    for object in &objects {
        let Some(schema) = schema_of(Kind::ContainsJson, value)? else {
            continue;
        };
        let verdict = Schema::compile(&schema)?.validate(object);
        pass = verdict.is_ok() != inverse;
        match verdict {
            Ok(()) => {
                if inverse {
                    reason = "Output contains JSON conforming to the provided schema".into();
                }
                break;
            }
            Err(errors) => {
                reason = format!("JSON does not conform to the provided schema. Errors: {errors}");
            }
        }
    }
    Ok(binary(pass, || reason))
}

/// `min`/`max` of a word-count range compared as JavaScript compares: null is 0, strings are
/// converted with `Number()`.
fn bound_number(value: &Value) -> f64 {
    match value {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => js::json_number(n),
        Value::String(s) => js::string_to_number(s),
        Value::Array(_) => js::string_to_number(&js::to_string(value)),
        Value::Object(_) => f64::NAN,
    }
}

fn word_count(value: Option<&Value>, output: &str, inverse: bool) -> Result<Check, String> {
    let invariant = |message: &str| format!("Invariant failed: \"word-count\" assertion {message}");
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Err(invariant("must have a value"));
    };
    let count = js::word_count(output);
    let n = count as f64;
    let (pass, reason) = match value {
        Value::Object(bounds) => {
            let (min, max) = (bounds.get("min"), bounds.get("max"));
            let show = |v: &Value| js::to_string(v);
            match (min, max) {
                (None, None) => return Err(invariant("object must have \"min\" and/or \"max\" properties")),
                (Some(min), Some(max)) => {
                    // NaN bounds fail this check too, as JavaScript's `min <= max` does.
                    let ordered = bound_number(min).partial_cmp(&bound_number(max));
                    if !matches!(ordered, Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)) {
                        return Err(format!(
                            "Invariant failed: \"word-count\" assertion: min ({}) must be less than or equal to max ({})",
                            show(min),
                            show(max)
                        ));
                    }
                    let within = n >= bound_number(min) && n <= bound_number(max);
                    let reason = if inverse {
                        format!(
                            "Expected word count to not be between {} and {}, but got {count}",
                            show(min),
                            show(max)
                        )
                    } else {
                        format!("Word count {count} is not between {} and {}", show(min), show(max))
                    };
                    (within != inverse, reason)
                }
                (None, Some(max)) => {
                    let reason = if inverse {
                        format!("Expected word count to be greater than {}, but got {count}", show(max))
                    } else {
                        format!("Word count {count} is greater than maximum {}", show(max))
                    };
                    ((n <= bound_number(max)) != inverse, reason)
                }
                (Some(min), None) => {
                    let reason = if inverse {
                        format!("Expected word count to be less than {}, but got {count}", show(min))
                    } else {
                        format!("Word count {count} is less than minimum {}", show(min))
                    };
                    ((n >= bound_number(min)) != inverse, reason)
                }
            }
        }
        Value::Number(_) | Value::String(_) => {
            let expected = match value {
                Value::Number(x) => js::json_number(x),
                _ => js::string_to_number(value.as_str().unwrap_or_default()),
            };
            if expected.is_nan() {
                return Err(invariant("value must be a number or an object with min/max properties"));
            }
            let shown = js::number_to_string(expected);
            let reason = if inverse {
                format!("Expected word count to not equal {shown}, but got {count}")
            } else {
                format!("Word count {count} does not equal expected {shown}")
            };
            ((n == expected) != inverse, reason)
        }
        _ => return Err(invariant("value must be a number or an object with min/max properties")),
    };
    Ok(binary(pass, || reason))
}

/// Strings, and strings directly inside arrays, are Nunjucks templates in promptfoo; rendered
/// here with minijinja configured to behave as promptfoo's Nunjucks environment does.
pub(crate) fn render_value(value: Option<&Value>, vars: &Map<String, Value>) -> Result<Option<Value>, String> {
    let render = |template: &str| {
        TEMPLATES
            .render_str(template, vars)
            .map(Value::String)
            .map_err(|e| format!("Could not render the assertion value: {e}"))
    };
    Ok(match value {
        Some(Value::String(template)) => Some(render(template)?),
        Some(Value::Array(items)) => Some(Value::Array(
            items
                .iter()
                .map(|item| match item {
                    Value::String(template) => render(template),
                    other => Ok(other.clone()),
                })
                .collect::<Result<_, _>>()?,
        )),
        other => other.cloned(),
    })
}

/// Nunjucks as promptfoo configures it: no autoescaping, undefined values (and attributes of
/// them) print as nothing, a trailing newline is kept, and values print as JavaScript's
/// `String()` prints them (`[1,2]` as `1,2`, `1.0` as `1`, null as nothing).
pub(crate) static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    env.set_keep_trailing_newline(true);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    env.set_formatter(|out, state, value| match js_display(value) {
        Some(text) => out
            .write_str(&text)
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string())),
        None => minijinja::escape_formatter(out, state, value),
    });
    env
});

fn js_display(value: &minijinja::Value) -> Option<String> {
    use minijinja::value::ValueKind;
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => Some(String::new()),
        ValueKind::Bool => Some(value.is_true().to_string()),
        ValueKind::Number => f64::try_from(value.clone()).ok().map(js::number_to_string),
        ValueKind::String => value.as_str().map(str::to_owned),
        ValueKind::Seq => {
            let items = value.try_iter().ok()?;
            Some(
                items
                    .map(|item| js_display(&item).unwrap_or_else(|| item.to_string()))
                    .collect::<Vec<_>>()
                    .join(","),
            )
        }
        ValueKind::Map => Some("[object Object]".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
