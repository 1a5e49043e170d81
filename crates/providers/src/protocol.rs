//! The three wire protocols: which provider ids map to which, the request each sends and how
//! each answer is read. Pure functions, so the shapes are testable without a server.

use crate::ProviderError;
use domain::prompt::{ChatMessage, ChatRole};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Echo,
    OpenAi,
    Anthropic,
    Ollama,
}

/// A provider id split into its protocol and model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target<'a> {
    pub protocol: Protocol,
    pub model: &'a str,
}

/// promptfoo's OpenAI provider kinds other than chat. `openai:chat:<model>` means chat; any other
/// `openai:<rest>` is a model name, which may itself contain colons (`ft:gpt-4o-mini:org::id`).
const OPENAI_OTHER_KINDS: &[&str] = &[
    "completion",
    "embedding",
    "embeddings",
    "responses",
    "assistant",
    "image",
    "realtime",
    "moderation",
    "transcription",
];

pub(crate) fn parse_id<'a>(id: &'a str) -> Result<Target<'a>, ProviderError> {
    let unsupported = || {
        ProviderError::Unsupported(format!(
            "{id:?} is not a supported provider; use echo, openai:<model>, ollama:chat:<model> or anthropic:messages:<model>"
        ))
    };
    let target = |protocol, model: &'a str| -> Result<Target<'a>, ProviderError> {
        if model.trim().is_empty() {
            return Err(unsupported());
        }
        Ok(Target { protocol, model })
    };
    if id == "echo" {
        return Ok(Target {
            protocol: Protocol::Echo,
            model: "",
        });
    }
    if let Some(rest) = id.strip_prefix("openai:") {
        if let Some(model) = rest.strip_prefix("chat:") {
            return target(Protocol::OpenAi, model);
        }
        if let Some((kind, _)) = rest.split_once(':') {
            if OPENAI_OTHER_KINDS.contains(&kind) {
                return Err(ProviderError::Unsupported(format!(
                    "{id:?}: only OpenAI chat completions are supported, not {kind}"
                )));
            }
        }
        return target(Protocol::OpenAi, rest);
    }
    if let Some(model) = id.strip_prefix("ollama:chat:") {
        return target(Protocol::Ollama, model);
    }
    if let Some(model) = id.strip_prefix("anthropic:messages:") {
        return target(Protocol::Anthropic, model);
    }
    Err(unsupported())
}

/// Config keys that choose where and how to authenticate rather than what to generate.
const BASE_URL_KEYS: &[&str] = &["apiBaseUrl", "base_url"];

/// Keys are never taken from a provider's config: the config is recorded with the run for
/// anyone in the workspace to read, and `apiKeyEnvar` would let a member send any of the
/// runner's environment variables to a host of their choosing.
const REFUSED_KEYS: &[&str] = &["apiKey", "api_key", "apiKeyEnvar"];

/// The config as an object; `null` (no config) is an empty one.
pub(crate) fn config_map(config: &Value) -> Result<Map<String, Value>, ProviderError> {
    let map = match config {
        Value::Null => Map::new(),
        Value::Object(map) => map.clone(),
        _ => {
            return Err(ProviderError::Unsupported(
                "a provider's config must be a JSON object".into(),
            ))
        }
    };
    if let Some(key) = REFUSED_KEYS.iter().find(|k| map.contains_key(**k)) {
        return Err(ProviderError::Unsupported(format!(
            "config.{key} is not accepted: API keys come from the runner's environment, so they are never recorded with a run"
        )));
    }
    Ok(map)
}

/// `config.apiBaseUrl` (promptfoo's name) or `config.base_url`, when set.
pub(crate) fn base_url_override(config: &Map<String, Value>) -> Result<Option<String>, ProviderError> {
    for key in BASE_URL_KEYS {
        match config.get(*key) {
            None | Some(Value::Null) => continue,
            Some(Value::String(url)) => {
                return crate::settings::base_url("config base URL", url)
                    .map(Some)
                    .map_err(|_| ProviderError::Unsupported(format!("config.{key} must be an http or https URL")));
            }
            Some(_) => return Err(ProviderError::Unsupported(format!("config.{key} must be a string"))),
        }
    }
    Ok(None)
}

fn chat(messages: &[ChatMessage]) -> Value {
    json!(messages)
}

/// Copies `keys` present in `config` into `body`, after promptfoo's `passthrough` object, so a
/// config can add fields this crate does not know but never replace `model` or `messages`.
fn body_with(config: &Map<String, Value>, keys: &[&str], fixed: Value) -> Value {
    let mut body = match config.get("passthrough") {
        Some(Value::Object(extra)) => extra.clone(),
        _ => Map::new(),
    };
    for key in keys {
        if let Some(value) = config.get(*key) {
            body.insert((*key).to_owned(), value.clone());
        }
    }
    if let Value::Object(fixed) = fixed {
        body.extend(fixed);
    }
    Value::Object(body)
}

