//! Exports: a run's results as CSV, JSONL, JUnit XML or XLSX, and a comparison as CSV or JSON.
//!
//! A run's results are read from its stream in the event store (the record itself, not a read
//! model), one row at a time, and written to the response as they come, so a 100,000-result run
//! needs no more memory than a small one. The export holds the results recorded when it started:
//! a run still going exports what it has so far, with counts that agree with its rows.

use crate::context::CommandContext;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use domain::comparison::{Comparison, ComparisonStatus, SideStats};
use domain::run::{TestResult, TestRun};
use domain::Permission;
use event_store::EventStore;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Chunks of the response body in flight between the reader and the client.
const CHUNKS_IN_FLIGHT: usize = 8;
/// Bytes gathered before a chunk is sent.
const CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunFormat {
    Csv,
    Jsonl,
    Junit,
    Xlsx,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct RunExportQuery {
    /// `csv` (the default), `jsonl`, `junit` or `xlsx`.
    pub format: Option<RunFormat>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ComparisonFormat {
    Csv,
    Json,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ComparisonExportQuery {
    /// `json` (the default) or `csv`.
    pub format: Option<ComparisonFormat>,
}

/// One exported result: the recorded result with its case's name.
#[derive(Debug, Serialize)]
struct Row<'a> {
    test_case_id: Uuid,
    test_case: &'a str,
    provider: &'a str,
    repetition: u32,
    passed: bool,
    score: f64,
    latency_ms: u64,
    prompt_tokens: u32,
    completion_tokens: u32,
    cost_usd: f64,
    output: Option<&'a str>,
    error: Option<&'a str>,
    /// `type: reason` of each failed assertion, `; `-separated.
    failed_assertions: String,
}

impl<'a> Row<'a> {
    fn new(result: &'a TestResult, case_names: &'a BTreeMap<Uuid, String>) -> Self {
        Row {
            test_case_id: result.key.case_id,
            test_case: case_names.get(&result.key.case_id).map(String::as_str).unwrap_or(""),
            provider: &result.key.provider,
            repetition: result.key.repetition,
            passed: result.passed,
            score: result.score,
            latency_ms: result.latency_ms,
            prompt_tokens: result.prompt_tokens,
            completion_tokens: result.completion_tokens,
            cost_usd: result.cost_micro_usd as f64 / 1_000_000.0,
            output: result.output.as_deref(),
            error: result.error.as_deref(),
            failed_assertions: result
                .assertions
                .iter()
                .filter(|v| !v.passed)
                .map(|v| format!("{}: {}", v.kind, v.reason))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

const COLUMNS: [&str; 13] = [
    "test_case_id",
    "test_case",
    "provider",
    "repetition",
    "passed",
    "score",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "output",
    "error",
    "failed_assertions",
];

/// A run's results, streamed in the format asked for.
#[utoipa::path(get, path = "/v1/workspaces/{ws}/runs/{run}/export", tag = "exports",
    params(("ws" = Uuid, Path), ("run" = Uuid, Path), RunExportQuery),
    responses((status = 200, description = "the results, streamed", content_type = "text/csv"), (status = 400), (status = 404)))]
pub async fn export_run(
    State(state): State<AppState>,
    Path((workspace_id, run_id)): Path<(Uuid, Uuid)>,
    Query(query): Query<RunExportQuery>,
    ctx: CommandContext,
) -> Result<Response, ApiError> {
    let loader = state.authorise_read(&ctx, workspace_id, Permission::Read).await?;
    let run = loader.in_workspace::<TestRun>(run_id).await?.state;
    let plan = run.plan.clone().expect("a run in a workspace has a plan");
    let snapshot = Snapshot {
        store: state.repo.store().clone(),
        run_id,
        results: run.completed(),
        failed: run.failed,
        case_names: plan.cases.iter().map(|c| (c.case_id, c.name.clone())).collect(),
        suite: format!("card {} version {}", plan.card_id, plan.card_version),
        repeated: plan.repeat > 1,
    };
    let format = query.format.unwrap_or(RunFormat::Csv);
    let (content_type, extension) = match format {
        RunFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        RunFormat::Jsonl => ("application/x-ndjson", "jsonl"),
        RunFormat::Junit => ("application/xml; charset=utf-8", "xml"),
        RunFormat::Xlsx => (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
        ),
    };
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_IN_FLIGHT);
    match format {
        RunFormat::Xlsx => {
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                let outcome = handle
                    .block_on(snapshot.xlsx())
                    .and_then(|file| send_file(file, &sender));
                if let Err(error) = outcome {
                    tracing::warn!(error = %error, "Exporting a run as XLSX failed.");
                    let _ = sender.blocking_send(Err(std::io::Error::other(error.to_string())));
                }
            });
        }
        format => {
            tokio::spawn(async move {
                if let Err(error) = snapshot.text(format, &sender).await {
                    tracing::warn!(error = %error, "Exporting a run failed.");
                    let _ = sender.send(Err(std::io::Error::other(error.to_string()))).await;
                }
            });
        }
    }
    Ok(attachment(
        Body::from_stream(ReceiverStream::new(receiver)),
        content_type,
        &format!("run-{run_id}.{extension}"),
    ))
}

