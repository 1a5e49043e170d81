//! The cases compared with promptfoo: edge-case outputs (empty, Unicode, JSON in prose,
//! multi-line, numbers) and every assertion type, plain and negated, with weights and values
//! that promptfoo refuses to run.

use assertions::Assertion;
use serde_json::{json, Map, Value};

/// One promptfoo test: the echo provider returns `output`, which the assertions then check.
pub struct Case {
    pub description: &'static str,
    pub output: &'static str,
    pub vars: Map<String, Value>,
    pub assertions: Vec<Assertion>,
}

fn a(kind: &str, value: Value) -> Assertion {
    Assertion {
        kind: kind.into(),
        value: (!value.is_null()).then_some(value),
        ..Default::default()
    }
}

fn t(kind: &str, value: Value, threshold: f64) -> Assertion {
    Assertion {
        threshold: Some(threshold),
        ..a(kind, value)
    }
}

fn w(assertion: Assertion, weight: f64) -> Assertion {
    Assertion {
        weight: Some(weight),
        ..assertion
    }
}

fn case(description: &'static str, output: &'static str, vars: Value, assertions: Vec<Assertion>) -> Case {
    let Value::Object(vars) = vars else {
        panic!("vars of {description} must be an object")
    };
    Case {
        description,
        output,
        vars,
        assertions,
    }
}

const PROSE_JSON: &str =
    "Sure! Here is the data:\n```json\n{\"name\": \"Ada\", \"age\": 36, \"tags\": [\"math\"]}\n```\nAnything else?";

