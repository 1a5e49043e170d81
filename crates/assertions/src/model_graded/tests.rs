//! Prompts built and grader answers read as promptfoo builds and reads them.

use super::*;
use serde_json::json;

fn assertion(kind: &str, value: Value) -> Assertion {
    Assertion {
        kind: kind.into(),
        value: Some(value),
        ..Default::default()
    }
}

fn observe<'a>(output: &'a str, vars: &'a Map<String, Value>) -> Observation<'a> {
    Observation {
        output,
        vars,
        latency_ms: 1,
        cost_micro_usd: None,
    }
}

fn chat(grading: Result<Grading, Verdict>) -> Vec<Message> {
    match grading {
        Ok(Grading::Chat { messages }) => messages,
        other => panic!("not one chat call: {other:?}"),
    }
}

#[test]
fn llm_rubric_sends_the_output_and_the_rendered_rubric() {
    let vars = Map::from_iter([("tone".to_owned(), json!("polite"))]);
    let messages = chat(prepare(
        &assertion("llm-rubric", json!("Is {{ tone }}")),
        &observe("Hello there", &vars),
        "Greet",
    ));
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].role, "system");
    assert!(messages[0]
        .content
        .contains("{reason: string, pass: boolean, score: number}"));
    assert_eq!(
        messages[1],
        Message::new(
            "user",
            "<Output>\nHello there\n</Output>\n<Rubric>\nIs polite\n</Rubric>"
        )
    );
    // A JSON output is sent compact, as promptfoo re-serialises what it parsed.
    let messages = chat(prepare(
        &assertion("llm-rubric", json!("x")),
        &observe("{ \"a\": 1 }", &vars),
        "",
    ));
    assert!(messages[1].content.contains("<Output>\n{\"a\":1}\n</Output>"));
}

#[test]
fn a_custom_rubric_prompt_replaces_the_default_as_text_or_messages() {
    let vars = Map::new();
    let mut custom = assertion("llm-rubric", json!("short"));
    custom.rubric_prompt = Some(json!("Grade {{ output }} by: {{ rubric }}"));
    assert_eq!(
        chat(prepare(&custom, &observe("Hi", &vars), "")),
        [Message::new("user", "Grade Hi by: short")]
    );
    custom.rubric_prompt = Some(json!(
        r#"[{"role": "system", "content": "Judge: {{ rubric }}"}, {"role": "user", "content": "{{ output }}"}]"#
    ));
    assert_eq!(
        chat(prepare(&custom, &observe("Hi", &vars), "")),
        [Message::new("system", "Judge: short"), Message::new("user", "Hi")]
    );
}

#[test]
fn closedqa_and_factuality_put_the_prompt_the_criterion_and_the_output_in_place() {
    let vars = Map::new();
    let messages = chat(prepare(
        &assertion("model-graded-closedqa", json!("mentions Paris")),
        &observe("It is Paris.", &vars),
        "Capital of France?",
    ));
    assert_eq!(messages.len(), 1);
    let text = &messages[0].content;
    assert!(
        text.contains("[Task]: Capital of France?\n***\n[Submission]: It is Paris.\n***\n[Criterion]: mentions Paris"),
        "{text}"
    );
    let messages = chat(prepare(
        &assertion("factuality", json!("Paris")),
        &observe("Lyon", &vars),
        "Capital of France?",
    ));
    assert!(messages[1]
        .content
        .contains("<question>\nCapital of France?\n</question>"));
    assert!(messages[1].content.contains("<expert_answer>\nParis\n</expert_answer>"));
    assert!(messages[1]
        .content
        .contains("<submitted_answer>\nLyon\n</submitted_answer>"));
}

