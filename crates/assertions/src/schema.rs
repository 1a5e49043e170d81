//! Hand-written: the jsonschema crate has neither Ajv's error messages (promptfoo's reasons) nor its strict mode.
//! One validator walking one keyword table, so it stays one file past 600 lines.
//!
//! JSON Schema (draft-07) validation for `is-json` and `contains-json`, as promptfoo runs it
//! through Ajv in strict mode: the same keywords, checked in Ajv's order, with Ajv's error
//! messages (`data/age must be >= 0`). Unknown keywords are refused as Ajv's strict mode refuses
//! them. `format` and references other than local `#/...` pointers are not supported and say so.

use crate::js;
use crate::js_regex::{JsRegex, RegexError};
use serde_json::{Map, Value};

const DRAFT_07: &[&str] = &[
    "http://json-schema.org/draft-07/schema",
    "http://json-schema.org/draft-07/schema#",
];

/// Keywords Ajv accepts that carry no validation.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "title",
    "description",
    "default",
    "examples",
    "readOnly",
    "writeOnly",
    "deprecated",
    "contentMediaType",
    "contentEncoding",
];

const VALIDATORS: &[&str] = &[
    "type",
    "nullable",
    "enum",
    "const",
    "multipleOf",
    "maximum",
    "minimum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "items",
    "additionalItems",
    "contains",
    "properties",
    "patternProperties",
    "additionalProperties",
    "propertyNames",
    "dependencies",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "$ref",
];

const TYPES: &[&str] = &["null", "boolean", "object", "array", "number", "string", "integer"];

/// Deep recursion through `$ref` (e.g. `{"$ref": "#"}`) stops here instead of overflowing.
const MAX_DEPTH: usize = 128;

/// A schema that passed Ajv's compile-time checks.
pub(crate) struct Schema<'a> {
    root: &'a Value,
}

/// One Ajv error: where in the data, and what is wrong.
struct Failure {
    path: String,
    message: String,
}

impl<'a> Schema<'a> {
    /// Checks the schema as Ajv's `compile` does; the error is the reason to report.
    pub(crate) fn compile(root: &'a Value) -> Result<Self, String> {
        if let Some(uri) = root.get("$schema") {
            if !uri.as_str().is_some_and(|u| DRAFT_07.contains(&u)) {
                return Err(format!("no schema with key or ref \"{}\"", js::to_string(uri)));
            }
        }
        check(root, root, "", 0)?;
        Ok(Schema { root })
    }

    /// `validate(data)`; on failure, Ajv's `errorsText(validate.errors)`.
    pub(crate) fn validate(&self, data: &Value) -> Result<(), String> {
        let mut failures = Vec::new();
        if validate(self.root, self.root, data, "", 0, &mut failures) {
            Ok(())
        } else {
            Err(failures
                .iter()
                .map(|f| format!("data{} {}", f.path, f.message))
                .collect::<Vec<_>>()
                .join(", "))
        }
    }
}

fn schema_error(path: &str, message: &str) -> String {
    format!("schema is invalid: data{path} {message}")
}

fn is_non_negative_integer(v: &Value) -> bool {
    v.as_f64().is_some_and(|n| n >= 0.0 && n.fract() == 0.0)
}