pub fn cases() -> Vec<Case> {
    let none = Value::Null;
    vec![
        case(
            "plain text",
            "The quick brown fox jumps over the lazy dog",
            json!({"animal": "fox", "adjective": "quick"}),
            vec![
                a("equals", json!("The quick brown fox jumps over the lazy dog")),
                a("not-equals", json!("The quick brown fox")),
                a("equals", json!("the quick brown fox jumps over the lazy dog")),
                a("contains", json!("{{ animal }}")),
                a("not-contains", json!("cat")),
                a("icontains", json!("QUICK BROWN")),
                a("not-icontains", json!("LAZY")),
                a("contains-any", json!(["cat", "dog"])),
                a("contains-all", json!("quick, lazy , {{ animal }}")),
                a("not-contains-all", json!(["fox", "cat"])),
                a("icontains-any", json!(["CAT", "DOG"])),
                a("icontains-all", json!(["THE", "FOX"])),
                a("not-icontains-any", json!("wolf, bear")),
                a("not-icontains-any", json!("wolf, DOG")),
                a("starts-with", json!("The {{ adjective }}")),
                a("not-starts-with", json!("quick")),
                a("regex", json!(r"^The \w+ brown")),
                a("regex", json!(r"\bfox\b")),
                a("not-regex", json!(r"\d")),
                a("word-count", json!(9)),
                a("word-count", json!({"min": 5, "max": 10})),
                a("not-word-count", json!({"max": 3})),
                a("levenshtein", json!("The quick brown fox jumps over the lazy cat")),
                t("levenshtein", json!("The quick brown fox jumps over the lazy cat"), 1.0),
                a("not-levenshtein", json!("The quick brown fox jumps over the lazy cat")),
                t("latency", none.clone(), 60_000.0),
                t("not-latency", none.clone(), 60_000.0),
                t("latency", none.clone(), 0.0),
                t("cost", none.clone(), 0.01),
                t("not-cost", none.clone(), 0.01),
            ],
        ),
        case(
            "empty output",
            "",
            json!({}),
            vec![
                a("equals", json!("")),
                a("not-equals", json!("x")),
                a("contains", json!("x")),
                a("not-contains", json!("x")),
                a("icontains-any", json!(["a"])),
                a("not-contains-all", json!(["a"])),
                a("starts-with", json!("a")),
                a("regex", json!("^$")),
                a("not-regex", json!(".")),
                a("is-json", none.clone()),
                a("not-is-json", none.clone()),
                a("contains-json", none.clone()),
                a("not-contains-json", none.clone()),
                a("levenshtein", json!("abc")),
                t("levenshtein", json!("abcdef"), 5.0),
                a("word-count", json!(0)),
                a("not-word-count", json!({"min": 1})),
            ],
        ),
        case(
            "unicode",
            "İstanbul'da Straße ΟΔΟΣ naïve café 😀 日本語",
            json!({"city": "İstanbul"}),
            vec![
                a("icontains", json!("istanbul")),
                a("icontains", json!("İSTANBUL")),
                a("icontains", json!("{{ city }}")),
                a("icontains", json!("STRASSE")),
                a("icontains", json!("STRAßE")),
                a("icontains", json!("ΟΔΟΣ")),
                a("icontains", json!("οδοσ ")),
                a("icontains", json!("οδος ")),
                a("contains", json!("😀")),
                a("not-contains", json!("😃")),
                a("starts-with", json!("İstanbul")),
                a("regex", json!("^.{8}'")),
                a("regex", json!("😀 日")),
                a("regex", json!(r"\bcafé\b")),
                a("regex", json!(r"\bnaïve")),
                a("regex", json!(r"\w+ï")),
                a("regex", json!(r"\s日本語$")),
                a("not-regex", json!(r"\d")),
                a("word-count", json!(7)),
                a("icontains-any", json!("NAÏVE, x")),
                a("icontains-all", json!(["CAFÉ", "日本語"])),
            ],
        ),
        case(
            "emoji distance",
            "😀😀",
            json!({}),
            vec![
                t("levenshtein", json!(""), 3.0),
                t("levenshtein", json!(""), 4.0),
                t("levenshtein", json!("😀"), 2.0),
                t("not-levenshtein", json!("😃😀"), 0.0),
                a("word-count", json!(1)),
            ],
        ),
        case(
            "json in prose",
            PROSE_JSON,
            json!({"who": "Ada"}),
            vec![
                a("contains-json", none.clone()),
                a("not-contains-json", none.clone()),
                a("is-json", none.clone()),
                a("not-is-json", none.clone()),
                a(
                    "contains-json",
                    json!({
                        "type": "object",
                        "required": ["name", "age"],
                        "properties": {"age": {"type": "integer", "minimum": 18}, "tags": {"type": "array", "items": {"type": "string"}}}
                    }),
                ),
                a("contains-json", json!({"type": "object", "required": ["email"]})),
                a("not-contains-json", json!({"type": "object", "required": ["email"]})),
                a("not-contains-json", json!({"type": "object", "required": ["name"]})),
                a("contains-json", json!({"properties": {"age": {"maximum": 30}}})),
                a("contains", json!("\"name\": \"{{ who }}\"")),
                a("regex", json!(r#""age":\s*\d+"#)),
            ],
        ),
        case(
            "pure json",
            r#"{"b": [1, 2], "a": {"c": null}}"#,
            json!({}),
            vec![
                a("is-json", none.clone()),
                a("not-is-json", none.clone()),
                a("equals", json!({"a": {"c": null}, "b": [1, 2]})),
                a("equals", json!({"a": {"c": null}, "b": [2, 1]})),
                a("not-equals", json!({"a": {"c": null}, "b": [1, 2]})),
                a("equals", json!(r#"{"b": [1, 2], "a": {"c": null}}"#)),
                a(
                    "is-json",
                    json!({"type": "object", "properties": {"b": {"type": "array", "items": {"type": "number"}, "maxItems": 2}}, "additionalProperties": false}),
                ),
                a(
                    "not-is-json",
                    json!({"type": "object", "properties": {"b": {"type": "array", "items": {"type": "number"}}}, "additionalProperties": false}),
                ),
                a(
                    "is-json",
                    json!({"type": "object", "required": ["a", "b"], "properties": {"a": {"type": "object"}, "b": {"minItems": 2, "uniqueItems": true}}}),
                ),
                a("is-json", json!("type: object\nrequired: [a]")),
                a("is-json", json!({"anyOf": [{"type": "array"}, {"required": ["z"]}]})),
                a("contains-json", none.clone()),
            ],
        ),
        case(
            "schema keywords",
            r#"{"id": "ab-12", "n": 7, "ratio": 0.25, "kind": "b", "items": [1, "x", 3], "meta": {"k1": 1, "k2": "v"}}"#,
            json!({}),
            vec![
                a(
                    "is-json",
                    json!({"properties": {"id": {"pattern": "^[a-z]+-\\d+$", "maxLength": 5}}}),
                ),
                a("is-json", json!({"properties": {"id": {"pattern": "^\\d"}}})),
                a("is-json", json!({"properties": {"n": {"exclusiveMinimum": 7}}})),
                a(
                    "is-json",
                    json!({"properties": {"n": {"exclusiveMaximum": 8, "multipleOf": 7}}}),
                ),
                a("is-json", json!({"properties": {"ratio": {"multipleOf": 0.05}}})),
                a(
                    "is-json",
                    json!({"properties": {"kind": {"enum": ["a", "b"]}, "n": {"const": 7.0}}}),
                ),
                a(
                    "is-json",
                    json!({"properties": {"kind": {"oneOf": [{"const": "b"}, {"type": "string"}]}}}),
                ),
                a(
                    "is-json",
                    json!({"properties": {"kind": {"oneOf": [{"const": "b"}, {"type": "number"}]}}}),
                ),
                a(
                    "is-json",
                    json!({"properties": {"items": {"contains": {"type": "string"}}}}),
                ),
                a(
                    "is-json",
                    json!({"properties": {"items": {"items": [{"type": "integer"}, {"type": "string"}], "additionalItems": false}}}),
                ),
                a(
                    "is-json",
                    json!({"properties": {"items": {"items": [{"type": "integer"}], "additionalItems": {"type": ["string", "integer"]}}}}),
                ),
                a(
                    "is-json",
                    json!({"properties": {"meta": {"propertyNames": {"pattern": "^k"}, "minProperties": 2, "patternProperties": {"^k\\d$": {"type": ["number", "string"]}}, "additionalProperties": false}}}),
                ),
                a(
                    "is-json",
                    json!({"properties": {"meta": {"patternProperties": {"^k": {"type": "number"}}}}}),
                ),
                a(
                    "is-json",
                    json!({"dependencies": {"n": ["ratio"], "kind": {"required": ["zzz"]}}}),
                ),
                a(
                    "is-json",
                    json!({"if": {"properties": {"kind": {"const": "b"}}}, "then": {"required": ["meta"]}, "else": {"required": ["zzz"]}}),
                ),
                a(
                    "is-json",
                    json!({"if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["meta"]}, "else": {"required": ["zzz"]}}),
                ),
                a(
                    "is-json",
                    json!({"allOf": [{"required": ["id"]}, {"not": {"required": ["n"]}}]}),
                ),
                // No `$ref`: promptfoo dereferences `$ref`s against the whole config file before
                // the eval, so a schema-local `#/definitions/...` cannot be compared here.
                a(
                    "is-json",
                    json!({"$schema": "http://json-schema.org/draft-07/schema#", "title": "t", "description": "d", "maxProperties": 3}),
                ),
                a("not-is-json", json!({"type": "object", "required": ["id"]})),
            ],
        ),
        case(
            "relaxed json",
            "Result: {name: Ada, score: 9} // done, and set {flag} too",
            json!({}),
            vec![
                a("contains-json", none.clone()),
                a("is-json", none.clone()),
                a(
                    "contains-json",
                    json!({"required": ["score"], "properties": {"score": {"type": "number"}}}),
                ),
                a("contains-json", json!({"required": ["flag"]})),
                a("not-contains-json", json!({"required": ["missing"]})),
            ],
        ),
        case(
            "cut-off json",
            r#"The answer: {"a": 1, "b": {"c": 2"#,
            json!({}),
            vec![
                a("contains-json", none.clone()),
                a("contains-json", json!({"properties": {"b": {"required": ["c"]}}})),
                a("is-json", none.clone()),
            ],
        ),
        case(
            "braces in strings",
            r#"Note {"text": "a } b"} ends"#,
            json!({}),
            vec![a("contains-json", none.clone()), a("not-contains-json", none.clone())],
        ),
        case(
            "multi-line",
            "Line one\nLine two\n\nLine four",
            json!({}),
            vec![
                a("regex", json!("^Line two")),
                a("regex", json!("Line two$")),
                a("regex", json!(r"one\nLine")),
                a("regex", json!(r"^[\s\S]*four$")),
                a("regex", json!("one.Line")),
                a("not-regex", json!("^Line one$")),
                a("contains", json!("two\n\nLine")),
                a("starts-with", json!("Line one\nLine")),
                a("equals", json!("Line one\nLine two\n\nLine four")),
                a("word-count", json!(6)),
                a("word-count", json!({"min": 7})),
                a("icontains-all", json!(["LINE ONE", "line FOUR"])),
            ],
        ),
        case(
            "numbers",
            "Total: 42.50 USD (1e3 items)",
            json!({"n": 42}),
            vec![
                a("contains", json!(42)),
                a("contains", json!("{{ n }}.50")),
                a("contains", json!(42.5)),
                a("contains", json!(1000)),
                a("not-contains", json!(1e3)),
                a("contains-any", json!([1000, 42])),
                a("regex", json!(r"\d+\.\d{2}")),
                a("word-count", json!("4")),
                a("word-count", json!(5)),
                a("word-count", json!({"min": "3", "max": 5})),
                a("equals", json!(5)),
            ],
        ),
        case(
            "bare number",
            "42",
            json!({"n": 42}),
            vec![
                a("equals", json!(42)),
                a("equals", json!(42.0)),
                a("equals", json!("{{ n }}")),
                a("not-equals", json!(43)),
                a("is-json", none.clone()),
                a("is-json", json!({"type": "integer", "multipleOf": 7})),
                a("not-is-json", json!({"type": "string"})),
                a("contains-json", none.clone()),
                a("levenshtein", json!("4.2")),
            ],
        ),
        case(
            "regex dialect",
            "(abc a{2} x} \\A aa",
            json!({}),
            vec![
                a("regex", json!("(")),
                a("not-regex", json!("(")),
                a("regex", json!("(?i)ABC")),
                a("regex", json!("a{")),
                a("regex", json!("a{2}")),
                a("regex", json!("x}")),
                a("regex", json!(r"\\A")),
                a("regex", json!(r"(a)\1")),
                a("regex", json!(r"(?<=\()abc")),
                a("not-regex", json!(r"(?<!\()abc")),
                a("regex", json!(r"[\w-]+}")),
                a("regex", json!("[]")),
                a("regex", json!("[^]")),
                a("regex", json!("a**")),
            ],
        ),
        case(
            "comma separated",
            "red, green and \"blue, cyan\"",
            json!({}),
            vec![
                a("contains-all", json!("red,green")),
                a("contains-all", json!(r#""blue, cyan", red"#)),
                a("contains-any", json!(r#""cyan, blue", yellow"#)),
                a("not-contains-any", json!(" , ,yellow,, ")),
                a("icontains-all", json!(r#"RED, "BLUE, CYAN""#)),
            ],
        ),
        case(
            "javascript whitespace",
            "one\u{A0}two\u{FEFF}three\u{85}four\u{2028}five",
            json!({}),
            vec![
                a("word-count", json!(5)),
                a("word-count", json!(4)),
                a("regex", json!(r"one\stwo\sthree")),
                a("regex", json!(r"three\sfour")),
                a("regex", json!("four.five")),
                a("regex", json!(r"four[^]five")),
                a("icontains", json!("ONE\u{A0}TWO")),
            ],
        ),
        case(
            "templates",
            "Dear ADA, you have 3 new messages.",
            json!({"name": "Ada", "count": 3, "formal": true}),
            vec![
                a(
                    "starts-with",
                    json!("{% if formal %}Dear{% else %}Hi{% endif %} {{ name | upper }}"),
                ),
                a("contains", json!("{{ count }} new")),
                a("contains", json!("{{ count + 1 }} new")),
                a("contains-any", json!(["{{ missing }}zzz", "{{ name | upper }},"])),
                a(
                    "equals",
                    json!("Dear {{ name | upper }}, you have {{ count }} new messages."),
                ),
                a("contains", json!(0)),
                a("contains-any", json!([null, "zzz"])),
            ],
        ),
        case(
            "json parsing edges",
            r#"{"a": 1, "a": 2, "big": 1e400, "s": "\ud83d\ude00"}"#,
            json!({}),
            vec![
                a("is-json", none.clone()),
                a("is-json", json!({"properties": {"a": {"const": 2}}})),
                a("contains-json", none.clone()),
                a("equals", json!({"a": 2, "big": 1e300, "s": "😀"})),
            ],
        ),
        case(
            "weights",
            "alpha beta",
            json!({}),
            vec![
                w(a("contains", json!("alpha")), 2.0),
                a("contains", json!("gamma")),
                w(a("not-contains", json!("beta")), 0.0),
                w(a("word-count", json!(2)), 0.5),
            ],
        ),
        case(
            "ignored failure",
            "alpha beta",
            json!({}),
            vec![
                w(a("contains", json!("alpha")), 3.0),
                w(a("not-contains", json!("alpha")), 0.0),
            ],
        ),
        case(
            "only weight zero",
            "alpha",
            json!({}),
            vec![w(a("contains", json!("zzz")), 0.0)],
        ),
        case("no assertions", "anything", json!({}), vec![]),
        case(
            "error: empty contains value",
            "x",
            json!({}),
            vec![a("contains", json!("x")), a("contains", json!(""))],
        ),
        case(
            "error: value renders empty",
            "x",
            json!({}),
            vec![a("starts-with", json!("{{ missing }}"))],
        ),
        case(
            "error: word-count min above max",
            "a b c",
            json!({}),
            vec![a("word-count", json!({"min": 5, "max": 1}))],
        ),
        case(
            "error: strict schema",
            "{}",
            json!({}),
            vec![a("contains-json", json!({"type": "object", "typo": 1}))],
        ),
        case(
            "error: unterminated quote",
            "a",
            json!({}),
            vec![w(a("contains-any", json!(r#""a, b"#)), 0.0)],
        ),
    ]
}
