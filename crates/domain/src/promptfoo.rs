//! Importing a promptfoo config: one card per prompt, each with the config's tests as its test
//! cases, in the config's order.
//!
//! Over 600 lines because a third of it is the import's given/when/then tests, kept beside the
//! rules they check.
//!
//! Tests are read as promptfoo reads them before evaluating: `defaultTest.vars` under each test's
//! own vars, `defaultTest.assert` before the test's own assertions, and a var holding a list of
//! strings expanded into one case per value (the cartesian product over such vars, the first var
//! varying slowest). A test's `options.provider` and `options.rubricPrompt` (over
//! `defaultTest.options`) go to each of its model-graded assertions that sets none of its own,
//! as promptfoo's `getFinalTest` does. What Promptcards cannot represent (assertions that run
//! code, model-graded types it does not grade, `file://` references, keys it does not know) is
//! refused item by item, never
//! dropped: [`translate`] reports every such item with the path where the config has it.

use crate::card::CardContent;
use crate::error::Problems;
use crate::prompt::ChatMessage;
use crate::run::{is_known_provider, ProviderSpec};
use crate::template::{template_variables, VarType, Variable};
use crate::test_case::TestCaseContent;
use crate::{DomainError, FieldError};
use assertions::{Assertion, AssertionType, Kind};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Most prompts (cards) one import creates.
pub const MAX_PROMPTS: usize = 50;
/// Most test cases one import creates, over all its cards (each prompt's card gets every test),
/// after expanding list vars.
pub const MAX_CASES: usize = 2_000;

/// Top-level keys that only steer promptfoo's own CLI (where it writes results, sharing,
/// concurrency). They say nothing about prompts or tests, so an import skips them and names them
/// in its answer.
pub const CLI_ONLY_KEYS: &[&str] = &[
    "$schema",
    "outputPath",
    "sharing",
    "writeLatestResults",
    "evaluateOptions",
    "commandLineOptions",
];

/// Assertion types that run the user's code.
const CODE_TYPES: &[&str] = &["javascript", "python", "ruby", "webhook"];

/// Assertion types graded by a model (or by a service promptfoo calls). Those that are a
/// [`Kind`] are imported; the others are refused by name.
const MODEL_GRADED_TYPES: &[&str] = &[
    "llm-rubric",
    "g-eval",
    "model-graded-closedqa",
    "model-graded-factuality",
    "factuality",
    "answer-relevance",
    "context-faithfulness",
    "context-recall",
    "context-relevance",
    "conversation-relevance",
    "similar",
    "select-best",
    "max-score",
    "classifier",
    "moderation",
    "pi",
    "search-rubric",
];

/// What an import creates, in the config's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    pub cards: Vec<ImportedCard>,
    /// The config's providers, ready for a run request.
    pub providers: Vec<ProviderSpec>,
    /// Top-level keys skipped because they only steer promptfoo's CLI ([`CLI_ONLY_KEYS`]).
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportedCard {
    /// Where the prompt is in the config, such as `prompts[1]`.
    pub origin: String,
    pub content: CardContent,
    pub cases: Vec<ImportedCase>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportedCase {
    /// Where the test is in the config, such as `tests[3]`.
    pub origin: String,
    /// How many of the case's assertions came from `defaultTest`; they come first.
    pub default_assertions: usize,
    pub content: TestCaseContent,
}

impl ImportedCard {
    /// Names a card problem the way the config spells it: `prompts[1].template`.
    pub fn locate(&self, error: DomainError) -> DomainError {
        relabel(error, |field| format!("{}.{field}", self.origin))
    }
}

impl ImportedCase {
    /// Names a test-case problem the way the config spells it: a case's `name` is the test's
    /// `description`, and its assertions come from `defaultTest.assert` then the test's `assert`.
    pub fn locate(&self, error: DomainError) -> DomainError {
        relabel(error, |field| {
            if field == "name" {
                return format!("{}.description", self.origin);
            }
            if let Some(rest) = field.strip_prefix("assertions[") {
                if let Some((index, tail)) = rest.split_once(']') {
                    if let Ok(i) = index.parse::<usize>() {
                        return if i < self.default_assertions {
                            format!("defaultTest.assert[{i}]{tail}")
                        } else {
                            format!("{}.assert[{}]{tail}", self.origin, i - self.default_assertions)
                        };
                    }
                }
                return format!("{}.assert", self.origin);
            }
            format!("{}.{field}", self.origin)
        })
    }
}

fn relabel(error: DomainError, field: impl Fn(&str) -> String) -> DomainError {
    match error {
        DomainError::Invalid(fields) => DomainError::Invalid(
            fields
                .into_iter()
                .map(|e| FieldError::new(field(&e.field), e.message))
                .collect(),
        ),
        other => other,
    }
}

/// Reads a YAML (or JSON) document into a JSON value, applying YAML merge keys (`<<`).
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    let mut value: serde_norway::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    value.apply_merge().map_err(|e| e.to_string())?;
    serde_json::to_value(value).map_err(|e| format!("not representable as JSON: {e}"))
}

