//! The pure half of model-graded assertions (`llm-rubric`, `model-graded-closedqa`,
//! `factuality`, `g-eval`, `similar`): the grading prompts sent to the grader, how its answer is
//! read, and cosine similarity, with promptfoo's semantics (promptfoo 0.121,
//! `src/matchers/llmGrading.ts`, `src/matchers/similarity.ts`, `src/assertions/*.ts`). The
//! runner does the I/O: it calls the grading model with what [`prepare`] asks for and turns the
//! answers into verdicts with the functions here.
//!
//! The default grading prompts ask for what promptfoo's ask for (the same inputs, placeholders
//! and answer formats: JSON `{reason, pass, score}`, a factuality category A to E, a closing
//! `Y`/`N`, G-Eval's steps then a 0-10 score), in our own words. A grader answer that cannot be
//! read is a failed assertion whose reason quotes it; a grader that cannot be reached fails the
//! assertion with the error. Neither is ever flipped by `not-`: a grader's failure is no
//! evidence either way.

use crate::engine::{render_value, TEMPLATES};
use crate::js;
use crate::json::extract_objects;
use crate::{Assertion, AssertionType, Kind, Observation, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Provider id prefixes that name an embedding model (`similar`'s grader).
pub const EMBEDDING_PREFIXES: &[&str] = &["openai:embedding:", "openai:embeddings:"];

/// G-Eval's scores run from 0 to this; the assertion's score is the grader's divided by it.
const GEVAL_MAX_SCORE: f64 = 10.0;
/// promptfoo's default thresholds.
const SIMILAR_THRESHOLD: f64 = 0.75;
const GEVAL_THRESHOLD: f64 = 0.7;

/// One chat message sent to a grading model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Which kind of model grades an assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraderKind {
    /// A chat model that is asked for a JSON answer (`llm-rubric`).
    JsonChat,
    /// A chat model answering in prose (`model-graded-closedqa`, `factuality`, `g-eval`).
    Chat,
    /// An embedding model (`similar`).
    Embedding,
}

/// The grading model an assertion names, `(id, config)`, when it names one.
pub fn requested_grader(assertion: &Assertion) -> Option<(String, Value)> {
    match assertion.provider.as_ref()? {
        Value::String(id) => Some((id.clone(), Value::Null)),
        Value::Object(spec) => Some((
            spec.get("id")?.as_str()?.to_owned(),
            spec.get("config").cloned().unwrap_or(Value::Null),
        )),
        _ => None,
    }
}

/// What grading one assertion takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Grading {
    /// One chat call; its answer is read by [`judge`].
    Chat { messages: Vec<Message> },
    /// For each criterion: a call for evaluation steps ([`geval_steps_messages`], read by
    /// [`parse_geval_steps`]), then a call for the score ([`geval_evaluate_messages`], read by
    /// [`parse_geval_score`]); [`geval_verdict`] combines them.
    GEval { criteria: Vec<String> },
    /// Embeddings of the output and of each expected value, compared by [`similar_verdict`].
    Similar { expected: Vec<String> },
}

