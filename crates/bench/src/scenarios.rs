//! Each figure the issues track, measured against the running stack.

use crate::figures::{percentile_ms, Report};
use crate::Config;
use anyhow::{anyhow, Context};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone)]
struct Session {
    http: reqwest::Client,
    command_api: String,
    query_api: String,
    token: String,
    workspace: String,
}

impl Session {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.command_api))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "POST {path} answered {status}: {body}");
        Ok(body)
    }

    async fn create_card(&self, title: &str) -> anyhow::Result<(String, i64)> {
        let body = self
            .post(
                &format!("/v1/workspaces/{}/prompt-cards", self.workspace),
                json!({
                    "title": title,
                    "template": "Summarise {{ text }} for {{ audience }}.",
                    "variables": [{"name": "text", "type": "string"}, {"name": "audience", "type": "string"}],
                    "tags": ["bench"],
                }),
            )
            .await?;
        let id = body["id"].as_str().ok_or_else(|| anyhow!("no id in {body}"))?.to_owned();
        Ok((id, body["position"].as_i64().unwrap_or_default()))
    }

    async fn update_card(&self, id: &str, version: i64, n: u64) -> anyhow::Result<()> {
        let response = self
            .http
            .put(format!("{}/v1/workspaces/{}/prompt-cards/{id}", self.command_api, self.workspace))
            .bearer_auth(&self.token)
            .header("if-match", format!("\"{version}\""))
            .json(&json!({
                "title": format!("Bench card, edit {n}"),
                "template": "Summarise {{ text }} for {{ audience }}, briefly.",
                "variables": [{"name": "text", "type": "string"}, {"name": "audience", "type": "string"}],
                "tags": ["bench"],
            }))
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "PUT answered {}", response.status());
        Ok(())
    }

    async fn graphql(&self, query: &str, min_position: Option<i64>) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .post(format!("{}/graphql", self.query_api))
            .bearer_auth(&self.token)
            .json(&json!({ "query": query }));
        if let Some(position) = min_position {
            request = request.header("x-min-position", position.to_string());
        }
        let body: Value = request.send().await?.json().await?;
        anyhow::ensure!(body.get("errors").is_none(), "GraphQL errors: {body}");
        Ok(body)
    }
}

