//! Streamed answers from each wire protocol, cut into pieces inside UTF-8 characters and
//! inside JSON; errors before and during the answer; a stalled stream; a cancelled one.

use crate::common::{providers, serve, settings, spec, Reply, ANTHROPIC_KEY};
use domain::prompt::Rendered;
use providers::{Credentials, ProviderError, Providers, Streamed};
use serde_json::{json, Value};
use std::time::Duration;

const ANSWER: &str = "Grüße, 日本 🌍!";
const PIECES: [&str; 4] = ["Grüße, ", "日本 ", "🌍", "!"];

fn openai_body() -> String {
    let mut body = String::new();
    body.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n");
    for piece in PIECES {
        body.push_str(&format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {"content": piece}}]})
        ));
    }
    body.push_str("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n");
    body
}

fn anthropic_body() -> String {
    let mut body = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\n\n\
         event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    );
    for piece in PIECES {
        let delta = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}});
        body.push_str(&format!("event: content_block_delta\ndata: {delta}\n\n"));
    }
    body.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
         event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":4}}\n\n\
         event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    body
}

fn ollama_body() -> String {
    let mut body = String::new();
    for piece in PIECES {
        body.push_str(&format!(
            "{}\n",
            json!({"model": "m", "message": {"role": "assistant", "content": piece}, "done": false})
        ));
    }
    body.push_str(&format!(
        "{}\n",
        json!({"model": "m", "message": {"role": "assistant", "content": ""}, "done": true, "prompt_eval_count": 7, "eval_count": 4})
    ));
    body
}

async fn stream(providers: &Providers, id: &str, prompt: &str) -> (Result<Streamed, ProviderError>, Vec<String>) {
    let mut chunks = vec![];
    let result = providers
        .stream_with(
            &spec(id, Value::Null),
            &Rendered::Text(prompt.into()),
            &Credentials::environment(),
            &mut |text: &str| chunks.push(text.to_owned()),
        )
        .await;
    (result, chunks)
}

#[tokio::test]
async fn each_wire_streams_the_same_answer_however_it_is_cut() {
    let wires = [
        (
            "openai:chat:gpt-test",
            "/v1/chat/completions",
            "text/event-stream",
            openai_body(),
        ),
        (
            "anthropic:messages:claude-test",
            "/v1/messages",
            "text/event-stream",
            anthropic_body(),
        ),
        (
            "ollama:chat:llama-test",
            "/api/chat",
            "application/x-ndjson",
            ollama_body(),
        ),
    ];
    for (id, path, content_type, body) in wires {
        for every in [1, 3, 5, 64] {
            let sent = body.clone();
            let fake = serve(move |_, _| Reply::stream(content_type, sent.as_bytes(), every)).await;
            let (result, chunks) = stream(&providers(settings(&fake)), id, "Greet the world").await;
            let streamed = result.unwrap_or_else(|e| panic!("{id} cut every {every}: {e}"));
            assert_eq!(chunks, PIECES, "{id} cut every {every}");
            let c = &streamed.completion;
            assert_eq!(
                (c.output.as_str(), c.prompt_tokens, c.completion_tokens),
                (ANSWER, 7, 4),
                "{id}"
            );
            assert!(streamed.first_token <= c.latency);
            let seen = &fake.seen()[0];
            assert_eq!(seen.path, path);
            assert_eq!(seen.body["stream"], true, "{id}: {}", seen.body);
            assert_eq!(seen.body["messages"][0]["content"], "Greet the world");
            match id {
                "openai:chat:gpt-test" => assert_eq!(seen.body["stream_options"], json!({"include_usage": true})),
                "anthropic:messages:claude-test" => assert_eq!(seen.header("x-api-key"), Some(ANTHROPIC_KEY)),
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn a_refusal_before_the_answer_is_its_status_and_no_chunk() {
    let fake = serve(|_, _| Reply::json(401, json!({"error": {"message": "bad key"}}))).await;
    let (result, chunks) = stream(&providers(settings(&fake)), "openai:chat:gpt-test", "Hi").await;
    assert!(
        matches!(result, Err(ProviderError::Status { status: 401, .. })),
        "{result:?}"
    );
    assert!(chunks.is_empty());
    assert_eq!(fake.requests(), 1, "a streamed call is not retried");
}

#[tokio::test]
async fn an_error_sent_mid_answer_fails_it_after_the_chunks_before() {
    let body =
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hal\"}}]}\n\ndata: {\"error\":{\"message\":\"overloaded\"}}\n\n";
    let fake = serve(move |_, _| Reply::stream("text/event-stream", body.as_bytes(), 7)).await;
    let (result, chunks) = stream(&providers(settings(&fake)), "openai:chat:gpt-test", "Hi").await;
    assert!(
        matches!(&result, Err(ProviderError::Interrupted(m)) if m == "overloaded"),
        "{result:?}"
    );
    assert_eq!(chunks, ["Hal"]);
}

#[tokio::test]
async fn a_stalled_answer_times_out() {
    let fake = serve(|_, _| Reply::Stream {
        content_type: "application/x-ndjson",
        pieces: vec![b"{\"message\":{\"content\":\"Hal\"},\"done\":false}\n".to_vec()],
        gap: Duration::ZERO,
        then_hang: true,
    })
    .await;
    let mut s = settings(&fake);
    s.timeout = Duration::from_millis(300);
    let (result, chunks) = stream(&providers(s), "ollama:chat:llama-test", "Hi").await;
    assert!(matches!(result, Err(ProviderError::Timeout(_))), "{result:?}");
    assert_eq!(chunks, ["Hal"]);
}

#[tokio::test]
async fn dropping_the_call_hangs_up_on_the_provider() {
    let fake = serve(|_, _| Reply::Stream {
        content_type: "text/event-stream",
        pieces: vec![b"data: {\"choices\":[{\"delta\":{\"content\":\"Thinking\"}}]}\n\n".to_vec()],
        gap: Duration::ZERO,
        then_hang: true,
    })
    .await;
    let providers = providers(settings(&fake));
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let mut first_tx = Some(first_tx);
    let call = async {
        let mut on_chunk = |_: &str| {
            if let Some(tx) = first_tx.take() {
                let _ = tx.send(());
            }
        };
        providers
            .stream_with(
                &spec("openai:chat:gpt-test", Value::Null),
                &Rendered::Text("Hi".into()),
                &Credentials::environment(),
                &mut on_chunk,
            )
            .await
    };
    tokio::select! {
        result = call => panic!("the answer never ends, yet: {result:?}"),
        _ = first_rx => {}
    }
    for _ in 0..200 {
        if fake.hung_up() == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the provider's connection stayed open after the call was dropped");
}

#[tokio::test]
async fn echo_streams_the_prompt_in_pieces() {
    let fake = serve(|_, _| Reply::Hang).await;
    let (result, chunks) = stream(&providers(settings(&fake)), "echo", "Say hello to Ada").await;
    assert_eq!(chunks.concat(), "Say hello to Ada");
    assert_eq!(chunks.len(), 4);
    assert_eq!(result.unwrap().completion.output, "Say hello to Ada");
    assert_eq!(fake.requests(), 0);
}
