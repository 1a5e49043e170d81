//! Prompt templates (Jinja syntax, as promptfoo's Nunjucks) and their typed variables.

use crate::error::Problems;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::sync::LazyLock;

pub const MAX_VARIABLES: usize = 50;
pub const MAX_TEMPLATE_CHARS: usize = 100_000;

static VARIABLE_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").expect("valid regex"));

/// Names a template may use without declaring them: functions the engine provides.
const ENGINE_GLOBALS: &[&str] = &["range", "dict", "debug", "namespace", "loop", "self"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VarType {
    String,
    Number,
    Boolean,
    Json,
}

impl VarType {
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            VarType::String => value.is_string(),
            VarType::Number => value.is_number(),
            VarType::Boolean => value.is_boolean(),
            VarType::Json => true,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VarType::String => "string",
            VarType::Number => "number",
            VarType::Boolean => "boolean",
            VarType::Json => "json",
        }
    }
}

/// A declared template variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variable {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: VarType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Whether a test case must give a value. Defaults to "no default declared".
    pub required: bool,
}

/// Checks declarations: names, uniqueness, count and defaults of the declared type.
pub(crate) fn check_variables(variables: &[Variable], problems: &mut Problems) {
    if variables.len() > MAX_VARIABLES {
        problems.add(
            "variables",
            format!("at most {MAX_VARIABLES} variables, got {}", variables.len()),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, var) in variables.iter().enumerate() {
        let field = format!("variables[{i}]");
        if !VARIABLE_NAME.is_match(&var.name) {
            problems.add(
                format!("{field}.name"),
                format!("{:?} must match ^[A-Za-z_][A-Za-z0-9_]*$", var.name),
            );
        }
        if !seen.insert(var.name.as_str()) {
            problems.add(format!("{field}.name"), format!("{:?} is declared twice", var.name));
        }
        if var.description.as_ref().is_some_and(|d| d.chars().count() > 1_000) {
            problems.add(format!("{field}.description"), "must be at most 1,000 characters");
        }
        if let Some(default) = &var.default {
            if !var.kind.accepts(default) {
                problems.add(format!("{field}.default"), format!("must be a {}", var.kind.as_str()));
            }
        }
    }
}

/// Parses a template and returns the variables it reads from its context.
pub fn template_variables(template: &str) -> Result<BTreeSet<String>, String> {
    let env = minijinja::Environment::new();
    let parsed = env.template_from_str(template).map_err(|e| {
        let detail = e.detail().unwrap_or("syntax error");
        match e.line() {
            Some(line) => format!("{detail} (line {line})"),
            None => detail.to_owned(),
        }
    })?;
    Ok(parsed
        .undeclared_variables(false)
        .into_iter()
        .filter(|name| !ENGINE_GLOBALS.contains(&name.as_str()))
        .collect())
}

/// Checks a template's length, syntax, and that it uses only declared variables.
pub(crate) fn check_template(template: &str, variables: &[Variable], problems: &mut Problems) {
    let len = template.chars().count();
    if len == 0 || len > MAX_TEMPLATE_CHARS {
        problems.add("template", format!("must be 1 to {MAX_TEMPLATE_CHARS} characters"));
        return;
    }
    match template_variables(template) {
        Err(message) => problems.add("template", format!("does not parse: {message}")),
        Ok(used) => {
            let undeclared: Vec<_> = used
                .iter()
                .filter(|name| !variables.iter().any(|v| &v.name == *name))
                .map(String::as_str)
                .collect();
            if !undeclared.is_empty() {
                problems.add(
                    "template",
                    format!("uses undeclared variables: {}", undeclared.join(", ")),
                );
            }
        }
    }
}

/// Renders a template with the given values, filling declared defaults first.
pub fn render(template: &str, variables: &[Variable], values: &Map<String, Value>) -> Result<String, String> {
    let mut context = Map::new();
    for var in variables {
        if let Some(default) = &var.default {
            context.insert(var.name.clone(), default.clone());
        }
    }
    context.extend(values.clone());
    let env = minijinja::Environment::new();
    env.render_str(template, Value::Object(context))
        .map_err(|e| e.to_string())
}

/// Checks test-case values against the declared variables: known names, right types, required
/// ones present. Field names are reported under `prefix`.
pub(crate) fn check_values(variables: &[Variable], values: &Map<String, Value>, prefix: &str, problems: &mut Problems) {
    for (name, value) in values {
        match variables.iter().find(|v| &v.name == name) {
            None => problems.add(format!("{prefix}.{name}"), "is not a variable of the card"),
            Some(var) if !var.kind.accepts(value) => {
                problems.add(format!("{prefix}.{name}"), format!("must be a {}", var.kind.as_str()))
            }
            Some(_) => {}
        }
    }
    for var in variables {
        if var.required && !values.contains_key(&var.name) {
            problems.add(format!("{prefix}.{}", var.name), "is required");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str, kind: VarType) -> Variable {
        Variable {
            name: name.into(),
            kind,
            description: None,
            default: None,
            required: true,
        }
    }

    #[test]
    fn finds_top_level_variables_but_not_loop_locals_or_engine_functions() {
        let used = template_variables(
            "Hi {{ name }}! {% for item in items %}{{ item.title }}{% endfor %}{% for i in range(3) %}{{ loop.index }}{% endfor %}{% set x = 1 %}{{ x }}",
        )
        .unwrap();
        assert_eq!(used, BTreeSet::from(["items".to_owned(), "name".to_owned()]));
    }

    #[test]
    fn undeclared_variables_are_named() {
        let mut problems = Problems::default();
        check_template("{{ a }} {{ b }} {{ c }}", &[var("a", VarType::String)], &mut problems);
        let err = problems.into_result().unwrap_err().to_string();
        assert!(err.contains("undeclared variables: b, c"), "{err}");
    }

    #[test]
    fn syntax_errors_are_reported() {
        let mut problems = Problems::default();
        check_template("{{ a ", &[var("a", VarType::String)], &mut problems);
        assert!(problems
            .into_result()
            .unwrap_err()
            .to_string()
            .contains("does not parse"));
    }

    #[test]
    fn values_are_checked_against_declarations() {
        let vars = [var("n", VarType::Number), var("s", VarType::String)];
        let mut values = Map::new();
        values.insert("n".into(), Value::from("five"));
        values.insert("x".into(), Value::from(1));
        let mut problems = Problems::default();
        check_values(&vars, &values, "vars", &mut problems);
        let err = problems.into_result().unwrap_err().to_string();
        assert!(err.contains("vars.n: must be a number"), "{err}");
        assert!(err.contains("vars.x: is not a variable"), "{err}");
        assert!(err.contains("vars.s: is required"), "{err}");
    }

    #[test]
    fn renders_with_defaults_and_values() {
        let mut greeting = var("greeting", VarType::String);
        greeting.default = Some("Hello".into());
        let mut values = Map::new();
        values.insert("name".into(), Value::from("Ada"));
        let out = render(
            "{{ greeting }}, {{ name }}!",
            &[greeting, var("name", VarType::String)],
            &values,
        )
        .unwrap();
        assert_eq!(out, "Hello, Ada!");
    }
}
