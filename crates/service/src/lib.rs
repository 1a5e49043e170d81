//! What every Promptcards process shares: JSON logs and OpenTelemetry traces, environment
//! settings, the Prometheus recorder, the `/healthz` `/readyz` `/metrics` endpoints and graceful
//! shutdown.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

pub mod clickhouse;
pub mod telemetry;

pub use telemetry::{
    add_link_from_traceparent, current_traceparent, init_telemetry, set_parent_from_traceparent, shutdown_telemetry,
    trace_id_of,
};

/// A setting from the environment, or its development default.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A value that must never reach a log line.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Tests may build several apps in one process; the first recorder stays.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Checks each dependency a process needs; `Err` names what failed.
pub type ReadinessCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<Value, Value>> + Send>> + Send + Sync>;

/// `/healthz` (alive), `/readyz` (dependencies answer) and `/metrics` (Prometheus text).
pub fn ops_router(readiness: ReadinessCheck) -> Router {
    let handle = metrics_handle();
    Router::new()
        .route("/healthz", get(|| async { axum::Json(json!({ "status": "ok" })) }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    match readiness().await {
                        Ok(details) => (
                            StatusCode::OK,
                            axum::Json(json!({ "status": "ready", "checks": details })),
                        ),
                        Err(details) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            axum::Json(json!({ "status": "unavailable", "checks": details })),
                        ),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        handle.render(),
                    )
                        .into_response()
                }
            }),
        )
}

/// Serves the ops endpoints of a worker process until shutdown.
pub async fn serve_ops(addr: SocketAddr, readiness: ReadinessCheck) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "Health and metrics endpoints listening.");
    axum::serve(listener, ops_router(readiness))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("Shutdown signal received.");
}

/// Retries `attempt` with backoff (200 ms doubling to 10 s) until it succeeds: for steps that
/// need a backing service which may not be there yet. The first failure is a warning, later
/// ones are debug lines, and success after a failure is logged once.
pub async fn retry<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &'static str,
    mut attempt: impl FnMut() -> F,
) -> T {
    let mut backoff = std::time::Duration::from_millis(200);
    let mut failures = 0u32;
    loop {
        match attempt().await {
            Ok(value) => {
                if failures > 0 {
                    tracing::info!(what, failures, "Succeeded after failing; going on.");
                }
                return value;
            }
            Err(error) => {
                if failures == 0 {
                    tracing::warn!(what, error = %error, "Failed; retrying with backoff until it succeeds.");
                } else {
                    tracing::debug!(what, error = %error, retry_in_ms = backoff.as_millis() as u64, "Failed again.");
                }
                failures += 1;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
            }
        }
    }
}
