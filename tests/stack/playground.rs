//! The playground end to end: a card executed on an OpenAI-compatible server that streams its
//! answer in pieces cut inside UTF-8 characters and inside JSON, watched over the GraphQL
//! WebSocket from the start and again after the end (the same updates, in order), and an
//! execution cancelled mid-answer (FAILED at once, the provider's connection closed).

use crate::support::{eventually, next_message, open_socket, Client, Socket, Stack};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use futures::SinkExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const ANSWER: &str = "Grüße, 日本 🌍!";

/// The answer as OpenAI streams it, ending with the usage and `[DONE]`.
fn sse_body() -> Vec<u8> {
    let mut body = String::new();
    for piece in ["Grüße, ", "日本 ", "🌍", "!"] {
        let chunk = json!({ "choices": [{ "index": 0, "delta": { "content": piece } }] });
        body.push_str(&format!("data: {chunk}\n\n"));
    }
    let usage = json!({ "choices": [], "usage": { "prompt_tokens": 5, "completion_tokens": 4 } });
    body.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
    body.into_bytes()
}

#[derive(Default)]
struct Fake {
    /// Request bodies, in arrival order.
    seen: Mutex<Vec<Value>>,
    /// Set when a client hung up on an answer that never ends.
    hung_up: AtomicBool,
}

/// Sets `hung_up` when an answer that never ends is dropped, which happens when the client
/// hangs up.
struct HangUp {
    fake: Arc<Fake>,
    armed: bool,
}

impl Drop for HangUp {
    fn drop(&mut self) {
        if self.armed {
            self.fake.hung_up.store(true, Ordering::SeqCst);
        }
    }
}

async fn completions(State(fake): State<Arc<Fake>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap();
    let prompt = request["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    fake.seen.lock().unwrap().push(request);
    let forever = prompt.contains("forever");
    let gap = if prompt.contains("slowly") {
        Duration::from_millis(150)
    } else {
        Duration::from_millis(2)
    };
    let pieces: Vec<Vec<u8>> = if forever {
        vec![b"data: {\"choices\":[{\"delta\":{\"content\":\"Thinking\"}}]}\n\n".to_vec()]
    } else if prompt.contains("slowly") {
        // Whole events, one at a time.
        String::from_utf8(sse_body())
            .unwrap()
            .split_inclusive("\n\n")
            .map(|event| event.as_bytes().to_vec())
            .collect()
    } else {
        // Five bytes at a time: cuts fall inside characters and inside the JSON.
        sse_body().chunks(5).map(<[u8]>::to_vec).collect()
    };
    let guard = HangUp {
        fake: fake.clone(),
        armed: forever,
    };
    let stream = answer(pieces, gap, guard);
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// The pieces `gap` apart; an armed guard's answer then never ends.
fn answer(
    pieces: Vec<Vec<u8>>,
    gap: Duration,
    guard: HangUp,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::unfold((pieces.into_iter(), guard), move |(mut pieces, guard)| async move {
        match pieces.next() {
            Some(piece) => {
                tokio::time::sleep(gap).await;
                Some((Ok(Bytes::from(piece)), (pieces, guard)))
            }
            None if guard.armed => {
                // Until the client hangs up, which drops this stream and the guard.
                std::future::pending::<()>().await;
                None
            }
            None => None,
        }
    })
}

async fn serve_fake() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fake)
}

/// A stack whose workspace's OpenAI-compatible provider is the fake, and a card to execute.
struct Playground {
    stack: Stack,
    query_api: String,
    client: Client,
    fake: Arc<Fake>,
    card: uuid::Uuid,
}

async fn playground() -> Playground {
    let stack = Stack::start().await;
    let query_api = stack.url("query-api");
    let client = stack.client().await;
    let (fake_url, fake) = serve_fake().await;
    let set = client
        .send(
            Method::PUT,
            "/provider-credentials/openai",
            Some(json!({ "base_url": format!("{fake_url}/v1") })),
        )
        .await;
    assert_eq!(set.status(), StatusCode::OK);
    let card = client.create_card("Greeter").await;
    Playground {
        stack,
        query_api,
        client,
        fake,
        card,
    }
}

/// Subscribes to `execution(id)` on an open socket.
async fn subscribe(socket: &mut Socket, execution: &str) {
    let query = format!(
        r#"subscription {{ execution(id: "{execution}") {{ kind text usage {{ promptTokens completionTokens totalTokens }} latencyMs firstTokenMs costUsd error }} }}"#
    );
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": query } });
    socket.send(Message::Text(subscribe.to_string().into())).await.unwrap();
}