/// The compile-time checks: known keywords only, well-formed values, compilable patterns and
/// resolvable references.
fn check(root: &Value, schema: &Value, path: &str, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("the schema is nested too deeply".into());
    }
    let map = match schema {
        Value::Bool(_) => return Ok(()),
        Value::Object(map) => map,
        _ => return Err(schema_error(path, "must be object,boolean")),
    };
    for (keyword, value) in map {
        let at = format!("{path}/{}", pointer_escape(keyword));
        let sub = |v: &Value, suffix: &str| check(root, v, &format!("{at}{suffix}"), depth + 1);
        match keyword.as_str() {
            "format" => {
                return Err("the \"format\" keyword is not supported by Promptcards' schema validator".into());
            }
            "type" => {
                let names: Vec<&Value> = match value {
                    Value::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                if !names.iter().all(|n| n.as_str().is_some_and(|n| TYPES.contains(&n))) {
                    return Err(schema_error(&at, "must be equal to one of the allowed values"));
                }
            }
            "enum" if !value.is_array() => return Err(schema_error(&at, "must be array")),
            "multipleOf" if !value.as_f64().is_some_and(|n| n > 0.0) => {
                return Err(schema_error(&at, "must be > 0"));
            }
            "maximum" | "minimum" | "exclusiveMaximum" | "exclusiveMinimum" if !value.is_number() => {
                return Err(schema_error(&at, "must be number"));
            }
            "maxLength" | "minLength" | "maxItems" | "minItems" | "maxProperties" | "minProperties"
                if !is_non_negative_integer(value) =>
            {
                return Err(schema_error(&at, "must be >= 0"));
            }
            "uniqueItems" if !value.is_boolean() => return Err(schema_error(&at, "must be boolean")),
            "nullable" if !value.is_boolean() => return Err(schema_error(&at, "must be boolean")),
            "nullable" if value == &Value::Bool(true) && !map.contains_key("type") => {
                return Err("\"nullable\" cannot be used without \"type\"".into());
            }
            "pattern" => {
                let Some(pattern) = value.as_str() else {
                    return Err(schema_error(&at, "must be string"));
                };
                compile_pattern(pattern)?;
            }
            "required" => {
                if !value.as_array().is_some_and(|r| r.iter().all(Value::is_string)) {
                    return Err(schema_error(&at, "must be array"));
                }
            }
            "properties" | "patternProperties" | "definitions" | "$defs" | "dependencies" => {
                let Some(members) = value.as_object() else {
                    return Err(schema_error(&at, "must be object"));
                };
                for (name, member) in members {
                    if keyword == "patternProperties" {
                        compile_pattern(name)?;
                    }
                    let is_property_list =
                        keyword == "dependencies" && member.as_array().is_some_and(|d| d.iter().all(Value::is_string));
                    if !is_property_list {
                        sub(member, &format!("/{}", pointer_escape(name)))?;
                    }
                }
            }
            "items" if value.is_array() => {
                for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                    sub(item, &format!("/{i}"))?;
                }
            }
            "allOf" | "anyOf" | "oneOf" => {
                let Some(branches) = value.as_array().filter(|b| !b.is_empty()) else {
                    return Err(schema_error(&at, "must NOT have fewer than 1 items"));
                };
                for (i, branch) in branches.iter().enumerate() {
                    sub(branch, &format!("/{i}"))?;
                }
            }
            "items"
            | "additionalItems"
            | "contains"
            | "additionalProperties"
            | "propertyNames"
            | "not"
            | "if"
            | "then"
            | "else" => sub(value, "")?,
            "$ref" => {
                let Some(reference) = value.as_str() else {
                    return Err(schema_error(&at, "must be string"));
                };
                resolve(root, reference)?;
            }
            k if VALIDATORS.contains(&k) || ANNOTATIONS.contains(&k) => {}
            unknown => return Err(format!("strict mode: unknown keyword: \"{unknown}\"")),
        }
    }
    Ok(())
}

fn compile_pattern(pattern: &str) -> Result<JsRegex, String> {
    JsRegex::new(pattern, true).map_err(|e| match e {
        RegexError::Invalid(message) => message,
        RegexError::Unsupported(message) => format!("pattern {pattern:?}: {message}"),
    })
}

fn pointer_escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Resolves a local reference (`#`, `#/definitions/name`) within the root schema.
fn resolve<'a>(root: &'a Value, reference: &str) -> Result<&'a Value, String> {
    let Some(pointer) = reference.strip_prefix('#') else {
        return Err(format!(
            "can't resolve reference {reference}: only local references (#/...) are supported"
        ));
    };
    let decoded = percent_decode(pointer);
    root.pointer(&decoded)
        .ok_or_else(|| format!("can't resolve reference {reference} from id #"))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn type_name_matches(name: &str, data: &Value) -> bool {
    match name {
        "null" => data.is_null(),
        "boolean" => data.is_boolean(),
        "object" => data.is_object(),
        "array" => data.is_array(),
        "string" => data.is_string(),
        "number" => data.is_number(),
        "integer" => data.as_f64().is_some_and(|n| n.fract() == 0.0),
        _ => false,
    }
}

