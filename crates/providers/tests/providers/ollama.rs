use crate::common::{providers, serve, settings, spec, Reply};
use crate::scenarios::Wire;
use serde_json::{json, Value};

fn ok(output: &str, prompt_tokens: u32, completion_tokens: u32) -> Value {
    json!({
        "model": "llama-test", "created_at": "2024-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": output},
        "done": true, "done_reason": "stop",
        "prompt_eval_count": prompt_tokens, "eval_count": completion_tokens
    })
}

fn incomplete() -> Value {
    json!({"model": "llama-test", "done": true})
}

const WIRE: Wire = Wire {
    provider: "ollama:chat:llama-test",
    path: "/api/chat",
    ok,
    incomplete,
};

crate::shared_scenarios!(WIRE);

#[tokio::test]
async fn a_chat_sends_the_prompt_unstreamed_with_options_and_reads_the_counts() {
    let fake = serve(|_, _| Reply::json(200, ok("Hallo", 11, 2))).await;
    let config = json!({"temperature": 0, "num_predict": 16, "format": "json"});
    let completion = providers(settings(&fake))
        .complete(&spec(WIRE.provider, config), "Say hello in German")
        .await
        .unwrap();
    assert_eq!(
        (
            completion.output.as_str(),
            completion.prompt_tokens,
            completion.completion_tokens
        ),
        ("Hallo", 11, 2)
    );
    let seen = &fake.seen()[0];
    assert_eq!(seen.path, WIRE.path);
    assert_eq!(
        seen.header("authorization"),
        None,
        "keys of other providers never reach Ollama"
    );
    assert_eq!(
        seen.body,
        json!({
            "model": "llama-test", "stream": false, "format": "json",
            "messages": [{"role": "user", "content": "Say hello in German"}],
            "options": {"temperature": 0, "num_predict": 16}
        })
    );
}

#[tokio::test]
async fn missing_counts_are_zero_as_for_a_cached_prompt() {
    let fake = serve(|_, _| {
        Reply::json(
            200,
            json!({"message": {"role": "assistant", "content": "hi"}, "done": true}),
        )
    })
    .await;
    let completion = providers(settings(&fake))
        .complete(&spec(WIRE.provider, Value::Null), "Hi")
        .await
        .unwrap();
    assert_eq!((completion.prompt_tokens, completion.completion_tokens), (0, 0));
}