/// What `assertion` (a model-graded one) needs from a grader, given the tested call's outcome
/// and the prompt it was sent. `Err` is the verdict of an assertion that cannot be graded (its
/// value does not render, its rubric prompt does not either), which promptfoo reports as an
/// error of the test.
pub fn prepare(assertion: &Assertion, observation: &Observation<'_>, prompt: &str) -> Result<Grading, Verdict> {
    let failed = |reason: String| Verdict {
        kind: assertion.kind.clone(),
        passed: false,
        score: 0.0,
        reason,
    };
    let AssertionType { kind, .. } = assertion.assertion_type().map_err(|e| failed(e.to_string()))?;
    let value = render_value(assertion.value.as_ref(), observation.vars).map_err(failed)?;
    let text = |value: Option<&Value>| match value {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(failed(format!("{kind} assertion type must have a string value"))),
    };
    let texts = |value: Option<&Value>| match value {
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                failed(format!(
                    "{kind} assertion type must have a string or array of strings value"
                ))
            }),
        _ => Err(failed(format!(
            "{kind} assertion type must have a string or array of strings value"
        ))),
    };
    let output = template_output(observation.output);
    let mut context = template_vars(observation.vars);
    let messages = match kind {
        Kind::LlmRubric => {
            let rubric = match &value {
                None => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => js::json_stringify(other),
            };
            context.insert("output".into(), output);
            context.insert("rubric".into(), Value::String(rubric));
            render_prompt(assertion.rubric_prompt.as_ref(), LLM_RUBRIC_PROMPT, &context)
        }
        Kind::ModelGradedClosedqa => {
            context.insert("input".into(), Value::String(prompt.to_owned()));
            context.insert("criteria".into(), Value::String(text(value.as_ref())?));
            context.insert("completion".into(), output);
            render_prompt(assertion.rubric_prompt.as_ref(), CLOSED_QA_PROMPT, &context)
        }
        Kind::Factuality | Kind::ModelGradedFactuality => {
            context.insert("input".into(), Value::String(prompt.to_owned()));
            context.insert("ideal".into(), Value::String(text(value.as_ref())?));
            context.insert("completion".into(), output);
            render_prompt(assertion.rubric_prompt.as_ref(), FACTUALITY_PROMPT, &context)
        }
        Kind::GEval => {
            return Ok(Grading::GEval {
                criteria: texts(value.as_ref())?,
            })
        }
        Kind::Similar => {
            return Ok(Grading::Similar {
                expected: texts(value.as_ref())?,
            })
        }
        _ => return Err(failed(format!("{kind} is not model-graded"))),
    };
    messages.map(|messages| Grading::Chat { messages }).map_err(failed)
}

/// The kind of grader an assertion's type needs.
pub fn grader_kind(kind: Kind) -> GraderKind {
    match kind {
        Kind::LlmRubric => GraderKind::JsonChat,
        Kind::Similar => GraderKind::Embedding,
        _ => GraderKind::Chat,
    }
}

/// A verdict with promptfoo's weight-0 rule applied (such an assertion always passes).
fn verdict(assertion: &Assertion, passed: bool, score: f64, reason: String) -> Verdict {
    Verdict {
        kind: assertion.kind.clone(),
        passed: passed || assertion.weight == Some(0.0),
        score,
        reason,
    }
}

/// The grader could not be called, or did not answer in time: the assertion fails with the
/// error as its reason, whatever its `not-`.
pub fn grader_failed(assertion: &Assertion, error: &str) -> Verdict {
    verdict(assertion, false, 0.0, error.to_owned())
}

/// Reads a grader's answer to the [`Grading::Chat`] prompt of `assertion`.
pub fn judge(assertion: &Assertion, answer: &str) -> Verdict {
    let Ok(AssertionType { kind, negated }) = assertion.assertion_type() else {
        return grader_failed(assertion, "unknown assertion type");
    };
    if answer.is_empty() {
        return grader_failed(assertion, "No output");
    }
    match kind {
        Kind::LlmRubric => judge_rubric(assertion, negated, answer),
        Kind::ModelGradedClosedqa => {
            let trimmed = answer.trim_end();
            let pass = trimmed.ends_with('Y');
            let reason = if pass {
                format!("The submission meets the criterion:\n{answer}")
            } else if trimmed.ends_with('N') {
                format!("The submission does not meet the criterion:\n{answer}")
            } else {
                format!("Model grader produced a malformed response:\n{answer}")
            };
            verdict(assertion, pass, if pass { 1.0 } else { 0.0 }, reason)
        }
        Kind::Factuality | Kind::ModelGradedFactuality => match factuality_choice(answer) {
            Ok((letter, reason)) => {
                // promptfoo's default scores: only a disagreement (D) fails.
                let pass = letter != 'D';
                verdict(assertion, pass, if pass { 1.0 } else { 0.0 }, reason)
            }
            Err(reason) => grader_failed(assertion, &reason),
        },
        _ => grader_failed(assertion, &format!("{kind} is not graded by one chat answer")),
    }
}

