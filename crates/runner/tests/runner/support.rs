//! Builders for runs, a fake OpenAI-compatible server, and probes.

use assertions::Assertion;
use domain::run::{ProviderSpec, RunCase, RunCommand, RunEvent, RunPlan, TestResult, TestRun};
use domain::template::{VarType, Variable};
use domain::Aggregate;
use event_store::{Append, EventStore, ExpectedVersion, Metadata, NewEvent, Repository, StreamAppend};
use providers::{PriceTable, ProviderSettings, Providers};
use runner::Runner;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

pub use test_support::kafka::create_topic;
pub use test_support::{eventually, kafka_brokers};

pub fn runner(store: &EventStore, provider_base_url: &str) -> Runner {
    let settings = ProviderSettings::for_base_url(provider_base_url, Duration::from_secs(5));
    let providers = Providers::new(settings, PriceTable::empty());
    Runner::new(Repository::new(store.clone(), 100), Arc::new(providers), 4)
}

/// Case ids are 1..=n, so a result names its case.
pub fn case_number(case_id: Uuid) -> u128 {
    case_id.as_u128()
}

/// Appends a run request over `cases` cases ("Say hello to {{ who }}", who = personN) with two
/// assertions each: `contains {{ who }}` and `not-contains person1`.
pub async fn request_run(store: &EventStore, cases: u128, providers: &[&str], repeat: u32) -> Uuid {
    request_run_in(store, Uuid::new_v4(), cases, providers, repeat).await
}

/// [`request_run`] in a given workspace.
pub async fn request_run_in(
    store: &EventStore,
    workspace_id: Uuid,
    cases: u128,
    providers: &[&str],
    repeat: u32,
) -> Uuid {
    let assertion = |kind: &str, value: &str| -> Assertion {
        serde_json::from_value(json!({ "type": kind, "value": value })).unwrap()
    };
    let plan = RunPlan {
        workspace_id,
        card_id: Uuid::new_v4(),
        card_version: 1,
        template: "Say hello to {{ who }}".into(),
        messages: vec![],
        config: Default::default(),
        variables: vec![Variable {
            name: "who".into(),
            kind: VarType::String,
            description: None,
            default: None,
            required: true,
        }],
        cases: (1..=cases)
            .map(|n| RunCase {
                case_id: Uuid::from_u128(n),
                name: format!("case {n}"),
                vars: Map::from_iter([("who".to_owned(), Value::from(format!("person{n}")))]),
                expected_output: None,
                assertions: vec![assertion("contains", "{{ who }}"), assertion("not-contains", "person1")],
            })
            .collect(),
        providers: providers
            .iter()
            .map(|id| ProviderSpec {
                id: (*id).into(),
                config: Value::Null,
            })
            .collect(),
        repeat,
        comparison_id: None,
    };
    request_plan(store, plan).await
}

/// Appends a run request of `plan`.
pub async fn request_plan(store: &EventStore, plan: RunPlan) -> Uuid {
    let run_id = Uuid::now_v7();
    let events = TestRun::default()
        .decide(RunCommand::Request {
            run_id,
            plan: plan.clone(),
        })
        .unwrap();
    append(store, run_id, ExpectedVersion::NoStream, plan.workspace_id, &events).await;
    run_id
}

