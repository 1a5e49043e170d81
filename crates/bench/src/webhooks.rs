//! The webhook figures: how fast the deliverer drains a backlog to a local receiver, and how
//! long an event takes from its commit to its delivery. Needs the deliverer to be allowed to
//! reach loopback (`deploy/local/up` sets `WEBHOOK_ALLOWED_CIDRS=127.0.0.0/8`).

use crate::figures::{percentile_ms, Report};
use crate::scenarios::Session;
use crate::Config;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Endpoints registered for the backlog figure; their deliveries go out concurrently.
const ENDPOINTS: usize = 4;

/// One delivery: when it arrived (on both clocks) and its event's commit time, from its body.
struct Arrival {
    at: Instant,
    arrived: DateTime<Utc>,
    committed: DateTime<Utc>,
}

#[derive(Clone)]
struct Receiver {
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    /// Requests wait here until it is true: the backlog builds up behind them.
    open: watch::Receiver<bool>,
}

async fn receive(State(receiver): State<Receiver>, body: Bytes) -> StatusCode {
    let mut open = receiver.open.clone();
    let _ = open.wait_for(|open| *open).await;
    let (at, arrived) = (Instant::now(), Utc::now());
    let committed = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| b["timestamp"].as_str().and_then(|t| t.parse().ok()));
    if let Some(committed) = committed {
        let arrival = Arrival { at, arrived, committed };
        receiver.arrivals.lock().expect("never poisoned").push(arrival);
    }
    StatusCode::NO_CONTENT
}

pub async fn webhooks(config: &Config, session: &Session, report: &mut Report) -> anyhow::Result<()> {
    let (gate, open) = watch::channel(false);
    let receiver = Receiver {
        arrivals: Arc::default(),
        open,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(receive).with_state(receiver.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    for n in 0..ENDPOINTS {
        session
            .post(
                &format!("/v1/workspaces/{}/webhooks", session.workspace),
                json!({ "url": format!("http://{addr}/bench/{n}"), "events": ["card.created"] }),
            )
            .await?;
    }

    // A backlog: cards created while the receiver holds the first delivery of each endpoint
    // (within the deliverer's 10 s attempt timeout), then released at once.
    let created = create_cards(session, config.concurrency, config.duration.min(Duration::from_secs(5))).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let released = Instant::now();
    gate.send_replace(true);
    let expected = created * ENDPOINTS;
    let drained = wait_for(&receiver, expected, Duration::from_secs(120)).await?;
    report.figure(
        "webhooks.backlog_deliveries_per_s",
        expected as f64 / (drained - released).as_secs_f64(),
        "deliveries/s",
    );

    // Commit to delivery at a steady rate, the receiver answering at once.
    receiver.arrivals.lock().expect("never poisoned").clear();
    let rate = config.freshness_rate.min(100);
    let count = rate as usize * config.duration.as_secs().min(10) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    for n in 0..count {
        tick.tick().await;
        let session = session.clone();
        tokio::spawn(async move { session.create_card(&format!("Webhook {n}")).await });
    }
    wait_for(&receiver, count * ENDPOINTS, Duration::from_secs(60)).await?;
    let mut latencies: Vec<Duration> = receiver
        .arrivals
        .lock()
        .expect("never poisoned")
        .iter()
        .map(|a| (a.arrived - a.committed).to_std().unwrap_or_default())
        .collect();
    report.figure("webhooks.rate_commands_per_s", f64::from(rate), "commands/s");
    report.figure(
        "webhooks.commit_to_delivery_p50_ms",
        percentile_ms(&mut latencies, 50.0),
        "ms",
    );
    report.figure(
        "webhooks.commit_to_delivery_p99_ms",
        percentile_ms(&mut latencies, 99.0),
        "ms",
    );
    server.abort();
    Ok(())
}

/// Cards created by `clients` concurrent clients for `duration`; returns how many.
async fn create_cards(session: &Session, clients: usize, duration: Duration) -> anyhow::Result<usize> {
    let deadline = Instant::now() + duration;
    let mut workers = Vec::new();
    for c in 0..clients {
        let session = session.clone();
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < deadline {
                session.create_card(&format!("Backlog {c}.{n}")).await?;
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let mut created = 0;
    for worker in workers {
        created += worker.await??;
    }
    Ok(created)
}

/// Waits until `n` deliveries arrived; returns when the last did.
async fn wait_for(receiver: &Receiver, n: usize, within: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + within;
    loop {
        {
            let arrivals = receiver.arrivals.lock().expect("never poisoned");
            if arrivals.len() >= n {
                return Ok(arrivals.iter().map(|a| a.at).max().unwrap_or_else(Instant::now));
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} of {n} deliveries arrived within {within:?}; is the deliverer up and allowed to reach \
                 127.0.0.1 (WEBHOOK_ALLOWED_CIDRS)?",
                arrivals.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
