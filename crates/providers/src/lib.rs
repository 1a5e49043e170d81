//! Provider adapters: send a rendered prompt to `echo`, an OpenAI-compatible chat completions
//! endpoint, Anthropic's messages API or Ollama's chat API, and read back the output and token
//! counts. [`Providers::complete`] bounds concurrency per provider id, times out each attempt and
//! retries what is worth retrying; [`PriceTable`] turns token counts into micro-USD.
//!
//! Metrics: `runner_provider_calls_total{provider, outcome}` counts each call once as `ok`,
//! `error` or `timeout`, and each retried attempt as `retry`; `runner_provider_call_seconds{provider}`
//! times each call from getting its concurrency slot to its end, retries and backoff included.

mod error;
mod grading;
mod prices;
mod protocol;
mod settings;
mod streaming;

pub use error::{ConfigError, ProviderError};
pub use grading::{embedding_model, Embedding, GradingMessage};
pub use prices::{Price, PriceTable};
pub use settings::ProviderSettings;

use domain::prompt::{ChatMessage, ChatRole, Rendered};
use domain::run::ProviderSpec;
use futures::StreamExt;
use protocol::{Protocol, Target};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;
use service::Secret;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// A provider's answer to one prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub output: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// How long the attempt that answered took: queueing for a concurrency slot, failed
    /// attempts and backoff are not included, so `latency` assertions judge the provider.
    pub latency: Duration,
}

/// A streamed answer: the whole of it, and how long its first chunk took to arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streamed {
    /// `latency` runs from sending the request to the answer's end.
    pub completion: Completion,
    pub first_token: Duration,
}

/// A longer `Retry-After` than this is not waited for: the call fails with the 429 (or 5xx)
/// instead of holding a concurrency slot for minutes.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The longest exponential backoff delay, before jitter.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A larger answer is refused rather than buffered.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// How much of an error body an error message quotes.
const MAX_QUOTED_CHARS: usize = 1_000;

const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A workspace's own settings for one provider.
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    /// Replaces the environment's base URL for this provider.
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
}

/// What a call authenticates with, per provider: the workspace's own settings where it has
/// them; elsewhere the environment's base URLs, and its keys only when the operator allows.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub openai: Option<Endpoint>,
    pub anthropic: Option<Endpoint>,
    pub ollama: Option<Endpoint>,
    /// Whether the environment's keys serve providers the workspace set nothing for.
    pub environment_keys: bool,
}

impl Credentials {
    /// The environment's keys and base URLs, as tools and tests call providers.
    pub fn environment() -> Self {
        Self {
            environment_keys: true,
            ..Self::default()
        }
    }

    fn key_name(&self, variable: &'static str, workspace: &'static str) -> &'static str {
        if self.environment_keys {
            variable
        } else {
            workspace
        }
    }
}

