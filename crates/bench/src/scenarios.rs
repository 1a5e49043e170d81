//! Each figure the issues track, measured against the running stack.
//!
//! Over 600 lines: one function per figure, each read on its own; the seeded history for the
//! replay figure is the module at the end.

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
pub(crate) struct Session {
    pub(crate) http: reqwest::Client,
    pub(crate) command_api: String,
    query_api: String,
    pub(crate) token: String,
    pub(crate) workspace: String,
}

impl Session {
    /// A new user with a workspace of their own; also the position of the sign-up's append.
    async fn sign_up(config: &Config, http: reqwest::Client) -> anyhow::Result<(Session, i64)> {
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
            token: signup["access_token"]
                .as_str()
                .ok_or_else(|| anyhow!("signup failed: {signup}"))?
                .to_owned(),
            workspace: signup["workspace_id"].as_str().unwrap_or_default().to_owned(),
        };
        let position = signup["position"]
            .as_i64()
            .ok_or_else(|| anyhow!("no position in {signup}"))?;
        Ok((session, position))
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
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

    pub(crate) async fn create_card(&self, title: &str) -> anyhow::Result<(String, i64)> {
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
        let id = body["id"]
            .as_str()
            .ok_or_else(|| anyhow!("no id in {body}"))?
            .to_owned();
        Ok((id, body["position"].as_i64().unwrap_or_default()))
    }

