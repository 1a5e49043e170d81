//! Liveness, readiness and Prometheus metrics.

use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;
use std::time::Duration;

/// The process is up.
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// The process can serve: Postgres answers.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let ping = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(state.repo.store().pool());
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => (
            StatusCode::OK,
            axum::Json(json!({ "status": "ready", "postgres": "ok" })),
        ),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "Readiness check failed: Postgres did not answer.");
            unavailable("error")
        }
        Err(_) => unavailable("timeout"),
    }
}

fn unavailable(postgres: &str) -> (StatusCode, axum::Json<serde_json::Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({ "status": "unavailable", "postgres": postgres })),
    )
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Ok(age) = state.repo.store().oldest_transaction_age_seconds().await {
        metrics::gauge!("postgres_oldest_transaction_age_seconds").set(age);
    }
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