/// fast-deep-equal, which Ajv uses for `const`, `enum` and `uniqueItems`.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => js::json_number(x) == js::json_number(y),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equal(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn fail(failures: &mut Vec<Failure>, path: &str, message: String) -> bool {
    failures.push(Failure {
        path: path.to_owned(),
        message,
    });
    false
}

/// Validates `data` at `path` against `schema`, stopping at the first failure as Ajv does
/// without `allErrors`. Keyword order follows Ajv's: type, then keywords for any type
/// (`$ref`, `const`, `enum`, `not`, `anyOf`, `oneOf`, `allOf`, `if`), then number, string,
/// array and object keywords.
fn validate(root: &Value, schema: &Value, data: &Value, path: &str, depth: usize, failures: &mut Vec<Failure>) -> bool {
    if depth > MAX_DEPTH {
        return fail(
            failures,
            path,
            "is nested too deeply for the schema's references".into(),
        );
    }
    let s = match schema {
        Value::Bool(true) => return true,
        Value::Bool(false) => return fail(failures, path, "boolean schema is false".into()),
        Value::Object(map) => map,
        _ => return true,
    };
    let sub = |schema: &Value, data: &Value, path: &str, failures: &mut Vec<Failure>| {
        validate(root, schema, data, path, depth + 1, failures)
    };

    if let Some(types) = s.get("type") {
        let names: Vec<&str> = match types {
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            other => other.as_str().into_iter().collect(),
        };
        let nullable = s.get("nullable") == Some(&Value::Bool(true)) && data.is_null();
        if !nullable && !names.iter().any(|n| type_name_matches(n, data)) {
            return fail(failures, path, format!("must be {}", names.join(",")));
        }
    }
    if let Some(reference) = s.get("$ref").and_then(Value::as_str) {
        match resolve(root, reference) {
            Ok(target) if !sub(target, data, path, failures) => return false,
            Ok(_) => {}
            Err(message) => return fail(failures, path, message),
        }
    }
    if let Some(constant) = s.get("const") {
        if !equal(constant, data) {
            return fail(failures, path, "must be equal to constant".into());
        }
    }
    if let Some(Value::Array(allowed)) = s.get("enum") {
        if !allowed.iter().any(|a| equal(a, data)) {
            return fail(failures, path, "must be equal to one of the allowed values".into());
        }
    }
    if let Some(negated) = s.get("not") {
        if sub(negated, data, path, &mut Vec::new()) {
            return fail(failures, path, "must NOT be valid".into());
        }
    }
    if let Some(Value::Array(branches)) = s.get("anyOf") {
        let mut branch_failures = Vec::new();
        if !branches.iter().any(|b| sub(b, data, path, &mut branch_failures)) {
            failures.extend(branch_failures);
            return fail(failures, path, "must match a schema in anyOf".into());
        }
    }
    if let Some(Value::Array(branches)) = s.get("oneOf") {
        let mut branch_failures = Vec::new();
        let passing = branches
            .iter()
            .filter(|b| sub(b, data, path, &mut branch_failures))
            .count();
        if passing != 1 {
            if passing == 0 {
                failures.extend(branch_failures);
            }
            return fail(failures, path, "must match exactly one schema in oneOf".into());
        }
    }
    if let Some(Value::Array(branches)) = s.get("allOf") {
        if !branches.iter().all(|b| sub(b, data, path, failures)) {
            return false;
        }
    }
    if let Some(condition) = s.get("if") {
        let clause = if sub(condition, data, path, &mut Vec::new()) {
            "then"
        } else {
            "else"
        };
        // Without `allErrors`, Ajv stops at the clause's own error and adds none for `if`.
        if let Some(consequence) = s.get(clause) {
            if !sub(consequence, data, path, failures) {
                return false;
            }
        }
    }

    match data {
        Value::Number(n) => validate_number(s, js::json_number(n), path, failures),
        Value::String(text) => validate_string(s, text, path, failures),
        Value::Array(items) => validate_array(s, items, path, failures, &mut |schema, item, item_path, failures| {
            sub(schema, item, item_path, failures)
        }),
        Value::Object(members) => {
            validate_object(s, members, path, failures, &mut |schema, item, item_path, failures| {
                sub(schema, item, item_path, failures)
            })
        }
        _ => true,
    }
}