fn judge_rubric(assertion: &Assertion, negated: bool, answer: &str) -> Verdict {
    let Some(parsed) = extract_objects(answer).into_iter().next() else {
        return grader_failed(
            assertion,
            &format!("Could not extract JSON from llm-rubric response: {answer}"),
        );
    };
    let Value::Object(parsed) = parsed else {
        return grader_failed(
            assertion,
            &format!("llm-rubric produced malformed response. We were not able to parse the response as JSON. Output: {answer}"),
        );
    };
    // `pass` defaults to true; a non-boolean is read as promptfoo reads it.
    let mut pass = match parsed.get("pass") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            let text = js::to_string(other).to_ascii_lowercase();
            matches!(text.as_str(), "true" | "yes" | "pass" | "y")
        }
    };
    let score = match parsed.get("score") {
        Some(Value::Number(n)) => js::json_number(n),
        Some(other @ (Value::String(_) | Value::Bool(_) | Value::Null | Value::Array(_))) => {
            let n = match other {
                Value::String(s) => js::string_to_number(s),
                Value::Bool(b) => f64::from(u8::from(*b)),
                Value::Null => 0.0,
                _ => js::string_to_number(&js::to_string(other)),
            };
            if n.is_finite() {
                n
            } else {
                f64::from(u8::from(pass))
            }
        }
        Some(Value::Object(_)) | None => f64::from(u8::from(pass)),
    };
    if let Some(threshold) = assertion.threshold {
        pass = pass && score >= threshold;
    }
    let reason = match parsed.get("reason") {
        Some(reason) if truthy(reason) => js::to_string(reason),
        _ if pass => "Grading passed".to_owned(),
        _ => format!(
            "Score {} below threshold {}",
            js::number_to_string(score),
            assertion
                .threshold
                .map(js::number_to_string)
                .unwrap_or_else(|| "undefined".into())
        ),
    };
    let score = if negated {
        (1.0 - if score.is_finite() { score } else { 0.0 }).clamp(0.0, 1.0)
    } else {
        score
    };
    verdict(assertion, pass != negated, score, reason)
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => js::json_number(n) != 0.0,
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// What each factuality category means, for the reason when the grader gives none.
const FACTUALITY_CATEGORIES: [(char, &str); 5] = [
    (
        'A',
        "The submitted answer is a subset of the expert answer and is fully consistent with it.",
    ),
    (
        'B',
        "The submitted answer is a superset of the expert answer and is fully consistent with it.",
    ),
    (
        'C',
        "The submitted answer contains all the same details as the expert answer.",
    ),
    (
        'D',
        "There is a disagreement between the submitted answer and the expert answer.",
    ),
    (
        'E',
        "The answers differ, but these differences don't matter from the perspective of factuality.",
    ),
];

/// The category letter a factuality grader chose and its reason: from a JSON
/// `{category, reason}` first, else from a `(B)`-style letter in prose, as promptfoo falls back.
fn factuality_choice(answer: &str) -> Result<(char, String), String> {
    let json = extract_objects(answer).into_iter().next();
    if let Some(category) = json.as_ref().and_then(|o| o.get("category")).and_then(Value::as_str) {
        let letter = category.trim().to_uppercase();
        let Some((letter, description)) = FACTUALITY_CATEGORIES
            .iter()
            .find(|(l, _)| letter.len() == 1 && letter.starts_with(*l))
        else {
            return Err(format!("Invalid category value: {letter}"));
        };
        let reason = json
            .as_ref()
            .and_then(|o| o.get("reason"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("Category {letter}: {description}"));
        return Ok((*letter, reason));
    }
    // promptfoo's legacy format: the first letter a-e directly followed by `)`.
    let chars: Vec<char> = answer.chars().collect();
    let letter = chars
        .windows(2)
        .find(|w| matches!(w[0], 'a'..='e' | 'A'..='E') && w[1] == ')')
        .map(|w| w[0].to_ascii_uppercase())
        .ok_or_else(|| format!("Factuality checker output did not match expected format: {answer}"))?;
    let reason = answer
        .split_once(')')
        .map(|(_, rest)| rest.trim().to_owned())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| answer.to_owned());
    Ok((letter, reason))
}

/// The prompt asking a grader for evaluation steps of one G-Eval criterion.
pub fn geval_steps_messages(assertion: &Assertion, criterion: &str) -> Result<Vec<Message>, String> {
    let context = Map::from_iter([("criteria".to_owned(), Value::String(criterion.to_owned()))]);
    render_prompt(geval_part(assertion, "steps").as_ref(), GEVAL_STEPS_PROMPT, &context)
}

