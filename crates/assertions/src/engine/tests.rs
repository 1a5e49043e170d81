//! Each assertion type, plain and negated, on the edge cases promptfoo's own tests and source
//! single out. Expected reasons are promptfoo's wording.

use super::*;
use serde_json::json;

fn assertion(kind: &str, value: Value) -> Assertion {
    Assertion {
        kind: kind.into(),
        value: (!value.is_null()).then_some(value),
        ..Default::default()
    }
}

fn with_threshold(kind: &str, value: Value, threshold: f64) -> Assertion {
    Assertion {
        threshold: Some(threshold),
        ..assertion(kind, value)
    }
}

fn empty_vars() -> &'static Map<String, Value> {
    static EMPTY: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);
    &EMPTY
}

fn observe<'a>(output: &'a str, vars: &'a Map<String, Value>) -> Observation<'a> {
    Observation {
        output,
        vars,
        latency_ms: 120,
        cost_micro_usd: Some(2_500),
    }
}

fn verdict_of(a: &Assertion, output: &str) -> Verdict {
    evaluate(a, &observe(output, empty_vars()))
}

/// Asserts the plain assertion's outcome and that its `not-` twin has the opposite one.
#[track_caller]
fn check_both(kind: &str, value: Value, output: &str, expected: bool) {
    let plain = verdict_of(&assertion(kind, value.clone()), output);
    assert_eq!(plain.passed, expected, "{kind} {value} on {output:?}: {}", plain.reason);
    assert_eq!(plain.score, if expected { 1.0 } else { 0.0 });
    let negated = verdict_of(&assertion(&format!("not-{kind}"), value.clone()), output);
    assert_eq!(
        negated.passed, !expected,
        "not-{kind} {value} on {output:?}: {}",
        negated.reason
    );
}

#[track_caller]
fn reason(kind: &str, value: Value, output: &str) -> String {
    verdict_of(&assertion(kind, value), output).reason
}

