use crate::ConfigError;
use reqwest::header::HeaderValue;
use service::Secret;
use std::time::Duration;

/// Where the providers live, the keys to call them with and how patiently to call them.
/// `Debug` is safe to log: the keys print as `[redacted]`.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// `OPENAI_BASE_URL`, default `https://api.openai.com/v1`. Any OpenAI-compatible server
    /// (Ollama's `/v1`, vLLM, llama.cpp) works here.
    pub openai_base_url: String,
    /// `OPENAI_API_KEY`. Only required when the base URL is api.openai.com.
    pub openai_api_key: Option<Secret>,
    /// `ANTHROPIC_BASE_URL`, default `https://api.anthropic.com` (the path `/v1/messages` is added).
    pub anthropic_base_url: String,
    /// `ANTHROPIC_API_KEY`. Required for Anthropic calls to `anthropic_base_url`.
    pub anthropic_api_key: Option<Secret>,
    /// `OLLAMA_BASE_URL`, default `http://127.0.0.1:11434`.
    pub ollama_base_url: String,
    /// `PROVIDER_TIMEOUT_MS`, default 60000: the bound on one attempt, from connecting to
    /// reading the last byte of the answer.
    pub timeout: Duration,
    /// `PROVIDER_MAX_RETRIES`, default 4: attempts after the first for 429, 5xx and transport
    /// errors.
    pub max_retries: u32,
    /// `PROVIDER_RETRY_BASE_MS`, default 500: the first backoff delay. It doubles each retry up
    /// to 30 s, plus up to half again of random jitter, unless the server sent `Retry-After`.
    pub retry_base_delay: Duration,
    /// `PROVIDER_CONCURRENCY`, default 8: calls in flight per provider id, across all runs.
    pub max_concurrency_per_provider: usize,
    /// `PROVIDER_ALLOW_BASE_URL_OVERRIDE`, default true: whether a provider's
    /// `config.apiBaseUrl` / `config.base_url` may send the call elsewhere. Turn it off where
    /// workspace members must not make the runner send requests to hosts of their choosing.
    pub allow_base_url_override: bool,
}

impl ProviderSettings {
    /// Reads the settings from the environment; unset variables take their defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (a variable's value, `None` when unset), which is how
    /// tests supply an environment without touching the process's.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str, default: &str| lookup(name).unwrap_or_else(|| default.to_owned());
        let secret = |name: &'static str| -> Result<Option<Secret>, ConfigError> {
            match lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                None => Ok(None),
                // The key ends up in a header; say so now rather than on every call.
                Some(v) if HeaderValue::from_str(&v).is_err() => Err(ConfigError::Invalid {
                    name,
                    reason: "contains characters an HTTP header cannot carry".into(),
                }),
                Some(v) => Ok(Some(Secret::new(v))),
            }
        };
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            get(name, &default.to_string())
                .trim()
                .parse()
                .map_err(|_| ConfigError::Invalid {
                    name,
                    reason: "is not a whole number".into(),
                })
        };
        let settings = ProviderSettings {
            openai_base_url: base_url("OPENAI_BASE_URL", &get("OPENAI_BASE_URL", "https://api.openai.com/v1"))?,
            openai_api_key: secret("OPENAI_API_KEY")?,
            anthropic_base_url: base_url(
                "ANTHROPIC_BASE_URL",
                &get("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
            )?,
            anthropic_api_key: secret("ANTHROPIC_API_KEY")?,
            ollama_base_url: base_url("OLLAMA_BASE_URL", &get("OLLAMA_BASE_URL", "http://127.0.0.1:11434"))?,
            timeout: Duration::from_millis(number("PROVIDER_TIMEOUT_MS", 60_000)?),
            max_retries: u32::try_from(number("PROVIDER_MAX_RETRIES", 4)?).map_err(|_| ConfigError::Invalid {
                name: "PROVIDER_MAX_RETRIES",
                reason: "is too large".into(),
            })?,
            retry_base_delay: Duration::from_millis(number("PROVIDER_RETRY_BASE_MS", 500)?),
            max_concurrency_per_provider: number("PROVIDER_CONCURRENCY", 8)? as usize,
            allow_base_url_override: match get("PROVIDER_ALLOW_BASE_URL_OVERRIDE", "true").trim() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "PROVIDER_ALLOW_BASE_URL_OVERRIDE",
                        reason: "must be true or false".into(),
                    })
                }
            },
        };
        if settings.timeout.is_zero() {
            return Err(ConfigError::Invalid {
                name: "PROVIDER_TIMEOUT_MS",
                reason: "must be above 0".into(),
            });
        }
        if settings.max_concurrency_per_provider == 0 {
            return Err(ConfigError::Invalid {
                name: "PROVIDER_CONCURRENCY",
                reason: "must be above 0".into(),
            });
        }
        Ok(settings)
    }

    /// Settings for calling local test servers: every base URL is `base_url`, one attempt is
    /// bounded by `timeout`, retries back off from 10 ms, and no keys are set.
    pub fn for_base_url(base_url: &str, timeout: Duration) -> Self {
        let base = base_url.trim_end_matches('/').to_owned();
        ProviderSettings {
            openai_base_url: base.clone(),
            openai_api_key: None,
            anthropic_base_url: base.clone(),
            anthropic_api_key: None,
            ollama_base_url: base,
            timeout,
            max_retries: 4,
            retry_base_delay: Duration::from_millis(10),
            max_concurrency_per_provider: 8,
            allow_base_url_override: true,
        }
    }
}

