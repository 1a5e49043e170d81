use providers::{PriceTable, ProviderError, ProviderSettings, Providers};
use serde_json::{json, Value};
use std::time::Duration;

fn providers() -> Providers {
    // Nothing listens here; echo must not need it.
    Providers::new(
        ProviderSettings::for_base_url("http://127.0.0.1:9", Duration::from_millis(100)),
        PriceTable::builtin(),
    )
}

#[tokio::test]
async fn echo_returns_the_prompt_and_counts_words_as_tokens() {
    let providers = providers();
    let prompt = "  Hello,\tfriendly \n world  ";
    let completion = providers
        .complete(&crate::common::spec("echo", Value::Null), prompt)
        .await
        .unwrap();
    assert_eq!(completion.output, prompt);
    assert_eq!((completion.prompt_tokens, completion.completion_tokens), (3, 3));
    assert!(completion.latency < Duration::from_secs(1));
    assert_eq!(providers.prices().cost("echo", 3, 3), Some(0));

    let empty = providers
        .complete(&crate::common::spec("echo", json!({})), "")
        .await
        .unwrap();
    assert_eq!((empty.output.as_str(), empty.prompt_tokens), ("", 0));
}

#[tokio::test]
async fn unknown_providers_and_non_object_configs_are_unsupported() {
    let providers = providers();
    for (id, config) in [
        ("gpt-4", Value::Null),
        ("openai:gpt-test", json!("temperature=0")),
        ("openai:embedding:x", Value::Null),
    ] {
        let err = providers
            .complete(&crate::common::spec(id, config), "Hi")
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Unsupported(_)), "{id}: {err:?}");
    }
}
