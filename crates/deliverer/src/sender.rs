//! One attempt: sign the delivery, POST it to the endpoint, and say what the answer means.
//! The client connects only to addresses the target policy allows, checked on the addresses
//! it actually connects to (its resolver applies the policy), follows no redirect and uses no
//! proxy, so a name re-pointed inside the network after registration is refused at delivery.

use chrono::{DateTime, Utc};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Host;
use webhook::outbox::Attempt;
use webhook::signing::{ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use webhook::{Refused, SigningSecret, TargetPolicy};

/// The most of a receiver's answer kept with an attempt.
pub const EXCERPT_BYTES: usize = 1024;

/// What an attempt's outcome means for the delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Delivered,
    /// Worth another try (5xx, 408, 429, a timeout, a refused connection), not before
    /// `retry_after` when the receiver said so.
    Retry {
        retry_after: Option<Duration>,
    },
    /// Never worth another try (another 4xx, a redirect, a target inside the network).
    GiveUp(String),
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub attempt: Attempt,
    pub verdict: Verdict,
}

/// Resolves names for the HTTP client, refusing any name with an address the policy refuses.
struct GuardedResolver(Arc<TargetPolicy>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = policy.resolve_name(name.as_str(), 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: Arc<TargetPolicy>,
}

impl Sender {
    pub fn new(policy: TargetPolicy, timeout: Duration) -> anyhow::Result<Self> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver(policy.clone())))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("Promptcards-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, policy })
    }

    /// Signs `body` for this attempt (the timestamp is the attempt's) and sends it.
    #[tracing::instrument(skip_all, fields(webhook_id = %webhook_id, delivery_id = %delivery_id))]
    pub async fn send(
        &self,
        url: &str,
        webhook_id: uuid::Uuid,
        delivery_id: uuid::Uuid,
        secret: &SigningSecret,
        body: &str,
    ) -> Sent {
        let at = Utc::now();
        let started = Instant::now();
        let verdict_of = |error: String, verdict: Verdict| Sent {
            attempt: attempt(at, started, None, Some(error), None),
            verdict,
        };
        let url = match webhook::target::parse(url) {
            Ok(url) => url,
            Err(refused) => return verdict_of(refused.to_string(), Verdict::GiveUp(refused.to_string())),
        };
        // A name is checked by the resolver as the client connects; an address written in the
        // URL never reaches a resolver, so it is checked here.
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            if let Err(refused) = self.policy.check_addr(&ip.to_string(), ip) {
                return verdict_of(refused.to_string(), Verdict::GiveUp(refused.to_string()));
            }
        }
        let id = delivery_id.to_string();
        let timestamp = at.timestamp();
        let request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(ID_HEADER, &id)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, secret.sign(&id, timestamp, body.as_bytes()))
            .body(body.to_owned());
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let (message, verdict) = match refused(&error) {
                    Some(refused) => (refused.to_string(), Verdict::GiveUp(refused.to_string())),
                    None => (describe(&error), Verdict::Retry { retry_after: None }),
                };
                return verdict_of(message, verdict);
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers(), at);
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let mut excerpt = Vec::new();
        // A receiver that never finishes its body cannot hold the attempt past the timeout.
        while excerpt.len() < EXCERPT_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                _ => break,
            }
        }
        excerpt.truncate(EXCERPT_BYTES);
        let excerpt = Some(String::from_utf8_lossy(&excerpt).into_owned()).filter(|e| !e.is_empty());
        let code = status.as_u16();
        let (error, verdict) = if status.is_success() {
            (None, Verdict::Delivered)
        } else if status.is_redirection() {
            let why = format!(
                "the receiver answered {code} (to {}); redirects are not followed",
                location.as_deref().unwrap_or("nowhere")
            );
            (Some(why.clone()), Verdict::GiveUp(why))
        } else if status.is_server_error() || code == 408 || code == 429 || status.is_informational() {
            (
                Some(format!("the receiver answered {code}")),
                Verdict::Retry { retry_after },
            )
        } else {
            let why = format!("the receiver answered {code}, which is not retried");
            (Some(why.clone()), Verdict::GiveUp(why))
        };
        Sent {
            attempt: attempt(at, started, Some(code), error, excerpt),
            verdict,
        }
    }
}

fn attempt(
    at: DateTime<Utc>,
    started: Instant,
    status: Option<u16>,
    error: Option<String>,
    response_excerpt: Option<String>,
) -> Attempt {
    Attempt {
        at,
        status,
        latency_ms: started.elapsed().as_millis().min(u32::MAX as u128) as u32,
        error,
        response_excerpt,
    }
}

/// The target policy's refusal, when that is why the request failed.
fn refused(error: &reqwest::Error) -> Option<Refused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return Some(refused.clone());
        }
        source = cause.source();
    }
    None
}

/// A transport failure in a few words, with its innermost cause.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut root: &dyn std::error::Error = error;
    while let Some(cause) = root.source() {
        root = cause;
    }
    format!("the request {kind}: {root}")
}

/// `Retry-After` as seconds or as an HTTP date, relative to the attempt.
pub fn retry_after(headers: &reqwest::header::HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((date - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    #[test]
    fn retry_after_is_read_as_seconds_or_as_a_date() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, now), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(120)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Thu, 03 Dec 2026 10:01:30 GMT"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(90)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }
}
