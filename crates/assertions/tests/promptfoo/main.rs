//! Our assertion verdicts against promptfoo's own: the cases in `suites.rs` are written as a
//! promptfoo config whose `echo` provider returns each case's output, `promptfoo eval` grades
//! them, and every assertion's pass/fail (and each test's pass and score) must equal what
//! `assertions::{evaluate, grade}` decide on the same output, vars, latency and cost.
//!
//! A second test imports a config with `domain::promptfoo` and checks the test cases it creates
//! are the ones promptfoo evaluates: same vars after `defaultTest` and list expansion, same
//! assertions in the same order, same rendered prompt.
//!
//! promptfoo is installed under `.local/promptfoo` by `ensure_promptfoo` (deploy/local/lib.sh,
//! which pins the version), which deploy/local/test runs; without it this test fails and says
//! how to install it. The comparison covers what both sides can express: promptfoo resolves
//! `$ref`s against the whole config file, and counts characters outside the Basic Multilingual
//! Plane as two in regexes, so neither is exercised here (see this crate's unit tests).

mod suites;

use assertions::{evaluate, grade, Observation};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use suites::Case;

/// promptfoo exits with this code when an eval ran and some tests failed (our cases fail on
/// purpose); 0 when all passed. Anything else means the eval itself went wrong.
const FAILED_TESTS_EXIT_CODE: i32 = 100;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/assertions is two levels inside the repository")
        .to_path_buf()
}

/// The version deploy/local/lib.sh pins (`PROMPTFOO_VERSION=...`), which `ensure_promptfoo`
/// installs.
fn pinned_version() -> String {
    let lib = std::fs::read_to_string(repo_root().join("deploy/local/lib.sh")).expect("read deploy/local/lib.sh");
    lib.lines()
        .find_map(|line| line.strip_prefix("PROMPTFOO_VERSION="))
        .expect("deploy/local/lib.sh pins PROMPTFOO_VERSION")
        .trim()
        .to_owned()
}

/// The promptfoo binary, after checking that the pinned version is the one installed.
fn promptfoo_binary(version: &str) -> PathBuf {
    let install = repo_root().join(".local/promptfoo");
    let binary = install.join("node_modules/.bin/promptfoo");
    assert!(
        binary.exists(),
        "promptfoo {version} is not installed at {}. Run deploy/local/test (it calls \
         ensure_promptfoo from deploy/local/lib.sh), or: npm install --prefix .local/promptfoo \
         --no-audit --no-fund promptfoo@{version}",
        binary.display()
    );
    let manifest = std::fs::read_to_string(install.join("node_modules/promptfoo/package.json"))
        .expect("read the installed promptfoo's package.json");
    let manifest: Value = serde_json::from_str(&manifest).expect("package.json is JSON");
    assert_eq!(
        manifest["version"].as_str(),
        Some(version),
        "{} holds another promptfoo than the pinned {version}: remove it and run deploy/local/test",
        install.display()
    );
    binary
}

/// A scratch directory for the config, the results and promptfoo's own state, so the eval
/// writes nothing into the user's home. Removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("promptcards-promptfoo-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(dir.join("home")).expect("create the scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(cases: &[Case]) -> Value {
    let tests: Vec<Value> = cases
        .iter()
        .map(|case| {
            let mut vars = case.vars.clone();
            vars.insert("output".into(), Value::String(case.output.into()));
            json!({"description": case.description, "vars": vars, "assert": case.assertions})
        })
        .collect();
    json!({
        "description": "Promptcards assertion engine vs promptfoo",
        "prompts": ["{{ output }}"],
        "providers": ["echo"],
        "tests": tests,
    })
}