/// Calls providers. Share one per process (it is `Send + Sync`; wrap it in an `Arc`), so that
/// the concurrency bound of a provider holds across every run.
pub struct Providers {
    http: reqwest::Client,
    settings: ProviderSettings,
    prices: PriceTable,
    /// One semaphore per provider id, created on first use, with
    /// `settings.max_concurrency_per_provider` permits. The mutex guards only the map and is
    /// released before any await.
    semaphores: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Providers {
    /// # Panics
    /// When the HTTP client cannot be built, which happens only when the system's root
    /// certificate store exists but holds no valid certificate. See [`Providers::try_new`].
    pub fn new(settings: ProviderSettings, prices: PriceTable) -> Self {
        Self::try_new(settings, prices).expect("the HTTP client for providers builds")
    }

    pub fn try_new(settings: ProviderSettings, prices: PriceTable) -> Result<Self, ConfigError> {
        let http = reqwest::Client::builder()
            // A redirect would carry `x-api-key` to wherever it points; providers do not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError::Invalid {
                name: "HTTP client",
                reason: e.to_string(),
            })?;
        Ok(Self {
            http,
            settings,
            prices,
            semaphores: Mutex::default(),
        })
    }

    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    /// [`Providers::complete_with`] the environment's keys and base URLs.
    pub async fn complete(&self, spec: &ProviderSpec, prompt: &str) -> Result<Completion, ProviderError> {
        self.complete_with(spec, prompt, &Credentials::environment()).await
    }

    /// Sends `prompt` as a single user message to the provider `spec` names and returns its
    /// answer, authenticated with `credentials`. Waits for one of the provider id's concurrency
    /// slots first, and keeps it through retries, so a rate-limited provider gets fewer
    /// requests rather than more.
    pub async fn complete_with(
        &self,
        spec: &ProviderSpec,
        prompt: &str,
        credentials: &Credentials,
    ) -> Result<Completion, ProviderError> {
        let message = ChatMessage {
            role: ChatRole::User,
            content: prompt.to_owned(),
        };
        self.converse(spec, std::slice::from_ref(&message), prompt, credentials)
            .await
    }

    /// Sends a chat prompt's messages, in order, to the provider `spec` names, authenticated
    /// with `credentials`. `echo` answers with the messages as a JSON array, the form promptfoo
    /// gives a chat prompt. System messages go where each API wants them (Anthropic's
    /// top-level `system`).
    pub async fn complete_chat_with(
        &self,
        spec: &ProviderSpec,
        messages: &[ChatMessage],
        credentials: &Credentials,
    ) -> Result<Completion, ProviderError> {
        let text = serde_json::to_string(messages).expect("messages serialize");
        self.converse(spec, messages, &text, credentials).await
    }

    #[tracing::instrument(skip_all, fields(provider = %spec.id), err(Display))]
    async fn converse(
        &self,
        spec: &ProviderSpec,
        messages: &[ChatMessage],
        echoed: &str,
        credentials: &Credentials,
    ) -> Result<Completion, ProviderError> {
        let target = protocol::parse_id(&spec.id)?;
        if target.protocol == Protocol::Echo {
            let completion = echo(echoed);
            record(&spec.id, &Ok(()), Some(completion.latency));
            return Ok(completion);
        }
        // From here the id is a valid one, so it is a bounded metrics label; an unknown id
        // (refused above) would let any request mint a new time series.
        let request = match self.request(target, &spec.config, messages, credentials) {
            Ok(request) => request,
            Err(error) => {
                record(&spec.id, &Err(&error), None);
                return Err(error);
            }
        };
        let semaphore = self.semaphore(&spec.id);
        let _permit = semaphore.acquire().await.expect("provider semaphores are never closed");
        let started = Instant::now();
        let result = self
            .send_with_retries(&spec.id, &request)
            .await
            .and_then(|(body, latency)| {
                let answer = match target.protocol {
                    Protocol::OpenAi => protocol::openai_answer(&body),
                    Protocol::Anthropic => protocol::anthropic_answer(&body),
                    Protocol::Ollama => protocol::ollama_answer(&body),
                    Protocol::Echo => unreachable!("echo answers above"),
                }?;
                Ok(Completion {
                    output: answer.output,
                    prompt_tokens: answer.prompt_tokens,
                    completion_tokens: answer.completion_tokens,
                    latency,
                })
            });
        record(&spec.id, &result.as_ref().map(|_| ()), Some(started.elapsed()));
        result
    }

    /// Sends a prompt with streaming turned on and hands each piece of the answer's text to
    /// `on_chunk` as it arrives (never an empty piece), then returns the whole answer. `echo`
    /// answers with the prompt (a chat prompt as its JSON array) in word-sized pieces. Nothing
    /// is retried, since pieces may already have been handed on; the attempt timeout bounds
    /// the wait for the answer to begin and each wait between pieces. Dropping the future
    /// closes the connection, which is how an execution is cancelled.
    #[tracing::instrument(skip_all, fields(provider = %spec.id), err(Display))]
    pub async fn stream_with(
        &self,
        spec: &ProviderSpec,
        prompt: &Rendered,
        credentials: &Credentials,
        on_chunk: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Streamed, ProviderError> {
        let messages = match prompt {
            Rendered::Text(text) => vec![ChatMessage {
                role: ChatRole::User,
                content: text.clone(),
            }],
            Rendered::Chat(messages) => messages.clone(),
        };
        let target = protocol::parse_id(&spec.id)?;
        if target.protocol == Protocol::Echo {
            let started = Instant::now();
            let text = prompt.to_prompt_string();
            for piece in text.split_inclusive(char::is_whitespace) {
                on_chunk(piece);
            }
            let mut completion = echo(&text);
            completion.latency = started.elapsed();
            record(&spec.id, &Ok(()), Some(completion.latency));
            return Ok(Streamed {
                first_token: completion.latency,
                completion,
            });
        }
        let mut request = match self.request(target, &spec.config, &messages, credentials) {
            Ok(request) => request,
            Err(error) => {
                record(&spec.id, &Err(&error), None);
                return Err(error);
            }
        };
        request.body["stream"] = Value::Bool(true);
        if target.protocol == Protocol::OpenAi {
            request.body["stream_options"] = serde_json::json!({ "include_usage": true });
        }
        let semaphore = self.semaphore(&spec.id);
        let _permit = semaphore.acquire().await.expect("provider semaphores are never closed");
        let started = Instant::now();
        let result = self.read_stream(target.protocol, &request, started, on_chunk).await;
        record(&spec.id, &result.as_ref().map(|_| ()), Some(started.elapsed()));
        result
    }

    async fn read_stream(
        &self,
        protocol: Protocol,
        request: &Request,
        started: Instant,
        on_chunk: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Streamed, ProviderError> {
        let secret = request.secret.as_ref();
        let timeout = self.settings.timeout;
        let send = self
            .http
            .post(&request.url)
            .headers(request.headers.clone())
            .json(&request.body)
            .send();
        let response = tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| ProviderError::Timeout(timeout))?
            .map_err(|e| match transport(e, secret) {
                Failure::Retryable { error, .. } | Failure::Final(error) => error,
            })?;
        let status = response.status();
        if !status.is_success() {
            let body = tokio::time::timeout(timeout, response.bytes())
                .await
                .map_err(|_| ProviderError::Timeout(timeout))?
                .unwrap_or_default();
            return Err(ProviderError::Status {
                status: status.as_u16(),
                body: quote(&body, secret),
            });
        }
        let mut deltas = streaming::deltas(protocol, response.bytes_stream());
        let (mut output, mut first_token) = (String::new(), None);
        let (mut prompt_tokens, mut completion_tokens) = (0, 0);
        loop {
            let delta = match tokio::time::timeout(timeout, deltas.next()).await {
                Err(_) => return Err(ProviderError::Timeout(timeout)),
                Ok(None) => break,
                Ok(Some(delta)) => delta.map_err(|error| match error {
                    ProviderError::Interrupted(message) => ProviderError::Interrupted(redact(&message, secret)),
                    other => other,
                })?,
            };
            if let Some(text) = delta.text.filter(|t| !t.is_empty()) {
                first_token.get_or_insert_with(|| started.elapsed());
                if output.len() + text.len() > MAX_BODY_BYTES {
                    return Err(ProviderError::Malformed(format!(
                        "the answer is larger than {MAX_BODY_BYTES} bytes"
                    )));
                }
                on_chunk(&text);
                output.push_str(&text);
            }
            prompt_tokens = delta.prompt_tokens.unwrap_or(prompt_tokens);
            completion_tokens = delta.completion_tokens.unwrap_or(completion_tokens);
            if delta.done {
                break;
            }
        }
        let latency = started.elapsed();
        Ok(Streamed {
            completion: Completion {
                output,
                prompt_tokens,
                completion_tokens,
                latency,
            },
            first_token: first_token.unwrap_or(latency),
        })
    }

    fn semaphore(&self, provider_id: &str) -> Arc<Semaphore> {
        let mut semaphores = self.semaphores.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        semaphores
            .entry(provider_id.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.max_concurrency_per_provider)))
            .clone()
    }

    /// Builds the HTTP request for a call. The configured API key is sent only to the configured
    /// base URL: a config that overrides the base URL gets no key, because anyone who can edit
    /// a run's providers could otherwise collect it.
    fn request(
        &self,
        target: Target<'_>,
        config: &Value,
        prompt: &[ChatMessage],
        credentials: &Credentials,
    ) -> Result<Request, ProviderError> {
        let config = protocol::config_map(config)?;
        let base_override = protocol::base_url_override(&config)?;
        if base_override.is_some() && !self.settings.allow_base_url_override {
            return Err(ProviderError::Unsupported(
                "config.apiBaseUrl is turned off here (PROVIDER_ALLOW_BASE_URL_OVERRIDE=false)".into(),
            ));
        }
        let s = &self.settings;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let (url, body, secret) = match target.protocol {
            Protocol::OpenAi => {
                let (base, key) = match (base_override, &credentials.openai) {
                    (Some(base), _) => (base, None),
                    (None, Some(own)) => (self.own_base(own, &s.openai_base_url)?, own.api_key.clone()),
                    (None, None) => (
                        s.openai_base_url.clone(),
                        s.openai_api_key.clone().filter(|_| credentials.environment_keys),
                    ),
                };
                match &key {
                    Some(key) => {
                        headers.insert(
                            AUTHORIZATION,
                            sensitive(&format!("Bearer {}", key.expose()), "OPENAI_API_KEY")?,
                        );
                    }
                    // OpenAI-compatible local servers (Ollama's /v1, vLLM, llama.cpp) need no key.
                    None if is_openai_host(&base) => {
                        return Err(ProviderError::MissingApiKey(credentials.key_name(
                            "OPENAI_API_KEY",
                            "the workspace's openai API key (PUT .../provider-credentials/openai)",
                        )))
                    }
                    None => {}
                }
                (
                    format!("{base}/chat/completions"),
                    protocol::openai_body(target.model, prompt, &config),
                    key,
                )
            }
            Protocol::Anthropic => {
                let missing = || {
                    ProviderError::MissingApiKey(credentials.key_name(
                        "ANTHROPIC_API_KEY",
                        "the workspace's anthropic API key (PUT .../provider-credentials/anthropic)",
                    ))
                };
                let (base, key) = match (base_override, &credentials.anthropic) {
                    (Some(base), _) => (base, None),
                    (None, Some(own)) => {
                        let key = own.api_key.clone().ok_or_else(missing)?;
                        (self.own_base(own, &s.anthropic_base_url)?, Some(key))
                    }
                    (None, None) => {
                        let key = s
                            .anthropic_api_key
                            .clone()
                            .filter(|_| credentials.environment_keys)
                            .ok_or_else(missing)?;
                        (s.anthropic_base_url.clone(), Some(key))
                    }
                };
                if let Some(key) = &key {
                    headers.insert(
                        HeaderName::from_static("x-api-key"),
                        sensitive(key.expose(), "ANTHROPIC_API_KEY")?,
                    );
                }
                headers.insert(
                    HeaderName::from_static("anthropic-version"),
                    HeaderValue::from_static(ANTHROPIC_VERSION),
                );
                (
                    format!("{base}/v1/messages"),
                    protocol::anthropic_body(target.model, prompt, &config),
                    key,
                )
            }
            Protocol::Ollama => {
                let base = match (base_override, &credentials.ollama) {
                    (Some(base), _) => base,
                    (None, Some(own)) => self.own_base(own, &s.ollama_base_url)?,
                    (None, None) => s.ollama_base_url.clone(),
                };
                (
                    format!("{base}/api/chat"),
                    protocol::ollama_body(target.model, prompt, &config),
                    None,
                )
            }
            Protocol::Echo => unreachable!("echo needs no request"),
        };
        Ok(Request {
            url,
            headers,
            body,
            secret,
        })
    }

    /// A workspace's own base URL, under the same switch as `config.apiBaseUrl`: both send the
    /// runner's requests to a host a workspace admin chose.
    fn own_base(&self, own: &Endpoint, default: &str) -> Result<String, ProviderError> {
        match &own.base_url {
            None => Ok(default.to_owned()),
            Some(_) if !self.settings.allow_base_url_override => Err(ProviderError::Unsupported(
                "a workspace's base URL is turned off here (PROVIDER_ALLOW_BASE_URL_OVERRIDE=false)".into(),
            )),
            Some(url) => settings::base_url("the workspace's base_url", url)
                .map_err(|e| ProviderError::Unsupported(e.to_string())),
        }
    }

    /// Sends until an attempt succeeds, fails for good or the retries run out. Returns the
    /// answer's JSON and the duration of the attempt that produced it.
    async fn send_with_retries(
        &self,
        provider_id: &str,
        request: &Request,
    ) -> Result<(Value, Duration), ProviderError> {
        let mut retries = 0;
        loop {
            let started = Instant::now();
            let failure = match tokio::time::timeout(self.settings.timeout, self.attempt(request)).await {
                Ok(Ok(body)) => return Ok((body, started.elapsed())),
                Ok(Err(failure)) => failure,
                // A timed-out attempt is not retried: a provider this slow will most likely be
                // as slow again, and retrying would multiply the time a run waits.
                Err(_) => return Err(ProviderError::Timeout(self.settings.timeout)),
            };
            let (error, retry_after) = match failure {
                Failure::Retryable { error, retry_after } => (error, retry_after),
                Failure::Final(error) => return Err(error),
            };
            if retries >= self.settings.max_retries {
                return Err(error);
            }
            let delay = match retry_after {
                Some(wait) if wait > MAX_RETRY_AFTER => return Err(error),
                Some(wait) => wait,
                None => backoff(self.settings.retry_base_delay, retries),
            };
            retries += 1;
            metrics::counter!("runner_provider_calls_total", "provider" => provider_id.to_owned(), "outcome" => "retry")
                .increment(1);
            tracing::warn!(
                retry = retries,
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "A provider call failed; it is retried after a delay."
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One HTTP exchange, body included.
    async fn attempt(&self, request: &Request) -> Result<Value, Failure> {
        let secret = request.secret.as_ref();
        let mut response = self
            .http
            .post(&request.url)
            .headers(request.headers.clone())
            .json(&request.body)
            .send()
            .await
            .map_err(|e| transport(e, secret))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport(e, secret))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Failure::Final(ProviderError::Malformed(format!(
                    "the answer is larger than {MAX_BODY_BYTES} bytes"
                ))));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                Failure::Final(ProviderError::Malformed(format!(
                    "the body is not JSON ({e}): {}",
                    quote(&body, secret)
                )))
            });
        }
        let error = ProviderError::Status {
            status: status.as_u16(),
            body: quote(&body, secret),
        };
        if status.as_u16() == 429 || status.is_server_error() {
            Err(Failure::Retryable { error, retry_after })
        } else {
            Err(Failure::Final(error))
        }
    }
}

