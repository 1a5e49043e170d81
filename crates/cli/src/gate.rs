//! `promptcards gate`: the CI gate. It talks to the command API only (never the database):
//! starts a comparison of a candidate against a baseline, shows its progress, writes the
//! candidate run's JUnit report, prints a one-screen summary and exits non-zero on a regression
//! or a pass rate below the threshold.

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Exit status of the gate when it held.
pub const GATE_PASSED: u8 = 0;
/// Exit status of the gate on a regression or a pass rate below the threshold.
pub const GATE_FAILED: u8 = 1;
/// Exit status of the gate on bad usage or when the API could not be used.
pub const GATE_ERROR: u8 = 2;

pub const DETAILS: &str = "\
The gate starts a comparison (POST /v1/workspaces/{ws}/prompt-cards/{card}/comparisons), waits
for both runs to end, and fails when the baseline is significantly better (Fisher's exact test,
p < 0.05) or the candidate's pass rate is below --min-pass-rate. A side is a label or a version
number. Exit status: 0 the gate held; 1 a regression or a pass rate below the threshold; 2 bad
usage, or the API could not be reached or refused the request.

Example, in a CI job:
  promptcards gate --api-url https://promptcards.example.com --api-key \"$PROMPTCARDS_API_KEY\" \\
    --workspace $WS --card support-reply --candidate candidate --baseline production \\
    --providers echo,openai:gpt-4o-mini --min-pass-rate 0.9 --junit promptcards.xml";

#[derive(Debug, Args)]
pub struct GateArgs {
    /// The command API's base URL
    #[arg(long, env = "PROMPTCARDS_API_URL")]
    pub api_url: String,
    /// An API key (or access token) of the workspace; member role or above
    #[arg(long, env = "PROMPTCARDS_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// The workspace id
    #[arg(long)]
    pub workspace: String,
    /// The prompt card: its name or its id
    #[arg(long)]
    pub card: String,
    /// The version under test: a label or a version number
    #[arg(long)]
    pub candidate: String,
    /// What it must not be worse than: a label or a version number
    #[arg(long)]
    pub baseline: String,
    /// Providers to run on, comma-separated (e.g. `echo,openai:gpt-4o-mini`)
    #[arg(long, value_delimiter = ',', required = true)]
    pub providers: Vec<String>,
    /// How many times each case runs per provider
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Fail when the candidate's pass rate is below this (0 to 1)
    #[arg(long)]
    pub min_pass_rate: Option<f64>,
    /// Write the candidate run's results as JUnit XML here
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Give up waiting after this many seconds
    #[arg(long, default_value_t = 1800)]
    pub timeout_secs: u64,
}

/// A side as the API takes it: digits are a version, anything else a label.
fn side(value: &str) -> Value {
    match value.parse::<u32>() {
        Ok(version) => json!({ "version": version }),
        Err(_) => json!({ "label": value }),
    }
}

/// The gate's verdict from a finished comparison report: `Ok(())` when it holds, else why not.
pub fn judge(report: &Value, min_pass_rate: Option<f64>) -> Result<(), Vec<String>> {
    let mut failures = Vec::new();
    let verdict = report["verdict"].as_str().unwrap_or("");
    if verdict == "BASELINE_BETTER" {
        failures.push(format!(
            "regression: the baseline is significantly better (p = {:.4})",
            report["p_value"].as_f64().unwrap_or(f64::NAN)
        ));
    }
    let pass_rate = report["candidate"]["pass_rate"].as_f64().unwrap_or(0.0);
    if let Some(min) = min_pass_rate {
        if pass_rate < min {
            failures.push(format!(
                "the candidate's pass rate {:.1}% is below the minimum {:.1}%",
                pass_rate * 100.0,
                min * 100.0
            ));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
    workspace: String,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!(
            "{}/v1/workspaces/{}{path}",
            self.base.trim_end_matches('/'),
            self.workspace
        )
    }

    /// The card's id: the value itself when it is one, else the id of the card with that name.
    async fn card_id(&self, card: &str) -> anyhow::Result<String> {
        if uuid::Uuid::parse_str(card).is_ok() {
            return Ok(card.to_owned());
        }
        let response = self
            .http
            .get(self.url(&format!("/prompts/{card}")))
            .bearer_auth(&self.key)
            .send()
            .await
            .context("cannot reach the API")?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "no prompt card named {card:?}: {status} {body}");
        body["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the API's answer names no card id: {body}"))
    }
}

pub async fn run(args: GateArgs) -> u8 {
    match gate(args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            GATE_ERROR
        }
    }
}