/// The evaluation steps in a grader's answer: the JSON `{"steps": [...]}` on one line.
pub fn parse_geval_steps(answer: &str) -> Result<Vec<String>, String> {
    if answer.is_empty() {
        return Err("G-Eval step-generation call returned no output".into());
    }
    let not_json = |detail: String| format!("LLM-proposed evaluation steps are not in JSON format: {detail}");
    let candidate = one_line_braces(answer, "{\"steps\"").ok_or_else(|| not_json(answer.to_owned()))?;
    let parsed = js::json_parse(candidate).map_err(|e| not_json(format!("{e}\n\n{answer}")))?;
    let steps = parsed.get("steps").cloned().unwrap_or(Value::Null);
    let Value::Array(steps) = steps else {
        return Err(format!(
            "G-Eval steps response has invalid or missing steps: {}",
            js::json_stringify(&steps)
        ));
    };
    if steps.is_empty() {
        return Err("LLM does not propose any evaluation step".into());
    }
    steps
        .iter()
        .map(|s| s.as_str().filter(|s| !s.trim().is_empty()).map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            format!(
                "G-Eval steps response contains invalid steps: {}",
                js::json_stringify(&Value::Array(steps.clone()))
            )
        })
}

/// The prompt asking a grader to score the output on one criterion, following its steps.
pub fn geval_evaluate_messages(
    assertion: &Assertion,
    criterion: &str,
    steps: &[String],
    prompt: &str,
    output: &str,
) -> Result<Vec<Message>, String> {
    let context = Map::from_iter([
        ("criteria".to_owned(), Value::String(criterion.to_owned())),
        ("steps".to_owned(), Value::String(steps.join("\n- "))),
        (
            "maxScore".to_owned(),
            Value::String(js::number_to_string(GEVAL_MAX_SCORE)),
        ),
        ("input".to_owned(), template_output(prompt)),
        ("output".to_owned(), template_output(output)),
    ]);
    render_prompt(
        geval_part(assertion, "evaluate").as_ref(),
        GEVAL_EVALUATE_PROMPT,
        &context,
    )
}

/// The score (0 to 1) and reason in a grader's answer to the evaluation prompt.
pub fn parse_geval_score(answer: &str) -> Result<(f64, String), String> {
    if answer.is_empty() {
        return Err("G-Eval evaluation call returned no output".into());
    }
    let not_json = |detail: String| format!("LLM-proposed evaluation result is not in JSON format: {detail}");
    let candidate = one_line_braces(answer, "{").ok_or_else(|| not_json(answer.to_owned()))?;
    let result = js::json_parse(candidate).map_err(|e| not_json(format!("{e}\n\n{answer}")))?;
    let raw = match result.get("score") {
        Some(Value::Number(n)) => js::json_number(n),
        Some(Value::String(s)) if !s.trim().is_empty() => js::string_to_number(s),
        _ => f64::NAN,
    };
    let shown = |key: &str| {
        result
            .get(key)
            .map(js::json_stringify)
            .unwrap_or_else(|| "undefined".into())
    };
    if !raw.is_finite() {
        return Err(format!(
            "G-Eval result has invalid or missing score: {}",
            shown("score")
        ));
    }
    if !(0.0..=GEVAL_MAX_SCORE).contains(&raw) {
        return Err(format!(
            "G-Eval result score {} is outside the expected 0-{} range",
            js::number_to_string(raw),
            js::number_to_string(GEVAL_MAX_SCORE)
        ));
    }
    match result.get("reason") {
        Some(Value::String(reason)) if !reason.trim().is_empty() => Ok((raw / GEVAL_MAX_SCORE, reason.clone())),
        _ => Err(format!(
            "G-Eval result has invalid or missing reason: {}",
            shown("reason")
        )),
    }
}