/// A request ready to send, with the key it carries so error messages can be scrubbed of it.
struct Request {
    url: String,
    headers: HeaderMap,
    body: Value,
    secret: Option<Secret>,
}

enum Failure {
    /// Worth another attempt; `retry_after` is the server's `Retry-After`, when it sent one.
    Retryable {
        error: ProviderError,
        retry_after: Option<Duration>,
    },
    Final(ProviderError),
}

/// `echo` answers with the prompt itself, without I/O. Its token counts are estimates: the
/// number of whitespace-separated words, not what any tokenizer would count.
fn echo(prompt: &str) -> Completion {
    let started = Instant::now();
    let words = u32::try_from(prompt.split_whitespace().count()).unwrap_or(u32::MAX);
    Completion {
        output: prompt.to_owned(),
        prompt_tokens: words,
        completion_tokens: words,
        latency: started.elapsed(),
    }
}

/// Counts a finished call and times it; a call refused before it was sent is not timed.
fn record(provider_id: &str, result: &Result<(), &ProviderError>, elapsed: Option<Duration>) {
    let outcome = match result {
        Ok(()) => "ok",
        Err(error) => error.outcome(),
    };
    metrics::counter!("runner_provider_calls_total", "provider" => provider_id.to_owned(), "outcome" => outcome)
        .increment(1);
    if let Some(elapsed) = elapsed {
        metrics::histogram!("runner_provider_call_seconds", "provider" => provider_id.to_owned())
            .record(elapsed.as_secs_f64());
    }
}