/// Translates a promptfoo config into the cards and test cases to create, or lists every item
/// it cannot represent (and every malformed one) as field errors.
pub fn translate(config: &Value) -> Result<Import, DomainError> {
    let Some(config) = config.as_object() else {
        return Err(DomainError::Invalid(vec![FieldError::new(
            "body",
            "must be a promptfoo config: a mapping with `prompts` and `tests`",
        )]));
    };
    let mut problems = Problems::default();
    let mut ignored = Vec::new();
    for key in config.keys() {
        match key.as_str() {
            "description" | "prompts" | "providers" | "tests" | "defaultTest" => {}
            key if CLI_ONLY_KEYS.contains(&key) => ignored.push(key.to_owned()),
            key => problems.add(key, unsupported_key(key)),
        }
    }
    let description = match config.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            problems.add("description", "must be a string");
            String::new()
        }
    };
    let prompts = read_prompts(config.get("prompts"), &mut problems);
    let providers = read_providers(config.get("providers"), &mut problems);
    let default_test = read_default_test(config.get("defaultTest"), &mut problems);
    let cases = read_tests(config.get("tests"), &default_test, &mut problems);
    let total = cases.len().saturating_mul(prompts.len().max(1));
    if total > MAX_CASES {
        problems.add(
            "tests",
            format!(
                "at most {MAX_CASES} test cases per import (tests x prompts, after expanding list vars), got {}",
                if cases.len() > MAX_CASES {
                    format!("more than {MAX_CASES}")
                } else {
                    total.to_string()
                }
            ),
        );
    }
    problems.into_result()?;

    let several = prompts.len() > 1;
    let cards = prompts
        .iter()
        .enumerate()
        .map(|(i, prompt)| ImportedCard {
            origin: format!("prompts[{i}]"),
            content: CardContent {
                title: prompt.title(&description, several.then_some(i)),
                description: description.clone(),
                variables: infer_variables(prompt, &cases),
                template: if prompt.messages.is_empty() {
                    prompt.raw.clone()
                } else {
                    String::new()
                },
                messages: prompt.messages.clone(),
                tags: Vec::new(),
                config: Map::new(),
            },
            cases: cases.clone(),
        })
        .collect();
    Ok(Import {
        cards,
        providers,
        ignored,
    })
}

fn unsupported_key(key: &str) -> String {
    match key {
        "scenarios" => "scenarios are not supported: write each combination as a test".into(),
        "env" => "env is not imported: set provider keys in the runner's environment".into(),
        "nunjucksFilters" | "extensions" => format!("{key} run code, which Promptcards does not import"),
        _ => format!("`{key}` is not something Promptcards imports"),
    }
}

fn is_file_reference(value: &Value) -> bool {
    value.as_str().is_some_and(names_file)
}

fn names_file(text: &str) -> bool {
    text.trim_start().starts_with("file://")
}

const FILE_REFERENCE: &str = "file:// references are not supported: inline the content";

struct Prompt {
    raw: String,
    label: Option<String>,
    variables: Vec<String>,
    /// A chat prompt in promptfoo's JSON form (`[{"role": ..., "content": ...}, ...]`); empty
    /// for a text prompt.
    messages: Vec<ChatMessage>,
}

/// The messages of a prompt written as promptfoo's JSON chat form, if it is one: a JSON array of
/// `{role: system|user|assistant, content: string}` objects.
fn chat_messages(raw: &str) -> Option<Vec<ChatMessage>> {
    if !raw.trim_start().starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<ChatMessage>>(raw)
        .ok()
        .filter(|messages| !messages.is_empty())
}

impl Prompt {
    /// The prompt's label, else the config's description (numbered when there are several
    /// prompts), else the prompt's first line.
    fn title(&self, description: &str, number: Option<usize>) -> String {
        if let Some(label) = &self.label {
            return label.clone();
        }
        let description = description.trim();
        if !description.is_empty() && description.chars().count() <= 480 {
            return match number {
                Some(i) => format!("{description} (prompt {})", i + 1),
                None => description.to_owned(),
            };
        }
        let text = self.messages.first().map_or(self.raw.as_str(), |m| m.content.as_str());
        let first_line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("prompt");
        if first_line.chars().count() > 80 {
            format!("{}…", first_line.chars().take(79).collect::<String>())
        } else {
            first_line.to_owned()
        }
    }
}

