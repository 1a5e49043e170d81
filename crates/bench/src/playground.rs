//! The playground figures: the time to first token Promptcards adds over the provider's own,
//! from the moment a local OpenAI-compatible server sends an answer's first piece to the moment
//! a GraphQL subscriber receives it (the runner's parsing, Redis, the query API and the
//! WebSocket), and the time from the request's 202 to that first piece at the subscriber.
//! The server sends each answer's first piece only once the bench says so, after the
//! subscriber is in place, and both clocks are this process's.

use crate::figures::{percentile_ms, Report};
use crate::scenarios::Session;
use crate::Config;
use anyhow::anyhow;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Pieces after the first, sent 1 ms apart.
const PIECES: usize = 20;

#[derive(Clone)]
struct Server {
    /// Requests so far; request `n` sends its first piece once `go` reaches `n`.
    requests: Arc<AtomicU64>,
    go: watch::Receiver<u64>,
    /// When each request's first piece was written, by request number.
    first_sent: Arc<Mutex<Vec<(u64, Instant)>>>,
}

fn chunk(text: &str) -> Bytes {
    let data = json!({ "choices": [{ "index": 0, "delta": { "content": text } }] });
    Bytes::from(format!("data: {data}\n\n"))
}

async fn completions(State(server): State<Server>) -> Response {
    let n = server.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let body =
        futures::stream::unfold((0usize, server), move |(i, server)| async move {
            let piece = match i {
            0 => {
                let mut go = server.go.clone();
                let _ = go.wait_for(|allowed| *allowed >= n).await;
                server.first_sent.lock().expect("not poisoned").push((n, Instant::now()));
                chunk("first ")
            }
            i if i <= PIECES => {
                tokio::time::sleep(Duration::from_millis(1)).await;
                chunk("piece ")
            }
            i if i == PIECES + 1 => Bytes::from(
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":21}}\n\ndata: [DONE]\n\n",
            ),
            _ => return None,
        };
            Some((Ok::<_, std::io::Error>(piece), (i + 1, server)))
        });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(body))
        .expect("a valid response")
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next `next` payload's `execution` update; `None` when the subscription completed.
async fn next_update(socket: &mut Socket) -> anyhow::Result<Option<(Value, Instant)>> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .map_err(|_| anyhow!("no update within 30 s"))?
            .ok_or_else(|| anyhow!("the socket closed"))??;
        let at = Instant::now();
        let Message::Text(text) = message else { continue };
        let value: Value = serde_json::from_str(&text)?;
        match value["type"].as_str() {
            Some("next") => {
                anyhow::ensure!(value["payload"].get("errors").is_none(), "{value}");
                return Ok(Some((value["payload"]["data"]["execution"].clone(), at)));
            }
            Some("complete") => return Ok(None),
            Some("ping") => socket.send(Message::text(json!({"type": "pong"}).to_string())).await?,
            _ => anyhow::bail!("unexpected {value}"),
        }
    }
}

pub async fn playground(config: &Config, session: &Session, report: &mut Report) -> anyhow::Result<()> {
    let (go, go_rx) = watch::channel(0u64);
    let server = Server {
        requests: Arc::default(),
        go: go_rx,
        first_sent: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1", listener.local_addr()?);
    // As providers' servers do: each piece is sent when written, not after the last one's ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        let _ = stream.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let ws = format!("/v1/workspaces/{}", session.workspace);
    let set = session
        .http
        .put(format!("{}{ws}/provider-credentials/openai", session.command_api))
        .bearer_auth(&session.token)
        .json(&json!({ "base_url": url }))
        .send()
        .await?;
    anyhow::ensure!(set.status().is_success(), "setting the base URL: {}", set.text().await?);
    let (card, _) = session.create_card("Playground bench").await?;

    let mut request = format!("{}/graphql/ws", config.query_api.replacen("http", "ws", 1)).into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {}", session.token)}});
    socket.send(Message::text(init.to_string())).await?;
    socket.next().await.ok_or_else(|| anyhow!("no connection_ack"))??;

    let executions = if config.duration.as_secs() < 30 { 50 } else { 200 };
    let (mut added, mut to_first) = (Vec::new(), Vec::new());
    for n in 1..=executions as u64 {
        let accepted = Instant::now();
        let body = session
            .post(
                &format!("{ws}/executions"),
                json!({ "card_id": card, "variables": { "text": format!("note {n}"), "audience": "bench" },
                        "provider": "openai:chat:bench" }),
            )
            .await?;
        let id = body["execution_id"]
            .as_str()
            .ok_or_else(|| anyhow!("no execution_id: {body}"))?;
        let query = format!("subscription {{ execution(id: \"{id}\") {{ kind text }} }}");
        let subscribe = json!({"id": n.to_string(), "type": "subscribe", "payload": {"query": query}});
        socket.send(Message::text(subscribe.to_string())).await?;
        let (started, _) = next_update(&mut socket)
            .await?
            .ok_or_else(|| anyhow!("completed at once"))?;
        anyhow::ensure!(started["kind"] == "STARTED", "{started}");
        go.send_replace(n);
        let mut first = None;
        while let Some((update, at)) = next_update(&mut socket).await? {
            if update["kind"] == "CHUNK" && first.is_none() {
                first = Some(at);
            }
            anyhow::ensure!(update["kind"] != "FAILED", "execution {id} failed: {update}");
        }
        let first = first.ok_or_else(|| anyhow!("execution {id} streamed no chunk"))?;
        let sent = server
            .first_sent
            .lock()
            .expect("not poisoned")
            .iter()
            .find(|(request, _)| *request == n)
            .map(|(_, at)| *at)
            .ok_or_else(|| anyhow!("the server never sent request {n}'s first piece"))?;
        added.push(first.saturating_duration_since(sent));
        to_first.push(first.saturating_duration_since(accepted));
    }
    report.figure("playground.executions", executions as f64, "executions");
    report.figure("playground.ttft_added_p50_ms", percentile_ms(&mut added, 50.0), "ms");
    report.figure("playground.ttft_added_p99_ms", percentile_ms(&mut added, 99.0), "ms");
    report.figure(
        "playground.request_to_first_chunk_p50_ms",
        percentile_ms(&mut to_first, 50.0),
        "ms",
    );
    Ok(())
}
