//! A webhook receiver for tests: a real HTTP server on 127.0.0.1 that records every request and
//! answers as the test scripts it, and a Standard Webhooks verifier written from the
//! specification, independently of the sender's code, that every received delivery is checked
//! with.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("the delivery has no {name} header: {:?}", self.headers))
    }

    /// The `webhook-id`.
    pub fn id(&self) -> &str {
        self.header("webhook-id")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a delivery's body is JSON")
    }

    /// Checks the signature with [`verify`].
    pub fn verify(&self, secret: &str) -> Result<(), String> {
        verify(
            secret,
            self.id(),
            self.header("webhook-timestamp"),
            &self.body,
            self.header("webhook-signature"),
        )
    }
}

/// The specification's verification, from its text: the key is the base64 after `whsec_`; the
/// signed content is `{id}.{timestamp}.{body}`; the header holds space-separated `v1,<base64>`
/// signatures, any of which may match; a timestamp more than five minutes from now is refused.
pub fn verify(secret: &str, id: &str, timestamp: &str, body: &[u8], signatures: &str) -> Result<(), String> {
    verify_at(secret, id, timestamp, body, signatures, true)
}

/// [`verify`] without the timestamp tolerance, for fixed test vectors.
pub fn verify_vector(secret: &str, id: &str, timestamp: &str, body: &[u8], signatures: &str) -> Result<(), String> {
    verify_at(secret, id, timestamp, body, signatures, false)
}

fn verify_at(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
    signatures: &str,
    check_time: bool,
) -> Result<(), String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").ok_or("the secret lacks whsec_")?)
        .map_err(|e| format!("the secret is not base64: {e}"))?;
    let seconds: i64 = timestamp.parse().map_err(|_| format!("bad timestamp {timestamp:?}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    if check_time && (now - seconds).abs() > 300 {
        return Err(format!("timestamp {seconds} is more than five minutes from {now}"));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    let matches = signatures
        .split(' ')
        .filter_map(|s| s.split_once(','))
        .any(|(version, signature)| version == "v1" && signature == expected);
    if matches {
        Ok(())
    } else {
        Err(format!("no v1 signature in {signatures:?} is {expected}"))
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// Waited before answering.
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: vec![],
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct Inner {
    /// Every request, in arrival order.
    received: Mutex<Vec<Received>>,
    /// Answers for the next requests; 204 once it is empty.
    script: Mutex<VecDeque<Reply>>,
    arrived: Notify,
}

/// A receiver listening on 127.0.0.1 until dropped.
pub struct Receiver {
    pub addr: std::net::SocketAddr,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let reply = inner.script.lock().expect("never poisoned").pop_front();
    inner.received.lock().expect("never poisoned").push(Received {
        headers,
        body,
        at: Instant::now(),
    });
    inner.arrived.notify_waiters();
    let reply = reply.unwrap_or_else(|| Reply::status(204));
    tokio::time::sleep(reply.delay).await;
    let mut response = (StatusCode::from_u16(reply.status).expect("a status"), reply.body).into_response();
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("a header value"));
    }
    response
}

impl Receiver {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("an address");
        let app = axum::Router::new().fallback(receive).with_state(inner.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the receiver serves");
        });
        Self { addr, inner, server }
    }

    /// The URL deliveries are sent to.
    pub fn url(&self) -> String {
        format!("http://{}/hooks/promptcards", self.addr)
    }

    /// Queues answers for the next requests.
    pub fn answer(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.script.lock().expect("never poisoned").extend(replies);
    }

    /// Forgets the answers queued and not given yet: every request gets 204 from now on.
    pub fn clear_answers(&self) {
        self.inner.script.lock().expect("never poisoned").clear();
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().expect("never poisoned").clone()
    }

    /// Waits until at least `n` requests arrived, at most `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let arrived = self.inner.arrived.notified();
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            assert!(
                tokio::time::timeout_at(deadline, arrived).await.is_ok() || self.received().len() >= n,
                "the receiver got {} requests, not {n}, within {within:?}",
                self.received().len()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_accepts_the_specifications_test_vector_and_nothing_else() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let (id, timestamp, body) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", br#"{"test": 2432232314}"#);
        let signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(verify_vector(secret, id, timestamp, body, signature), Ok(()));
        assert!(verify_vector(secret, id, "1614265331", body, signature).is_err());
        assert!(verify_vector(secret, "msg_other", timestamp, body, signature).is_err());
        assert!(
            verify(secret, id, timestamp, body, signature).is_err(),
            "five years late"
        );
    }
}