fn read_prompts(value: Option<&Value>, problems: &mut Problems) -> Vec<Prompt> {
    let items = match value {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(v) if is_file_reference(v) => {
            problems.add("prompts", FILE_REFERENCE);
            return Vec::new();
        }
        _ => {
            problems.add("prompts", "must be a non-empty list of prompt strings");
            return Vec::new();
        }
    };
    if items.len() > MAX_PROMPTS {
        problems.add(
            "prompts",
            format!("at most {MAX_PROMPTS} prompts per import, got {}", items.len()),
        );
    }
    let mut prompts = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("prompts[{i}]");
        let (raw, label) = match item {
            Value::String(raw) => (raw.clone(), None),
            Value::Object(map) => {
                for key in map.keys().filter(|k| !matches!(k.as_str(), "raw" | "label")) {
                    let message = if key == "id" && map.get("id").is_some_and(is_file_reference) {
                        FILE_REFERENCE.to_owned()
                    } else {
                        format!("`{key}` is not supported in a prompt; give `raw` and optionally `label`")
                    };
                    problems.add(format!("{field}.{key}"), message);
                }
                let label = match map.get("label") {
                    None => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => {
                        problems.add(format!("{field}.label"), "must be a string");
                        None
                    }
                };
                match map.get("raw") {
                    Some(Value::String(raw)) => (raw.clone(), label),
                    _ => {
                        if !map.contains_key("id") {
                            problems.add(format!("{field}.raw"), "must be the prompt's text");
                        }
                        continue;
                    }
                }
            }
            _ => {
                problems.add(field, "must be a prompt string");
                continue;
            }
        };
        if names_file(&raw) {
            problems.add(field, FILE_REFERENCE);
            continue;
        }
        let messages = chat_messages(&raw).unwrap_or_default();
        // A template that does not parse is reported when its card is decided.
        let variables = if messages.is_empty() {
            template_variables(&raw)
                .map(|v| v.into_iter().collect())
                .unwrap_or_default()
        } else {
            let used = messages
                .iter()
                .filter_map(|m| template_variables(&m.content).ok())
                .flatten();
            used.collect::<std::collections::BTreeSet<_>>().into_iter().collect()
        };
        prompts.push(Prompt {
            raw,
            label,
            variables,
            messages,
        });
    }
    prompts
}

fn read_providers(value: Option<&Value>, problems: &mut Problems) -> Vec<ProviderSpec> {
    let items = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(id @ Value::String(_)) => vec![id.clone()],
        Some(Value::Array(items)) => items.clone(),
        Some(_) => {
            problems.add("providers", "must be a list of provider ids or {id, config} objects");
            return Vec::new();
        }
    };
    let mut providers = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("providers[{i}]");
        let (id, config) = match item {
            Value::String(id) => (id.clone(), Value::Null),
            Value::Object(map) => {
                for key in map.keys().filter(|k| !matches!(k.as_str(), "id" | "config")) {
                    problems.add(
                        format!("{field}.{key}"),
                        format!("`{key}` is not supported in a provider; give `id` and optionally `config`"),
                    );
                }
                match map.get("id") {
                    Some(Value::String(id)) => (id.clone(), map.get("config").cloned().unwrap_or(Value::Null)),
                    _ => {
                        problems.add(
                            format!("{field}.id"),
                            "must be a provider id such as openai:gpt-4o-mini",
                        );
                        continue;
                    }
                }
            }
            _ => {
                problems.add(field, "must be a provider id or an {id, config} object");
                continue;
            }
        };
        if names_file(&id) {
            problems.add(field, FILE_REFERENCE);
        } else if !is_known_provider(&id) {
            problems.add(
                field,
                format!("{id:?} is not a provider Promptcards calls (echo, openai:<model>, ollama:chat:<model>, anthropic:messages:<model>)"),
            );
        } else {
            providers.push(ProviderSpec { id, config });
        }
    }
    providers
}

/// A test as written, before merging with `defaultTest` and expanding list vars.
#[derive(Default)]
struct RawTest {
    description: Option<String>,
    vars: Map<String, Value>,
    assertions: Vec<Assertion>,
    /// `options`: the grading `provider` and `rubricPrompt`, by key.
    options: Map<String, Value>,
}

/// The keys of a test's `options` that Promptcards imports.
const GRADING_OPTIONS: &[&str] = &["provider", "rubricPrompt"];

fn read_default_test(value: Option<&Value>, problems: &mut Problems) -> RawTest {
    match value {
        None | Some(Value::Null) => RawTest::default(),
        Some(v) if is_file_reference(v) => {
            problems.add("defaultTest", FILE_REFERENCE);
            RawTest::default()
        }
        Some(v) => read_test(v, "defaultTest", false, problems),
    }
}

