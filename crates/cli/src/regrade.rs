//! `promptcards regrade`: a past run's recorded outputs graded again under a new assertion set.

use crate::output::{self, json_line};
use crate::{Outcome, Settings};
use anyhow::{bail, Context};
use assertions::{Assertion, AssertionType, Observation};
use clap::Args;
use domain::run::{GradingUsage, RegradedResult, RunCommand, RunEvent, TestResult, TestRun};
use domain::{Aggregate, DomainError};
use event_store::{fold_recorded, Append, AppendError, ExpectedVersion, Metadata, NewEvent, StreamAppend};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uuid::Uuid;

/// Shown by `--help` after the options.
pub const DETAILS: &str = "\
Reads the run's recorded results from its stream and grades each output again as the runner \
does (vars of the case as the run snapshotted it, the recorded prompt, latency and cost). The \
tested provider is not called again. Model-graded assertions (llm-rubric, factuality, similar, \
...) call their grading model again, resolved as the runner resolves it (OPENAI_BASE_URL, \
OPENAI_API_KEY, GRADING_PROVIDER, GRADING_EMBEDDING_PROVIDER, PROVIDER_TIMEOUT_MS); what the \
graders used is recorded with each grade. The grades are appended to the \
run's stream as one `TestRunRegraded` event, at the version read (a concurrent change \
fails rather than being overwritten); the original verdicts stay as recorded. Results \
whose provider call failed have no output and are left out. Prints the cases that flipped.";

#[derive(Debug, Args)]
pub struct RegradeArgs {
    /// The test run's id.
    pub run: Uuid,
    /// The new assertions: a YAML or JSON list of {type, value?, threshold?, weight?} (or an
    /// object with such a list under `assert` or `assertions`, as promptfoo writes them).
    #[arg(long, value_name = "FILE")]
    pub assertions: PathBuf,
    /// Who is re-grading, recorded as the event's actor.
    #[arg(long, value_name = "USER_ID")]
    pub actor: Option<Uuid>,
    /// Grade and print, but record nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// One JSON object per result and line, then a summary line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AssertionFile {
    List(Vec<Assertion>),
    Assert { assert: Vec<Assertion> },
    Assertions { assertions: Vec<Assertion> },
}

fn read_assertions(path: &Path) -> anyhow::Result<Vec<Assertion>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let is_json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('[');
    let file: AssertionFile = if is_json {
        serde_json::from_str(&text).with_context(|| format!("{} is not a JSON list of assertions", path.display()))?
    } else {
        serde_norway::from_str(&text).with_context(|| format!("{} is not a YAML list of assertions", path.display()))?
    };
    Ok(match file {
        AssertionFile::List(list)
        | AssertionFile::Assert { assert: list }
        | AssertionFile::Assertions { assertions: list } => list,
    })
}

/// One result before and after.
struct Regraded {
    before: TestResult,
    case_name: String,
    after: RegradedResult,
}

impl Regraded {
    fn flip(&self) -> Option<&'static str> {
        match (self.before.passed, self.after.passed) {
            (true, false) => Some("pass->fail"),
            (false, true) => Some("fail->pass"),
            _ => None,
        }
    }
}