/// What an export of a run reads: its results as recorded when the export started.
struct Snapshot {
    store: EventStore,
    run_id: Uuid,
    /// Results recorded at the start; the export reads that many and no more.
    results: u64,
    failed: u64,
    case_names: BTreeMap<Uuid, String>,
    suite: String,
    repeated: bool,
}

impl Snapshot {
    /// The results recorded when the export started, in the order they were recorded.
    fn results(&self) -> impl futures::Stream<Item = anyhow::Result<TestResult>> + '_ {
        self.store
            .run_results(self.run_id, Some(self.results as i64))
            .map(|result| result.map_err(anyhow::Error::from))
    }

    async fn text(self, format: RunFormat, sender: &mpsc::Sender<Result<Bytes, std::io::Error>>) -> anyhow::Result<()> {
        let mut out = Vec::with_capacity(CHUNK_BYTES * 2);
        match format {
            RunFormat::Csv => csv_rows(&mut out).write_record(COLUMNS)?,
            RunFormat::Junit => self.junit_header(&mut out)?,
            RunFormat::Jsonl | RunFormat::Xlsx => {}
        }
        let results = self.results();
        futures::pin_mut!(results);
        while let Some(result) = results.next().await {
            let result = result?;
            let row = Row::new(&result, &self.case_names);
            match format {
                RunFormat::Csv => csv_rows(&mut out).serialize(&row)?,
                RunFormat::Jsonl => {
                    serde_json::to_writer(&mut out, &row)?;
                    out.push(b'\n');
                }
                RunFormat::Junit => self.junit_case(&mut out, &result, &row)?,
                RunFormat::Xlsx => unreachable!("XLSX is written by Snapshot::xlsx"),
            }
            if out.len() >= CHUNK_BYTES {
                let chunk = Bytes::from(std::mem::replace(&mut out, Vec::with_capacity(CHUNK_BYTES * 2)));
                if sender.send(Ok(chunk)).await.is_err() {
                    return Ok(()); // the client went away
                }
            }
        }
        if let RunFormat::Junit = format {
            out.extend_from_slice(b"  </testsuite>\n</testsuites>\n");
        }
        let _ = sender.send(Ok(Bytes::from(out))).await;
        Ok(())
    }

    /// One `<testsuite>` holding a `<testcase>` per (case, provider) result; with repetitions,
    /// each repetition is its own test case named with its number.
    fn junit_header(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let (tests, failures) = (self.results, self.failed);
        let name = format!("promptcards run {}", self.run_id);
        let name = xml(&name);
        writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
        writeln!(
            out,
            r#"<testsuites name="{name}" tests="{tests}" failures="{failures}" errors="0">"#
        )?;
        writeln!(
            out,
            r#"  <testsuite name="{}" tests="{tests}" failures="{failures}" errors="0" skipped="0">"#,
            xml(&self.suite)
        )
    }

    fn junit_case(&self, out: &mut Vec<u8>, result: &TestResult, row: &Row) -> std::io::Result<()> {
        let name = if self.repeated {
            format!("{} (repetition {})", row.test_case, row.repetition + 1)
        } else {
            row.test_case.to_owned()
        };
        let time = result.latency_ms as f64 / 1000.0;
        write!(
            out,
            r#"    <testcase name="{}" classname="{}" time="{time:.3}""#,
            xml(&name),
            xml(row.provider)
        )?;
        if result.passed {
            return writeln!(out, "/>");
        }
        let first = result.assertions.iter().find(|v| !v.passed);
        let (kind, message) = match (&result.error, first) {
            (Some(error), _) => ("error", error.clone()),
            (None, Some(verdict)) => (verdict.kind.as_str(), format!("{}: {}", verdict.kind, verdict.reason)),
            (None, None) => ("failed", "the result did not pass".to_owned()),
        };
        writeln!(out, ">")?;
        writeln!(
            out,
            r#"      <failure message="{}" type="{}">{}</failure>"#,
            xml(&message),
            xml(kind),
            xml(&row.failed_assertions)
        )?;
        writeln!(out, "    </testcase>")
    }

    /// Writes the workbook to a temporary file (rows go to disk as they are written, in the
    /// writer's constant-memory mode) and gives the file back to be sent.
    async fn xlsx(self) -> anyhow::Result<std::fs::File> {
        let mut workbook = rust_xlsxwriter::Workbook::new();
        let sheet = workbook.add_worksheet_with_constant_memory();
        sheet.set_name("results")?;
        for (col, name) in COLUMNS.iter().enumerate() {
            sheet.write_string(0, col as u16, *name)?;
        }
        let results = self.results();
        futures::pin_mut!(results);
        let mut row_number = 0u32;
        while let Some(result) = results.next().await {
            let result = result?;
            let row = Row::new(&result, &self.case_names);
            row_number += 1;
            let r = row_number;
            sheet.write_string(r, 0, row.test_case_id.to_string())?;
            sheet.write_string(r, 1, row.test_case)?;
            sheet.write_string(r, 2, row.provider)?;
            sheet.write_number(r, 3, row.repetition)?;
            sheet.write_boolean(r, 4, row.passed)?;
            sheet.write_number(r, 5, row.score)?;
            sheet.write_number(r, 6, row.latency_ms as f64)?;
            sheet.write_number(r, 7, row.prompt_tokens)?;
            sheet.write_number(r, 8, row.completion_tokens)?;
            sheet.write_number(r, 9, row.cost_usd)?;
            sheet.write_string(r, 10, row.output.unwrap_or(""))?;
            sheet.write_string(r, 11, row.error.unwrap_or(""))?;
            sheet.write_string(r, 12, row.failed_assertions)?;
        }
        let mut file = tempfile::tempfile()?;
        workbook.save_to_writer(&mut file)?;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }
}

