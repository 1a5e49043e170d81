//! What every Promptcards process shares: how it starts ([`Process`]), JSON logs and
//! OpenTelemetry traces, the settings several processes read and their defaults, readiness
//! probes, the Prometheus recorder, the `/healthz` `/readyz` `/metrics` endpoints and graceful
//! shutdown.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use tokio::sync::watch;

pub mod clickhouse;
pub mod cors;
mod process;
pub mod rate_limit;
pub mod readiness;
pub mod redis;
pub mod sealing;
pub mod settings;
pub mod telemetry;

pub use process::{Process, Started};
pub use settings::{env_or, Secret};
pub use telemetry::{
    add_link_from_traceparent, current_traceparent, init_telemetry, set_parent_from_traceparent, shutdown_telemetry,
    trace_id_of,
};

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

/// Binds an API's listener with Nagle's algorithm off, which Linux passes on to every connection
/// it accepts. A WebSocket or a streamed answer is many small writes; with Nagle's algorithm on,
/// each write after the first waited for the client's delayed ACK (measured: 38 ms added to a
/// playground execution's first chunk).
pub async fn bind_without_nagle(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves the ops endpoints of a worker process until shutdown.
pub async fn serve_ops(listener: tokio::net::TcpListener, readiness: ReadinessCheck) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "Health and metrics endpoints listening.");
    axum::serve(listener, ops_router(readiness))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

/// Resolves once SIGTERM or Ctrl-C has arrived, however late it is called: a signal that
/// came while the process was still starting is seen by what waits for it afterwards.
pub async fn shutdown_signal() {
    let mut stopped = listen_for_shutdown().subscribe();
    let _ = stopped.wait_for(|stopped| *stopped).await;
}

/// Starts listening for SIGTERM and Ctrl-C, once per process; call it inside the runtime as
/// early as possible. From then on those signals no longer kill the process: they set the latch
/// every [`shutdown_signal`] waits on.
pub fn listen_for_shutdown() -> &'static watch::Sender<bool> {
    static STOPPED: OnceLock<watch::Sender<bool>> = OnceLock::new();
    STOPPED.get_or_init(|| {
        use tokio::signal::unix::{signal, SignalKind};
        // Registered here, not in the task, so a signal from this moment on is caught.
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        let (stopped, _) = watch::channel(false);
        let latch = stopped.clone();
        tokio::spawn(async move {
            let (mut terminate, mut interrupt) = match (terminate, interrupt) {
                (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
                (Err(error), _) | (_, Err(error)) => {
                    tracing::error!(error = %error, "Cannot listen for SIGTERM and Ctrl-C; the process stops only when killed.");
                    return;
                }
            };
            tokio::select! {
                _ = terminate.recv() => {},
                _ = interrupt.recv() => {},
            }
            tracing::info!("Shutdown signal received.");
            latch.send_replace(true);
        });
        stopped
    })
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

#[cfg(test)]
mod listener_tests {
    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = super::bind_without_nagle("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
        drop(client);
    }
}
