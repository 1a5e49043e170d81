//! Calls for grading models: a chat completion from several messages (a grading prompt has a
//! system and a user message), and an embedding from an OpenAI-compatible `/embeddings` route
//! (OpenAI, Ollama's `/v1`, vLLM and llama.cpp serve it). Both go through the same settings,
//! keys, concurrency bound, timeout and retries as the tested calls.

use crate::protocol::{self, Protocol, Target};
use crate::{record, Completion, Credentials, ProviderError, Providers};
use domain::prompt::{ChatMessage, ChatRole};
use domain::run::ProviderSpec;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// One message of a grading prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradingMessage {
    pub role: String,
    pub content: String,
}

/// An embedding and what it cost in tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub vector: Vec<f64>,
    pub prompt_tokens: u32,
    pub latency: Duration,
}

/// `openai:embedding:<model>` (or `openai:embeddings:<model>`): the model, when `id` names one.
pub fn embedding_model(id: &str) -> Option<&str> {
    ["openai:embedding:", "openai:embeddings:"]
        .iter()
        .find_map(|prefix| id.strip_prefix(prefix))
        .filter(|model| !model.trim().is_empty())
}

/// Config keys of OpenAI's embeddings request that a grader's config may set.
const EMBEDDING_OPTIONS: &[&str] = &["dimensions", "encoding_format", "user"];

impl Providers {
    /// Sends `messages` in order to the chat provider `spec` names, as a chat prompt is sent
    /// (system messages go to Anthropic's top-level `system`). `echo` answers with the last
    /// message's content.
    pub async fn complete_messages(
        &self,
        spec: &ProviderSpec,
        messages: &[GradingMessage],
        credentials: &Credentials,
    ) -> Result<Completion, ProviderError> {
        let chat = messages
            .iter()
            .map(|m| {
                let role: ChatRole = serde_json::from_value(json!(m.role))
                    .map_err(|_| ProviderError::Unsupported(format!("{:?} is not a chat role", m.role)))?;
                Ok(ChatMessage {
                    role,
                    content: m.content.clone(),
                })
            })
            .collect::<Result<Vec<_>, ProviderError>>()?;
        let last = messages.last().map(|m| m.content.as_str()).unwrap_or_default();
        self.converse(spec, &chat, last, credentials).await
    }

    /// The embedding of `text` from the model `spec` names (`openai:embedding:<model>`), through
    /// the OpenAI-compatible base URL and key (or the config's `apiBaseUrl`, without the key).
    #[tracing::instrument(skip_all, fields(provider = %spec.id), err(Display))]
    pub async fn embed(
        &self,
        spec: &ProviderSpec,
        text: &str,
        credentials: &Credentials,
    ) -> Result<Embedding, ProviderError> {
        let model = embedding_model(&spec.id).ok_or_else(|| {
            ProviderError::Unsupported(format!(
                "{:?} is not an embedding model; use openai:embedding:<model>",
                spec.id
            ))
        })?;
        let target = Target {
            protocol: Protocol::OpenAi,
            model,
        };
        let mut request = self
            .request(target, &spec.config, &[], credentials)
            .inspect_err(|error| {
                record(&spec.id, &Err(error), None);
            })?;
        let base = request
            .url
            .strip_suffix("/chat/completions")
            .unwrap_or(&request.url)
            .to_owned();
        request.url = format!("{base}/embeddings");
        let config = protocol::config_map(&spec.config)?;
        let mut body = json!({ "model": model, "input": text });
        for key in EMBEDDING_OPTIONS {
            if let Some(value) = config.get(*key) {
                body[*key] = value.clone();
            }
        }
        request.body = body;
        let started = Instant::now();
        let result = self
            .send(&spec.id, &request)
            .await
            .and_then(|(body, latency)| embedding_answer(&body, latency));
        record(&spec.id, &result.as_ref().map(|_| ()), Some(started.elapsed()));
        result
    }

    /// Sends under the provider id's concurrency bound, with retries.
    async fn send(&self, provider_id: &str, request: &crate::Request) -> Result<(Value, Duration), ProviderError> {
        let semaphore = self.semaphore(provider_id);
        let _permit = semaphore.acquire().await.expect("provider semaphores are never closed");
        self.send_with_retries(provider_id, request).await
    }
}

/// Replaces the single user message a request was built with by `messages`.
fn embedding_answer(body: &Value, latency: Duration) -> Result<Embedding, ProviderError> {
    let vector = body
        .pointer("/data/0/embedding")
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::Malformed("there is no data[0].embedding".into()))?
        .iter()
        .map(Value::as_f64)
        .collect::<Option<Vec<f64>>>()
        .ok_or_else(|| ProviderError::Malformed("data[0].embedding is not a list of numbers".into()))?;
    if vector.is_empty() {
        return Err(ProviderError::Malformed("data[0].embedding is empty".into()));
    }
    let prompt_tokens = body
        .pointer("/usage/prompt_tokens")
        .and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        .unwrap_or(0);
    Ok(Embedding {
        vector,
        prompt_tokens,
        latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_ids_name_their_model() {
        assert_eq!(
            embedding_model("openai:embedding:text-embedding-3-small"),
            Some("text-embedding-3-small")
        );
        assert_eq!(embedding_model("openai:embeddings:nomic"), Some("nomic"));
        assert_eq!(embedding_model("openai:embedding: "), None);
        assert_eq!(embedding_model("openai:gpt-4o"), None);
    }

    #[test]
    fn grading_messages_go_as_a_chat_prompt_and_anthropic_gets_its_system_apart() {
        let messages = [
            ChatMessage {
                role: ChatRole::System,
                content: "Grade".into(),
            },
            ChatMessage {
                role: ChatRole::User,
                content: "Output".into(),
            },
        ];
        let body = protocol::openai_body("m", &messages, &Default::default());
        assert_eq!(
            body["messages"],
            json!([{"role": "system", "content": "Grade"}, {"role": "user", "content": "Output"}])
        );
        let body = protocol::anthropic_body("m", &messages, &Default::default());
        assert_eq!(body["system"], "Grade");
        assert_eq!(body["messages"], json!([{"role": "user", "content": "Output"}]));
    }

    #[test]
    fn embedding_answers_are_read_or_malformed() {
        let e = embedding_answer(
            &json!({"data": [{"embedding": [0.5, -1]}], "usage": {"prompt_tokens": 3}}),
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!((e.vector, e.prompt_tokens), (vec![0.5, -1.0], 3));
        assert!(embedding_answer(&json!({"data": []}), Duration::ZERO).is_err());
        assert!(embedding_answer(&json!({"data": [{"embedding": ["x"]}]}), Duration::ZERO).is_err());
    }
}
