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