pub async fn run_all(config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
    let signup: Value = http
        .post(format!("{}/v1/auth/signup", config.command_api))
        .json(&json!({ "email": email, "password": "bench password", "workspace_name": "Bench" }))
        .send()
        .await
        .context("is the stack up? (deploy/local/up)")?
        .json()
        .await?;
    let session = Session {
        http,
        command_api: config.command_api.clone(),
        query_api: config.query_api.clone(),
        token: signup["access_token"].as_str().ok_or_else(|| anyhow!("signup failed: {signup}"))?.to_owned(),
        workspace: signup["workspace_id"].as_str().unwrap_or_default().to_owned(),
    };
    report.note(&format!(
        "{} clients, {} s per throughput figure, on {} cores",
        config.concurrency,
        config.duration.as_secs(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    ));
    append(config, &session, report).await?;
    pg_ceiling(config, report).await?;
    freshness(config, &session, report).await?;
    graphql_card(config, &session, report).await?;
    fanout(config, &session, report).await?;
    replay(config, report).await?;
    peak_rss(report);
    Ok(())
}

/// Card updates over HTTP at a fixed concurrency, each client editing its own card.
async fn append(config: &Config, session: &Session, report: &mut Report) -> anyhow::Result<()> {
    let deadline = Instant::now() + config.duration;
    let mut workers = Vec::new();
    for worker in 0..config.concurrency {
        let session = session.clone();
        workers.push(tokio::spawn(async move {
            let (id, _) = session.create_card(&format!("Append bench {worker}")).await?;
            let mut latencies = Vec::new();
            let mut version = 1;
            while Instant::now() < deadline {
                let started = Instant::now();
                session.update_card(&id, version, version as u64).await?;
                latencies.push(started.elapsed());
                version += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    report.figure("append.commands_per_s", latencies.len() as f64 / config.duration.as_secs_f64(), "commands/s");
    report.figure("append.p50_ms", percentile_ms(&mut latencies, 50.0), "ms");
    report.figure("append.p99_ms", percentile_ms(&mut latencies, 99.0), "ms");
    Ok(())
}

/// The same row shape as an event, inserted by plain single-row transactions at the same
/// concurrency: the most this Postgres can take, for comparison.
async fn pg_ceiling(config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(config.concurrency as u32)
        .connect(&config.database_url)
        .await?;
    sqlx::query("DROP TABLE IF EXISTS bench_ceiling").execute(&pool).await?;
    sqlx::query("CREATE TABLE bench_ceiling (LIKE events INCLUDING DEFAULTS INCLUDING IDENTITY)")
        .execute(&pool)
        .await?;
    let deadline = Instant::now() + config.duration;
    let data = json!({"title": "Bench card", "template": "Summarise {{ text }} for {{ audience }}, briefly.", "tags": ["bench"]}).to_string();
    let mut workers = Vec::new();
    for _ in 0..config.concurrency {
        let (pool, data) = (pool.clone(), data.clone());
        workers.push(tokio::spawn(async move {
            let mut rows = 0u64;
            let stream = uuid::Uuid::new_v4();
            while Instant::now() < deadline {
                rows += 1;
                sqlx::query(
                    "INSERT INTO bench_ceiling (event_id, stream_id, stream_type, version, event_type, schema_version,
                                                workspace_id, actor_id, correlation_id, data)
                     VALUES ($1, $2, 'prompt_card', $3, 'PromptCardUpdated', 2, $2, $2, $1, $4::jsonb)",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(stream)
                .bind(rows as i64)
                .bind(&data)
                .execute(&pool)
                .await?;
            }
            anyhow::Ok(rows)
        }));
    }
    let mut rows = 0;
    for worker in workers {
        rows += worker.await??;
    }
    sqlx::query("DROP TABLE bench_ceiling").execute(&pool).await?;
    report.figure("append.pg_ceiling_rows_per_s", rows as f64 / config.duration.as_secs_f64(), "rows/s");
    Ok(())
}

/// Commands at a steady rate; each is followed by a GraphQL read with `X-Min-Position`, and
/// the figure is the time from the command's answer to the read's answer.
async fn freshness(config: &Config, session: &Session, report: &mut Report) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / config.freshness_rate);
    let count = config.freshness_rate as u64 * config.duration.as_secs().min(15);
    let mut probes = Vec::new();
    for n in 0..count {
        tick.tick().await;
        let session = session.clone();
        probes.push(tokio::spawn(async move {
            let (id, position) = session.create_card(&format!("Freshness {n}")).await?;
            let accepted = Instant::now();
            session
                .graphql(&format!("{{ promptCard(id: \"{id}\") {{ version }} }}"), Some(position))
                .await?;
            anyhow::Ok(accepted.elapsed())
        }));
    }
    let mut samples = Vec::new();
    for probe in probes {
        samples.push(probe.await??);
    }
    report.figure("freshness.rate_commands_per_s", config.freshness_rate as f64, "commands/s");
    report.figure("freshness.p50_ms", percentile_ms(&mut samples, 50.0), "ms");
    report.figure("freshness.p99_ms", percentile_ms(&mut samples, 99.0), "ms");
    Ok(())
}

/// `promptCard` reads from concurrent clients with the cache warm.
async fn graphql_card(config: &Config, session: &Session, report: &mut Report) -> anyhow::Result<()> {
    let (id, position) = session.create_card("GraphQL bench").await?;
    let query = format!("{{ promptCard(id: \"{id}\") {{ id title template version labels tags testCases {{ name }} }} }}");
    session.graphql(&query, Some(position)).await?;
    let deadline = Instant::now() + config.duration;
    let mut workers = Vec::new();
    for _ in 0..config.concurrency {
        let (session, query) = (session.clone(), query.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                session.graphql(&query, None).await?;
                latencies.push(started.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    report.figure("graphql.card_rps", latencies.len() as f64 / config.duration.as_secs_f64(), "requests/s");
    report.figure("graphql.card_p99_ms", percentile_ms(&mut latencies, 99.0), "ms");
    Ok(())
}

/// Many `workspaceEvents` subscribers; the figure is the time from sending a command to each
/// subscriber receiving its event (an upper bound on commit-to-delivery).
async fn fanout(config: &Config, session: &Session, report: &mut Report) -> anyhow::Result<()> {
    let url = format!("{}/graphql/ws", config.query_api.replacen("http", "ws", 1));
    let arrivals: Arc<Mutex<Vec<(i64, Instant)>>> = Arc::default();
    let mut readers = Vec::new();
    for _ in 0..config.subscribers {
        let mut request = url.as_str().into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
        let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {}", session.token)}});
        socket.send(Message::text(init.to_string())).await?;
        socket.next().await.ok_or_else(|| anyhow!("no connection_ack"))??;
        let subscribe = json!({"id": "1", "type": "subscribe", "payload": {"query": format!(
            "subscription {{ workspaceEvents(workspaceId: \"{}\") {{ position }} }}", session.workspace)}});
        socket.send(Message::text(subscribe.to_string())).await?;
        let arrivals = arrivals.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else { continue };
                let Ok(value) = serde_json::from_str::<Value>(&text) else { continue };
                if let Some(position) = value["payload"]["data"]["workspaceEvents"]["position"].as_i64() {
                    arrivals.lock().expect("not poisoned").push((position, Instant::now()));
                }
            }
        }));
    }
    // Subscriptions register asynchronously on the server; give them a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut sent: HashMap<i64, Instant> = HashMap::new();
    for n in 0..10 {
        let started = Instant::now();
        let (_, position) = session.create_card(&format!("Fan-out {n}")).await?;
        sent.insert(position, started);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let expected = sent.len() * config.subscribers;
    let deadline = Instant::now() + Duration::from_secs(15);
    while arrivals.lock().expect("not poisoned").len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for reader in readers {
        reader.abort();
    }
    let arrivals = arrivals.lock().expect("not poisoned").clone();
    let mut samples: Vec<Duration> = arrivals
        .iter()
        .filter_map(|(position, at)| sent.get(position).map(|sent| at.saturating_duration_since(*sent)))
        .collect();
    report.figure("subscriptions.subscribers", config.subscribers as f64, "subscribers");
    report.figure("subscriptions.delivered_ratio", samples.len() as f64 / expected as f64, "ratio");
    report.figure("subscriptions.fanout_p99_ms", percentile_ms(&mut samples, 99.0), "ms");
    Ok(())
}

/// Rebuilds every Postgres read model from the live store into a scratch database.
async fn replay(config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let live = PgConnectOptions::from_str(&config.database_url)?;
    let scratch_name = "promptcards_bench_replay";
    let admin_pool = PgPoolOptions::new().max_connections(1).connect_with(live.clone().database("postgres")).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {scratch_name}")).execute(&admin_pool).await?;
    sqlx::query(&format!("CREATE DATABASE {scratch_name}")).execute(&admin_pool).await?;
    let scratch = PgPoolOptions::new().max_connections(2).connect_with(live.clone().database(scratch_name)).await?;
    event_store::MIGRATOR.run(&scratch).await?;
    let store = event_store::EventStore::new(PgPoolOptions::new().max_connections(2).connect_with(live).await?);
    let sink = projector::postgres::PostgresSink::new(scratch.clone());

    let started = Instant::now();
    let mut cursor = event_store::Cursor::START;
    let mut total = 0usize;
    loop {
        let events = store.read_all(cursor, 5_000).await?;
        let Some(last) = events.last() else { break };
        cursor = event_store::Cursor::after(last);
        for batch in events.chunks(1_000) {
            projector::Sink::apply(&sink, batch).await?;
        }
        total += events.len();
    }
    let elapsed = started.elapsed();
    scratch.close().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {scratch_name}")).execute(&admin_pool).await?;
    report.figure("replay.events", total as f64, "events");
    report.figure("replay.events_per_s", total as f64 / elapsed.as_secs_f64(), "events/s");
    Ok(())
}

/// Peak resident memory (VmHWM) of each process of the stack running on this machine.
fn peak_rss(report: &mut Report) {
    for name in ["command-api", "relay", "projector", "query-api", "runner"] {
        let Some(kib) = find_peak_rss_kib(name) else { continue };
        report.figure(&format!("rss.{name}_mib"), kib as f64 / 1024.0, "MiB");
    }
}

fn find_peak_rss_kib(name: &str) -> Option<u64> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
        return status
            .lines()
            .find(|line| line.starts_with("VmHWM:"))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok());
    }
    None
}