/// A G-Eval assertion's verdict from each criterion's `(score, reason)` or grading error, in the
/// order of its criteria. The first error fails the assertion (naming the criterion when there
/// are several); otherwise the mean score is compared with the threshold (default 0.7).
pub fn geval_verdict(assertion: &Assertion, criteria: &[String], results: &[Result<(f64, String), String>]) -> Verdict {
    let negated = assertion.assertion_type().is_ok_and(|t| t.negated);
    let threshold = assertion.threshold.unwrap_or(GEVAL_THRESHOLD);
    if let Some((index, Err(error))) = results.iter().enumerate().find(|(_, r)| r.is_err()) {
        let reason = if criteria.len() > 1 {
            format!(
                "G-Eval criterion {}/{} ({}) failed: {error}",
                index + 1,
                criteria.len(),
                js::json_stringify(&Value::String(criteria[index].clone()))
            )
        } else {
            error.clone()
        };
        return grader_failed(assertion, &reason);
    }
    let scored: Vec<&(f64, String)> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    if scored.is_empty() {
        return grader_failed(
            assertion,
            "G-Eval assertion requires at least one criterion string in the value array.",
        );
    }
    let score = scored.iter().map(|(s, _)| s).sum::<f64>() / scored.len() as f64;
    let reason = scored.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>().join("\n\n");
    verdict(
        assertion,
        (score >= threshold) != negated,
        if negated { 1.0 - score } else { score },
        reason,
    )
}

/// Cosine similarity of two embeddings; 0 when either is all zeros.
pub fn cosine(a: &[f64], b: &[f64]) -> Result<f64, String> {
    if a.len() != b.len() {
        return Err("Vectors must be of equal length".into());
    }
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        return Ok(0.0);
    }
    Ok(dot / (na * nb))
}

/// A `similar` assertion's verdict from the similarity of the output to each expected value
/// (or the error getting its embeddings), in the order of the values. One value: the similarity
/// against the threshold (default 0.75). Several: the first that passes; else the best score
/// ("None of the provided values met the similarity threshold"). Negated: the first value too
/// similar fails it; else the least similar one's result.
pub fn similar_verdict(assertion: &Assertion, similarities: &[Result<f64, String>]) -> Verdict {
    let negated = assertion.assertion_type().is_ok_and(|t| t.negated);
    let threshold = assertion.threshold.unwrap_or(SIMILAR_THRESHOLD);
    let one = |similarity: &Result<f64, String>| -> Verdict {
        let similarity = match similarity {
            Ok(s) => *s,
            Err(error) => return grader_failed(assertion, error),
        };
        let pass = if negated {
            similarity <= threshold + f64::EPSILON
        } else {
            similarity >= threshold - f64::EPSILON
        };
        let shown = to_fixed_2(similarity);
        let threshold = js::number_to_string(threshold);
        let at_least = format!("Similarity {shown} is greater than or equal to threshold {threshold}");
        let below = format!("Similarity {shown} is less than threshold {threshold}");
        let reason = match (pass, negated) {
            (true, false) | (false, true) => at_least,
            (true, true) | (false, false) => below,
        };
        verdict(
            assertion,
            pass,
            if negated { 1.0 - similarity } else { similarity },
            reason,
        )
    };
    match similarities {
        [] => grader_failed(
            assertion,
            "Similarity assertion must have at least one value to compare against",
        ),
        [single] => one(single),
        several if negated => {
            let mut closest: Option<Verdict> = None;
            for similarity in several {
                let result = one(similarity);
                if !result.passed {
                    return result;
                }
                if closest.as_ref().is_none_or(|c| result.score < c.score) {
                    closest = Some(result);
                }
            }
            closest.expect("several values")
        }
        several => {
            let mut best = f64::NEG_INFINITY;
            for similarity in several {
                let result = one(similarity);
                if result.passed {
                    return result;
                }
                best = best.max(result.score);
            }
            verdict(
                assertion,
                false,
                best,
                "None of the provided values met the similarity threshold".into(),
            )
        }
    }
}

/// JavaScript's `toFixed(2)`.
fn to_fixed_2(x: f64) -> String {
    let shown = format!("{x:.2}");
    if shown == "-0.00" {
        "0.00".into()
    } else {
        shown
    }
}

/// The first `prefix ... }` on one line with something between them, the longest such, as
/// JavaScript's `/\{.+\}/` (`.` stops at line ends) finds it.
fn one_line_braces<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let mut from = 0;
        while let Some(found) = body[from..].find(prefix) {
            let start = from + found;
            let after = start + prefix.len();
            if let Some(end) = body.rfind('}').filter(|&end| end > after) {
                return Some(&text[offset + start..offset + end + 1]);
            }
            from = after;
            if from >= body.len() {
                break;
            }
        }
        offset += line.len();
    }
    None
}