/// The next update of the subscription; `None` once it completed.
async fn next_update(socket: &mut Socket) -> Option<Value> {
    let message = next_message(socket)
        .await
        .expect("the subscription answers within 10 s");
    match message["type"].as_str() {
        Some("next") => {
            assert!(message["payload"].get("errors").is_none(), "{message}");
            Some(message["payload"]["data"]["execution"].clone())
        }
        Some("complete") => None,
        _ => panic!("unexpected {message}"),
    }
}

async fn all_updates(socket: &mut Socket) -> Vec<Value> {
    let mut updates = vec![];
    while let Some(update) = next_update(socket).await {
        updates.push(update);
    }
    updates
}

fn kinds(updates: &[Value]) -> Vec<&str> {
    updates.iter().map(|u| u["kind"].as_str().unwrap()).collect()
}

fn chunks(updates: &[Value]) -> String {
    updates
        .iter()
        .filter(|u| u["kind"] == "CHUNK")
        .map(|u| u["text"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_execution_streams_replays_in_order_and_cancels_mid_answer() {
    let Playground {
        stack,
        query_api,
        client,
        fake,
        card,
    } = playground().await;

    // Bad input is refused and appends nothing.
    let refused = client
        .send(
            Method::POST,
            "/executions",
            Some(json!({ "card_id": card, "variables": { "word": 3 }, "provider": "openai:chat:gpt-test" })),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = refused.json().await.unwrap();
    assert!(body.to_string().contains("variables.word"), "{body}");

    let started = client
        .post(
            "/executions",
            json!({ "card_id": card, "variables": { "word": "héllo" }, "provider": "openai:chat:gpt-test" }),
        )
        .await;
    let execution = started["execution_id"].as_str().unwrap().to_owned();
    assert!(started["position"].as_i64().unwrap() > 0, "{started}");
    let mut socket = open_socket(&query_api, client.token()).await.expect("the socket opens");
    subscribe(&mut socket, &execution).await;
    let live = all_updates(&mut socket).await;
    let k = kinds(&live);
    assert_eq!(k.first(), Some(&"STARTED"), "{live:?}");
    assert_eq!(k.last(), Some(&"FINISHED"), "{live:?}");
    assert_eq!(chunks(&live), ANSWER, "{live:?}");
    let finished = live.last().unwrap();
    assert_eq!(finished["text"], ANSWER);
    assert_eq!(
        finished["usage"],
        json!({ "promptTokens": 5, "completionTokens": 4, "totalTokens": 9 })
    );
    assert!(finished["latencyMs"].as_i64().unwrap() >= finished["firstTokenMs"].as_i64().unwrap());
    let sent = fake.seen.lock().unwrap()[0].clone();
    assert_eq!(sent["stream"], true, "{sent}");
    assert_eq!(sent["model"], "gpt-test");
    assert_eq!(sent["messages"][0]["content"], "Say héllo.");

    // A subscriber arriving after the end gets the same updates, in the same order.
    let mut late = open_socket(&query_api, client.token()).await.expect("the socket opens");
    subscribe(&mut late, &execution).await;
    assert_eq!(all_updates(&mut late).await, live);

    // Once the live updates are gone (expired, or Redis lost them), the recorded outcome
    // answers: the start, the whole answer as one chunk, the end.
    let redis = redis::Client::open(crate::support::redis_url()).unwrap();
    let mut redis = redis.get_multiplexed_async_connection().await.unwrap();
    let key = format!("promptcards:execution:{execution}:updates");
    let removed: i64 = redis::cmd("DEL").arg(&key).query_async(&mut redis).await.unwrap();
    assert_eq!(removed, 1, "the live updates were in {key}");
    let mut later = open_socket(&query_api, client.token()).await.expect("the socket opens");
    subscribe(&mut later, &execution).await;
    let replayed = all_updates(&mut later).await;
    assert_eq!(kinds(&replayed), ["STARTED", "CHUNK", "FINISHED"], "{replayed:?}");
    assert_eq!(chunks(&replayed), ANSWER);
    assert_eq!(replayed[2], *finished);

    // Cancelled mid-answer: FAILED, and the provider's connection is closed.
    let forever = client
        .post(
            "/executions",
            json!({ "card_id": card, "variables": { "word": "forever" }, "provider": "openai:chat:gpt-test" }),
        )
        .await;
    let forever = forever["execution_id"].as_str().unwrap().to_owned();
    let mut socket = open_socket(&query_api, client.token()).await.expect("the socket opens");
    subscribe(&mut socket, &forever).await;
    assert_eq!(next_update(&mut socket).await.unwrap()["kind"], "STARTED");
    let first = next_update(&mut socket).await.unwrap();
    assert_eq!(
        (first["kind"].as_str(), first["text"].as_str()),
        (Some("CHUNK"), Some("Thinking"))
    );
    let cancelled = client
        .send(Method::POST, &format!("/executions/{forever}/cancel"), None)
        .await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    let rest = all_updates(&mut socket).await;
    assert_eq!(kinds(&rest), ["FAILED"], "{rest:?}");
    assert!(rest[0]["error"].as_str().unwrap().contains("cancelled"), "{rest:?}");
    eventually(
        Duration::from_secs(10),
        "the runner hangs up on the provider",
        || async { fake.hung_up.load(Ordering::SeqCst).then_some(()) },
    )
    .await;
    let again = client
        .send(Method::POST, &format!("/executions/{forever}/cancel"), None)
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);

    // The finished one counts in analytics (the cancelled one does not).
    let query = format!(
        r#"{{ analytics(workspaceId: "{}") {{ executions {{ provider executions tokens firstTokenP50Ms }} }} }}"#,
        client.workspace
    );
    let counted = eventually(Duration::from_secs(30), "analytics count the execution", || async {
        let data = client.graphql(&query_api, &query, json!({})).await;
        let rows = data["analytics"]["executions"].as_array().cloned().unwrap_or_default();
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(counted.len(), 1, "{counted:?}");
    assert_eq!(counted[0]["provider"], "openai:chat:gpt-test");
    assert_eq!(
        (counted[0]["executions"].as_u64(), counted[0]["tokens"].as_u64()),
        (Some(1), Some(9))
    );

    // Both are in the event store, as the audit log and analytics read them.
    let recorded: Vec<(String,)> =
        sqlx::query_as("SELECT event_type FROM events WHERE stream_type = 'execution' ORDER BY position")
            .fetch_all(&stack.pool)
            .await
            .unwrap();
    let recorded: Vec<&str> = recorded.iter().map(|(t,)| t.as_str()).collect();
    assert_eq!(
        recorded,
        [
            "ExecutionRequested",
            "ExecutionFinished",
            "ExecutionRequested",
            "ExecutionCancelled"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runner_killed_mid_answer_starts_the_execution_again_and_its_subscriber_sees_it_end() {
    let Playground {
        mut stack,
        query_api,
        client,
        fake,
        card,
    } = playground().await;
    // Whole SSE events 150 ms apart: the runner is killed while the answer is arriving.
    let started = client
        .post(
            "/executions",
            json!({ "card_id": card, "variables": { "word": "slowly" }, "provider": "openai:chat:gpt-test" }),
        )
        .await;
    let execution = started["execution_id"].as_str().unwrap().to_owned();
    let mut socket = open_socket(&query_api, client.token()).await.expect("the socket opens");
    subscribe(&mut socket, &execution).await;
    assert_eq!(next_update(&mut socket).await.unwrap()["kind"], "STARTED");
    assert_eq!(next_update(&mut socket).await.unwrap()["kind"], "CHUNK");
    stack.kill("runner");
    stack.start_process("runner").await;
    let rest = all_updates(&mut socket).await;
    // The restarted runner starts the answer over: STARTED again, then all of it.
    let again = rest
        .iter()
        .position(|u| u["kind"] == "STARTED")
        .unwrap_or_else(|| panic!("no second STARTED in {rest:?}"));
    let after = &rest[again..];
    assert_eq!(chunks(after), ANSWER, "{rest:?}");
    assert_eq!(after.last().unwrap()["kind"], "FINISHED");
    assert_eq!(
        fake.seen.lock().unwrap().len(),
        2,
        "the provider was called again, once"
    );
    let ends: Vec<(String,)> =
        sqlx::query_as("SELECT event_type FROM events WHERE stream_id = $1 AND event_type <> 'ExecutionRequested'")
            .bind(uuid::Uuid::parse_str(&execution).unwrap())
            .fetch_all(&stack.pool)
            .await
            .unwrap();
    assert_eq!(ends, [("ExecutionFinished".to_owned(),)], "one outcome recorded");
}