fn send_file(mut file: std::fs::File, sender: &mpsc::Sender<Result<Bytes, std::io::Error>>) -> anyhow::Result<()> {
    let mut buffer = vec![0; CHUNK_BYTES];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        if sender
            .blocking_send(Ok(Bytes::copy_from_slice(&buffer[..read])))
            .is_err()
        {
            return Ok(()); // the client went away
        }
    }
}

/// A CSV writer that appends rows (never a header of its own) to `out`; it flushes when dropped.
fn csv_rows(out: &mut Vec<u8>) -> csv::Writer<&mut Vec<u8>> {
    csv::WriterBuilder::new().has_headers(false).from_writer(out)
}

fn xml(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

fn attachment(body: Body, content_type: &'static str, filename: &str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// One side's figures for one provider (or `overall`), as a CSV row.
#[derive(Debug, Serialize)]
struct ComparisonRow<'a> {
    scope: &'a str,
    side: &'a str,
    version: u32,
    results: u64,
    passed: u64,
    pass_rate: f64,
    low: f64,
    high: f64,
    latency_p50_ms: u64,
    latency_p95_ms: u64,
    tokens: u64,
    cost_usd: f64,
    p_value: f64,
    verdict: &'a str,
}

/// A finished comparison: CSV has one row per side for each provider and overall; JSON is the
/// whole report, flips included.
#[utoipa::path(get, path = "/v1/workspaces/{ws}/comparisons/{comparison}/export", tag = "exports",
    params(("ws" = Uuid, Path), ("comparison" = Uuid, Path), ComparisonExportQuery),
    responses((status = 200, description = "the comparison", content_type = "text/csv"), (status = 400), (status = 404), (status = 409)))]