fn is_openai_host(base_url: &str) -> bool {
    reqwest::Url::parse(base_url).is_ok_and(|url| url.host_str() == Some("api.openai.com"))
}

fn sensitive(value: &str, variable: &'static str) -> Result<HeaderValue, ProviderError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        ProviderError::Unsupported(format!("{variable} contains characters an HTTP header cannot carry"))
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// Exponential backoff from `base`, capped, plus up to half again of random jitter so that
/// calls which failed together do not retry together.
fn backoff(base: Duration, retries_so_far: u32) -> Duration {
    use rand::Rng;
    let delay = base
        .saturating_mul(2u32.saturating_pow(retries_so_far))
        .min(MAX_BACKOFF);
    let jitter_ms = rand::thread_rng().gen_range(0..=delay.as_millis() as u64 / 2);
    delay + Duration::from_millis(jitter_ms)
}

/// A transport error without the URL (which may name internal hosts) and with its causes,
/// which say what actually went wrong ("Connection refused").
fn transport(error: reqwest::Error, secret: Option<&Secret>) -> Failure {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    let message = redact(&message, secret);
    if error.is_builder() {
        // The request could not even be built (a bad URL): trying again changes nothing.
        Failure::Final(ProviderError::Transport(message))
    } else {
        Failure::Retryable {
            error: ProviderError::Transport(message),
            retry_after: None,
        }
    }
}

/// The start of a body for an error message, with the key scrubbed out before it is cut short
/// (so no prefix of the key survives either).
fn quote(body: &[u8], secret: Option<&Secret>) -> String {
    let text = redact(&String::from_utf8_lossy(body), secret);
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}

fn redact(text: &str, secret: Option<&Secret>) -> String {
    match secret.map(Secret::expose).filter(|s| !s.is_empty()) {
        Some(secret) => text.replace(secret, "[redacted]"),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_at_most_half_again_of_jitter_and_is_capped() {
        let base = Duration::from_millis(100);
        for (retries, expected) in [(0, 100), (1, 200), (3, 800)] {
            let delay = backoff(base, retries).as_millis() as u64;
            assert!((expected..=expected * 3 / 2).contains(&delay), "{retries}: {delay}");
        }
        assert!(backoff(base, 40) <= MAX_BACKOFF * 3 / 2);
    }

    #[test]
    fn quotes_are_scrubbed_before_they_are_cut() {
        let secret = Secret::new("sk-0123456789");
        let body = format!("{}sk-0123456789", "x".repeat(MAX_QUOTED_CHARS - 5));
        let quoted = quote(body.as_bytes(), Some(&secret));
        assert!(!quoted.contains("sk-01"), "{quoted}");
    }
}