#[test]
fn rubric_answers_are_read_as_promptfoo_reads_them() {
    let a = assertion("llm-rubric", json!("x"));
    let v = judge(&a, r#"{"reason": "polite", "pass": true, "score": 0.9}"#);
    assert_eq!((v.passed, v.score, v.reason.as_str()), (true, 0.9, "polite"));
    // Prose around the JSON, string booleans and scores, missing reason.
    let v = judge(&a, "Sure. {\"pass\": \"no\", \"score\": \"0.2\"} Bye");
    assert_eq!(
        (v.passed, v.score, v.reason.as_str()),
        (false, 0.2, "Score 0.2 below threshold undefined")
    );
    let v = judge(&a, r#"{"pass": true}"#);
    assert_eq!((v.passed, v.score, v.reason.as_str()), (true, 1.0, "Grading passed"));
    // A threshold above the score fails a pass.
    let mut strict = a.clone();
    strict.threshold = Some(0.95);
    assert!(!judge(&strict, r#"{"pass": true, "score": 0.9, "reason": "ok"}"#).passed);
    // not- flips the verdict and the score.
    let negated = assertion("not-llm-rubric", json!("x"));
    let v = judge(&negated, r#"{"pass": true, "score": 0.75, "reason": "r"}"#);
    assert_eq!((v.passed, v.score), (false, 0.25));
}

#[test]
fn a_garbage_answer_fails_with_the_graders_text_and_not_is_not_a_pass() {
    for kind in ["llm-rubric", "not-llm-rubric"] {
        let v = judge(&assertion(kind, json!("x")), "I think it is fine");
        assert!(!v.passed, "{kind}");
        assert_eq!(v.score, 0.0);
        assert_eq!(
            v.reason,
            "Could not extract JSON from llm-rubric response: I think it is fine"
        );
    }
    let v = judge(&assertion("factuality", json!("x")), "no idea");
    assert!(!v.passed);
    assert!(v.reason.contains("no idea"), "{}", v.reason);
    let v = grader_failed(
        &assertion("not-llm-rubric", json!("x")),
        "the provider did not answer within 1s",
    );
    assert!(!v.passed);
}

#[test]
fn factuality_letters_map_as_promptfoos_defaults() {
    let a = assertion("factuality", json!("x"));
    for (letter, pass) in [
        ("A", true),
        ("B", true),
        ("C", true),
        ("D", false),
        ("E", true),
        ("c", true),
    ] {
        let v = judge(&a, &format!("{{\"category\": \"{letter}\", \"reason\": \"because\"}}"));
        assert_eq!((v.passed, v.reason.as_str()), (pass, "because"), "{letter}");
    }
    let v = judge(&a, r#"{"category": "B"}"#);
    assert_eq!(
        v.reason,
        "Category B: The submitted answer is a superset of the expert answer and is fully consistent with it."
    );
    assert_eq!(judge(&a, r#"{"category": "F"}"#).reason, "Invalid category value: F");
    // promptfoo's legacy answers: a letter in parentheses, the reason after it.
    let v = judge(&a, "(D) The capital is Paris, not Lyon.");
    assert_eq!(
        (v.passed, v.reason.as_str()),
        (false, "The capital is Paris, not Lyon.")
    );
}

#[test]
fn closedqa_reads_the_last_letter() {
    let a = assertion("model-graded-closedqa", json!("x"));
    let v = judge(&a, "It names Paris.\nY\nY\n");
    assert!(v.passed);
    assert!(v.reason.starts_with("The submission meets the criterion:\n"));
    let v = judge(&a, "Wrong city.\nN");
    assert!(!v.passed);
    assert!(v.reason.starts_with("The submission does not meet the criterion:"));
    let v = judge(&a, "maybe?");
    assert!(!v.passed);
    assert_eq!(v.reason, "Model grader produced a malformed response:\nmaybe?");
}

#[test]
fn g_eval_steps_then_scores() {
    let a = assertion("g-eval", json!("coherent"));
    let steps = geval_steps_messages(&a, "coherent").unwrap();
    assert_eq!(steps.len(), 1);
    assert!(steps[0].content.contains("**EVALUATION CRITERIA**\ncoherent\n"));
    assert_eq!(
        parse_geval_steps("Here:\n{\"steps\": [\"Read it\", \"Check flow\"]}\n").unwrap(),
        ["Read it", "Check flow"]
    );
    assert!(parse_geval_steps("{\"steps\": []}")
        .unwrap_err()
        .contains("does not propose"));
    assert!(parse_geval_steps("no json").unwrap_err().contains("not in JSON format"));
    let evaluate = geval_evaluate_messages(&a, "coherent", &["Read it".into(), "Check flow".into()], "Q", "A").unwrap();
    assert!(evaluate[0].content.contains("- Read it\n- Check flow\n"));
    assert!(evaluate[0].content.contains("an integer from 0 to 10"));
    assert_eq!(
        parse_geval_score(r#"{"score": 8, "reason": "clear"}"#).unwrap(),
        (0.8, "clear".into())
    );
    assert!(parse_geval_score(r#"{"score": 11, "reason": "x"}"#)
        .unwrap_err()
        .contains("outside"));
    assert!(parse_geval_score(r#"{"score": 5}"#).unwrap_err().contains("reason"));

    let criteria = vec!["coherent".to_owned()];
    let v = geval_verdict(&a, &criteria, &[Ok((0.8, "clear".into()))]);
    assert_eq!((v.passed, v.score, v.reason.as_str()), (true, 0.8, "clear"));
    let v = geval_verdict(&a, &criteria, &[Ok((0.6, "meh".into()))]);
    assert!(!v.passed, "0.6 is below the default 0.7");
    let two = vec!["coherent".to_owned(), "short".to_owned()];
    let v = geval_verdict(&a, &two, &[Ok((0.8, "a".into())), Err("timeout".into())]);
    assert_eq!(v.reason, "G-Eval criterion 2/2 (\"short\") failed: timeout");
    let v = geval_verdict(&a, &two, &[Ok((1.0, "a".into())), Ok((0.6, "b".into()))]);
    assert_eq!((v.passed, v.score, v.reason.as_str()), (true, 0.8, "a\n\nb"));
}

#[test]
fn similarity_is_cosine_against_the_threshold() {
    assert_eq!(cosine(&[1.0, 0.0], &[1.0, 0.0]).unwrap(), 1.0);
    assert_eq!(cosine(&[1.0, 0.0], &[0.0, 1.0]).unwrap(), 0.0);
    assert_eq!(cosine(&[0.0, 0.0], &[0.0, 1.0]).unwrap(), 0.0);
    assert!(cosine(&[1.0], &[1.0, 2.0]).is_err());
    let a = assertion("similar", json!("x"));
    let v = similar_verdict(&a, &[Ok(0.8)]);
    assert_eq!(
        (v.passed, v.score, v.reason.as_str()),
        (true, 0.8, "Similarity 0.80 is greater than or equal to threshold 0.75")
    );
    let v = similar_verdict(&a, &[Ok(0.5)]);
    assert_eq!(
        (v.passed, v.reason.as_str()),
        (false, "Similarity 0.50 is less than threshold 0.75")
    );
    let v = similar_verdict(&a, &[Ok(0.5), Ok(0.6)]);
    assert_eq!(
        (v.passed, v.score, v.reason.as_str()),
        (false, 0.6, "None of the provided values met the similarity threshold")
    );
    assert!(similar_verdict(&a, &[Ok(0.5), Ok(0.9)]).passed);
    let negated = assertion("not-similar", json!("x"));
    let v = similar_verdict(&negated, &[Ok(0.5)]);
    assert_eq!(
        (v.passed, v.score, v.reason.as_str()),
        (true, 0.5, "Similarity 0.50 is less than threshold 0.75")
    );
    assert!(!similar_verdict(&negated, &[Ok(0.2), Ok(0.9)]).passed);
    let v = similar_verdict(&a, &[Err("the provider answered HTTP 500: boom".into())]);
    assert_eq!(
        (v.passed, v.reason.as_str()),
        (false, "the provider answered HTTP 500: boom")
    );
}

#[test]
fn only_json_on_one_line_counts_for_g_eval() {
    assert_eq!(one_line_braces("a {\"x\": 1} b}", "{"), Some("{\"x\": 1} b}"));
    assert_eq!(one_line_braces("{\n\"x\": 1}", "{"), None);
    assert_eq!(
        one_line_braces("x\n{\"steps\":[\"a\"]}", "{\"steps\""),
        Some("{\"steps\":[\"a\"]}")
    );
}