/// `g-eval`'s `rubricPrompt.steps` or `.evaluate`, when given.
fn geval_part(assertion: &Assertion, part: &str) -> Option<Value> {
    assertion.rubric_prompt.as_ref()?.get(part).cloned()
}

/// The output as promptfoo puts it in a grading prompt: parsed when it is JSON (so `"42"` is
/// 42 and an object prints as compact JSON), else the text.
fn template_output(output: &str) -> Value {
    match js::json_parse(output) {
        Ok(value @ (Value::Object(_) | Value::Array(_))) => Value::String(js::json_stringify(&value)),
        Ok(value @ (Value::Number(_) | Value::Bool(_) | Value::String(_) | Value::Null)) => value,
        Err(_) => Value::String(output.to_owned()),
    }
}

/// The test's vars as promptfoo hands them to grading templates: objects as JSON text, and
/// objects inside lists too.
fn template_vars(vars: &Map<String, Value>) -> Map<String, Value> {
    let stringify = |value: &Value| match value {
        Value::Object(_) => Value::String(js::json_stringify(value)),
        other => other.clone(),
    };
    vars.iter()
        .map(|(name, value)| {
            let value = match value {
                Value::Array(items) => Value::Array(items.iter().map(stringify).collect()),
                other => stringify(other),
            };
            (name.clone(), value)
        })
        .collect()
}

/// A default prompt: its messages as (role, template).
type DefaultPrompt = &'static [(&'static str, &'static str)];

/// Renders the assertion's own prompt when it gives one, else the default. A prompt that is a
/// JSON list of `{role, content}` messages (as text or as a list) is sent as those messages, each
/// content rendered; any other text is one user message.
fn render_prompt(
    custom: Option<&Value>,
    default: DefaultPrompt,
    context: &Map<String, Value>,
) -> Result<Vec<Message>, String> {
    let render = |template: &str| {
        TEMPLATES
            .render_str(template, context)
            .map_err(|e| format!("Could not render the grading prompt: {e}"))
    };
    let messages = |list: &[Value]| -> Option<Vec<(String, String)>> {
        list.iter()
            .map(|m| {
                Some((
                    m.get("role")?.as_str()?.to_owned(),
                    m.get("content")?.as_str()?.to_owned(),
                ))
            })
            .collect()
    };
    let templates: Vec<(String, String)> = match custom {
        None => default
            .iter()
            .map(|(r, c)| ((*r).to_owned(), (*c).to_owned()))
            .collect(),
        Some(Value::Array(list)) => {
            messages(list).ok_or("rubricPrompt messages must each have a role and a content")?
        }
        Some(Value::String(text)) => match js::json_parse(text) {
            Ok(Value::Array(list)) if messages(&list).is_some() => messages(&list).unwrap_or_default(),
            _ => return Ok(vec![Message::new("user", render(text)?)]),
        },
        Some(other) => return Ok(vec![Message::new("user", render(&js::json_stringify(other))?)]),
    };
    templates
        .into_iter()
        .map(|(role, content)| Ok(Message::new(&role, render(&content)?)))
        .collect()
}

const LLM_RUBRIC_PROMPT: DefaultPrompt = &[
    (
        "system",
        "You grade an output against a rubric the user wrote. The output passes when what the rubric states is true of it. \
Answer with a JSON object of this shape: {reason: string, pass: boolean, score: number}\n\
\n\
Examples:\n\
\n\
<Output>Good morning, everyone!</Output>\n\
<Rubric>Opens with a greeting</Rubric>\n\
{\"reason\": \"it opens with 'Good morning'\", \"pass\": true, \"score\": 1.0}\n\
\n\
<Output>Arr, hoist the mainsail, me hearties!</Output>\n\
<Rubric>Avoids pirate speech</Rubric>\n\
{\"reason\": \"'arr' and 'me hearties' are pirate speech\", \"pass\": false, \"score\": 0.0}",
    ),
    ("user", "<Output>\n{{ output }}\n</Output>\n<Rubric>\n{{ rubric }}\n</Rubric>"),
];

