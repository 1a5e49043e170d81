//! A fake provider: an axum server on 127.0.0.1:0 that records every request and answers as a
//! test's script says.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use domain::run::ProviderSpec;
use providers::{PriceTable, ProviderSettings, Providers};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const OPENAI_KEY: &str = "sk-test-openai-0123456789abcdef";
pub const ANTHROPIC_KEY: &str = "sk-ant-test-0123456789abcdef";

/// A request as the fake server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the fake server does with a request.
pub enum Reply {
    Send {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// A 200 whose body is sent in `pieces`, `gap` apart; with `then_hang` the body never
    /// ends after them (the server counts a client that hangs up on it).
    Stream {
        content_type: &'static str,
        pieces: Vec<Vec<u8>>,
        gap: Duration,
        then_hang: bool,
    },
    /// Never answers, as a stuck provider would.
    Hang,
    /// Answers after a delay, as a slow provider would.
    After(Duration, Box<Reply>),
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Reply::Send {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string(),
        }
    }

    pub fn text(status: u16, body: &str) -> Self {
        Reply::Send {
            status,
            headers: vec![("content-type", "text/plain".into())],
            body: body.into(),
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Reply::Send { headers, .. } = &mut self {
            headers.push((name, value.into()));
        }
        self
    }

    /// `body` streamed `every` bytes at a time, 1 ms apart.
    pub fn stream(content_type: &'static str, body: &[u8], every: usize) -> Self {
        Reply::Stream {
            content_type,
            pieces: body.chunks(every).map(<[u8]>::to_vec).collect(),
            gap: Duration::from_millis(1),
            then_hang: false,
        }
    }

    pub fn after(self, delay: Duration) -> Self {
        Reply::After(delay, Box::new(self))
    }
}

type Script = Box<dyn Fn(usize, &Seen) -> Reply + Send + Sync>;

struct ServerState {
    /// Every request, in arrival order.
    seen: Mutex<Vec<Seen>>,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Streamed answers whose client hung up before their end.
    hung_up: AtomicUsize,
    /// Decides the reply to the request with the given index.
    script: Script,
}

pub struct Fake {
    pub url: String,
    state: Arc<ServerState>,
}

impl Fake {
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn requests(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    pub fn hung_up(&self) -> usize {
        self.state.hung_up.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

/// Starts a fake provider whose replies `script` chooses from the request's index and content.
pub async fn serve(script: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(ServerState {
        seen: Mutex::default(),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        hung_up: AtomicUsize::new(0),
        script: Box::new(script),
    });
    let app = Router::new().fallback(handle).with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Fake { url, state }
}

/// Counts a request out of flight even when the client hangs up before the answer.
struct InFlight(Arc<ServerState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(State(state): State<Arc<ServerState>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _in_flight = InFlight(state.clone());
    let seen = Seen {
        path: uri.path().to_owned(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let index = {
        let mut all = state.seen.lock().unwrap();
        all.push(seen.clone());
        all.len() - 1
    };
    let mut reply = (state.script)(index, &seen);
    loop {
        match reply {
            Reply::After(delay, next) => {
                tokio::time::sleep(delay).await;
                reply = *next;
            }
            Reply::Hang => std::future::pending::<()>().await,
            Reply::Stream {
                content_type,
                pieces,
                gap,
                then_hang,
            } => {
                let guard = HangUp {
                    state: state.clone(),
                    armed: true,
                };
                let body = futures::stream::unfold(
                    (pieces.into_iter(), Some(guard)),
                    move |(mut pieces, guard)| async move {
                        match pieces.next() {
                            Some(piece) => {
                                tokio::time::sleep(gap).await;
                                Some((Ok::<_, std::io::Error>(Bytes::from(piece)), (pieces, guard)))
                            }
                            None if then_hang => {
                                // Until the client hangs up, which drops this stream and the guard.
                                std::future::pending::<()>().await;
                                None
                            }
                            None => {
                                if let Some(mut guard) = guard {
                                    guard.armed = false;
                                }
                                None
                            }
                        }
                    },
                );
                let mut response = axum::body::Body::from_stream(body).into_response();
                response
                    .headers_mut()
                    .insert("content-type", content_type.parse().unwrap());
                return response;
            }
            Reply::Send { status, headers, body } => {
                let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
                for (name, value) in headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                return response;
            }
        }
    }
}

/// Counts a streamed answer whose client hung up before its end; an answer sent whole disarms it.
struct HangUp {
    state: Arc<ServerState>,
    armed: bool,
}

impl Drop for HangUp {
    fn drop(&mut self) {
        if self.armed {
            self.state.hung_up.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Settings pointing every protocol at `fake` (OpenAI under `/v1`, as the real one is), with
/// test keys, a 5 s attempt timeout and a 10 ms first backoff.
pub fn settings(fake: &Fake) -> ProviderSettings {
    let mut settings = ProviderSettings::for_base_url(&fake.url, Duration::from_secs(5));
    settings.openai_base_url = format!("{}/v1", fake.url);
    settings.openai_api_key = Some(service::Secret::new(OPENAI_KEY));
    settings.anthropic_api_key = Some(service::Secret::new(ANTHROPIC_KEY));
    settings
}

pub fn providers(settings: ProviderSettings) -> Providers {
    Providers::new(settings, PriceTable::builtin())
}

pub fn spec(id: &str, config: Value) -> ProviderSpec {
    ProviderSpec { id: id.into(), config }
}

/// A base URL where nothing listens: a port that was free a moment ago.
pub async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}