async fn append(store: &EventStore, run_id: Uuid, expected: ExpectedVersion, workspace_id: Uuid, events: &[RunEvent]) {
    store
        .append(Append {
            streams: vec![StreamAppend {
                stream_id: run_id,
                stream_type: TestRun::STREAM_TYPE.into(),
                expected,
                events: events.iter().map(NewEvent::from_domain).collect(),
            }],
            metadata: Metadata {
                workspace_id: Some(workspace_id),
                correlation_id: Uuid::new_v4(),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Cancels as the command API does: decide on the loaded run, append at its version.
pub async fn cancel(store: &EventStore, run_id: Uuid) {
    loop {
        let events = store.read_stream(run_id, 0).await.unwrap();
        let version = events.last().unwrap().version;
        let run: TestRun = event_store::fold_recorded(&events).unwrap();
        let decided = run.decide(RunCommand::Cancel).unwrap();
        let workspace_id = run.plan.as_ref().unwrap().workspace_id;
        let appended = store
            .append(Append {
                streams: vec![StreamAppend {
                    stream_id: run_id,
                    stream_type: TestRun::STREAM_TYPE.into(),
                    expected: ExpectedVersion::Exact(version),
                    events: decided.iter().map(NewEvent::from_domain).collect(),
                }],
                metadata: Metadata {
                    workspace_id: Some(workspace_id),
                    correlation_id: Uuid::new_v4(),
                    ..Default::default()
                },
                ..Default::default()
            })
            .await;
        if appended.is_ok() {
            return;
        }
    }
}

pub async fn load_run(store: &EventStore, run_id: Uuid) -> TestRun {
    event_store::fold_recorded(&store.read_stream(run_id, 0).await.unwrap()).unwrap()
}

pub async fn recorded_results(store: &EventStore, run_id: Uuid) -> Vec<TestResult> {
    store
        .read_stream(run_id, 0)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| match e.decode::<RunEvent>().unwrap() {
            RunEvent::TestResultRecorded { result, .. } => Some(result),
            _ => None,
        })
        .collect()
}

/// A local server answering OpenAI chat completions, after a delay, with the prompt echoed.
pub struct FakeOpenAi {
    pub url: String,
    requests: Arc<AtomicUsize>,
}

impl FakeOpenAi {
    pub async fn start(delay: Duration) -> Self {
        Self::serve(delay, false).await
    }

    pub async fn start_malformed() -> Self {
        Self::serve(Duration::ZERO, true).await
    }

    async fn serve(delay: Duration, malformed: bool) -> Self {
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let app = axum::Router::new().route(
            "/chat/completions",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    if malformed {
                        return (axum::http::StatusCode::OK, "this is not json").into_response_parts();
                    }
                    let prompt = body["messages"][0]["content"].as_str().unwrap_or_default().to_owned();
                    let answer = json!({
                        "choices": [{"message": {"role": "assistant", "content": prompt}}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 5}
                    });
                    (axum::http::StatusCode::OK, answer.to_string()).into_response_parts()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, requests }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

trait IntoParts {
    fn into_response_parts(self) -> axum::response::Response;
}

impl IntoParts for (axum::http::StatusCode, &'static str) {
    fn into_response_parts(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}

impl IntoParts for (axum::http::StatusCode, String) {
    fn into_response_parts(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response((self.0, [("content-type", "application/json")], self.1))
    }
}

/// How a [`FakeGrader`] answers grading prompts.
#[derive(Debug, Clone)]
pub enum Judgement {
    /// This text, as the grader's answer.
    Says(String),
    /// Nothing before this long (longer than the providers' timeout).
    Sleeps(Duration),
}

/// A local server speaking the OpenAI protocol for both sides of a graded run: model `tested`
/// answers with its prompt, any other chat model is the grader and answers with the judgement,
/// and `/embeddings` embeds text in two dimensions: `[1, 0]` when it mentions Paris, `[0.6, 0.8]`
/// otherwise. Keeps every request body it received.
pub struct FakeGrader {
    pub url: String,
    bodies: Arc<std::sync::Mutex<Vec<(String, Value)>>>,
}

impl FakeGrader {
    pub async fn start(judgement: Judgement) -> Self {
        let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (chat_bodies, embedding_bodies) = (bodies.clone(), bodies.clone());
        let app = axum::Router::new()
            .route(
                "/chat/completions",
                axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                    let bodies = chat_bodies.clone();
                    let judgement = judgement.clone();
                    async move {
                        bodies.lock().unwrap().push(("chat".into(), body.clone()));
                        let last = body["messages"].as_array().and_then(|m| m.last()).cloned();
                        let prompt = last
                            .and_then(|m| m["content"].as_str().map(str::to_owned))
                            .unwrap_or_default();
                        let answer = if body["model"] == "tested" {
                            prompt
                        } else {
                            match judgement {
                                Judgement::Says(text) => text,
                                Judgement::Sleeps(delay) => {
                                    tokio::time::sleep(delay).await;
                                    String::new()
                                }
                            }
                        };
                        let (prompt_tokens, completion_tokens) =
                            if body["model"] == "tested" { (5, 5) } else { (100, 20) };
                        let answer = json!({
                            "choices": [{"message": {"role": "assistant", "content": answer}}],
                            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
                        });
                        (axum::http::StatusCode::OK, answer.to_string()).into_response_parts()
                    }
                }),
            )
            .route(
                "/embeddings",
                axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                    let bodies = embedding_bodies.clone();
                    async move {
                        bodies.lock().unwrap().push(("embeddings".into(), body.clone()));
                        let text = body["input"].as_str().unwrap_or_default();
                        let vector = if text.contains("Paris") {
                            json!([1.0, 0.0])
                        } else {
                            json!([0.6, 0.8])
                        };
                        let answer = json!({
                            "object": "list",
                            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                            "model": body["model"],
                            "usage": {"prompt_tokens": 7, "total_tokens": 7}
                        });
                        (axum::http::StatusCode::OK, answer.to_string()).into_response_parts()
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, bodies }
    }

    /// Every request body received on `route` ("chat" or "embeddings"), in order.
    pub fn bodies(&self, route: &str) -> Vec<Value> {
        let bodies = self.bodies.lock().unwrap();
        bodies
            .iter()
            .filter(|(r, _)| r == route)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// The chat requests that went to the grader (not to the tested model).
    pub fn grader_requests(&self) -> Vec<Value> {
        self.bodies("chat")
            .into_iter()
            .filter(|b| b["model"] != "tested")
            .collect()
    }
}

/// A runner against `url` whose providers time out after `timeout`, with the given default
/// grading models.
pub fn grading_runner(store: &EventStore, url: &str, timeout: Duration) -> Runner {
    let settings = ProviderSettings::for_base_url(url, timeout);
    let mut prices = PriceTable::empty();
    prices.insert(
        "openai:judge",
        providers::Price {
            prompt: 1_000_000,
            completion: 2_000_000,
        },
    );
    let providers = Arc::new(Providers::new(settings, prices));
    let graders = runner::grading::SettingsGraders::new(
        providers.clone(),
        runner::grading::GradingSettings {
            default_provider: "openai:chat:judge".into(),
            default_embedding_provider: "openai:embedding:embedder".into(),
        },
    );
    Runner::new(Repository::new(store.clone(), 100), providers, 4).with_graders(Arc::new(graders))
}

/// A run of one case ("Capital of {{ country }}?", country = France) on the `tested` model,
/// with `assertions`.
pub async fn request_graded_run(store: &EventStore, assertions: Vec<Value>) -> Uuid {
    request_graded_run_of(store, "Capital of {{ country }}?", assertions).await
}

/// [`request_graded_run`] with another template.
pub async fn request_graded_run_of(store: &EventStore, template: &str, assertions: Vec<Value>) -> Uuid {
    let plan = RunPlan {
        workspace_id: Uuid::new_v4(),
        card_id: Uuid::new_v4(),
        card_version: 1,
        template: template.into(),
        messages: vec![],
        config: Default::default(),
        variables: vec![Variable {
            name: "country".into(),
            kind: VarType::String,
            description: None,
            default: None,
            required: true,
        }],
        cases: vec![RunCase {
            case_id: Uuid::from_u128(1),
            name: "france".into(),
            vars: Map::from_iter([("country".to_owned(), json!("France"))]),
            expected_output: None,
            assertions: assertions
                .into_iter()
                .map(|a| serde_json::from_value(a).unwrap())
                .collect(),
        }],
        providers: vec![ProviderSpec {
            id: "openai:tested".into(),
            config: Value::Null,
        }],
        repeat: 1,
        comparison_id: None,
    };
    request_plan(store, plan).await
}