pub async fn export_comparison(
    State(state): State<AppState>,
    Path((workspace_id, comparison_id)): Path<(Uuid, Uuid)>,
    Query(query): Query<ComparisonExportQuery>,
    ctx: CommandContext,
) -> Result<Response, ApiError> {
    let loader = state.authorise_read(&ctx, workspace_id, Permission::Read).await?;
    let comparison = loader.in_workspace::<Comparison>(comparison_id).await?.state;
    let (Some(plan), Some(report)) = (&comparison.plan, &comparison.report) else {
        return Err(match comparison.status {
            ComparisonStatus::Failed => ApiError::Conflict {
                message: format!(
                    "the comparison failed: {}",
                    comparison.failure.as_deref().unwrap_or("no reason recorded")
                ),
                current_version: None,
            },
            _ => ApiError::Conflict {
                message: "the comparison is still running; export it when it has completed".into(),
                current_version: None,
            },
        });
    };
    let filename = format!("comparison-{comparison_id}");
    match query.format.unwrap_or(ComparisonFormat::Json) {
        ComparisonFormat::Json => {
            let body = serde_json::json!({
                "id": comparison_id,
                "status": comparison.status,
                "card_id": plan.card_id,
                "baseline": plan.baseline,
                "candidate": plan.candidate,
                "providers": plan.providers,
                "repeat": plan.repeat,
                "report": report,
                "promotion": comparison.promotion,
            });
            let bytes = serde_json::to_vec_pretty(&body).map_err(|e| ApiError::Internal(e.into()))?;
            Ok(attachment(
                Body::from(bytes),
                "application/json",
                &format!("{filename}.json"),
            ))
        }
        ComparisonFormat::Csv => {
            let mut csv = csv::Writer::from_writer(Vec::new());
            let mut write = |scope: &str, stats: (&SideStats, &SideStats), p_value: f64, verdict: &str| {
                for (side, version, stats) in [
                    ("baseline", plan.baseline.version, stats.0),
                    ("candidate", plan.candidate.version, stats.1),
                ] {
                    csv.serialize(ComparisonRow {
                        scope,
                        side,
                        version,
                        results: stats.results,
                        passed: stats.passed,
                        pass_rate: stats.pass_rate,
                        low: stats.low,
                        high: stats.high,
                        latency_p50_ms: stats.latency_p50_ms,
                        latency_p95_ms: stats.latency_p95_ms,
                        tokens: stats.tokens,
                        cost_usd: stats.cost_micro_usd as f64 / 1_000_000.0,
                        p_value,
                        verdict,
                    })?;
                }
                Ok::<_, csv::Error>(())
            };
            let overall = &report.overall;
            write(
                "overall",
                (&overall.baseline, &overall.candidate),
                overall.p_value,
                overall.verdict.as_str(),
            )
            .map_err(|e| ApiError::Internal(e.into()))?;
            for provider in &report.providers {
                let sides = &provider.sides;
                write(
                    &provider.provider,
                    (&sides.baseline, &sides.candidate),
                    sides.p_value,
                    sides.verdict.as_str(),
                )
                .map_err(|e| ApiError::Internal(e.into()))?;
            }
            let bytes = csv
                .into_inner()
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?;
            Ok(attachment(
                Body::from(bytes),
                "text/csv; charset=utf-8",
                &format!("{filename}.csv"),
            ))
        }
    }
}
