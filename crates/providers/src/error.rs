use std::time::Duration;

/// Why a provider call produced no completion. Every message is safe to record in a test
/// result and show to the workspace: API keys are scrubbed from anything a server sent back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// One attempt took longer than the configured timeout. Not retried.
    #[error("the provider did not answer within {0:?}")]
    Timeout(Duration),
    /// The provider answered with a non-success HTTP status (after any retries).
    #[error("the provider answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    /// A success status whose body is not JSON or lacks the fields the protocol promises.
    #[error("the provider's answer is malformed: {0}")]
    Malformed(String),
    /// The request never got an HTTP answer: connection refused, reset, DNS failure.
    #[error("the provider could not be reached: {0}")]
    Transport(String),
    /// A streamed answer ended with an error the provider sent after it began.
    #[error("the provider broke off its answer: {0}")]
    Interrupted(String),
    /// An id or config this crate cannot or will not call.
    #[error("{0}")]
    Unsupported(String),
    /// The key this call needs is not set: the workspace's, or the environment variable named.
    #[error("{0} is not set, so this provider cannot be called")]
    MissingApiKey(&'static str),
}

impl ProviderError {
    /// The `outcome` label of `runner_provider_calls_total` for a call ending in this error.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            ProviderError::Timeout(_) => "timeout",
            _ => "error",
        }
    }
}

/// A setting the process cannot start with. Names the variable, never its value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not valid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("the prices file {path} cannot be used: {reason}")]
    PricesFile { path: String, reason: String },
}