fn read_test(value: &Value, field: &str, described: bool, problems: &mut Problems) -> RawTest {
    let mut test = RawTest::default();
    let Some(map) = value.as_object() else {
        problems.add(field, "must be a mapping with vars and assert");
        return test;
    };
    for key in map.keys() {
        match key.as_str() {
            "vars" | "assert" => {}
            "description" if described => {}
            "threshold" => problems.add(format!("{field}.threshold"), "a test-level threshold is not supported"),
            "options" => {}
            key => problems.add(format!("{field}.{key}"), format!("`{key}` is not supported in a test")),
        }
    }
    match map.get("description") {
        Some(Value::String(s)) if described => test.description = Some(s.clone()),
        None | Some(Value::Null) => {}
        Some(_) if described => problems.add(format!("{field}.description"), "must be a string"),
        Some(_) => {}
    }
    match map.get("vars") {
        None | Some(Value::Null) => {}
        Some(Value::Object(vars)) => {
            for (name, value) in vars {
                let file = match value {
                    Value::Array(items) => items.iter().any(is_file_reference),
                    v => is_file_reference(v),
                };
                if file {
                    problems.add(format!("{field}.vars.{name}"), FILE_REFERENCE);
                }
            }
            test.vars = vars.clone();
        }
        Some(v) if is_file_reference(v) => problems.add(format!("{field}.vars"), FILE_REFERENCE),
        Some(_) => problems.add(format!("{field}.vars"), "must be a mapping of variable names to values"),
    }
    match map.get("options") {
        None | Some(Value::Null) => {}
        Some(Value::Object(options)) => {
            for (key, value) in options {
                if GRADING_OPTIONS.contains(&key.as_str()) {
                    test.options.insert(key.clone(), value.clone());
                } else {
                    problems.add(
                        format!("{field}.options.{key}"),
                        format!("`{key}` is not supported in test options (only provider and rubricPrompt are)"),
                    );
                }
            }
        }
        Some(_) => problems.add(format!("{field}.options"), "must be a mapping"),
    }
    match map.get("assert") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(assertion) = read_assertion(item, &format!("{field}.assert[{i}]"), problems) {
                    test.assertions.push(assertion);
                }
            }
        }
        Some(_) => problems.add(format!("{field}.assert"), "must be a list of assertions"),
    }
    test
}

fn read_assertion(value: &Value, field: &str, problems: &mut Problems) -> Option<Assertion> {
    let Some(map) = value.as_object() else {
        problems.add(field, "must be an assertion: {type, value}");
        return None;
    };
    let Some(kind) = map.get("type").and_then(Value::as_str) else {
        problems.add(format!("{field}.type"), "must be an assertion type such as contains");
        return None;
    };
    let base = kind.strip_prefix("not-").unwrap_or(kind);
    let mut supported = true;
    if CODE_TYPES.contains(&base) {
        problems.add(
            field,
            format!("{kind} assertions run code, which Promptcards does not import"),
        );
        supported = false;
    } else if MODEL_GRADED_TYPES.contains(&base) && kind.parse::<AssertionType>().is_err() {
        let graded: Vec<&str> = Kind::names()
            .into_iter()
            .filter(|name| name.parse::<Kind>().is_ok_and(Kind::is_model_graded))
            .collect();
        problems.add(
            field,
            format!(
                "{kind} is a model-graded type Promptcards does not grade (it grades {})",
                graded.join(", ")
            ),
        );
        supported = false;
    } else if kind.parse::<AssertionType>().is_err() {
        problems.add(
            field,
            format!(
                "{kind} is not an assertion type Promptcards evaluates (it evaluates {})",
                Kind::names().join(", ")
            ),
        );
        supported = false;
    }
    for key in map.keys().filter(|k| {
        !matches!(
            k.as_str(),
            "type" | "value" | "threshold" | "weight" | "provider" | "rubricPrompt"
        )
    }) {
        problems.add(
            format!("{field}.{key}"),
            format!("`{key}` is not supported in an assertion"),
        );
        supported = false;
    }
    let value = map.get("value").cloned();
    let file = match &value {
        Some(Value::Array(items)) => items.iter().any(is_file_reference),
        Some(v) => is_file_reference(v),
        None => false,
    };
    if file {
        problems.add(format!("{field}.value"), FILE_REFERENCE);
        supported = false;
    }
    let mut number = |key: &str| match map.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => v.as_f64().or_else(|| {
            problems.add(format!("{field}.{key}"), "must be a number");
            None
        }),
    };
    let threshold = number("threshold");
    let weight = number("weight");
    let file_prompt = map.get("rubricPrompt").is_some_and(is_file_reference);
    if file_prompt {
        problems.add(format!("{field}.rubricPrompt"), FILE_REFERENCE);
    }
    (supported && !file_prompt).then(|| Assertion {
        kind: kind.to_owned(),
        value,
        threshold,
        weight,
        provider: map.get("provider").filter(|v| !v.is_null()).cloned(),
        rubric_prompt: map.get("rubricPrompt").filter(|v| !v.is_null()).cloned(),
    })
}

