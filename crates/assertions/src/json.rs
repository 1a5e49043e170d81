//! Hand-written: promptfoo's own heuristic (brace counting, `//` comments); serde_norway parses the YAML, as js-yaml.
//!
//! Finding JSON in prose the way promptfoo's `extractJsonObjects` does: from every `{`, count
//! braces (ignoring quotes) to the balancing `}` (or to the end of the text, closing what is
//! still open), turn `//` comments into YAML comments, and parse the candidate as YAML, so
//! relaxed objects such as `{name: Ada}` count as JSON too.

use crate::js;
use serde_json::{Map, Value};

/// The longest candidate promptfoo considers, in UTF-16 code units.
const MAX_CANDIDATE: usize = 100_000;

/// Every object found in `text`, in order. An object inside another one is not reported again.
pub(crate) fn extract_objects(text: &str) -> Vec<Value> {
    let units: Vec<u16> = text.encode_utf16().collect();
    let (open_brace, close_brace) = (u16::from(b'{'), u16::from(b'}'));
    let mut objects = Vec::new();
    let mut i = 0;
    while i < units.len() {
        if units[i] == open_brace {
            let (mut open, mut close) = (1usize, 0usize);
            let mut j = i + 1;
            let limit = (i + MAX_CANDIDATE).min(units.len());
            while j < limit && open > close {
                if units[j] == open_brace {
                    open += 1;
                }
                if units[j] == close_brace {
                    close += 1;
                }
                j += 1;
                if open == close || j == units.len() || j == i + MAX_CANDIDATE {
                    let mut candidate = String::from_utf16_lossy(&units[i..j]);
                    candidate.push_str(&"}".repeat(open - close));
                    if let Some(object) = parse_candidate(&candidate) {
                        objects.push(object);
                        i = j - 1;
                        break;
                    }
                    if open == close {
                        break;
                    }
                }
            }
        }
        i += 1;
    }
    objects
}

/// `loadYaml(convertSlashCommentsToHash(candidate), {json: true})`, when it gives an object.
/// Strict JSON is tried first: it is YAML too, and [`js::json_parse`], like js-yaml in `json`
/// mode, lets a repeated key override the earlier one (serde_norway refuses repeated keys).
fn parse_candidate(candidate: &str) -> Option<Value> {
    let text = slash_comments_to_hash(candidate);
    let value = match js::json_parse(&text) {
        Ok(value) => value,
        Err(_) => parse_yaml(&text).ok()?,
    };
    (value.is_object() || value.is_array()).then_some(value)
}

/// One YAML document as the JSON value JavaScript would see: keys become strings the way
/// `String(key)` makes them, NaN and infinities (not representable in JSON) become null.
pub(crate) fn parse_yaml(text: &str) -> Result<Value, String> {
    let mut value: serde_norway::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    value.apply_merge().map_err(|e| e.to_string())?;
    Ok(yaml_to_json(value))
}

fn yaml_to_json(value: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (yaml_key(&k), yaml_to_json(v)))
                .collect::<Map<_, _>>(),
        ),
        Y::Tagged(tagged) => yaml_to_json(tagged.value),
    }
}

fn yaml_key(key: &serde_norway::Value) -> String {
    use serde_norway::Value as Y;
    match key {
        Y::String(s) => s.clone(),
        Y::Tagged(tagged) => yaml_key(&tagged.value),
        Y::Mapping(_) => "[object Object]".into(),
        other => js::to_string(&yaml_to_json(other.clone())),
    }
}

/// promptfoo's `convertSlashCommentsToHash`: a `//` comment outside quotes (and not part of a
/// `scheme://` token) becomes a `#` comment, one `#` per pair of slashes.
fn slash_comments_to_hash(text: &str) -> String {
    text.split('\n')
        .map(line_comments_to_hash)
        .collect::<Vec<_>>()
        .join("\n")
}

fn line_comments_to_hash(line: &str) -> String {
    #[derive(PartialEq)]
    enum State {
        Normal,
        Single,
        Double,
    }
    let chars: Vec<char> = line.chars().collect();
    let is_letter = |c: Option<&char>| c.is_some_and(char::is_ascii_alphabetic);
    let escaped = |at: usize| chars[..at].iter().rev().take_while(|c| **c == '\\').count() % 2 == 1;
    let mut state = State::Normal;
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let prev = i.checked_sub(1).and_then(|p| chars.get(p));
        match state {
            State::Normal => {
                if c == '\'' && !is_letter(prev) {
                    state = State::Single;
                    out.push(c);
                } else if c == '"' {
                    state = State::Double;
                    out.push(c);
                } else if c == '/' && chars.get(i + 1) == Some(&'/') {
                    let token_start = chars[..i]
                        .iter()
                        .rposition(|c| js::is_whitespace(*c))
                        .map_or(0, |p| p + 1);
                    let token: String = chars[token_start..i + 2].iter().collect();
                    if token.contains("://") {
                        out.push(c);
                    } else {
                        let slashes = chars[i..].iter().take_while(|c| **c == '/').count();
                        out.push_str(&"#".repeat(slashes / 2));
                        out.extend(&chars[i + slashes..]);
                        return out;
                    }
                } else {
                    out.push(c);
                }
            }
            State::Single => {
                out.push(c);
                // JavaScript tests `undefined` past the end of the line, which has letters.
                let next_is_letter = chars.get(i + 1).is_none_or(char::is_ascii_alphabetic);
                if c == '\'' && !escaped(i) && !next_is_letter {
                    state = State::Normal;
                }
            }
            State::Double => {
                out.push(c);
                if c == '"' && !escaped(i) {
                    state = State::Normal;
                }
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_objects_in_prose() {
        assert_eq!(
            extract_objects(r#"Here: {"a": 1} and {"b": {"c": [2]}} done"#),
            vec![json!({"a": 1}), json!({"b": {"c": [2]}})]
        );
        assert_eq!(extract_objects("no json here"), Vec::<Value>::new());
        assert_eq!(extract_objects(""), Vec::<Value>::new());
    }

    #[test]
    fn relaxed_yaml_objects_count_as_promptfoo_counts_them() {
        assert_eq!(extract_objects("a {name: Ada} b"), vec![json!({"name": "Ada"})]);
        assert_eq!(extract_objects("text {foo} text"), vec![json!({"foo": null})]);
        assert_eq!(extract_objects(r#"cut off: {"a": 1"#), vec![json!({"a": 1})]);
        assert_eq!(
            extract_objects("{\n  \"a\": 1, // the answer\n  \"b\": \"http://x\"\n}"),
            vec![json!({"a": 1, "b": "http://x"})]
        );
    }

    #[test]
    fn braces_inside_strings_are_counted_like_promptfoo() {
        // The `}` inside the string balances the braces early, so this object is not found.
        assert_eq!(extract_objects(r#"{"a": "}"}"#), Vec::<Value>::new());
    }

    #[test]
    fn comments_become_hashes_outside_quotes_and_urls() {
        assert_eq!(line_comments_to_hash("a // b"), "a # b");
        assert_eq!(line_comments_to_hash("a //// b"), "a ## b");
        assert_eq!(line_comments_to_hash(r#""x // y" // z"#), r#""x // y" # z"#);
        assert_eq!(line_comments_to_hash("see http://x.y"), "see http://x.y");
    }
}