    async fn update_card(&self, id: &str, version: i64, n: u64) -> anyhow::Result<()> {
        let response = self
            .http
            .put(format!(
                "{}/v1/workspaces/{}/prompt-cards/{id}",
                self.command_api, self.workspace
            ))
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

/// `--only append.store`: the in-process append figures alone, which need only Postgres, to
/// run beside the peer harness.
pub const STORE_ONLY: &str = "append.store";
/// `--only runner.graded`: the graded-results figure alone, in process, needing no stack.
pub const GRADED_ONLY: &str = "runner.graded";

pub async fn run_all(config: &Config, report: &mut Report) -> anyhow::Result<()> {
    if config.only.as_deref() == Some(STORE_ONLY) {
        return store_append(config, report).await;
    }
    if config.only.as_deref() == Some(GRADED_ONLY) {
        return graded_throughput(report).await;
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    let (session, signed_up) = Session::sign_up(config, http).await?;
    // Read your write: every figure starts once the read models know the new member. A
    // subscription opened before that is refused (not a member yet) and would count as lost.
    session.graphql("{ me { id } }", Some(signed_up)).await?;
    report.note(&format!(
        "{} clients, {} s per throughput figure, on {} cores",
        config.concurrency,
        config.duration.as_secs(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    ));
    if config.runs("append") {
        let commands = append(config, &session, report).await?;
        let ceiling = pg_ceiling(config, report).await?;
        report.figure("append.ceiling_ratio", commands / ceiling, "x");
        store_append(config, report).await?;
    }
    if config.runs("freshness") {
        freshness(config, &session, report).await?;
    }
    if config.runs("graphql") {
        graphql_card(config, &session, report).await?;
    }
    if config.runs("subscriptions") {
        fanout(config, &session, report).await?;
    }
    if config.runs("serve") {
        serve_prompt(config, &session, report).await?;
    }
    if config.runs("runner") {
        let (run_id, results) = runner_throughput(config, &session, report).await?;
        runner_overhead(report).await?;
        graded_throughput(report).await?;
        exports(&session, &run_id, results, report).await?;
    }
    if config.runs("compare") {
        comparison_verdict(config, &session, report).await?;
    }
    if config.runs("playground") {
        crate::playground::playground(config, &session, report).await?;
    }
    if config.runs("webhooks") {
        crate::webhooks::webhooks(config, &session, report).await?;
    }
    if config.runs("replay") {
        replay(config, report).await?;
    }
    if config.runs("rss") {
        peak_rss(report);
    }
    Ok(())
}

/// The groups of figures, as `--only` names them.
pub const GROUPS: [&str; 11] = [
    "append",
    "compare",
    "playground",
    "freshness",
    "graphql",
    "subscriptions",
    "serve",
    "runner",
    "webhooks",
    "replay",
    "rss",
];

/// Card updates over HTTP at a fixed concurrency, each client a user of its own (the command API
/// limits each caller's rate; see README) editing its own card.
async fn append(config: &Config, session: &Session, report: &mut Report) -> anyhow::Result<f64> {
    let mut clients = Vec::new();
    for _ in 0..config.concurrency {
        clients.push(Session::sign_up(config, session.http.clone()).await?.0);
    }
    let deadline = Instant::now() + config.duration;
    let mut workers = Vec::new();
    for (worker, session) in clients.into_iter().enumerate() {
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
    let commands_per_s = latencies.len() as f64 / config.duration.as_secs_f64();
    report.figure("append.commands_per_s", commands_per_s, "commands/s");
    report.figure("append.p50_ms", percentile_ms(&mut latencies, 50.0), "ms");
    report.figure("append.p99_ms", percentile_ms(&mut latencies, 99.0), "ms");
    Ok(commands_per_s)
}

/// The peer harness's workload (../shared/peers/cqrs-es-bench) in process, without HTTP: each
/// client creates a card and edits it 19 times, then the next card; every command is load +
/// decide + append through `Repository::execute`, the path the runner takes and the command API
/// shares (decided on the state in memory, checked by the append's expected version). Also counts, from
/// Postgres's own statistics, the transactions (each one statement and one round trip here)
/// and the rows written per command.
async fn store_append(config: &Config, report: &mut Report) -> anyhow::Result<()> {
    use domain::card::{CardCommand, PromptCard};
    use event_store::{EventStore, Metadata, Repository};

    // A database of its own, so Postgres's statistics count this workload alone.
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&config.database_url)
        .await?;
    sqlx::query("DROP DATABASE IF EXISTS promptcards_bench_store")
        .execute(&admin)
        .await?;
    sqlx::query("CREATE DATABASE promptcards_bench_store")
        .execute(&admin)
        .await?;
    let url = PgConnectOptions::from_str(&config.database_url)?.database("promptcards_bench_store");
    let store = EventStore::new(
        PgPoolOptions::new()
            .max_connections(config.concurrency as u32 + 4)
            .connect_with(url)
            .await?,
    );
    store.migrate().await?;
    let repository = Repository::new(store.clone(), 10_000);
    let workspace_id = uuid::Uuid::now_v7();
    let before = database_activity(store.pool()).await?;
    let deadline = Instant::now() + config.duration;
    let mut workers = Vec::new();
    for _ in 0..config.concurrency {
        let repository = repository.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let card_id = uuid::Uuid::now_v7();
                for edit in 0..20u32 {
                    let started = Instant::now();
                    let content = seed::content("Store bench card", edit);
                    // Each client is its card's only writer, so it knows the version it edits.
                    let command = if edit == 0 {
                        CardCommand::Create {
                            card_id,
                            workspace_id,
                            name: format!("bench-{}", card_id.simple()),
                            content,
                        }
                    } else {
                        CardCommand::Update {
                            expected_version: edit,
                            name: None,
                            content,
                        }
                    };
                    let metadata = Metadata {
                        actor_id: Some(workspace_id),
                        workspace_id: Some(workspace_id),
                        correlation_id: uuid::Uuid::now_v7(),
                        ..Default::default()
                    };
                    repository.execute::<PromptCard>(card_id, command, metadata).await?;
                    latencies.push(started.elapsed());
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let elapsed = config.duration.as_secs_f64();
    let commands = latencies.len() as f64;
    report.figure("append.store_commands_per_s", commands / elapsed, "commands/s");
    report.figure("append.store_p99_ms", percentile_ms(&mut latencies, 99.0), "ms");
    // Backends report their statistics when idle for a second, so wait that long before reading.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let after = database_activity(store.pool()).await?;
    report.figure(
        "append.store_round_trips_per_command",
        (after.0 - before.0) as f64 / commands,
        "transactions",
    );
    report.figure(
        "append.store_rows_per_command",
        (after.1 - before.1) as f64 / commands,
        "rows",
    );
    drop(repository);
    store.pool().close().await;
    sqlx::query("DROP DATABASE promptcards_bench_store")
        .execute(&admin)
        .await?;
    Ok(())
}

/// Committed transactions and inserted plus updated rows of the current database so far.
async fn database_activity(pool: &sqlx::PgPool) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT xact_commit, tup_inserted + tup_updated FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await?)
}

/// The same row shape as an event, inserted by plain single-row transactions at the same
/// concurrency: the most this Postgres can take, for comparison. Returns the rows/s.
async fn pg_ceiling(config: &Config, report: &mut Report) -> anyhow::Result<f64> {
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
    let rows_per_s = rows as f64 / config.duration.as_secs_f64();
    report.figure("append.pg_ceiling_rows_per_s", rows_per_s, "rows/s");
    Ok(rows_per_s)
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
    report.figure(
        "freshness.rate_commands_per_s",
        config.freshness_rate as f64,
        "commands/s",
    );
    report.figure("freshness.p50_ms", percentile_ms(&mut samples, 50.0), "ms");
    report.figure("freshness.p99_ms", percentile_ms(&mut samples, 99.0), "ms");
    Ok(())
}

/// `promptCard` reads from concurrent clients with the cache warm.
async fn graphql_card(config: &Config, session: &Session, report: &mut Report) -> anyhow::Result<()> {
    let (id, position) = session.create_card("GraphQL bench").await?;
    let query =
        format!("{{ promptCard(id: \"{id}\") {{ id title template version labels tags testCases {{ name }} }} }}");
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
    report.figure(
        "graphql.card_rps",
        latencies.len() as f64 / config.duration.as_secs_f64(),
        "requests/s",
    );
    report.figure("graphql.card_p99_ms", percentile_ms(&mut latencies, 99.0), "ms");
    Ok(())
}

/// The count of served-prompt lookups answered from `from` (memory, redis, postgres), read
/// from the command API's metrics.
async fn lookups(session: &Session, from: &str) -> anyhow::Result<f64> {
    let text = session
        .http
        .get(format!("{}/metrics", session.command_api))
        .send()
        .await?
        .text()
        .await?;
    let needle = format!("serve_prompt_lookups_total{{from=\"{from}\"}} ");
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(&needle))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0))
}

/// An application's fetch of a labelled prompt by name with a viewer API key, from 16 clients
/// (whatever `--quick` says: the figure is at 16), against the command API.
async fn serve_prompt(config: &Config, session: &Session, report: &mut Report) -> anyhow::Result<()> {
    const CLIENTS: usize = 16;
    let name = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let ws = &session.workspace;
    let card = session
        .post(
            &format!("/v1/workspaces/{ws}/prompt-cards"),
            json!({
                "title": "Serve bench", "name": name,
                "messages": [{"role": "system", "content": "You summarise for {{ audience }}."},
                             {"role": "user", "content": "{{ text }}"}],
                "variables": [{"name": "text", "type": "string"}, {"name": "audience", "type": "string"}],
                "config": {"model": "gpt-4o-mini", "temperature": 0.2},
            }),
        )
        .await?;
    let card_id = card["id"].as_str().ok_or_else(|| anyhow!("no id in {card}"))?;
    let moved = session
        .post(
            &format!("/v1/workspaces/{ws}/prompt-cards/{card_id}/labels"),
            json!({"label": "production", "version": 1}),
        )
        .await?;
    let key = session
        .post(
            &format!("/v1/workspaces/{ws}/api-keys"),
            json!({"name": "serve bench", "role": "viewer"}),
        )
        .await?;
    let position = moved["position"]
        .as_i64()
        .max(key["position"].as_i64())
        .unwrap_or_default();
    let key = key["key"]
        .as_str()
        .ok_or_else(|| anyhow!("no key in {key}"))?
        .to_owned();
    let url = format!(
        "{}/v1/workspaces/{ws}/prompts/{name}?label=production",
        session.command_api
    );
    // The first fetch waits for the read models (the key and the label), then fills the caches.
    let first = session
        .http
        .get(&url)
        .bearer_auth(&key)
        .header("x-min-position", position.to_string())
        .send()
        .await?;
    anyhow::ensure!(
        first.status().is_success(),
        "the first fetch answered {}",
        first.status()
    );
    let before = lookups(session, "postgres").await?;
    let deadline = Instant::now() + config.duration;
    let mut workers = Vec::new();
    for _ in 0..CLIENTS {
        let (http, url, key) = (session.http.clone(), url.clone(), key.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let response = http.get(&url).bearer_auth(&key).send().await?;
                anyhow::ensure!(response.status().is_success(), "a fetch answered {}", response.status());
                response.bytes().await?;
                latencies.push(started.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let after = lookups(session, "postgres").await?;
    report.figure(
        "serve.prompt_rps",
        latencies.len() as f64 / config.duration.as_secs_f64(),
        "requests/s",
    );
    report.figure("serve.prompt_p99_ms", percentile_ms(&mut latencies, 99.0), "ms");
    report.figure("serve.prompt_postgres_lookups", after - before, "lookups");
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
        let init =
            json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {}", session.token)}});
        socket.send(Message::text(init.to_string())).await?;
        socket.next().await.ok_or_else(|| anyhow!("no connection_ack"))??;
        let subscribe = json!({"id": "1", "type": "subscribe", "payload": {"query": format!(
            "subscription {{ workspaceEvents(workspaceId: \"{}\") {{ position }} }}", session.workspace)}});
        socket.send(Message::text(subscribe.to_string())).await?;
        let arrivals = arrivals.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else { continue };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if let Some(position) = value["payload"]["data"]["workspaceEvents"]["position"].as_i64() {
                    arrivals.lock().expect("not poisoned").push((position, Instant::now()));
                }
            }
        }));
    }
    // Subscriptions register asynchronously on the server: wait until its gauge counts ours.
    let registering = Instant::now() + Duration::from_secs(30);
    while subscribers_registered(session).await? < config.subscribers {
        anyhow::ensure!(
            Instant::now() < registering,
            "the query API did not register {} subscriptions in 30 s",
            config.subscribers
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // From the command's 2xx, which comes right after its commit, to each delivery.
    let mut sent: HashMap<i64, Instant> = HashMap::new();
    for n in 0..10 {
        let (_, position) = session.create_card(&format!("Fan-out {n}")).await?;
        sent.insert(position, Instant::now());
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
    report.figure(
        "subscriptions.delivered_ratio",
        samples.len() as f64 / expected as f64,
        "ratio",
    );
    report.figure("subscriptions.fanout_p99_ms", percentile_ms(&mut samples, 99.0), "ms");
    Ok(())
}

/// The query API's `query_subscribers` gauge, from its `/metrics`.
async fn subscribers_registered(session: &Session) -> anyhow::Result<usize> {
    let text = session
        .http
        .get(format!("{}/metrics", session.query_api))
        .send()
        .await?
        .text()
        .await?;
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix("query_subscribers "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .unwrap_or_default();
    Ok(value as usize)
}

/// A run with the echo provider, from the 202 to the run read model saying COMPLETED: the
/// runner, its appends, the relay and the projector together.
async fn runner_throughput(config: &Config, session: &Session, report: &mut Report) -> anyhow::Result<(String, f64)> {
    let run_id = echo_run(config, session, None, report).await?;
    let results = (config.run_cases as u64 * u64::from(config.run_repeat)) as f64;
    Ok((run_id, results))
}

/// Imports a card of `config.run_cases` cases and runs it on echo `config.run_repeat` times
/// (or compares two versions of it, when `compare` is set, and returns the comparison's id);
/// reports the run's throughput from the 202 to COMPLETED in the read model.
async fn echo_run(
    config: &Config,
    session: &Session,
    compare: Option<()>,
    report: &mut Report,
) -> anyhow::Result<String> {
    let tests: String = (0..config.run_cases)
        .map(|i| format!("  - {{description: case {i}, vars: {{text: \"text {i}\"}}, assert: [{{type: contains, value: \"text {i}\"}}]}}\n"))
        .collect();
    let yaml = format!("prompts: [\"Summarise {{{{ text }}}}\"]\ntests:\n{tests}");
    let response = session
        .http
        .post(format!(
            "{}/v1/workspaces/{}/imports/promptfoo",
            session.command_api, session.workspace
        ))
        .bearer_auth(&session.token)
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await?;
    let status = response.status();
    let imported: Value = response.json().await?;
    anyhow::ensure!(status.is_success(), "the import answered {status}: {imported}");
    let card_id = imported["cards"][0]["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no card in {imported}"))?;
    if compare.is_some() {
        // Version 2 drops the text for its length: every case fails there.
        let response = session
            .http
            .put(format!(
                "{}/v1/workspaces/{}/prompt-cards/{card_id}",
                session.command_api, session.workspace
            ))
            .bearer_auth(&session.token)
            .json(
                &json!({ "title": "Bench comparison", "template": "Summarise {{ text | length }}",
                "variables": [{ "name": "text", "type": "string" }], "expected_version": 1 }),
            )
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "the update answered {}",
            response.status()
        );
        let started = session
            .post(
                &format!(
                    "/v1/workspaces/{}/prompt-cards/{card_id}/comparisons",
                    session.workspace
                ),
                json!({ "baseline": { "version": 2 }, "candidate": { "version": 1 }, "providers": ["echo"],
                    "repeat": config.run_repeat }),
            )
            .await?;
        return started["comparison_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no comparison_id in {started}"));
    }
    let run = session
        .post(
            &format!("/v1/workspaces/{}/runs", session.workspace),
            json!({ "card_id": card_id, "providers": ["echo"], "repeat": config.run_repeat }),
        )
        .await?;
    let accepted = Instant::now();
    let run_id = run["run_id"]
        .as_str()
        .ok_or_else(|| anyhow!("no run_id in {run}"))?
        .to_owned();
    let query = format!("{{ testRun(id: \"{run_id}\") {{ status total completed }} }}");
    let deadline = accepted + Duration::from_secs(600);
    let total = loop {
        let body = session.graphql(&query, None).await?;
        let run = &body["data"]["testRun"];
        match run["status"].as_str() {
            Some("COMPLETED") => break run["total"].as_f64().unwrap_or_default(),
            Some("FAILED" | "CANCELLED") => anyhow::bail!("the bench run ended {run}"),
            _ if Instant::now() > deadline => anyhow::bail!("the bench run did not complete in 10 minutes: {run}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let elapsed = accepted.elapsed().as_secs_f64();
    report.figure("runner.results", total, "results");
    report.figure("runner.results_per_s", total / elapsed, "results/s");
    Ok(run_id)
}

/// A run's results exported over HTTP, each format read to its end: results per second.
async fn exports(session: &Session, run_id: &str, results: f64, report: &mut Report) -> anyhow::Result<()> {
    for format in ["csv", "xlsx"] {
        let started = Instant::now();
        let response = session
            .http
            .get(format!(
                "{}/v1/workspaces/{}/runs/{run_id}/export?format={format}",
                session.command_api, session.workspace
            ))
            .bearer_auth(&session.token)
            .timeout(Duration::from_secs(600))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "the export answered {}",
            response.status()
        );
        let bytes = response.bytes().await?;
        let elapsed = started.elapsed().as_secs_f64();
        anyhow::ensure!(!bytes.is_empty(), "the {format} export was empty");
        report.figure(
            &format!("export.{format}_results_per_s"),
            results / elapsed,
            "results/s",
        );
    }
    Ok(())
}

/// Two versions compared on echo (each side a run of `run_cases` x `run_repeat` results): the
/// time from the later run's end to the comparison's verdict, both as the store recorded them.
async fn comparison_verdict(config: &Config, session: &Session, report: &mut Report) -> anyhow::Result<()> {
    let comparison_id: uuid::Uuid = echo_run(config, session, Some(()), report).await?.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&config.database_url)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(900);
    let seconds: f64 = loop {
        let gap: Option<f64> = sqlx::query_scalar(
            "WITH c AS (SELECT data, recorded_at FROM events WHERE stream_id = $1 AND event_type = 'ComparisonCompleted')
             SELECT EXTRACT(EPOCH FROM (SELECT recorded_at FROM c) - max(e.recorded_at))::float8
             FROM events e, (SELECT data FROM events WHERE stream_id = $1 AND version = 1) r
             WHERE e.event_type = 'TestRunCompleted'
               AND e.stream_id IN ((r.data->'baseline'->>'run_id')::uuid, (r.data->'candidate'->>'run_id')::uuid)
               AND EXISTS (SELECT 1 FROM c)",
        )
        .bind(comparison_id)
        .fetch_one(&pool)
        .await?;
        if let Some(gap) = gap {
            break gap;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the bench comparison did not complete in 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    report.figure("compare.verdict_after_runs_ms", seconds * 1000.0, "ms");
    Ok(())
}

/// The runner's own work per call (render, call, grade) with the echo provider, whose latency
/// is nil: what the runner adds over any provider's latency. Timed in this process.
async fn runner_overhead(report: &mut Report) -> anyhow::Result<()> {
    use domain::run::{ProviderSpec, ResultKey, RunCase, RunPlan};
    use domain::template::{VarType, Variable};
    let providers = std::sync::Arc::new(providers::Providers::new(
        providers::ProviderSettings::from_env()?,
        providers::PriceTable::from_env()?,
    ));
    let graders = runner::grading::SettingsGraders::new(providers.clone(), runner::grading::GradingSettings::default());
    let assertion = |kind: &str, value: Value| assertions::Assertion {
        kind: kind.into(),
        value: Some(value),
        ..Default::default()
    };
    let case_id = uuid::Uuid::now_v7();
    let mut vars = serde_json::Map::new();
    vars.insert("text".into(), json!("the quarterly report, twelve pages"));
    vars.insert("audience".into(), json!("the board"));
    let plan = RunPlan {
        workspace_id: uuid::Uuid::now_v7(),
        card_id: uuid::Uuid::now_v7(),
        card_version: 1,
        template: "Summarise {{ text }} for {{ audience }} in three sentences.".into(),
        messages: vec![],
        config: Default::default(),
        variables: ["text", "audience"]
            .map(|name| Variable {
                name: name.into(),
                kind: VarType::String,
                description: None,
                default: None,
                required: true,
            })
            .to_vec(),
        providers: vec![ProviderSpec {
            id: "echo".into(),
            config: Value::Null,
        }],
        cases: vec![RunCase {
            case_id,
            name: "overhead".into(),
            vars,
            expected_output: None,
            assertions: vec![
                assertion("icontains", json!("{{ audience }}")),
                assertion("not-contains", json!("lorem")),
                assertion("word-count", json!({"min": 3, "max": 100})),
            ],
        }],
        repeat: 1,
        comparison_id: None,
    };
    let key = ResultKey {
        case_id,
        provider: "echo".into(),
        repetition: 0,
    };
    let mut samples = Vec::new();
    for _ in 0..20_000 {
        let started = Instant::now();
        let result = runner::run_one(&providers, &graders, &plan, key.clone()).await;
        samples.push(started.elapsed());
        anyhow::ensure!(result.passed, "the overhead case should pass: {result:?}");
    }
    report.figure(
        "runner.overhead_p50_us",
        percentile_ms(&mut samples, 50.0) * 1000.0,
        "us",
    );
    report.figure(
        "runner.overhead_p99_us",
        percentile_ms(&mut samples, 99.0) * 1000.0,
        "us",
    );
    Ok(())
}

/// Results graded per second when every result has an `llm-rubric` and a `similar` assertion
/// graded by a local OpenAI-compatible grader that answers at once: what grading adds on the
/// runner's side (prompt building, two chat and embedding calls per result, answer parsing),
/// on the echo provider, 64 results in flight. Timed in this process.
async fn graded_throughput(report: &mut Report) -> anyhow::Result<()> {
    use domain::run::{ProviderSpec, ResultKey, RunCase, RunPlan};
    let app = axum::Router::new()
        .route(
            "/chat/completions",
            axum::routing::post(|| async {
                axum::Json(json!({
                    "choices": [{"message": {"role": "assistant", "content": "{\"reason\": \"polite\", \"pass\": true, \"score\": 1}"}}],
                    "usage": {"prompt_tokens": 120, "completion_tokens": 12}
                }))
            }),
        )
        .route(
            "/embeddings",
            axum::routing::post(|| async {
                axum::Json(json!({"data": [{"embedding": [0.6, 0.8, 0.0]}], "usage": {"prompt_tokens": 8}}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut settings = providers::ProviderSettings::for_base_url(&url, Duration::from_secs(10));
    settings.max_concurrency_per_provider = 64;
    let providers = std::sync::Arc::new(providers::Providers::new(settings, providers::PriceTable::builtin()));
    let graders = std::sync::Arc::new(runner::grading::SettingsGraders::new(
        providers.clone(),
        runner::grading::GradingSettings {
            default_provider: "openai:chat:gpt-4.1-mini".into(),
            default_embedding_provider: "openai:embedding:text-embedding-3-small".into(),
        },
    ));
    let assertion = |value: Value| -> anyhow::Result<assertions::Assertion> { Ok(serde_json::from_value(value)?) };
    let case_id = uuid::Uuid::now_v7();
    let plan = std::sync::Arc::new(RunPlan {
        workspace_id: uuid::Uuid::now_v7(),
        card_id: uuid::Uuid::now_v7(),
        card_version: 1,
        template: "Reply politely to {{ who }}".into(),
        messages: vec![],
        config: Default::default(),
        variables: vec![],
        cases: vec![RunCase {
            case_id,
            name: "polite".into(),
            vars: json!({"who": "Ada"}).as_object().cloned().unwrap_or_default(),
            expected_output: None,
            assertions: vec![
                assertion(json!({"type": "llm-rubric", "value": "is polite to {{ who }}"}))?,
                assertion(json!({"type": "similar", "value": "Hello Ada", "threshold": 0.5}))?,
            ],
        }],
        providers: vec![ProviderSpec {
            id: "echo".into(),
            config: Value::Null,
        }],
        repeat: 1,
        comparison_id: None,
    });
    let total = 4_000;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for repetition in 0..total {
        let permit = slots.clone().acquire_owned().await?;
        let (providers, graders, plan) = (providers.clone(), graders.clone(), plan.clone());
        calls.spawn(async move {
            let key = ResultKey {
                case_id,
                provider: "echo".into(),
                repetition,
            };
            let result = runner::run_one(&providers, graders.as_ref(), &plan, key).await;
            drop(permit);
            result
        });
    }
    let mut graded = 0u32;
    while let Some(result) = calls.join_next().await {
        let result = result?;
        anyhow::ensure!(result.passed, "the graded case should pass: {:?}", result.assertions);
        graded += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    server.abort();
    report.figure("runner.graded_results_per_s", f64::from(graded) / elapsed, "results/s");
    Ok(())
}

/// Rebuilds every Postgres read model from a store of `config.replay_events` events, in a
/// scratch database so the live stack is untouched. The store is written through the event
/// store's own append, with the mix an evaluation team's store has: per card, its versions, a
/// label, five test cases and a run of 100 results (results are 84% of the events).
async fn replay(config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let live = PgConnectOptions::from_str(&config.database_url)?;
    let scratch_name = "promptcards_bench_replay";
    let admin_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(live.clone().database("postgres"))
        .await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {scratch_name} WITH (FORCE)"))
        .execute(&admin_pool)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {scratch_name}"))
        .execute(&admin_pool)
        .await?;
    let scratch = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(live.database(scratch_name))
        .await?;
    event_store::MIGRATOR.run(&scratch).await?;
    let store = event_store::EventStore::new(scratch.clone());

    let seeding = Instant::now();
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..4 {
        let (store, written, target) = (store.clone(), written.clone(), config.replay_events);
        writers.push(tokio::spawn(async move {
            while written.load(std::sync::atomic::Ordering::Relaxed) < target {
                let n = seed::card_with_a_run(&store).await?;
                written.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for writer in writers {
        writer.await??;
    }
    let seeded = written.load(std::sync::atomic::Ordering::Relaxed);
    report.figure(
        "replay.seed_append_events_per_s",
        seeded as f64 / seeding.elapsed().as_secs_f64(),
        "events/s",
    );

    let sink = projector::postgres::PostgresSink::new(scratch.clone());
    let started = Instant::now();
    let mut total = 0usize;
    // The loop `promptcards replay` runs, so the figure is what users get.
    projector::catch_up(&store, &sink, event_store::Cursor::START, REPLAY_BATCH, |events| {
        total += events.len();
        std::ops::ControlFlow::Continue(())
    })
    .await?;
    let elapsed = started.elapsed();
    scratch.close().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {scratch_name} WITH (FORCE)"))
        .execute(&admin_pool)
        .await?;
    report.figure("replay.events", total as f64, "events");
    report.figure("replay.events_per_s", total as f64 / elapsed.as_secs_f64(), "events/s");
    Ok(())
}

/// Events per read and per sink transaction (`promptcards replay --batch-size`, whose default
/// is 500).
const REPLAY_BATCH: i64 = 1_000;

/// A store's worth of realistic history, appended through the event store.
mod seed {
    use domain::card::{CardContent, CardEvent};
    use domain::run::{ProviderSpec, ResultKey, RunCase, RunEvent, RunPlan, TestResult};
    use domain::template::{VarType, Variable};
    use domain::test_case::{TestCaseContent, TestCaseEvent};
    use event_store::{Append, EventStore, ExpectedVersion, Metadata, NewEvent, StreamAppend};
    use serde_json::json;
    use uuid::Uuid;

    const CASES: usize = 5;
    const PROVIDERS: [&str; 2] = ["echo", "openai:gpt-4o-mini"];
    const REPEAT: u32 = 10;
    const RESULTS_PER_APPEND: usize = 50;

    fn stream(stream_id: Uuid, stream_type: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamAppend {
        StreamAppend {
            stream_id,
            stream_type: stream_type.into(),
            expected,
            events,
        }
    }

    pub(super) fn content(title: &str, edit: u32) -> CardContent {
        CardContent {
            title: title.into(),
            description: "Summaries for the support team".into(),
            template: format!(
                "Summarise {{{{ text }}}} for {{{{ audience }}}} in {} sentences.",
                edit + 2
            ),
            variables: ["text", "audience"]
                .map(|name| Variable {
                    name: name.into(),
                    kind: VarType::String,
                    description: None,
                    default: None,
                    required: true,
                })
                .to_vec(),
            tags: vec!["bench".into(), "support".into()],
            ..Default::default()
        }
    }

    async fn append(store: &EventStore, workspace_id: Uuid, streams: Vec<StreamAppend>) -> anyhow::Result<usize> {
        let n = streams.iter().map(|s| s.events.len()).sum();
        store
            .append(Append {
                streams,
                metadata: Metadata {
                    actor_id: Some(workspace_id),
                    workspace_id: Some(workspace_id),
                    ..Default::default()
                },
                ..Default::default()
            })
            .await?;
        Ok(n)
    }

    /// One card's life: created with five test cases, edited four times, labelled, and run
    /// against two providers ten times over. Returns how many events it appended.
    pub async fn card_with_a_run(store: &EventStore) -> anyhow::Result<usize> {
        let (workspace_id, card_id, run_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let case_ids: Vec<Uuid> = (0..CASES).map(|_| Uuid::now_v7()).collect();
        let cases: Vec<TestCaseContent> = (0..CASES)
            .map(|i| TestCaseContent {
                name: format!("case {i}"),
                vars: json!({"text": format!("ticket {i}: the invoice is wrong"), "audience": "an agent"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                expected_output: None,
                assertions: vec![assertions::Assertion {
                    kind: "icontains".into(),
                    value: Some(json!("invoice")),
                    ..Default::default()
                }],
            })
            .collect();
        let mut card_events = vec![NewEvent::from_domain(&CardEvent::PromptCardCreated {
            card_id,
            workspace_id,
            name: format!("invoice-summary-{}", card_id.simple()),
            content: content("Invoice summary", 0),
        })];
        let mut streams = Vec::new();
        for (case_id, case) in case_ids.iter().zip(&cases) {
            card_events.push(NewEvent::from_domain(&CardEvent::TestCaseAttached {
                case_id: *case_id,
            }));
            streams.push(stream(
                *case_id,
                domain::names::stream_types::TEST_CASE,
                ExpectedVersion::NoStream,
                vec![NewEvent::from_domain(&TestCaseEvent::TestCaseCreated {
                    case_id: *case_id,
                    card_id,
                    workspace_id,
                    content: case.clone(),
                })],
            ));
        }
        let card_version = card_events.len() as i64;
        streams.insert(
            0,
            stream(
                card_id,
                domain::names::stream_types::PROMPT_CARD,
                ExpectedVersion::NoStream,
                card_events,
            ),
        );
        let mut written = append(store, workspace_id, streams).await?;

        let mut edits: Vec<NewEvent> = (2..=5)
            .map(|version| {
                NewEvent::from_domain(&CardEvent::PromptCardUpdated {
                    version,
                    content: content("Invoice summary", version),
                })
            })
            .collect();
        edits.push(NewEvent::from_domain(&CardEvent::PromptCardLabelMoved {
            label: "production".into(),
            version: 4,
            previous_version: None,
        }));
        written += append(
            store,
            workspace_id,
            vec![stream(
                card_id,
                domain::names::stream_types::PROMPT_CARD,
                ExpectedVersion::Exact(card_version),
                edits,
            )],
        )
        .await?;

        let plan = RunPlan {
            workspace_id,
            card_id,
            card_version: 5,
            template: content("Invoice summary", 5).template,
            messages: vec![],
            config: Default::default(),
            variables: content("Invoice summary", 5).variables,
            cases: case_ids
                .iter()
                .zip(&cases)
                .map(|(case_id, case)| RunCase {
                    case_id: *case_id,
                    name: case.name.clone(),
                    vars: case.vars.clone(),
                    expected_output: None,
                    assertions: case.assertions.clone(),
                })
                .collect(),
            providers: PROVIDERS
                .map(|id| ProviderSpec {
                    id: id.into(),
                    config: serde_json::Value::Null,
                })
                .to_vec(),
            repeat: REPEAT,
            comparison_id: None,
        };
        let total = plan.total();
        let keys: Vec<ResultKey> = plan.keys().collect();
        let run_start = vec![
            NewEvent::from_domain(&RunEvent::TestRunRequested { run_id, plan, total }),
            NewEvent::from_domain(&RunEvent::TestRunStarted {}),
        ];
        written += append(
            store,
            workspace_id,
            vec![stream(
                run_id,
                domain::names::stream_types::TEST_RUN,
                ExpectedVersion::NoStream,
                run_start,
            )],
        )
        .await?;
        let mut run_version = 2;
        let chunks: Vec<&[ResultKey]> = keys.chunks(RESULTS_PER_APPEND).collect();
        let last_chunk = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut events: Vec<NewEvent> = chunk
                .iter()
                .map(|key| {
                    let passed = key.repetition % 4 != 3;
                    NewEvent::from_domain(&RunEvent::TestResultRecorded {
                        card_id,
                        card_version: 5,
                        result: TestResult {
                            key: key.clone(),
                            rendered_prompt: "Summarise ticket: the invoice is wrong for an agent in 7 sentences."
                                .into(),
                            output: Some(
                                if passed {
                                    "The invoice total is wrong."
                                } else {
                                    "No idea."
                                }
                                .into(),
                            ),
                            error: None,
                            latency_ms: 300 + u64::from(key.repetition) * 7,
                            prompt_tokens: 18,
                            completion_tokens: 7,
                            cost_micro_usd: 12,
                            passed,
                            score: if passed { 1.0 } else { 0.0 },
                            assertions: vec![],
                            grading: Default::default(),
                        },
                    })
                })
                .collect();
            if i == last_chunk {
                events.push(NewEvent::from_domain(&RunEvent::TestRunCompleted {
                    passed: 0,
                    failed: 0,
                }));
            }
            let n = events.len() as i64;
            written += append(
                store,
                workspace_id,
                vec![stream(
                    run_id,
                    domain::names::stream_types::TEST_RUN,
                    ExpectedVersion::Exact(run_version),
                    events,
                )],
            )
            .await?;
            run_version += n;
        }
        Ok(written)
    }
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