fn validate_number(s: &Map<String, Value>, n: f64, path: &str, failures: &mut Vec<Failure>) -> bool {
    for (keyword, op) in [
        ("maximum", "<="),
        ("minimum", ">="),
        ("exclusiveMaximum", "<"),
        ("exclusiveMinimum", ">"),
    ] {
        let Some(limit) = s.get(keyword).map(number) else {
            continue;
        };
        let ok = match op {
            "<=" => n <= limit,
            ">=" => n >= limit,
            "<" => n < limit,
            _ => n > limit,
        };
        if !ok {
            return fail(failures, path, format!("must be {op} {}", js::number_to_string(limit)));
        }
    }
    if let Some(divisor) = s.get("multipleOf").map(number) {
        // Ajv: `res = data / divisor; invalid if res !== parseInt(res)`. parseInt reads the
        // number's string form, so quotients printed in exponent notation are never integers.
        let quotient = n / divisor;
        let integral = quotient.is_finite() && quotient.fract() == 0.0 && !js::number_to_string(quotient).contains('e');
        if divisor == 0.0 || !integral {
            return fail(
                failures,
                path,
                format!("must be multiple of {}", js::number_to_string(divisor)),
            );
        }
    }
    true
}

fn validate_string(s: &Map<String, Value>, text: &str, path: &str, failures: &mut Vec<Failure>) -> bool {
    let length = text.chars().count() as f64;
    if let Some(max) = s.get("maxLength").map(number) {
        if length > max {
            return fail(failures, path, format!("must NOT have more than {max} characters"));
        }
    }
    if let Some(min) = s.get("minLength").map(number) {
        if length < min {
            return fail(failures, path, format!("must NOT have fewer than {min} characters"));
        }
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
        let matched = compile_pattern(pattern).and_then(|re| re.test(text));
        match matched {
            Ok(true) => {}
            Ok(false) => return fail(failures, path, format!("must match pattern \"{pattern}\"")),
            Err(message) => return fail(failures, path, message),
        }
    }
    true
}

type Sub<'s> = dyn FnMut(&Value, &Value, &str, &mut Vec<Failure>) -> bool + 's;

fn validate_array(
    s: &Map<String, Value>,
    items: &[Value],
    path: &str,
    failures: &mut Vec<Failure>,
    sub: &mut Sub<'_>,
) -> bool {
    let count = items.len() as f64;
    if let Some(max) = s.get("maxItems").map(number) {
        if count > max {
            return fail(failures, path, format!("must NOT have more than {max} items"));
        }
    }
    if let Some(min) = s.get("minItems").map(number) {
        if count < min {
            return fail(failures, path, format!("must NOT have fewer than {min} items"));
        }
    }
    if s.get("uniqueItems") == Some(&Value::Bool(true)) {
        for i in (0..items.len()).rev() {
            if let Some(j) = (0..i).rev().find(|&j| equal(&items[i], &items[j])) {
                return fail(
                    failures,
                    path,
                    format!("must NOT have duplicate items (items ## {j} and {i} are identical)"),
                );
            }
        }
    }
    let item_path = |i: usize| format!("{path}/{i}");
    match s.get("items") {
        Some(Value::Array(tuple)) => {
            if let Some(additional) = s.get("additionalItems") {
                if items.len() > tuple.len() {
                    if additional == &Value::Bool(false) {
                        return fail(failures, path, format!("must NOT have more than {} items", tuple.len()));
                    }
                    for (i, item) in items.iter().enumerate().skip(tuple.len()) {
                        if !sub(additional, item, &item_path(i), failures) {
                            return false;
                        }
                    }
                }
            }
            for (i, (schema, item)) in tuple.iter().zip(items).enumerate() {
                if !sub(schema, item, &item_path(i), failures) {
                    return false;
                }
            }
        }
        Some(schema) => {
            for (i, item) in items.iter().enumerate() {
                if !sub(schema, item, &item_path(i), failures) {
                    return false;
                }
            }
        }
        None => {}
    }
    if let Some(schema) = s.get("contains") {
        if !items
            .iter()
            .enumerate()
            .any(|(i, item)| sub(schema, item, &item_path(i), &mut Vec::new()))
        {
            return fail(failures, path, "must contain at least 1 valid item(s)".into());
        }
    }
    true
}