#[test]
fn equals_compares_text_exactly_and_objects_as_json() {
    check_both("equals", json!("Hello"), "Hello", true);
    check_both("equals", json!("Hello"), "Hello ", false);
    check_both("equals", json!("hello"), "Hello", false);
    check_both("equals", json!(""), "", true);
    check_both("equals", json!(42), "42", true);
    check_both("equals", json!(1.0), "1", true);
    check_both("equals", json!(true), "true", true);
    check_both("equals", json!({"a": 1, "b": [1, 2]}), r#"{"b":[1,2],"a":1}"#, true);
    check_both("equals", json!({"a": 1}), r#"{"a":"1"}"#, false);
    check_both("equals", json!(["x"]), r#"["x"]"#, true);
    check_both("equals", json!({"a": 1}), "not json", false);
    // Not JSON: the negation passes, as promptfoo's catch block sets pass = inverse.
    assert!(verdict_of(&assertion("not-equals", json!({"a": 1})), "").passed);
    assert_eq!(
        reason("equals", json!("Hi"), "Ho"),
        r#"Expected output "Ho" to equal "Hi""#
    );
    assert_eq!(
        reason("not-equals", json!({"a": 1}), r#"{"a":1}"#),
        r#"Expected output "{"a":1}" to not equal "{"a":1}""#
    );
}

#[test]
fn contains_matches_substrings_case_sensitively() {
    check_both("contains", json!("world"), "Hello world", true);
    check_both("contains", json!("World"), "Hello world", false);
    check_both("contains", json!("x"), "", false);
    check_both("contains", json!(42), "The answer is 42.", true);
    check_both("contains", json!(1.5), "1.5 kg", true);
    check_both("contains", json!("日本"), "こんにちは日本", true);
    check_both("contains", json!("line two"), "line one\nline two\n", true);
    assert_eq!(reason("contains", json!("x"), "y"), r#"Expected output to contain "x""#);
    assert_eq!(
        reason("not-contains", json!("y"), "y"),
        r#"Expected output to not contain "y""#
    );
    assert_eq!(reason("contains", json!("y"), "y"), "Assertion passed");
}

#[test]
fn icontains_folds_case_as_javascript_to_lower_case_does() {
    check_both("icontains", json!("WORLD"), "hello world", true);
    check_both("icontains", json!("ÉCOLE"), "une école", true);
    // 'İ' lowercases to "i̇" (i + combining dot), so it does not match a plain "i".
    check_both("icontains", json!("İ"), "istanbul", false);
    check_both("icontains", json!("İstanbul"), "i̇stanbul", true);
    // toLowerCase does not fold ß to ss.
    check_both("icontains", json!("STRASSE"), "straße", false);
    check_both("icontains", json!("STRASSE"), "strasse", true);
    // Final sigma: "ΟΔΟΣ" lowercases to "οδος" with a final ς in both languages.
    check_both("icontains", json!("ΟΔΟΣ"), "οδος", true);
    check_both("icontains", json!("x"), "", false);
}

#[test]
fn empty_contains_values_cannot_be_run() {
    let verdict = verdict_of(&assertion("contains", json!("")), "anything");
    assert!(!verdict.passed);
    assert_eq!(
        verdict.reason,
        r#"Invariant failed: "contains" assertion type must have a string or number value"#
    );
    assert!(!verdict_of(&assertion("not-contains", json!("")), "anything").passed);
    assert!(!verdict_of(&assertion("not-icontains", Value::Null), "x").passed);
}

#[test]
fn contains_any_and_all_take_lists_or_comma_separated_strings() {
    check_both("contains-any", json!(["cat", "dog"]), "a dog barked", true);
    check_both("contains-any", json!(["cat", "dog"]), "a bird sang", false);
    check_both("contains-any", json!("cat, dog"), "a dog barked", true);
    check_both("contains-any", json!(r#""a, b", c"#), "x a, b y", true);
    check_both("contains-any", json!(r#""a, b", c"#), "a b", false);
    check_both("contains-all", json!(["cat", "dog"]), "cat and dog", true);
    check_both("contains-all", json!(["cat", "dog"]), "cat only", false);
    check_both("contains-all", json!(" cat ,dog "), "cat and dog", true);
    check_both("contains-all", json!([1, 2]), "1 and 2", true);
    check_both("icontains-any", json!(["CAT", "DOG"]), "a Dog", true);
    check_both("icontains-any", json!("CAT,DOG"), "a bird", false);
    check_both("icontains-all", json!(["CAT", "DOG"]), "cat & dog", true);
    check_both("icontains-all", json!(["CAT", "DOG"]), "cat", false);
    check_both("contains-all", json!(["x"]), "", false);
    // An empty list: nothing to find for -all (passes), nothing found for -any (fails).
    check_both("contains-all", json!([]), "x", true);
    check_both("contains-any", json!([]), "x", false);
    assert_eq!(
        reason("contains-any", json!(["a", "b"]), "c"),
        r#"Expected output to contain one of "a, b""#
    );
    assert_eq!(
        reason("icontains-all", json!(["a", "b", "c"]), "B"),
        "Expected output to contain all of [a, b, c]. Missing: [a, c]"
    );
    assert_eq!(
        reason("not-contains-all", json!(["a"]), "a"),
        "Expected output to not contain all of [a]. Missing: []"
    );
    assert_eq!(
        reason("not-contains-any", json!(["a"]), "a"),
        r#"Expected output to not contain one of "a""#
    );
    let unterminated = verdict_of(&assertion("contains-any", json!(r#""a, b"#)), "a");
    assert!(
        unterminated.reason.contains("Unterminated quoted field"),
        "{}",
        unterminated.reason
    );
}

#[test]
fn starts_with_checks_the_prefix() {
    check_both("starts-with", json!("Hello"), "Hello world", true);
    check_both("starts-with", json!("hello"), "Hello world", false);
    check_both("starts-with", json!("Hello"), "", false);
    check_both("starts-with", json!("😀"), "😀 smile", true);
    assert_eq!(
        reason("not-starts-with", json!("He"), "Hello"),
        r#"Expected output to not start with "He""#
    );
    assert!(!verdict_of(&assertion("starts-with", json!("")), "x").passed);
}

#[test]
fn regex_uses_javascript_semantics() {
    check_both("regex", json!(r"^\d{3}-\d{4}$"), "555-1234", true);
    check_both("regex", json!(r"^\d+$"), "١٢٣", false);
    check_both("regex", json!("^$"), "", true);
    check_both("regex", json!("a$"), "a\n", false);
    check_both("regex", json!(r"^(?!.*sorry)"), "fine", true);
    check_both("regex", json!(r"^(?!.*sorry)"), "so sorry", false);
    check_both("regex", json!("a{"), "a{", true);
    check_both("regex", json!(r"line two"), "line one\nline two", true);
    check_both("regex", json!("HELLO"), "hello", false);
    assert_eq!(
        reason("regex", json!("^a"), "b"),
        r#"Expected output to match regex "^a""#
    );
}

#[test]
fn invalid_regexes_fail_both_ways_with_the_node_message() {
    for kind in ["regex", "not-regex"] {
        let verdict = verdict_of(&assertion(kind, json!("(")), "(");
        assert!(!verdict.passed);
        assert_eq!(
            verdict.reason,
            "Invalid regex pattern: Invalid regular expression: /(/: Unterminated group"
        );
    }
    let inline_flag = verdict_of(&assertion("regex", json!("(?i)a")), "A");
    assert_eq!(
        inline_flag.reason,
        "Invalid regex pattern: Invalid regular expression: /(?i)a/: Invalid group"
    );
}

#[test]
fn is_json_parses_the_whole_output() {
    check_both("is-json", Value::Null, r#"{"a": 1}"#, true);
    check_both("is-json", Value::Null, "[1, 2]", true);
    check_both("is-json", Value::Null, " 42 ", true);
    check_both("is-json", Value::Null, "null", true);
    check_both("is-json", Value::Null, "", false);
    check_both("is-json", Value::Null, r#"Here: {"a": 1}"#, false);
    check_both("is-json", Value::Null, "{a: 1}", false);
    check_both("is-json", Value::Null, r#"{"a": 1,}"#, false);
    assert_eq!(reason("is-json", Value::Null, "x"), "Expected output to be valid JSON");
    // promptfoo keeps the same wording for the negation.
    assert_eq!(
        reason("not-is-json", Value::Null, "1"),
        "Expected output to be valid JSON"
    );
}

#[test]
fn is_json_validates_a_schema() {
    let schema = json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}});
    check_both("is-json", schema.clone(), r#"{"name": "Ada"}"#, true);
    check_both("is-json", schema.clone(), r#"{"name": 1}"#, false);
    check_both("is-json", schema.clone(), "[]", false);
    assert_eq!(
        reason("is-json", schema.clone(), r#"{"name": 1}"#),
        "JSON does not conform to the provided schema. Errors: data/name must be string"
    );
    assert_eq!(
        reason("not-is-json", schema.clone(), r#"{"name": "Ada"}"#),
        "Output is JSON that conforms to the provided schema"
    );
    // Not JSON at all: the schema is never looked at.
    assert_eq!(
        reason("is-json", schema.clone(), "nope"),
        "Expected output to be valid JSON"
    );
    assert!(verdict_of(&assertion("not-is-json", schema), "nope").passed);
    // A YAML string is a schema too.
    check_both("is-json", json!("type: array\nminItems: 2"), "[1, 2]", true);
    check_both("is-json", json!("type: array\nminItems: 2"), "[1]", false);
}

#[test]
fn contains_json_finds_json_in_prose() {
    check_both("contains-json", Value::Null, r#"Sure! {"a": 1} Hope that helps."#, true);
    check_both(
        "contains-json",
        Value::Null,
        "```json\n{\n  \"a\": [1, 2]\n}\n```",
        true,
    );
    check_both("contains-json", Value::Null, "no braces here", false);
    check_both("contains-json", Value::Null, "", false);
    // promptfoo parses candidates as YAML, so relaxed objects count.
    check_both("contains-json", Value::Null, "result: {name: Ada}", true);
    // Arrays alone are not found: extraction starts at `{`.
    check_both("contains-json", Value::Null, "[1, 2, 3]", false);
    assert_eq!(
        reason("contains-json", Value::Null, "nothing"),
        "Expected output to contain valid JSON"
    );
}

#[test]
fn contains_json_validates_each_object_until_one_conforms() {
    let schema = json!({"type": "object", "required": ["ok"]});
    check_both(
        "contains-json",
        schema.clone(),
        r#"first {"no": 1} then {"ok": true}"#,
        true,
    );
    check_both("contains-json", schema.clone(), r#"only {"no": 1}"#, false);
    assert_eq!(
        reason("contains-json", schema.clone(), r#"only {"no": 1}"#),
        "JSON does not conform to the provided schema. Errors: data must have required property 'ok'"
    );
    assert_eq!(
        reason("not-contains-json", schema.clone(), r#"{"ok": 1}"#),
        "Output contains JSON conforming to the provided schema"
    );
    // No JSON: the negation passes and the schema is never compiled.
    assert!(verdict_of(&assertion("not-contains-json", json!({"typo": 1})), "none").passed);
    let strict = verdict_of(&assertion("contains-json", json!({"typo": 1})), "{}");
    assert_eq!(strict.reason, "strict mode: unknown keyword: \"typo\"");
}

#[test]
fn levenshtein_defaults_to_threshold_five_and_counts_utf16_units() {
    check_both("levenshtein", json!("kitten"), "sitting", true);
    check_both("levenshtein", json!("abcdefgh"), "", false);
    check_both("levenshtein", json!("abcde"), "", true);
    check_both("levenshtein", json!(""), "", true);
    let strict = with_threshold("levenshtein", json!("kitten"), 2.0);
    assert!(!verdict_of(&strict, "sitting").passed);
    assert_eq!(
        verdict_of(&strict, "sitting").reason,
        "Levenshtein distance 3 is greater than threshold 2"
    );
    let exact = with_threshold("levenshtein", json!("😀"), 1.0);
    assert!(!verdict_of(&exact, "").passed, "an emoji is two UTF-16 units");
    let negated = with_threshold("not-levenshtein", json!("abc"), 0.0);
    assert_eq!(
        verdict_of(&negated, "abc").reason,
        "Levenshtein distance 0 is less than or equal to threshold 0"
    );
}

#[test]
fn word_count_counts_whitespace_separated_words() {
    check_both("word-count", json!(3), "one two three", true);
    check_both("word-count", json!(3), "  one\ttwo\n\nthree  ", true);
    check_both("word-count", json!(2), "one two three", false);
    check_both("word-count", json!(0), "", true);
    check_both("word-count", json!("3"), "a b c", true);
    check_both("word-count", json!({"min": 2, "max": 4}), "a b c", true);
    check_both("word-count", json!({"min": 4, "max": 5}), "a b c", false);
    check_both("word-count", json!({"min": 3}), "a b c", true);
    check_both("word-count", json!({"min": 4}), "a b c", false);
    check_both("word-count", json!({"max": 3}), "a b c", true);
    check_both("word-count", json!({"max": 2}), "a b c", false);
    check_both("word-count", json!(2), "héllo wörld", true);
    assert_eq!(
        reason("word-count", json!(2), "a"),
        "Word count 1 does not equal expected 2"
    );
    assert_eq!(
        reason("not-word-count", json!(1), "a"),
        "Expected word count to not equal 1, but got 1"
    );
    assert_eq!(
        reason("word-count", json!({"min": 2, "max": 3}), "a"),
        "Word count 1 is not between 2 and 3"
    );
    assert_eq!(
        reason("not-word-count", json!({"min": 0, "max": 3}), "a"),
        "Expected word count to not be between 0 and 3, but got 1"
    );
    assert_eq!(
        reason("word-count", json!({"max": 0}), "a"),
        "Word count 1 is greater than maximum 0"
    );
    assert_eq!(
        reason("word-count", json!({"min": 2}), "a"),
        "Word count 1 is less than minimum 2"
    );
    assert_eq!(
        reason("word-count", json!({"min": 3, "max": 1}), "a"),
        r#"Invariant failed: "word-count" assertion: min (3) must be less than or equal to max (1)"#
    );
    assert!(!verdict_of(&assertion("word-count", json!("many")), "a").passed);
}

#[test]
fn latency_and_cost_compare_with_the_threshold() {
    let vars = empty_vars();
    let observation = observe("x", vars);
    let latency = |kind: &str, t: f64| evaluate(&with_threshold(kind, Value::Null, t), &observation);
    assert!(latency("latency", 120.0).passed);
    assert!(!latency("latency", 119.0).passed);
    assert_eq!(
        latency("latency", 100.0).reason,
        "Latency 120ms is greater than threshold 100ms"
    );
    assert!(!latency("not-latency", 120.0).passed);
    assert_eq!(
        latency("not-latency", 500.0).reason,
        "Latency 120ms is less than or equal to threshold 500ms"
    );
    assert!(latency("not-latency", 119.0).passed);

    // 2,500 micro-USD is $0.0025.
    assert!(latency("cost", 0.0025).passed);
    assert!(!latency("cost", 0.002).passed);
    assert_eq!(
        latency("cost", 0.002).reason,
        "Cost 0.0025 is greater than threshold 0.002"
    );
    assert!(latency("not-cost", 0.002).passed);
    assert!(!latency("not-cost", 0.01).passed);
}

#[test]
fn cost_without_a_reported_cost_cannot_be_run() {
    let vars = empty_vars();
    let observation = Observation {
        cost_micro_usd: None,
        ..observe("x", vars)
    };
    for kind in ["cost", "not-cost"] {
        let verdict = evaluate(&with_threshold(kind, Value::Null, 1.0), &observation);
        assert!(!verdict.passed);
        assert_eq!(
            verdict.reason,
            "Cost assertion does not support providers that do not return cost"
        );
    }
    let grade = grade(&[with_threshold("cost", Value::Null, 1.0)], &observation);
    assert_eq!((grade.passed, grade.score), (false, 0.0));
}

#[test]
fn values_are_rendered_with_the_vars_as_nunjucks_would() {
    let mut vars = Map::new();
    vars.insert("name".into(), json!("Ada"));
    vars.insert("n".into(), json!(3));
    vars.insert("x".into(), json!(1.0));
    vars.insert("list".into(), json!(["a", "b"]));
    let observation = observe("Hello Ada! 3 1 a,b\n", &vars);
    let passes = |a: Assertion| evaluate(&a, &observation).passed;
    assert!(passes(assertion("contains", json!("Hello {{ name }}"))));
    assert!(passes(assertion(
        "contains-all",
        json!(["{{ name }}", "{{ n }}", "{{x}}", 3])
    )));
    assert!(
        passes(assertion("contains", json!("{{ list }}"))),
        "arrays print as JS joins them"
    );
    assert!(
        passes(assertion("starts-with", json!("Hello {{ missing }}Ada"))),
        "undefined prints as nothing"
    );
    assert!(passes(assertion("contains", json!("{{ missing.deep }}Ada"))));
    assert!(
        passes(assertion(
            "equals",
            json!("Hello {{ name }}! {{ n }} {{ x }} {{ list }}\n")
        )),
        "trailing newline kept"
    );
    assert!(passes(assertion(
        "regex",
        json!("^Hello {{ name | upper | capitalize }}")
    )));
    let broken = evaluate(&assertion("contains", json!("{{ name ")), &observation);
    assert!(!broken.passed);
    assert!(
        broken.reason.starts_with("Could not render the assertion value"),
        "{}",
        broken.reason
    );
    // Numbers and objects are not templates.
    assert!(passes(assertion("word-count", json!({"min": 1}))));
}

#[test]
fn weight_zero_assertions_always_pass_and_do_not_count() {
    let vars = empty_vars();
    let observation = observe("hello", vars);
    let ignored = Assertion {
        weight: Some(0.0),
        ..assertion("contains", json!("absent"))
    };
    let verdict = evaluate(&ignored, &observation);
    assert!(verdict.passed);
    assert_eq!(verdict.score, 0.0);
    assert_eq!(verdict.reason, r#"Expected output to contain "absent""#);
    let grade = grade(&[ignored.clone(), assertion("contains", json!("hell"))], &observation);
    assert!(grade.passed);
    assert_eq!(grade.score, 1.0);
    let only_ignored = super::grade(&[ignored], &observation);
    assert_eq!((only_ignored.passed, only_ignored.score), (true, 0.0));
}

#[test]
fn grade_is_the_weighted_mean_and_passes_only_when_all_pass() {
    let vars = empty_vars();
    let observation = observe("The answer is 42", vars);
    let weighted = |a: Assertion, w: f64| Assertion { weight: Some(w), ..a };
    let grade = grade(
        &[
            weighted(assertion("contains", json!("42")), 3.0),
            weighted(assertion("contains", json!("43")), 1.0),
            assertion("starts-with", json!("The")),
        ],
        &observation,
    );
    assert!(!grade.passed);
    assert!((grade.score - 4.0 / 5.0).abs() < 1e-12);
    assert_eq!(grade.verdicts.len(), 3);
    assert_eq!(grade.verdicts[1].kind, "contains");
    assert!(!grade.verdicts[1].passed);

    let none = super::grade(&[], &observation);
    assert_eq!((none.passed, none.score, none.verdicts.len()), (true, 1.0, 0));
}

#[test]
fn an_assertion_that_cannot_run_errors_the_whole_test() {
    let vars = empty_vars();
    let observation = observe("text", vars);
    let grade = grade(
        &[assertion("contains", json!("text")), assertion("regex", json!(""))],
        &observation,
    );
    assert_eq!((grade.passed, grade.score), (false, 0.0));
    assert!(grade.verdicts[0].passed);
    assert_eq!(
        grade.verdicts[1].reason,
        r#"Invariant failed: "regex" assertion type must have a string value"#
    );
    let unknown = evaluate(&assertion("javascript", json!("true")), &observation);
    assert_eq!(unknown.reason, "Unknown assertion type: javascript");
    // The pure grade cannot call a grader: a model-graded assertion errors, saying so.
    let graded = super::grade(&[assertion("llm-rubric", json!("be nice"))], &observation);
    assert_eq!((graded.passed, graded.score), (false, 0.0));
    assert!(
        graded.verdicts[0].reason.contains("model-graded"),
        "{}",
        graded.verdicts[0].reason
    );
}