/// Sampling options of OpenAI's chat completions that a config may set.
const OPENAI_OPTIONS: &[&str] = &[
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "stop",
    "seed",
    "response_format",
    "logit_bias",
    "reasoning_effort",
    "user",
];

pub(crate) fn openai_body(model: &str, prompt: &[ChatMessage], config: &Map<String, Value>) -> Value {
    body_with(
        config,
        OPENAI_OPTIONS,
        json!({ "model": model, "messages": chat(prompt) }),
    )
}

const ANTHROPIC_OPTIONS: &[&str] = &["temperature", "top_p", "top_k", "stop_sequences", "system", "metadata"];

/// Anthropic requires `max_tokens`; promptfoo's default is 1024 too.
pub(crate) const ANTHROPIC_DEFAULT_MAX_TOKENS: u32 = 1024;

pub(crate) fn anthropic_body(model: &str, prompt: &[ChatMessage], config: &Map<String, Value>) -> Value {
    let max_tokens = config
        .get("max_tokens")
        .cloned()
        .unwrap_or(json!(ANTHROPIC_DEFAULT_MAX_TOKENS));
    // Anthropic takes system prompts beside the messages, not among them.
    let (system, rest): (Vec<&ChatMessage>, Vec<&ChatMessage>) =
        prompt.iter().partition(|m| m.role == ChatRole::System);
    let mut fixed = json!({ "model": model, "max_tokens": max_tokens, "messages": rest });
    if !system.is_empty() && !config.contains_key("system") {
        let text: Vec<&str> = system.iter().map(|m| m.content.as_str()).collect();
        fixed["system"] = Value::from(text.join("\n\n"));
    }
    body_with(config, ANTHROPIC_OPTIONS, fixed)
}

/// Fields of Ollama's `/api/chat` that sit beside `options` rather than inside it.
const OLLAMA_TOP_LEVEL: &[&str] = &["format", "keep_alive", "think"];

/// Everything else in the config is a model option (`temperature`, `num_predict`, `num_ctx`, ...),
/// as in promptfoo; Ollama ignores options it does not know.
pub(crate) fn ollama_body(model: &str, prompt: &[ChatMessage], config: &Map<String, Value>) -> Value {
    let options: Map<String, Value> = config
        .iter()
        .filter(|(k, _)| {
            !OLLAMA_TOP_LEVEL.contains(&k.as_str())
                && !BASE_URL_KEYS.contains(&k.as_str())
                && k.as_str() != "passthrough"
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut fixed = json!({ "model": model, "messages": chat(prompt), "stream": false });
    if !options.is_empty() {
        fixed["options"] = Value::Object(options);
    }
    body_with(config, OLLAMA_TOP_LEVEL, fixed)
}

/// What an answer says, before latency is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub output: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// A token count; absent counts are 0 because OpenAI-compatible servers and Ollama (for a cached
/// prompt) leave them out.
fn count(value: &Value, pointer: &str) -> Result<u32, ProviderError> {
    match value.pointer(pointer) {
        None | Some(Value::Null) => Ok(0),
        Some(n) => n
            .as_u64()
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .ok_or_else(|| ProviderError::Malformed(format!("{pointer} is not a whole number"))),
    }
}

pub(crate) fn openai_answer(body: &Value) -> Result<Answer, ProviderError> {
    let message = body
        .pointer("/choices/0/message")
        .ok_or_else(|| ProviderError::Malformed("there is no choices[0].message".into()))?;
    // A refusal comes with a null content and the reason in `refusal`; it is the model's answer.
    let output = match (message.get("content"), message.get("refusal")) {
        (Some(Value::String(content)), _) => content.clone(),
        (_, Some(Value::String(refusal))) => refusal.clone(),
        _ => {
            return Err(ProviderError::Malformed(
                "choices[0].message.content is not text".into(),
            ))
        }
    };
    Ok(Answer {
        output,
        prompt_tokens: count(body, "/usage/prompt_tokens")?,
        completion_tokens: count(body, "/usage/completion_tokens")?,
    })
}

pub(crate) fn anthropic_answer(body: &Value) -> Result<Answer, ProviderError> {
    let blocks = body
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::Malformed("content is not a list of blocks".into()))?;
    let mut output = String::new();
    for block in blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
    {
        let text = block
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::Malformed("a text block has no text".into()))?;
        output.push_str(text);
    }
    Ok(Answer {
        output,
        prompt_tokens: count(body, "/usage/input_tokens")?,
        completion_tokens: count(body, "/usage/output_tokens")?,
    })
}