fn validate_object(
    s: &Map<String, Value>,
    members: &Map<String, Value>,
    path: &str,
    failures: &mut Vec<Failure>,
    sub: &mut Sub<'_>,
) -> bool {
    let count = members.len() as f64;
    if let Some(max) = s.get("maxProperties").map(number) {
        if count > max {
            return fail(failures, path, format!("must NOT have more than {max} properties"));
        }
    }
    if let Some(min) = s.get("minProperties").map(number) {
        if count < min {
            return fail(failures, path, format!("must NOT have fewer than {min} properties"));
        }
    }
    if let Some(Value::Array(required)) = s.get("required") {
        if let Some(missing) = required
            .iter()
            .filter_map(Value::as_str)
            .find(|r| !members.contains_key(*r))
        {
            return fail(failures, path, format!("must have required property '{missing}'"));
        }
    }
    if let Some(names) = s.get("propertyNames") {
        for name in members.keys() {
            if !sub(names, &Value::String(name.clone()), path, failures) {
                return fail(failures, path, "property name must be valid".into());
            }
        }
    }
    let member_path = |name: &str| format!("{path}/{}", pointer_escape(name));
    let properties = s.get("properties").and_then(Value::as_object);
    let patterns: Vec<(JsRegex, &Value)> = s
        .get("patternProperties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(p, schema)| compile_pattern(p).ok().map(|re| (re, schema)))
        .collect();
    let matches_pattern = |name: &str| patterns.iter().any(|(re, _)| re.test(name).unwrap_or(false));
    if let Some(additional) = s.get("additionalProperties") {
        for (name, value) in members {
            if properties.is_some_and(|p| p.contains_key(name)) || matches_pattern(name) {
                continue;
            }
            if additional == &Value::Bool(false) {
                return fail(failures, path, "must NOT have additional properties".into());
            }
            if !sub(additional, value, &member_path(name), failures) {
                return false;
            }
        }
    }
    if let Some(Value::Object(dependencies)) = s.get("dependencies") {
        for (property, dependency) in dependencies {
            if !members.contains_key(property) {
                continue;
            }
            match dependency {
                Value::Array(needed) => {
                    let names: Vec<&str> = needed.iter().filter_map(Value::as_str).collect();
                    if names.iter().any(|n| !members.contains_key(*n)) {
                        let noun = if names.len() == 1 { "property" } else { "properties" };
                        return fail(
                            failures,
                            path,
                            format!(
                                "must have {noun} {} when property {property} is present",
                                names.join(", ")
                            ),
                        );
                    }
                }
                schema => {
                    if !sub(schema, &Value::Object(members.clone()), path, failures) {
                        return false;
                    }
                }
            }
        }
    }
    if let Some(properties) = properties {
        for (name, schema) in properties {
            if let Some(value) = members.get(name) {
                if !sub(schema, value, &member_path(name), failures) {
                    return false;
                }
            }
        }
    }
    for (re, schema) in &patterns {
        for (name, value) in members {
            if re.test(name).unwrap_or(false) && !sub(schema, value, &member_path(name), failures) {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(schema: Value, data: Value) -> Result<(), String> {
        Schema::compile(&schema)?.validate(&data)
    }

    #[test]
    fn validates_the_common_keywords_with_ajv_messages() {
        let person = json!({
            "type": "object",
            "required": ["name", "age"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "age": {"type": "integer", "minimum": 0},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "uniqueItems": true}
            },
            "additionalProperties": false
        });
        assert_eq!(check(person.clone(), json!({"name": "Ada", "age": 36.0})), Ok(()));
        for (data, message) in [
            (json!([]), "data must be object"),
            (json!({"name": "Ada"}), "data must have required property 'age'"),
            (
                json!({"name": "", "age": 1}),
                "data/name must NOT have fewer than 1 characters",
            ),
            (json!({"name": "A", "age": -1}), "data/age must be >= 0"),
            (json!({"name": "A", "age": 1.5}), "data/age must be integer"),
            (
                json!({"name": "A", "age": 1, "x": 0}),
                "data must NOT have additional properties",
            ),
            (
                json!({"name": "A", "age": 1, "tags": ["c"]}),
                "data/tags/0 must be equal to one of the allowed values",
            ),
            (
                json!({"name": "A", "age": 1, "tags": ["a", "a"]}),
                "data/tags must NOT have duplicate items (items ## 0 and 1 are identical)",
            ),
        ] {
            assert_eq!(check(person.clone(), data.clone()), Err(message.to_owned()), "{data}");
        }
    }

    #[test]
    fn combinators_references_and_patterns_work() {
        let schema = json!({
            "definitions": {"id": {"type": "string", "pattern": "^[a-z]+\\d$"}},
            "anyOf": [{"$ref": "#/definitions/id"}, {"type": "number"}]
        });
        assert_eq!(check(schema.clone(), json!("abc1")), Ok(()));
        assert_eq!(check(schema.clone(), json!(3)), Ok(()));
        assert_eq!(
            check(schema, json!("ABC")),
            Err(
                "data must match pattern \"^[a-z]+\\d$\", data must be number, data must match a schema in anyOf"
                    .into()
            )
        );
        assert_eq!(
            check(json!({"not": {"const": 1}}), json!(1.0)),
            Err("data must NOT be valid".into())
        );
        assert_eq!(check(json!({"multipleOf": 0.5}), json!(2.5)), Ok(()));
        assert_eq!(
            check(json!({"multipleOf": 0.1}), json!(0.3)),
            Err("data must be multiple of 0.1".into())
        );
        assert_eq!(check(json!({"type": "string", "nullable": true}), json!(null)), Ok(()));
        assert_eq!(
            check(json!({"if": {"const": 1}, "then": {"const": 2}}), json!(1)),
            Err("data must be equal to constant".into())
        );
        assert_eq!(
            check(json!({"propertyNames": {"pattern": "^k"}}), json!({"x": 1})),
            Err("data must match pattern \"^k\", data property name must be valid".into())
        );
        assert_eq!(
            check(json!({"uniqueItems": true}), json!([1, 2, 1])),
            Err("data must NOT have duplicate items (items ## 0 and 2 are identical)".into())
        );
        assert_eq!(
            check(json!({"dependencies": {"a": ["b", "c"]}}), json!({"a": 1})),
            Err("data must have properties b, c when property a is present".into())
        );
    }

    #[test]
    fn strict_mode_and_unsupported_keywords_are_errors() {
        assert_eq!(
            check(json!({"typo": 1}), json!(1)),
            Err("strict mode: unknown keyword: \"typo\"".into())
        );
        assert!(check(json!({"format": "email"}), json!("a@b"))
            .unwrap_err()
            .contains("not supported"));
        assert!(check(json!({"type": "strin"}), json!("a"))
            .unwrap_err()
            .starts_with("schema is invalid"));
        assert!(check(json!({"$ref": "other.json"}), json!(1))
            .unwrap_err()
            .contains("only local"));
        assert!(
            check(json!({"$ref": "#"}), json!(1)).is_err(),
            "endless self-reference stops"
        );
    }
}