/// The assertions with the test's grading options applied, as promptfoo's `getFinalTest` does:
/// an assertion's own `provider` and `rubricPrompt` win. A test-level provider goes only to the
/// assertions it can grade (an embedding model to `similar`, a chat model to the others).
fn with_grading_options(assertions: Vec<Assertion>, options: &Map<String, Value>) -> Vec<Assertion> {
    let is_embedding = |provider: &Value| {
        let id = provider
            .as_str()
            .or_else(|| provider.get("id").and_then(Value::as_str))
            .unwrap_or_default();
        assertions::model_graded::EMBEDDING_PREFIXES
            .iter()
            .any(|prefix| id.starts_with(prefix))
    };
    assertions
        .into_iter()
        .map(|mut assertion| {
            let Ok(AssertionType { kind, .. }) = assertion.assertion_type() else {
                return assertion;
            };
            if !kind.is_model_graded() {
                return assertion;
            }
            if assertion.provider.is_none() {
                assertion.provider = options
                    .get("provider")
                    .filter(|p| !p.is_null() && is_embedding(p) == (kind == Kind::Similar))
                    .cloned();
            }
            if assertion.rubric_prompt.is_none() && kind != Kind::Similar {
                assertion.rubric_prompt = options.get("rubricPrompt").filter(|p| !p.is_null()).cloned();
            }
            assertion
        })
        .collect()
}

fn read_tests(value: Option<&Value>, default: &RawTest, problems: &mut Problems) -> Vec<ImportedCase> {
    let tests: Vec<RawTest> = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| read_test(item, &format!("tests[{i}]"), true, problems))
            .collect(),
        Some(v) if is_file_reference(v) => {
            problems.add("tests", FILE_REFERENCE);
            return Vec::new();
        }
        Some(_) => {
            problems.add("tests", "must be a list of tests");
            return Vec::new();
        }
    };
    // Without tests promptfoo evaluates each prompt once, with defaultTest alone.
    let tests = if tests.is_empty() {
        vec![RawTest::default()]
    } else {
        tests
    };
    let mut cases = Vec::new();
    for (i, test) in tests.into_iter().enumerate() {
        let mut vars = default.vars.clone();
        vars.extend(test.vars);
        let mut assertions = default.assertions.clone();
        assertions.extend(test.assertions);
        let mut options = default.options.clone();
        options.extend(test.options);
        let assertions = with_grading_options(assertions, &options);
        let name = test.description.unwrap_or_else(|| format!("Test {}", i + 1));
        let combinations = combinations(&vars);
        let count = combinations.len();
        for (k, vars) in combinations.into_iter().enumerate() {
            cases.push(ImportedCase {
                origin: format!("tests[{i}]"),
                default_assertions: default.assertions.len(),
                content: TestCaseContent {
                    name: if count > 1 {
                        format!("{name} ({}/{count})", k + 1)
                    } else {
                        name.clone()
                    },
                    vars,
                    expected_output: None,
                    assertions: assertions.clone(),
                },
            });
            if cases.len() > MAX_CASES {
                return cases;
            }
        }
    }
    cases
}

/// promptfoo's `generateVarCombinations`: a var holding a list whose first item is a string
/// stands for each of its items; the first such var varies slowest.
fn combinations(vars: &Map<String, Value>) -> Vec<Map<String, Value>> {
    let mut combinations = vec![Map::new()];
    for (name, value) in vars {
        let values = match value {
            Value::Array(items) if items.first().is_some_and(Value::is_string) => items.clone(),
            other => vec![other.clone()],
        };
        combinations = combinations
            .iter()
            .flat_map(|combination| {
                values.iter().map(move |value| {
                    let mut next = combination.clone();
                    next.insert(name.clone(), value.clone());
                    next
                })
            })
            .take(MAX_CASES + 1)
            .collect();
    }
    combinations
}

