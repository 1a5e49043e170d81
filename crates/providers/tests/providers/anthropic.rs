use crate::common::{providers, serve, settings, spec, Reply, ANTHROPIC_KEY};
use crate::scenarios::Wire;
use providers::ProviderError;
use serde_json::{json, Value};

fn ok(output: &str, prompt_tokens: u32, completion_tokens: u32) -> Value {
    json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": output}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens}
    })
}

fn incomplete() -> Value {
    json!({"id": "msg_1", "type": "message", "usage": {"input_tokens": 1, "output_tokens": 1}})
}

const WIRE: Wire = Wire {
    provider: "anthropic:messages:claude-test",
    path: "/v1/messages",
    ok,
    incomplete,
};

crate::shared_scenarios!(WIRE);

#[tokio::test]
async fn a_message_sends_key_version_and_prompt_and_joins_text_blocks() {
    let fake = serve(|_, _| {
        Reply::json(
            200,
            json!({
                "type": "message", "role": "assistant",
                "content": [
                    {"type": "text", "text": "Hello, "},
                    {"type": "tool_use", "id": "t1", "name": "lookup", "input": {}},
                    {"type": "text", "text": "world"}
                ],
                "usage": {"input_tokens": 9, "output_tokens": 5}
            }),
        )
    })
    .await;
    let completion = providers(settings(&fake))
        .complete(&spec(WIRE.provider, json!({"temperature": 0})), "Greet the world")
        .await
        .unwrap();
    assert_eq!(
        (
            completion.output.as_str(),
            completion.prompt_tokens,
            completion.completion_tokens
        ),
        ("Hello, world", 9, 5)
    );
    let seen = &fake.seen()[0];
    assert_eq!(seen.path, WIRE.path);
    assert_eq!(seen.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(
        seen.body,
        json!({
            "model": "claude-test", "max_tokens": 1024, "temperature": 0,
            "messages": [{"role": "user", "content": "Greet the world"}]
        })
    );
}

#[tokio::test]
async fn max_tokens_comes_from_config_when_set() {
    let fake = serve(|_, _| Reply::json(200, ok("short", 1, 1))).await;
    providers(settings(&fake))
        .complete(&spec(WIRE.provider, json!({"max_tokens": 50})), "Hi")
        .await
        .unwrap();
    assert_eq!(fake.seen()[0].body["max_tokens"], 50);
}

#[tokio::test]
async fn a_missing_key_is_an_error_and_nothing_is_sent() {
    let fake = serve(|_, _| Reply::json(200, ok("unreachable", 1, 1))).await;
    let mut settings = settings(&fake);
    settings.anthropic_api_key = None;
    let err = providers(settings)
        .complete(&spec(WIRE.provider, Value::Null), "Hi")
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::MissingApiKey("ANTHROPIC_API_KEY"));
    assert_eq!(
        err.to_string(),
        "ANTHROPIC_API_KEY is not set, so this provider cannot be called"
    );
    assert_eq!(fake.requests(), 0);
}