pub(crate) fn ollama_answer(body: &Value) -> Result<Answer, ProviderError> {
    let output = body
        .pointer("/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::Malformed("message.content is not text".into()))?;
    Ok(Answer {
        output: output.to_owned(),
        prompt_tokens: count(body, "/prompt_eval_count")?,
        completion_tokens: count(body, "/eval_count")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_split_into_protocol_and_model() {
        let t = |id| parse_id(id).map(|t| (t.protocol, t.model.to_owned()));
        assert_eq!(t("echo").unwrap().0, Protocol::Echo);
        assert_eq!(
            t("openai:gpt-4o-mini").unwrap(),
            (Protocol::OpenAi, "gpt-4o-mini".into())
        );
        assert_eq!(t("openai:chat:gpt-4o").unwrap(), (Protocol::OpenAi, "gpt-4o".into()));
        assert_eq!(
            t("openai:ft:gpt-4o-mini:acme::abc").unwrap().1,
            "ft:gpt-4o-mini:acme::abc"
        );
        assert_eq!(
            t("ollama:chat:llama3.2:1b").unwrap(),
            (Protocol::Ollama, "llama3.2:1b".into())
        );
        assert_eq!(
            t("anthropic:messages:claude-3-5-haiku-20241022").unwrap(),
            (Protocol::Anthropic, "claude-3-5-haiku-20241022".into())
        );
        for bad in [
            "gpt4",
            "openai:",
            "openai:chat: ",
            "openai:embedding:text-embedding-3-small",
            "ollama:llama3",
            "",
        ] {
            assert!(matches!(parse_id(bad), Err(ProviderError::Unsupported(_))), "{bad}");
        }
    }

    #[test]
    fn config_options_reach_the_body_but_never_replace_model_or_messages() {
        let config = config_map(&json!({
            "temperature": 0.2, "max_tokens": 50, "apiBaseUrl": "http://x", "unknown": 1,
            "passthrough": { "model": "other", "logprobs": true }
        }))
        .unwrap();
        let hi = [ChatMessage {
            role: ChatRole::User,
            content: "Hi".into(),
        }];
        let body = openai_body("gpt-4o-mini", &hi, &config);
        assert_eq!(
            body,
            json!({ "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}],
                    "temperature": 0.2, "max_tokens": 50, "logprobs": true })
        );
        let body = anthropic_body("claude", &hi, &config_map(&Value::Null).unwrap());
        assert_eq!(body["max_tokens"], 1024);
        let chat = [
            ChatMessage {
                role: ChatRole::System,
                content: "Be brief".into(),
            },
            hi[0].clone(),
        ];
        let body = anthropic_body("claude", &chat, &config_map(&Value::Null).unwrap());
        assert_eq!(body["system"], "Be brief");
        assert_eq!(body["messages"], json!([{"role": "user", "content": "Hi"}]));
        let body = openai_body("gpt-4o-mini", &chat, &config);
        assert_eq!(body["messages"][0], json!({"role": "system", "content": "Be brief"}));
        let body = ollama_body(
            "llama3",
            &hi,
            &config_map(&json!({"temperature": 0, "format": "json", "base_url": "http://x"})).unwrap(),
        );
        assert_eq!(body["options"], json!({"temperature": 0}));
        assert_eq!(
            (body["format"].clone(), body["stream"].clone()),
            (json!("json"), json!(false))
        );
    }

    #[test]
    fn keys_in_config_are_refused() {
        for key in ["apiKey", "apiKeyEnvar"] {
            let err = config_map(&json!({ key: "sk-in-config" })).unwrap_err();
            assert!(!err.to_string().contains("sk-in-config"));
        }
        assert!(config_map(&json!("a string")).is_err());
    }

    #[test]
    fn answers_missing_their_output_are_malformed() {
        assert!(matches!(
            openai_answer(&json!({"choices": []})),
            Err(ProviderError::Malformed(_))
        ));
        assert!(matches!(
            anthropic_answer(&json!({"content": "hi"})),
            Err(ProviderError::Malformed(_))
        ));
        assert!(matches!(
            ollama_answer(&json!({"message": {}})),
            Err(ProviderError::Malformed(_))
        ));
        assert!(matches!(
            openai_answer(&json!({"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": "3"}})),
            Err(ProviderError::Malformed(_))
        ));
        let refusal = openai_answer(&json!({"choices": [{"message": {"content": null, "refusal": "No."}}]})).unwrap();
        assert_eq!((refusal.output.as_str(), refusal.prompt_tokens), ("No.", 0));
    }
}