/// One declaration per variable the prompt or the tests name, sorted by name. Its type is the
/// one every value given has (JSON when they differ); it is required when every case gives it.
fn infer_variables(prompt: &Prompt, cases: &[ImportedCase]) -> Vec<Variable> {
    let mut kinds: BTreeMap<String, Option<VarType>> = BTreeMap::new();
    for name in &prompt.variables {
        kinds.entry(name.clone()).or_insert(None);
    }
    for case in cases {
        for (name, value) in &case.content.vars {
            let kind = match value {
                Value::String(_) => VarType::String,
                Value::Number(_) => VarType::Number,
                Value::Bool(_) => VarType::Boolean,
                _ => VarType::Json,
            };
            let entry = kinds.entry(name.clone()).or_insert(None);
            *entry = match *entry {
                None => Some(kind),
                Some(seen) if seen == kind => Some(kind),
                Some(_) => Some(VarType::Json),
            };
        }
    }
    kinds
        .into_iter()
        .map(|(name, kind)| Variable {
            required: !cases.is_empty() && cases.iter().all(|c| c.content.vars.contains_key(&name)),
            name,
            kind: kind.unwrap_or(VarType::String),
            description: None,
            default: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(yaml: &str) -> Value {
        parse_yaml(yaml).expect("valid YAML")
    }

    fn fields(error: DomainError) -> Vec<(String, String)> {
        match error {
            DomainError::Invalid(fields) => fields.into_iter().map(|f| (f.field, f.message)).collect(),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn a_chat_prompt_in_json_form_becomes_a_chat_card() {
        let import = translate(&config(
            r#"
prompts:
  - '[{"role": "system", "content": "You are {{ persona }}"}, {"role": "user", "content": "{{ question }}"}]'
providers: [echo]
tests:
  - vars: {persona: terse, question: why}
"#,
        ))
        .expect("importable");
        let content = &import.cards[0].content;
        assert_eq!(content.kind(), crate::prompt::PromptKind::Chat);
        assert_eq!(content.template, "");
        assert_eq!(content.messages[1].content, "{{ question }}");
        let names: Vec<_> = content.variables.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["persona", "question"]);
    }

    #[test]
    fn one_card_per_prompt_with_the_tests_in_order_and_default_test_merged_as_promptfoo_does() {
        let import = translate(&config(
            r#"
description: Summaries
prompts:
  - "Summarize: {{ text }}"
  - raw: "TL;DR {{ text }} in {{ lang }}"
    label: Short
providers: [echo, {id: "openai:gpt-4o-mini", config: {temperature: 0}}]
defaultTest:
  vars: {lang: en, text: default}
  assert:
    - {type: contains, value: "{{ text }}"}
tests:
  - description: first
    vars: {text: hello}
    assert:
      - {type: not-icontains, value: bye, weight: 2}
  - vars: {lang: fr}
"#,
        ))
        .expect("importable");
        assert_eq!(import.cards.len(), 2);
        assert_eq!(import.cards[0].content.title, "Summaries (prompt 1)");
        assert_eq!(import.cards[1].content.title, "Short");
        assert_eq!(import.cards[1].content.template, "TL;DR {{ text }} in {{ lang }}");
        assert!(import.cards.iter().all(|c| c.content.description == "Summaries"));
        let cases = &import.cards[0].cases;
        assert_eq!(
            cases.iter().map(|c| c.content.name.as_str()).collect::<Vec<_>>(),
            ["first", "Test 2"]
        );
        // The test's vars win over defaultTest's; defaultTest's fill the rest.
        assert_eq!(
            Value::Object(cases[0].content.vars.clone()),
            json!({"lang": "en", "text": "hello"})
        );
        assert_eq!(
            Value::Object(cases[1].content.vars.clone()),
            json!({"lang": "fr", "text": "default"})
        );
        // defaultTest's assertions come first.
        let kinds: Vec<_> = cases[0].content.assertions.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, ["contains", "not-icontains"]);
        assert_eq!(cases[0].content.assertions[1].weight, Some(2.0));
        assert_eq!(cases[1].content.assertions.len(), 1);
        assert_eq!(
            import.providers,
            vec![
                ProviderSpec {
                    id: "echo".into(),
                    config: Value::Null
                },
                ProviderSpec {
                    id: "openai:gpt-4o-mini".into(),
                    config: json!({"temperature": 0})
                },
            ]
        );
        assert!(import.ignored.is_empty());
    }

    #[test]
    fn list_vars_expand_into_one_case_per_combination_the_first_var_varying_slowest() {
        let import = translate(&config(
            r#"
prompts: ["{{ a }} {{ b }} {{ n }}"]
tests:
  - description: grid
    vars: {a: [x, y], b: [p, q], n: [1, 2]}
"#,
        ))
        .expect("importable");
        let cases = &import.cards[0].cases;
        let got: Vec<_> = cases
            .iter()
            .map(|c| {
                (
                    c.content.name.clone(),
                    c.content.vars["a"].clone(),
                    c.content.vars["b"].clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("grid (1/4)".to_owned(), json!("x"), json!("p")),
                ("grid (2/4)".to_owned(), json!("x"), json!("q")),
                ("grid (3/4)".to_owned(), json!("y"), json!("p")),
                ("grid (4/4)".to_owned(), json!("y"), json!("q")),
            ]
        );
        // A list whose first item is not a string stays one value, as in promptfoo.
        assert!(cases.iter().all(|c| c.content.vars["n"] == json!([1, 2])));
        assert!(cases.iter().all(|c| c.origin == "tests[0]"));
    }

    #[test]
    fn variables_are_declared_with_the_type_every_value_has_and_required_when_every_case_gives_them() {
        let import = translate(&config(
            r#"
prompts: ["{{ text }} {{ count }} {{ flag }} {{ mixed }} {{ unset }}"]
tests:
  - vars: {text: a, count: 1, flag: true, mixed: 1, extra: {k: v}}
  - vars: {text: b, count: 2.5, mixed: two}
"#,
        ))
        .expect("importable");
        let vars: Vec<_> = import.cards[0]
            .content
            .variables
            .iter()
            .map(|v| (v.name.as_str(), v.kind, v.required))
            .collect();
        assert_eq!(
            vars,
            vec![
                ("count", VarType::Number, true),
                ("extra", VarType::Json, false),
                ("flag", VarType::Boolean, false),
                ("mixed", VarType::Json, true),
                ("text", VarType::String, true),
                ("unset", VarType::String, false),
            ]
        );
    }

    #[test]
    fn without_tests_each_prompt_gets_one_case_from_default_test() {
        let import = translate(&config(
            "prompts: ['Hi {{ name }}']\ndefaultTest: {vars: {name: Ada}, assert: [{type: contains, value: Ada}]}\n",
        ))
        .expect("importable");
        let cases = &import.cards[0].cases;
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].content.vars["name"], json!("Ada"));
        assert_eq!(cases[0].content.assertions.len(), 1);
        assert_eq!(import.cards[0].content.title, "Hi {{ name }}");
    }

    #[test]
    fn every_item_that_cannot_be_represented_is_listed_with_its_path() {
        let error = translate(&config(
            r#"
prompts:
  - "ok {{ q }}"
  - file://prompts/other.txt
  - id: file://prompt.json
providers: [echo, bedrock:claude, file://providers.yaml]
scenarios: []
defaultTest:
  assert: [{type: context-recall, value: polite}]
tests:
  - vars: {q: file://question.txt}
    threshold: 0.5
    assert:
      - {type: javascript, value: "output.length > 3"}
      - {type: not-python, value: "True"}
      - {type: contains, value: file://expected.txt}
      - {type: contains, value: x, metric: accuracy}
      - {type: rouge-n, value: x}
      - {type: equals, value: fine}
  - file://more.yaml
"#,
        ))
        .expect_err("not importable");
        let paths: Vec<_> = fields(error).into_iter().map(|(field, _)| field).collect();
        assert_eq!(
            paths,
            [
                "scenarios",
                "prompts[1]",
                "prompts[2].id",
                "providers[1]",
                "providers[2]",
                "defaultTest.assert[0]",
                "tests[0].threshold",
                "tests[0].vars.q",
                "tests[0].assert[0]",
                "tests[0].assert[1]",
                "tests[0].assert[2].value",
                "tests[0].assert[3].metric",
                "tests[0].assert[4]",
                "tests[1]",
            ]
        );
    }

    #[test]
    fn model_graded_assertions_are_imported_with_the_tests_grading_options() {
        let import = translate(&config(
            r#"
prompts: ["Answer {{ q }}"]
defaultTest:
  options:
    provider: openai:chat:gpt-4.1-mini
  assert:
    - {type: llm-rubric, value: is polite}
tests:
  - vars: {q: capital of France}
    options:
      rubricPrompt: "Grade {{ output }} against {{ rubric }}"
    assert:
      - {type: similar, value: Paris, threshold: 0.8, provider: openai:embedding:text-embedding-3-small}
      - {type: factuality, value: Paris is the capital of France}
      - {type: model-graded-closedqa, value: names a city, provider: {id: "openai:gpt-4o", config: {temperature: 0}}}
      - {type: g-eval, value: [coherent, concise], threshold: 0.5}
      - {type: not-llm-rubric, value: is rude}
      - {type: contains, value: Paris}
"#,
        ))
        .expect("importable");
        let assertions = &import.cards[0].cases[0].content.assertions;
        let summary: Vec<(&str, Option<Value>, Option<Value>)> = assertions
            .iter()
            .map(|a| (a.kind.as_str(), a.provider.clone(), a.rubric_prompt.clone()))
            .collect();
        let chat = Some(json!("openai:chat:gpt-4.1-mini"));
        let rubric = Some(json!("Grade {{ output }} against {{ rubric }}"));
        assert_eq!(
            summary,
            vec![
                ("llm-rubric", chat.clone(), rubric.clone()),
                ("similar", Some(json!("openai:embedding:text-embedding-3-small")), None),
                ("factuality", chat.clone(), rubric.clone()),
                (
                    "model-graded-closedqa",
                    Some(json!({"id": "openai:gpt-4o", "config": {"temperature": 0}})),
                    rubric.clone()
                ),
                ("g-eval", chat.clone(), rubric.clone()),
                ("not-llm-rubric", chat, rubric),
                ("contains", None, None),
            ]
        );
        assert_eq!(assertions[1].threshold, Some(0.8));
        assert!(assertions::check_assertions(assertions).is_empty());
    }

    #[test]
    fn grading_options_other_than_provider_and_rubric_prompt_are_refused() {
        let error = translate(&config(
            "prompts: [a]\ntests:\n  - options: {transform: output.trim(), provider: openai:chat:m}\n    assert: [{type: llm-rubric, value: x, rubricPrompt: file://grade.txt}]\n",
        ))
        .expect_err("not importable");
        let paths: Vec<_> = fields(error).into_iter().map(|(field, _)| field).collect();
        assert_eq!(paths, ["tests[0].options.transform", "tests[0].assert[0].rubricPrompt"]);
    }

    #[test]
    fn the_reasons_say_what_kind_of_item_it_is() {
        let error = translate(&config(
            "prompts: [file://p.txt]\ntests:\n  - assert: [{type: python, value: x}, {type: not-answer-relevance, value: y}]\n",
        ))
        .expect_err("not importable");
        let messages: BTreeMap<_, _> = fields(error).into_iter().collect();
        assert!(messages["prompts[0]"].contains("file://"), "{messages:?}");
        assert!(messages["tests[0].assert[0]"].contains("run code"), "{messages:?}");
        assert!(messages["tests[0].assert[1]"].contains("model-graded"), "{messages:?}");
    }

    #[test]
    fn malformed_configs_are_refused_with_the_field_named() {
        for (yaml, field) in [
            ("[1, 2]", "body"),
            ("description: x", "prompts"),
            ("prompts: []", "prompts"),
            ("prompts: [7]", "prompts[0]"),
            ("prompts: [a]\ntests: {a: 1}", "tests"),
            ("prompts: [a]\ntests: [{vars: [1]}]", "tests[0].vars"),
            (
                "prompts: [a]\ntests: [{assert: [{value: 1}]}]",
                "tests[0].assert[0].type",
            ),
            (
                "prompts: [a]\ntests: [{assert: [{type: equals, value: a, weight: heavy}]}]",
                "tests[0].assert[0].weight",
            ),
        ] {
            let got = fields(translate(&config(yaml)).expect_err(yaml));
            assert!(got.iter().any(|(f, _)| f == field), "{yaml}: {got:?}");
        }
    }

    #[test]
    fn cli_only_keys_are_skipped_and_named() {
        let import = translate(&config("prompts: [a]\noutputPath: out.json\nsharing: false\n")).expect("importable");
        assert_eq!(import.ignored, ["outputPath", "sharing"]);
    }

    #[test]
    fn yaml_anchors_and_merge_keys_are_applied() {
        let import = translate(&config(
            r#"
prompts: ["{{ a }} {{ b }}"]
tests:
  - vars: &base {a: one, b: two}
  - vars:
      <<: *base
      b: three
"#,
        ))
        .expect("importable");
        let cases = &import.cards[0].cases;
        assert_eq!(
            Value::Object(cases[1].content.vars.clone()),
            json!({"a": "one", "b": "three"})
        );
    }

    #[test]
    fn too_many_combinations_are_refused() {
        let values: Vec<String> = (0..50).map(|i| format!("v{i}")).collect();
        let yaml = format!("prompts: [x]\ntests:\n  - vars: {{a: {values:?}, b: {values:?}}}\n");
        let got = fields(translate(&config(&yaml)).expect_err("too many"));
        assert_eq!(got[0].0, "tests");
    }

    #[test]
    fn problems_found_later_are_named_where_the_config_has_them() {
        let case = ImportedCase {
            origin: "tests[4]".into(),
            default_assertions: 2,
            content: TestCaseContent {
                name: "n".into(),
                vars: Map::new(),
                expected_output: None,
                assertions: vec![],
            },
        };
        let error = DomainError::Invalid(vec![
            FieldError::new("name", "too long"),
            FieldError::new("assertions[1].value", "bad"),
            FieldError::new("assertions[3].threshold", "bad"),
            FieldError::new("vars.q", "must be a string"),
        ]);
        let got: Vec<_> = fields(case.locate(error)).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            got,
            [
                "tests[4].description",
                "defaultTest.assert[1].value",
                "tests[4].assert[1].threshold",
                "tests[4].vars.q"
            ]
        );
    }
}