async fn gate(args: GateArgs) -> anyhow::Result<u8> {
    if let Some(min) = args.min_pass_rate {
        anyhow::ensure!((0.0..=1.0).contains(&min), "--min-pass-rate must be from 0 to 1");
    }
    let api = Api {
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
        base: args.api_url.clone(),
        key: args.api_key.clone(),
        workspace: args.workspace.clone(),
    };
    let card = api.card_id(&args.card).await?;
    let response = api
        .http
        .post(api.url(&format!("/prompt-cards/{card}/comparisons")))
        .bearer_auth(&api.key)
        .json(&json!({
            "baseline": side(&args.baseline),
            "candidate": side(&args.candidate),
            "providers": args.providers,
            "repeat": args.repeat,
        }))
        .send()
        .await
        .context("cannot reach the API")?;
    let status = response.status();
    let started: Value = response.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(
        status.is_success(),
        "the API refused the comparison: {status} {started}"
    );
    let comparison = started["comparison_id"]
        .as_str()
        .context("no comparison_id in the answer")?;
    let candidate_run = started["candidate_run_id"].as_str().unwrap_or_default().to_owned();

    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")?);
    bar.set_message(format!(
        "comparing {} (baseline) with {} (candidate)",
        args.baseline, args.candidate
    ));
    bar.enable_steady_tick(Duration::from_millis(200));
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let export = api.url(&format!("/comparisons/{comparison}/export?format=json"));
    let finished: Value = loop {
        let response = api.http.get(&export).bearer_auth(&api.key).send().await;
        match response {
            Ok(response) if response.status().is_success() => break response.json().await?,
            // 409 while the runs go on; anything else but a failed comparison is an error.
            Ok(response) if response.status() == reqwest::StatusCode::CONFLICT => {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let message = body["message"].as_str().unwrap_or_default();
                anyhow::ensure!(!message.contains("failed"), "{message}");
            }
            Ok(response) => {
                let status = response.status();
                anyhow::bail!(
                    "the API answered {status}: {}",
                    response.text().await.unwrap_or_default()
                );
            }
            Err(error) => return Err(error).context("cannot reach the API"),
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the comparison did not finish in {} s",
            args.timeout_secs
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    bar.finish_and_clear();

    if let Some(path) = &args.junit {
        let junit = api
            .http
            .get(api.url(&format!("/runs/{candidate_run}/export?format=junit")))
            .bearer_auth(&api.key)
            .send()
            .await
            .context("cannot reach the API")?
            .error_for_status()?
            .bytes()
            .await?;
        std::fs::write(path, &junit).with_context(|| format!("cannot write {}", path.display()))?;
    }

    let report = &finished["report"];
    print!("{}", summary(&args, comparison, report));
    Ok(match judge(report, args.min_pass_rate) {
        Ok(()) => {
            println!("gate: PASSED");
            GATE_PASSED
        }
        Err(failures) => {
            for failure in failures {
                println!("gate: FAILED - {failure}");
            }
            GATE_FAILED
        }
    })
}

fn summary(args: &GateArgs, comparison: &str, report: &Value) -> String {
    let side = |stats: &Value| {
        format!(
            "{:>6.1}% [{:.1}-{:.1}]  p50 {:>5} ms  p95 {:>5} ms  {:>7} tokens  ${}",
            stats["pass_rate"].as_f64().unwrap_or(0.0) * 100.0,
            stats["low"].as_f64().unwrap_or(0.0) * 100.0,
            stats["high"].as_f64().unwrap_or(0.0) * 100.0,
            stats["latency_p50_ms"],
            stats["latency_p95_ms"],
            stats["tokens"],
            stats["cost_micro_usd"].as_i64().unwrap_or(0) as f64 / 1e6,
        )
    };
    let mut out = format!("comparison {comparison}\n");
    out += &format!("  baseline  {:<14} {}\n", args.baseline, side(&report["baseline"]));
    out += &format!("  candidate {:<14} {}\n", args.candidate, side(&report["candidate"]));
    out += &format!(
        "  verdict   {} (p = {:.4}), {} flipped\n",
        report["verdict"].as_str().unwrap_or("?"),
        report["p_value"].as_f64().unwrap_or(f64::NAN),
        report["flip_count"]
    );
    for flip in report["flips"].as_array().into_iter().flatten().take(10) {
        out += &format!(
            "    {} -> {}  case {} on {}\n",
            flip["from"].as_str().unwrap_or("?"),
            flip["to"].as_str().unwrap_or("?"),
            flip["test_case_id"].as_str().unwrap_or("?"),
            flip["provider"].as_str().unwrap_or("?")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_side_is_a_version_or_a_label() {
        assert_eq!(side("3"), json!({ "version": 3 }));
        assert_eq!(side("production"), json!({ "label": "production" }));
    }

    #[test]
    fn the_gate_fails_on_a_regression_or_a_low_pass_rate() {
        let report = |verdict: &str, rate: f64| json!({ "verdict": verdict, "p_value": 0.01, "candidate": { "pass_rate": rate } });
        assert!(judge(&report("CANDIDATE_BETTER", 1.0), Some(0.9)).is_ok());
        assert!(judge(&report("NO_SIGNIFICANT_DIFFERENCE", 0.95), Some(0.9)).is_ok());
        assert_eq!(judge(&report("BASELINE_BETTER", 1.0), None).unwrap_err().len(), 1);
        assert_eq!(
            judge(&report("NO_SIGNIFICANT_DIFFERENCE", 0.5), Some(0.9))
                .unwrap_err()
                .len(),
            1
        );
        assert_eq!(judge(&report("BASELINE_BETTER", 0.5), Some(0.9)).unwrap_err().len(), 2);
    }
}
