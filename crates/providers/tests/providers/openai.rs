use crate::common::{dead_url, providers, serve, settings, spec, Reply, OPENAI_KEY};
use crate::scenarios::Wire;
use providers::{ProviderError, ProviderSettings};
use serde_json::{json, Value};
use std::time::Duration;

fn ok(output: &str, prompt_tokens: u32, completion_tokens: u32) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": output}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
    })
}

fn incomplete() -> Value {
    json!({"id": "chatcmpl-1", "choices": []})
}

const WIRE: Wire = Wire {
    provider: "openai:gpt-test",
    path: "/v1/chat/completions",
    ok,
    incomplete,
};

crate::shared_scenarios!(WIRE);

#[tokio::test]
async fn a_chat_completion_sends_the_prompt_and_reads_output_and_usage() {
    let fake = serve(|_, _| Reply::json(200, ok("Bonjour", 12, 4))).await;
    let config = json!({"temperature": 0.1, "max_tokens": 20, "top_p": 0.9, "notAnOption": true});
    let completion = providers(settings(&fake))
        .complete(&spec("openai:gpt-test", config), "Say hello in French")
        .await
        .unwrap();
    assert_eq!(
        (
            completion.output.as_str(),
            completion.prompt_tokens,
            completion.completion_tokens
        ),
        ("Bonjour", 12, 4)
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, WIRE.path);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert_eq!(
        seen[0].body,
        json!({
            "model": "gpt-test",
            "messages": [{"role": "user", "content": "Say hello in French"}],
            "temperature": 0.1, "max_tokens": 20, "top_p": 0.9
        })
    );
}

#[tokio::test]
async fn a_local_compatible_server_needs_no_key() {
    let fake = serve(|_, _| Reply::json(200, ok("ok", 1, 1))).await;
    let mut settings = settings(&fake);
    settings.openai_api_key = None;
    let completion = providers(settings)
        .complete(&spec("openai:chat:llama3", Value::Null), "Hi")
        .await
        .unwrap();
    assert_eq!(completion.output, "ok");
    let seen = fake.seen();
    assert_eq!(seen[0].header("authorization"), None);
    assert_eq!(seen[0].body["model"], "llama3", "openai:chat:<model> names the model");
}

#[tokio::test]
async fn api_openai_com_without_a_key_is_refused_before_any_request() {
    let fake = serve(|_, _| Reply::json(200, ok("unreachable", 1, 1))).await;
    let mut settings = settings(&fake);
    settings.openai_base_url = "https://api.openai.com/v1".into();
    settings.openai_api_key = None;
    let err = providers(settings)
        .complete(&spec("openai:gpt-4o-mini", Value::Null), "Hi")
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::MissingApiKey("OPENAI_API_KEY"));
}

#[tokio::test]
async fn a_config_base_url_is_called_without_the_configured_key() {
    let fake = serve(|_, _| Reply::json(200, ok("from the override", 1, 1))).await;
    let mut settings = settings(&fake);
    settings.openai_base_url = dead_url().await;
    let config = json!({"apiBaseUrl": format!("{}/v1", fake.url)});
    let completion = providers(settings.clone())
        .complete(&spec("openai:gpt-test", config.clone()), "Hi")
        .await
        .unwrap();
    assert_eq!(completion.output, "from the override");
    let seen = fake.seen();
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(
        seen[0].header("authorization"),
        None,
        "the runner's key is not sent to a URL a config chose"
    );

    settings.allow_base_url_override = false;
    let err = providers(settings)
        .complete(&spec("openai:gpt-test", config), "Hi")
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Unsupported(_)), "{err:?}");
    assert_eq!(fake.requests(), 1);
}

#[tokio::test]
async fn an_api_key_in_config_is_refused() {
    let fake = serve(|_, _| Reply::json(200, ok("unreachable", 1, 1))).await;
    let err = providers(settings(&fake))
        .complete(&spec("openai:gpt-test", json!({"apiKey": "sk-from-config"})), "Hi")
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Unsupported(_)), "{err:?}");
    assert!(!err.to_string().contains("sk-from-config"));
    assert_eq!(fake.requests(), 0);
}

#[tokio::test]
async fn an_unreachable_server_is_a_transport_error_after_retries() {
    let mut settings = ProviderSettings::for_base_url(&dead_url().await, Duration::from_secs(5));
    settings.max_retries = 1;
    let err = providers(settings)
        .complete(&spec("openai:gpt-test", Value::Null), "Hi")
        .await
        .unwrap_err();
    let ProviderError::Transport(message) = &err else {
        panic!("{err:?}")
    };
    assert!(message.to_lowercase().contains("connect"), "{message}");
    assert!(
        !message.contains("127.0.0.1"),
        "the URL stays out of the message: {message}"
    );
}