/// Runs `promptfoo eval` on a config and returns its per-test results.
fn run_promptfoo(yaml: &str, version: &str) -> Vec<Value> {
    let binary = promptfoo_binary(version);
    let scratch = Scratch::new();
    let config_path = scratch.0.join("promptfooconfig.yaml");
    let output_path = scratch.0.join("results.json");
    std::fs::write(&config_path, yaml).expect("write the config");
    let home = scratch.0.join("home");
    let started = std::time::Instant::now();
    let result = Command::new(&binary)
        .args(["eval", "-c"])
        .arg(&config_path)
        .arg("-o")
        .arg(&output_path)
        .args(["--no-cache", "--no-table", "--no-progress-bar"])
        .current_dir(&scratch.0)
        .env("HOME", &home)
        .env("PROMPTFOO_CONFIG_DIR", home.join(".promptfoo"))
        .env("PROMPTFOO_DISABLE_TELEMETRY", "1")
        .env("PROMPTFOO_DISABLE_UPDATE", "1")
        .env("PROMPTFOO_DISABLE_SHARING", "1")
        .env_remove("PROMPTFOO_FAILED_TEST_EXIT_CODE")
        .env_remove("PROMPTFOO_DISABLE_TEMPLATING")
        .output()
        .expect("run promptfoo");
    let code = result.status.code();
    assert!(
        matches!(code, Some(0 | FAILED_TESTS_EXIT_CODE)),
        "promptfoo eval exited with {code:?}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    eprintln!("promptfoo eval took {:.1}s", started.elapsed().as_secs_f64());
    let text = std::fs::read_to_string(&output_path).expect("promptfoo wrote its results");
    let report: Value = serde_json::from_str(&text).expect("promptfoo's results are JSON");
    report["results"]["results"]
        .as_array()
        .expect("results.results is a list")
        .clone()
}

/// promptfoo's component results for one test, in assertion order.
fn component_results(result: &Value) -> Option<&Vec<Value>> {
    result["gradingResult"]["componentResults"].as_array()
}

#[test]
fn verdicts_match_promptfoo() {
    let version = pinned_version();
    let cases = suites::cases();
    let yaml = serde_norway::to_string(&config(&cases)).expect("serialise the config");
    let results = run_promptfoo(&yaml, &version);
    let mut mismatches = String::new();
    let mut reason_differences = String::new();
    let mut compared = 0;

    for case in &cases {
        let found: Vec<&Value> = results
            .iter()
            .filter(|r| r["testCase"]["description"] == case.description)
            .collect();
        let [result] = found.as_slice() else {
            let _ = writeln!(
                mismatches,
                "{}: expected one promptfoo result, got {}",
                case.description,
                found.len()
            );
            continue;
        };
        let output = result["response"]["output"].as_str().unwrap_or(case.output);
        if output != case.output {
            let _ = writeln!(
                mismatches,
                "{}: the echo provider returned {output:?}, not the case's output {:?}",
                case.description, case.output
            );
        }
        let cost = result["cost"].as_f64().or_else(|| result["response"]["cost"].as_f64());
        let observation = Observation {
            output,
            vars: &case.vars,
            latency_ms: result["latencyMs"].as_u64().unwrap_or(0),
            cost_micro_usd: cost.map(|usd| (usd * 1e6).round() as i64),
        };
        let ours = grade(&case.assertions, &observation);

        let their_pass = result["success"].as_bool().unwrap_or(false);
        let their_score = result["score"].as_f64().unwrap_or(f64::NAN);
        if ours.passed != their_pass || (ours.score - their_score).abs() > 1e-9 {
            let _ = writeln!(
                mismatches,
                "{}: test passed={} score={} here, passed={their_pass} score={their_score} in promptfoo (error: {})",
                case.description, ours.passed, ours.score, result["error"]
            );
        }

        match component_results(result) {
            Some(theirs) => {
                if theirs.len() != case.assertions.len() {
                    let _ = writeln!(
                        mismatches,
                        "{}: promptfoo reports {} assertion results for {} assertions",
                        case.description,
                        theirs.len(),
                        case.assertions.len()
                    );
                }
                for (i, (assertion, theirs)) in case.assertions.iter().zip(theirs).enumerate() {
                    compared += 1;
                    let verdict = evaluate(assertion, &observation);
                    assert_eq!(verdict, ours.verdicts[i], "grade and evaluate agree");
                    let their_pass = theirs["pass"].as_bool().unwrap_or(false);
                    let their_score = theirs["score"].as_f64().unwrap_or(f64::NAN);
                    let their_reason = theirs["reason"].as_str().unwrap_or_default();
                    let what = format!(
                        "{} #{i} {} {}",
                        case.description,
                        assertion.kind,
                        assertion.value.as_ref().map(Value::to_string).unwrap_or_default()
                    );
                    if verdict.passed != their_pass || (verdict.score - their_score).abs() > 1e-9 {
                        let _ = writeln!(
                            mismatches,
                            "{what}: passed={} score={} ({:?}) here, passed={their_pass} score={their_score} ({their_reason:?}) in promptfoo",
                            verdict.passed, verdict.score, verdict.reason
                        );
                    } else if verdict.reason != their_reason {
                        let _ = writeln!(
                            reason_differences,
                            "{what}: {:?} here, {their_reason:?} in promptfoo",
                            verdict.reason
                        );
                    }
                }
            }
            None if case.assertions.is_empty() => {}
            None => {
                // promptfoo threw while grading: the test is an error. Ours must fail with score
                // 0 (checked above) and name the same error on the assertion that caused it.
                let error = result["error"].as_str().unwrap_or_default();
                let named = ours
                    .verdicts
                    .iter()
                    .any(|v| !v.passed && !v.reason.is_empty() && error.contains(&v.reason));
                compared += case.assertions.len();
                if !named {
                    let _ = writeln!(
                        mismatches,
                        "{}: promptfoo's error {:?} is not the reason of any of our failed verdicts {:?}",
                        case.description,
                        error.lines().next().unwrap_or_default(),
                        ours.verdicts.iter().map(|v| &v.reason).collect::<Vec<_>>()
                    );
                }
            }
        }
    }

    if !reason_differences.is_empty() {
        eprintln!("Reasons worded differently (pass/fail agree):\n{reason_differences}");
    }
    assert!(
        mismatches.is_empty(),
        "our verdicts differ from promptfoo {version}'s:\n{mismatches}"
    );
    assert!(compared >= 150, "compared only {compared} assertions");
    eprintln!(
        "{compared} assertions in {} tests agree with promptfoo {version}",
        cases.len()
    );
}

/// A config using what an import reads: several prompts, `defaultTest` vars and assertions,
/// tests overriding vars, list vars expanding, numbers and JSON values.
const IMPORT_CONFIG: &str = r#"
description: Import vs promptfoo
prompts:
  - "Reply to {{ customer }} about {{ topic }}."
  - raw: "{{ topic | upper }} for {{ customer }} ({{ count }})"
    label: Shouting
providers: [echo]
defaultTest:
  vars: {customer: Ada, count: 3}
  assert:
    - {type: icontains, value: "{{ customer }}"}
tests:
  - description: refund
    vars: {topic: refunds}
    assert:
      - {type: not-contains, value: sorry, weight: 2}
  - description: grid
    vars: {topic: [billing, shipping], customer: [Bo, Cy]}
  - vars: {topic: misc, count: 7}
    assert:
      - {type: word-count, value: {min: 1, max: 50}}
"#;

#[test]
fn imported_cases_are_the_tests_promptfoo_evaluates() {
    let version = pinned_version();
    let mut results = run_promptfoo(IMPORT_CONFIG, &version);
    results.sort_by_key(|r| (r["promptIdx"].as_u64(), r["testIdx"].as_u64()));
    let config = domain::promptfoo::parse_yaml(IMPORT_CONFIG).expect("valid YAML");
    let import = domain::promptfoo::translate(&config).expect("importable");

    let ours: Vec<(
        usize,
        &domain::promptfoo::ImportedCard,
        &domain::promptfoo::ImportedCase,
    )> = import
        .cards
        .iter()
        .enumerate()
        .flat_map(|(i, card)| card.cases.iter().map(move |case| (i, card, case)))
        .collect();
    assert_eq!(ours.len(), 12, "2 prompts x (1 + 2 x 2 + 1) tests");
    assert_eq!(results.len(), ours.len(), "promptfoo evaluated another number of tests");
    for ((prompt_idx, card, case), theirs) in ours.iter().zip(&results) {
        let what = format!("prompt {prompt_idx}, {}", case.content.name);
        assert_eq!(theirs["promptIdx"].as_u64(), Some(*prompt_idx as u64), "{what}");
        assert_eq!(
            Value::Object(case.content.vars.clone()),
            theirs["vars"],
            "{what}: vars differ from promptfoo's"
        );
        let their_types: Vec<&str> = theirs["testCase"]["assert"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["type"].as_str()).collect())
            .unwrap_or_default();
        let our_types: Vec<&str> = case.content.assertions.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(our_types, their_types, "{what}: assertions differ from promptfoo's");
        let rendered = domain::template::render(&card.content.template, &card.content.variables, &case.content.vars)
            .expect("the template renders");
        assert_eq!(
            Some(rendered.as_str()),
            theirs["response"]["output"].as_str(),
            "{what}: the echo provider saw another prompt"
        );
    }
    assert_eq!(import.cards[1].content.title, "Shouting");
}
