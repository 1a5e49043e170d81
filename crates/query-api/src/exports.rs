//! Analytics series as CSV: `GET /v1/workspaces/{ws}/analytics/export?series=...`. The handler
//! asks the GraphQL schema the same question a dashboard asks, as the same caller, and writes
//! the answer as CSV, so the series, its SQL and its access rules stay in `analytics.rs`.

use crate::context::AppState;
use crate::schema::{self, AppSchema};
use async_graphql::{Data, Request, Variables};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Debug, Deserialize)]
pub struct SeriesQuery {
    /// `pass_rate`, `cost_by_provider` or `latency`.
    pub series: Option<String>,
    pub card_id: Option<String>,
    /// `hour` or `day` (pass rate only); default day.
    pub bucket: Option<String>,
    /// RFC 3339 bounds of `recorded_at`.
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The GraphQL field, its columns, and the query that fetches them.
fn series(name: &str) -> Option<(&'static str, &'static [&'static str])> {
    match name {
        "pass_rate" => Some((
            "passRate(cardId: $card, bucket: $bucket) { bucket total passed rate }",
            &["bucket", "total", "passed", "rate"],
        )),
        "cost_by_provider" => Some((
            "costByProvider { provider results costUsd }",
            &["provider", "results", "costUsd"],
        )),
        "latency" => Some((
            "latency(cardId: $card) { count p50Ms p95Ms p99Ms }",
            &["count", "p50Ms", "p95Ms", "p99Ms"],
        )),
        _ => None,
    }
}

fn problem(status: StatusCode, error: &str, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": error, "message": message.into() }))).into_response()
}

pub async fn analytics_csv(
    State((state, schema)): State<(AppState, AppSchema)>,
    Path(workspace_id): Path<Uuid>,
    query: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Query(query)) = query else {
        return problem(StatusCode::BAD_REQUEST, "bad_request", "the query string is invalid");
    };
    let name = query.series.as_deref().unwrap_or("pass_rate");
    let Some((field, columns)) = series(name) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("unknown series {name:?}; use pass_rate, cost_by_provider or latency"),
        );
    };
    let bucket = match query.bucket.as_deref().unwrap_or("day") {
        "day" => "DAY",
        "hour" => "HOUR",
        other => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("unknown bucket {other:?}; use hour or day"),
            )
        }
    };
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let access = match state.access_from_header(authorization).await {
        Ok(access) => access,
        Err(error) => return problem(StatusCode::UNAUTHORIZED, "unauthorized", error.message),
    };
    let document = format!(
        "query($ws: ID!, $card: ID, $bucket: Bucket, $from: DateTime, $to: DateTime) {{
            analytics(workspaceId: $ws, from: $from, to: $to) {{ {field} }} }}"
    );
    let variables =
        json!({ "ws": workspace_id, "card": query.card_id, "bucket": bucket, "from": query.from, "to": query.to });
    let mut data = Data::default();
    schema::add_request_data(&mut data, &state, access);
    let mut request = Request::new(document).variables(Variables::from_json(variables));
    request.data = data;
    let response = schema.execute(request).await;
    if let Some(error) = response.errors.first() {
        let code = error
            .extensions
            .as_ref()
            .and_then(|e| e.get("code"))
            .map(|c| c.to_string().trim_matches('"').to_owned())
            .unwrap_or_default();
        let status = match code.as_str() {
            "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
            "FORBIDDEN" => StatusCode::FORBIDDEN,
            "NOT_FOUND" => StatusCode::NOT_FOUND,
            "BAD_REQUEST" => StatusCode::BAD_REQUEST,
            // Variables of the wrong shape (a malformed date or id) never reach a resolver.
            "" => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        return problem(status, &code.to_lowercase(), error.message.clone());
    }
    let data = response.data.into_json().unwrap_or(Value::Null);
    let answer = &data["analytics"][field.split(['(', ' ']).next().unwrap_or_default()];
    let rows: Vec<&Value> = match answer {
        Value::Array(rows) => rows.iter().collect(),
        Value::Object(_) => vec![answer],
        _ => vec![],
    };
    let mut csv = csv::Writer::from_writer(Vec::new());
    let write = || -> Result<Vec<u8>, csv::Error> {
        csv.write_record(columns)?;
        for row in rows {
            csv.write_record(columns.iter().map(|c| match &row[*c] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            }))?;
        }
        csv.flush()?;
        Ok(csv.get_ref().clone())
    };
    match write() {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}-{workspace_id}.csv\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(error) => problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string()),
    }
}