pub async fn run(settings: &Settings, args: RegradeArgs) -> anyhow::Result<Outcome> {
    let assertions = read_assertions(&args.assertions)?;
    let store = settings.store().await?;
    let events = store.read_stream(args.run, 0).await?;
    match events.first() {
        None => bail!("no test run {}", args.run),
        Some(first) if first.stream_type != TestRun::STREAM_TYPE => {
            bail!("{} is a {} stream, not a test run", args.run, first.stream_type)
        }
        Some(_) => {}
    }
    let version = events.last().map(|e| e.version).unwrap_or(0);
    let run: TestRun = fold_recorded(&events)?;
    let plan = run.plan.as_ref().context("the run has no plan")?;
    let cases: HashMap<Uuid, _> = plan.cases.iter().map(|c| (c.case_id, c)).collect();

    let model_graded = assertions.iter().any(|a| {
        a.assertion_type()
            .is_ok_and(|AssertionType { kind, .. }| kind.is_model_graded())
    });
    let graders = if model_graded {
        let providers = Arc::new(providers::Providers::try_new(
            providers::ProviderSettings::from_env()?,
            providers::PriceTable::from_env()?,
        )?);
        Some(runner::grading::SettingsGraders::new(
            providers,
            runner::grading::GradingSettings::from_env(),
        ))
    } else {
        None
    };
    let mut recorded_results = Vec::new();
    let mut skipped = 0usize;
    for event in &events {
        if event.event_type != RunEvent::TEST_RESULT_RECORDED {
            continue;
        }
        let RunEvent::TestResultRecorded { result, .. } = event.decode::<RunEvent>()? else {
            continue;
        };
        if result.output.is_none() || !cases.contains_key(&result.key.case_id) {
            skipped += 1;
            continue;
        }
        recorded_results.push(result);
    }
    // Graders are called for several results at once, as the runner calls them.
    let regraded: Vec<Regraded> = futures::stream::iter(recorded_results)
        .map(|result| {
            let (assertions, graders, case) = (&assertions, graders.as_ref(), cases[&result.key.case_id]);
            async move {
                let observation = Observation {
                    output: result.output.as_deref().unwrap_or_default(),
                    vars: &case.vars,
                    latency_ms: result.latency_ms,
                    cost_micro_usd: Some(result.cost_micro_usd),
                };
                let graded = match graders {
                    Some(graders) => {
                        // The operator's tool grades with the environment's keys.
                        runner::grading::grade(
                            graders,
                            plan.workspace_id,
                            &providers::Credentials::environment(),
                            assertions,
                            &observation,
                            &result.rendered_prompt,
                        )
                        .await
                    }
                    None => runner::grading::Graded {
                        grade: assertions::grade(assertions, &observation),
                        usage: GradingUsage::default(),
                    },
                };
                anyhow::Ok(Regraded {
                    case_name: case.name.clone(),
                    after: RegradedResult {
                        key: result.key.clone(),
                        passed: graded.grade.passed,
                        score: graded.grade.score,
                        verdicts: graded.grade.verdicts,
                        grading: graded.usage,
                    },
                    before: result,
                })
            }
        })
        .buffered(16)
        .try_collect()
        .await?;

    let recorded = if args.dry_run {
        None
    } else {
        let command = RunCommand::Regrade {
            assertions: assertions.clone(),
            results: regraded.iter().map(|r| r.after.clone()).collect(),
        };
        let new_events = run.decide(command).map_err(|error| match error {
            DomainError::Invalid(fields) => anyhow::anyhow!(
                "cannot regrade: {}",
                fields
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            other => anyhow::anyhow!("cannot regrade: {other}"),
        })?;
        let appended = store
            .append(Append {
                streams: vec![StreamAppend {
                    stream_id: args.run,
                    stream_type: TestRun::STREAM_TYPE.to_owned(),
                    expected: ExpectedVersion::Exact(version),
                    events: new_events.iter().map(NewEvent::from_domain).collect(),
                }],
                metadata: Metadata {
                    actor_id: args.actor,
                    workspace_id: Some(plan.workspace_id),
                    correlation_id: Uuid::now_v7(),
                    ..Metadata::default()
                },
                ..Append::default()
            })
            .await
            .map_err(|error| match error {
                AppendError::WrongExpectedVersion { .. } => {
                    anyhow::anyhow!(
                        "run {} changed while it was being regraded; nothing was recorded, try again",
                        args.run
                    )
                }
                other => other.into(),
            })?;
        Some((appended.streams[0].version, appended.position))
    };

    print(&args, &regraded, skipped, recorded)?;
    Ok(Outcome::Done)
}

fn print(
    args: &RegradeArgs,
    regraded: &[Regraded],
    skipped: usize,
    recorded: Option<(i64, i64)>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let count = |flip: &str| regraded.iter().filter(|r| r.flip() == Some(flip)).count();
    let (to_fail, to_pass) = (count("pass->fail"), count("fail->pass"));
    if args.json {
        for r in regraded {
            json_line(
                &mut out,
                &json!({
                    "case_id": r.before.key.case_id,
                    "case": r.case_name,
                    "provider": r.before.key.provider,
                    "repetition": r.before.key.repetition,
                    "passed_before": r.before.passed,
                    "passed": r.after.passed,
                    "score_before": r.before.score,
                    "score": r.after.score,
                    "flip": r.flip(),
                    "verdicts": r.after.verdicts,
                    "grading_prompt_tokens": r.after.grading.grading_prompt_tokens,
                    "grading_completion_tokens": r.after.grading.grading_completion_tokens,
                    "grading_cost_micro_usd": r.after.grading.grading_cost_micro_usd,
                }),
            )?;
        }
        json_line(
            &mut out,
            &json!({
                "run_id": args.run,
                "regraded": regraded.len(),
                "skipped": skipped,
                "pass_to_fail": to_fail,
                "fail_to_pass": to_pass,
                "recorded_version": recorded.map(|r| r.0),
                "position": recorded.map(|r| r.1),
            }),
        )?;
        return Ok(());
    }
    let flipped: Vec<&Regraded> = regraded.iter().filter(|r| r.flip().is_some()).collect();
    if !flipped.is_empty() {
        let mut table = output::table(["FLIP", "CASE", "CASE ID", "PROVIDER", "REP", "SCORE", "WHY"]);
        for r in &flipped {
            let why = r
                .after
                .verdicts
                .iter()
                .filter(|v| !v.passed)
                .map(|v| format!("{}: {}", v.kind, v.reason))
                .collect::<Vec<_>>()
                .join("\n");
            table.add_row(vec![
                r.flip().unwrap_or_default().to_owned(),
                r.case_name.clone(),
                r.before.key.case_id.to_string(),
                r.before.key.provider.clone(),
                r.before.key.repetition.to_string(),
                format!("{:.2} -> {:.2}", r.before.score, r.after.score),
                why,
            ]);
        }
        writeln!(out, "{table}")?;
    }
    writeln!(
        out,
        "{} results regraded: {to_fail} pass->fail, {to_pass} fail->pass, {} unchanged{}",
        regraded.len(),
        regraded.len() - flipped.len(),
        if skipped > 0 {
            format!("; {skipped} failed calls without output left out")
        } else {
            String::new()
        }
    )?;
    match recorded {
        Some((version, position)) => writeln!(
            out,
            "recorded as TestRunRegraded, version {version} of run {} (position {position})",
            args.run
        )?,
        None => writeln!(out, "dry run: nothing recorded")?,
    }
    Ok(())
}