const CLOSED_QA_PROMPT: DefaultPrompt = &[(
    "system",
    "You judge whether a submitted answer to a task meets a criterion. The data:\n\
[BEGIN DATA]\n\
***\n\
[Task]: {{input}}\n\
***\n\
[Submission]: {{completion}}\n\
***\n\
[Criterion]: {{criteria}}\n\
***\n\
[END DATA]\n\
Does the submission meet the criterion? Reason it through step by step first, so that your conclusion is right, rather than \
stating an answer at the start. Then write only the single character \"Y\" or \"N\" (no quotes, no punctuation) on a line of \
its own: Y if the submission meets the criterion, N if not. Last, repeat that letter alone on a final line.\n\
\n\
Reasoning:",
)];

const FACTUALITY_PROMPT: DefaultPrompt = &[
    (
        "system",
        "You check facts: you compare a submitted answer with an expert answer on their factual content only, setting aside \
differences of style, grammar or punctuation.\n\
Put the submission in exactly one of these categories:\n\
\n\
(A) The submitted answer is a subset of the expert answer and is fully consistent with it.\n\
(B) The submitted answer is a superset of the expert answer and is fully consistent with it.\n\
(C) The submitted answer contains all the same details as the expert answer.\n\
(D) There is a disagreement between the submitted answer and the expert answer.\n\
(E) The answers differ, but these differences don't matter from the perspective of factuality.\n\
\n\
Answer with a JSON object only, and nothing around it:\n\
{\n  \"category\": \"[LETTER]\",\n  \"reason\": \"[EXPLANATION]\"\n}\n\
\n\
- \"category\" is one letter: A, B, C, D or E.\n\
- \"reason\" explains the choice clearly and in detail.",
    ),
    (
        "user",
        "Compare these two answers:\n\
\n\
<question>\n{{input}}\n</question>\n\
\n\
<expert_answer>\n{{ideal}}\n</expert_answer>\n\
\n\
<submitted_answer>\n{{completion}}\n</submitted_answer>\n\
\n\
Which category describes how the submitted answer's facts relate to the expert answer's?",
    ),
];

const GEVAL_STEPS_PROMPT: DefaultPrompt = &[(
    "user",
    "\nFrom the evaluation criteria below, which say how a text should be judged, write 3 or 4 short evaluation steps that \
apply to any text and check whether the text meets the criteria.\n\
\n\
**EVALUATION CRITERIA**\n\
{{criteria}}\n\
\n\
**OUTPUT FORMAT**\n\
- Answer ONLY with a minified JSON object, without code fences.\n\
- The object has one key, \"steps\": a list of strings, one string per evaluation step.\n\
- Add no explanation, comment or other text.\n\
\n\
Format:\n\
{\"steps\": <list_of_strings>}\n\
\n\
Example:\n\
{\"steps\":[\"<Evaluation Step 1>\",\"<Evaluation Step 2>\",\"<Evaluation Step 3>\"]}\n\
\n\
The evaluation steps, as minified JSON:\n\
JSON:\n",
)];

const GEVAL_EVALUATE_PROMPT: DefaultPrompt = &[(
    "user",
    "\nYou are given a Reply to a Prompt. Rate the Reply on one metric.\n\
Read these instructions carefully and refer back to them while you review.\n\
\n\
**Evaluation Criteria**\n\
{{criteria}}\n\
\n\
**Evaluation Steps**\n\
- {{steps}}\n\
Following the evaluation steps, answer with a JSON object with two keys:\n\
  1) \"score\": an integer from 0 to {{maxScore}}, where {{maxScore}} means the Reply fully and clearly shows what the \
Evaluation Criteria describe and 0 means it does not show it at all;\n\
  2) \"reason\": why the Reply gets that score, WITHOUT quoting the score, naming specifics of the Prompt and the Reply, \
concisely.\n\
\n\
**Prompt**\n\
{{input}}\n\
\n\
**Reply**\n\
{{output}}\n\
\n\
**OUTPUT FORMAT**\n\
- Answer ONLY with a minified JSON object, without code fences, with exactly the keys \"score\" and \"reason\".\n\
- Nothing else: no words, explanation, line breaks or formatting around it.\n\
\n\
Example JSON:\n\
{\"score\":0,\"reason\":\"The reply does not meet the evaluation criteria.\"}\n\
\n\
The evaluation, as minified JSON:\n\
JSON:\n",
)];

#[cfg(test)]
mod tests;