/// An http(s) URL without its trailing slash, so paths can be appended with `format!`.
pub(crate) fn base_url(name: &'static str, value: &str) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name,
        reason: reason.into(),
    };
    let url = reqwest::Url::parse(value.trim()).map_err(|_| invalid("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must be an http or https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not carry credentials; use the API key variables"));
    }
    Ok(value.trim().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<ProviderSettings, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ProviderSettings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let s = from(&[]).unwrap();
        assert_eq!(s.openai_base_url, "https://api.openai.com/v1");
        assert_eq!(s.anthropic_base_url, "https://api.anthropic.com");
        assert_eq!(s.ollama_base_url, "http://127.0.0.1:11434");
        assert_eq!(s.timeout, Duration::from_secs(60));
        assert_eq!((s.max_retries, s.max_concurrency_per_provider), (4, 8));
        assert!(s.openai_api_key.is_none() && s.anthropic_api_key.is_none());
        assert!(s.allow_base_url_override);
    }

    #[test]
    fn keys_never_print_and_empty_keys_count_as_unset() {
        let s = from(&[
            ("OPENAI_API_KEY", "sk-very-secret-openai"),
            ("ANTHROPIC_API_KEY", " "),
            ("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1/"),
        ])
        .unwrap();
        assert_eq!(s.openai_api_key.as_ref().unwrap().expose(), "sk-very-secret-openai");
        assert!(s.anthropic_api_key.is_none());
        assert_eq!(s.openai_base_url, "http://127.0.0.1:8000/v1");
        let debug = format!("{s:?}");
        assert!(!debug.contains("sk-very-secret-openai"), "{debug}");
    }

    #[test]
    fn bad_values_name_the_variable_but_not_the_value() {
        let err = from(&[("PROVIDER_TIMEOUT_MS", "soon")]).unwrap_err();
        assert!(err.to_string().contains("PROVIDER_TIMEOUT_MS"), "{err}");
        assert!(from(&[("PROVIDER_CONCURRENCY", "0")]).is_err());
        assert!(from(&[("OLLAMA_BASE_URL", "ftp://x")]).is_err());
        let err = from(&[("OPENAI_API_KEY", "sk-line\nbreak")]).unwrap_err();
        assert!(!err.to_string().contains("sk-line"), "{err}");
    }
}
