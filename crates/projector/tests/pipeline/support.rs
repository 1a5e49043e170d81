//! Builders, drivers and probes shared by the pipeline tests.

use domain::card::{CardContent, CardEvent};
use domain::role::Role;
use domain::run::{ProviderSpec, ResultKey, RunCase, RunEvent, RunPlan, TestResult};
use domain::template::{VarType, Variable};
use domain::test_case::{TestCaseContent, TestCaseEvent};
use domain::workspace::WorkspaceEvent;
use event_store::{Cursor, EventStore, ExpectedVersion, NewEvent, RecordedEvent};
use projector::{Sink, Worker};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use relay::{Outcome, Relay};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

pub use test_support::clickhouse::ScratchDatabase;
pub use test_support::history::{stream, Actor};
pub use test_support::kafka::{create_topic, partition_ids};
pub use test_support::read_models::{fresh_projection, projected_versions, read_model_checksum, store_versions};
pub use test_support::{eventually, kafka_brokers, redis_url, DEADLINE, POLL_INTERVAL};

/// The roles of the members every test workspace has besides its owner.
pub const MEMBERS: [Role; 2] = [Role::Member, Role::Viewer];

/// How long a worker step waits for its first message.
pub const WORKER_WAIT: Duration = Duration::from_millis(250);

// --- domain events ---------------------------------------------------------------------------

pub fn content(title: &str) -> CardContent {
    CardContent {
        title: title.to_owned(),
        description: format!("What {title} is for"),
        template: "Summarise {{ text }} for {{ audience }}.".to_owned(),
        variables: vec![
            Variable {
                name: "text".to_owned(),
                kind: VarType::String,
                description: Some("The text to summarise".to_owned()),
                default: None,
                required: true,
            },
            Variable {
                name: "audience".to_owned(),
                kind: VarType::String,
                description: None,
                default: Some(json!("engineers")),
                required: false,
            },
        ],
        tags: vec!["summary".to_owned(), format!("t-{}", title.len())],
        ..Default::default()
    }
}

pub fn case_content(name: &str) -> TestCaseContent {
    let vars = json!({ "text": format!("input of {name}"), "audience": "lawyers" });
    TestCaseContent {
        name: name.to_owned(),
        vars: vars.as_object().cloned().unwrap(),
        expected_output: Some(format!("summary of {name}")),
        assertions: vec![serde_json::from_value(json!({ "type": "contains", "value": "summary" })).unwrap()],
    }
}

pub fn member_added(user_id: Uuid, role: Role) -> NewEvent {
    NewEvent::from_domain(&WorkspaceEvent::MemberAdded { user_id, role })
}

pub fn card_created(card_id: Uuid, workspace_id: Uuid, title: &str) -> NewEvent {
    NewEvent::from_domain(&CardEvent::PromptCardCreated {
        card_id,
        workspace_id,
        name: domain::prompt::legacy_name(title, card_id),
        content: content(title),
    })
}

pub fn card_updated(version: u32, title: &str) -> NewEvent {
    NewEvent::from_domain(&CardEvent::PromptCardUpdated {
        version,
        content: content(title),
    })
}

pub fn label_moved(label: &str, version: u32, previous_version: Option<u32>) -> NewEvent {
    NewEvent::from_domain(&CardEvent::PromptCardLabelMoved {
        label: label.to_owned(),
        version,
        previous_version,
    })
}

pub fn card_archived() -> NewEvent {
    NewEvent::from_domain(&CardEvent::PromptCardArchived {})
}

pub fn case_created(case_id: Uuid, card_id: Uuid, workspace_id: Uuid, name: &str) -> NewEvent {
    NewEvent::from_domain(&TestCaseEvent::TestCaseCreated {
        case_id,
        card_id,
        workspace_id,
        content: case_content(name),
    })
}

pub fn case_updated(name: &str) -> NewEvent {
    NewEvent::from_domain(&TestCaseEvent::TestCaseUpdated {
        content: case_content(name),
    })
}

pub fn case_deleted() -> NewEvent {
    NewEvent::from_domain(&TestCaseEvent::TestCaseDeleted {})
}

pub fn run_requested(run_id: Uuid, workspace_id: Uuid, card_id: Uuid, case_id: Uuid, repeat: u32) -> NewEvent {
    let case = case_content("run case");
    NewEvent::from_domain(&RunEvent::TestRunRequested {
        run_id,
        plan: RunPlan {
            workspace_id,
            card_id,
            card_version: 1,
            template: content("run card").template,
            messages: vec![],
            config: Default::default(),
            variables: content("run card").variables,
            cases: vec![RunCase {
                case_id,
                name: case.name,
                vars: case.vars,
                expected_output: case.expected_output,
                assertions: case.assertions,
            }],
            providers: vec![ProviderSpec {
                id: "echo".into(),
                config: Value::Null,
            }],
            repeat,
            comparison_id: None,
        },
        total: u64::from(repeat),
    })
}

pub fn run_started() -> NewEvent {
    NewEvent::from_domain(&RunEvent::TestRunStarted {})
}

/// A result of the run's only case; every third one fails.
pub fn result_recorded(card_id: Uuid, case_id: Uuid, repetition: u32) -> NewEvent {
    let passed = repetition % 3 != 2;
    NewEvent::from_domain(&RunEvent::TestResultRecorded {
        card_id,
        card_version: 1,
        result: TestResult {
            key: ResultKey {
                case_id,
                provider: "echo".into(),
                repetition,
            },
            rendered_prompt: format!("prompt {repetition}"),
            output: passed.then(|| format!("summary {repetition}")),
            error: (!passed).then(|| "the provider timed out".to_owned()),
            latency_ms: 10 + u64::from(repetition),
            prompt_tokens: 5,
            completion_tokens: repetition,
            cost_micro_usd: i64::from(repetition) * 7,
            passed,
            score: if passed { 1.0 } else { 0.0 },
            assertions: vec![],
            grading: domain::run::GradingUsage {
                grading_prompt_tokens: 100,
                grading_completion_tokens: repetition,
                grading_cost_micro_usd: i64::from(repetition) * 3,
            },
        },
    })
}

pub fn run_completed(passed: u64, failed: u64) -> NewEvent {
    NewEvent::from_domain(&RunEvent::TestRunCompleted { passed, failed })
}

/// Writes a realistic history: per workspace, the workspace itself; per card, its creation
/// together with a test case (one append, two streams), then `updates` updates, some of them
/// appended together with a label move, a test case update, and finally the archive of every
/// other card and the deletion of every third test case. About half the appends carry a
/// traceparent. Returns the number of events written.
pub async fn seed(store: &EventStore, workspaces: usize, cards: usize, updates: u32) -> usize {
    let mut written = 0;
    for _ in 0..workspaces {
        let actor = Actor::new();
        actor.create_workspace(store, &MEMBERS).await;
        written += 3;
        written += seed_integrations(store, &actor).await;
        for c in 0..cards {
            let (card_id, case_id) = (Uuid::now_v7(), Uuid::now_v7());
            actor
                .append(
                    store,
                    c % 2 == 0,
                    vec![
                        stream(
                            card_id,
                            "prompt_card",
                            ExpectedVersion::NoStream,
                            vec![card_created(card_id, actor.workspace_id, &format!("card {c}"))],
                        ),
                        stream(
                            case_id,
                            "test_case",
                            ExpectedVersion::NoStream,
                            vec![case_created(case_id, card_id, actor.workspace_id, &format!("case {c}"))],
                        ),
                    ],
                )
                .await;
            written += 2;
            let mut stream_version = 1i64;
            let mut labelled: Option<u32> = None;
            for v in 2..=updates + 1 {
                let mut events = vec![card_updated(v, &format!("card {c} v{v}"))];
                if v % 3 == 0 {
                    events.push(label_moved("production", v, labelled));
                    labelled = Some(v);
                }
                let n = events.len() as i64;
                actor
                    .append(
                        store,
                        v % 2 == 1,
                        vec![stream(
                            card_id,
                            "prompt_card",
                            ExpectedVersion::Exact(stream_version),
                            events,
                        )],
                    )
                    .await;
                stream_version += n;
                written += n as usize;
            }
            let mut case_events = vec![case_updated(&format!("case {c} renamed"))];
            if c % 3 == 0 {
                case_events.push(case_deleted());
            }
            written += case_events.len();
            let mut streams = vec![stream(case_id, "test_case", ExpectedVersion::Exact(1), case_events)];
            if c % 2 == 1 {
                streams.push(stream(
                    card_id,
                    "prompt_card",
                    ExpectedVersion::Exact(stream_version),
                    vec![card_archived()],
                ));
                written += 1;
            }
            actor.append(store, false, streams).await;
            if c == 0 {
                written += seed_runs(store, &actor, card_id, case_id).await;
            }
        }
    }
    written
}

/// A webhook endpoint changed, disabled by the deliverer and asked to redeliver; an alert rule
/// that fired and resolved; a rule deleted while firing. Returns how many events that is.
async fn seed_integrations(store: &EventStore, actor: &Actor) -> usize {
    use domain::alert::{AlertKind, AlertRuleEvent, Figure, RuleSpec};
    use domain::webhook::WebhookEvent;
    let webhook_id = Uuid::now_v7();
    let hook = [
        WebhookEvent::WebhookCreated {
            webhook_id,
            workspace_id: actor.workspace_id,
            url: "https://hooks.example.com/a".into(),
            events: vec!["run.completed".into()],
            sealed_secret: "v1.00000000.sealed".into(),
        },
        WebhookEvent::WebhookUpdated {
            url: "https://hooks.example.com/b".into(),
            events: vec!["*".into()],
        },
        WebhookEvent::WebhookDisabled {
            reason: "failing for a day".into(),
            automatic: true,
        },
        WebhookEvent::WebhookRedeliveryRequested {
            delivery_id: Uuid::now_v7(),
        },
    ];
    let spec = RuleSpec {
        kind: AlertKind::PassRateBelow,
        card_id: Some(Uuid::now_v7()),
        label: None,
        provider: None,
        threshold: 0.8,
        threshold_micro_usd: None,
        window_runs: Some(5),
    };
    let figure = |value: f64| Figure {
        value,
        cost_micro_usd: None,
        runs: 5,
        results: 10,
        passed: Some((value * 10.0) as u64),
        source: "read_models".into(),
    };
    let rule = |rule_id: Uuid, alert_id: Uuid, resolved: AlertRuleEvent| {
        vec![
            AlertRuleEvent::AlertRuleCreated {
                rule_id,
                workspace_id: actor.workspace_id,
                spec: spec.clone(),
            },
            AlertRuleEvent::AlertFired {
                alert_id,
                rule_id,
                spec: spec.clone(),
                figure: figure(0.5),
                run_id: Some(Uuid::now_v7()),
                message: "below".into(),
            },
            resolved,
        ]
    };
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    let (first_alert, second_alert) = (Uuid::now_v7(), Uuid::now_v7());
    let resolved = |rule_id, alert_id, figure| AlertRuleEvent::AlertResolved {
        alert_id,
        rule_id,
        spec: spec.clone(),
        figure,
        run_id: None,
        message: "back".into(),
    };
    let mut deleted = rule(second, second_alert, resolved(second, second_alert, None));
    deleted.push(AlertRuleEvent::AlertRuleDeleted {});
    let streams = vec![
        stream(
            webhook_id,
            "webhook",
            ExpectedVersion::NoStream,
            hook.iter().map(NewEvent::from_domain).collect(),
        ),
        stream(
            first,
            "alert_rule",
            ExpectedVersion::NoStream,
            rule(first, first_alert, resolved(first, first_alert, Some(figure(0.9))))
                .iter()
                .map(NewEvent::from_domain)
                .collect(),
        ),
        stream(
            second,
            "alert_rule",
            ExpectedVersion::NoStream,
            deleted.iter().map(NewEvent::from_domain).collect(),
        ),
    ];
    let written = streams.iter().map(|s| s.events.len()).sum();
    actor.append(store, false, streams).await;
    written
}

/// Two runs of a card whose results are appended interleaved, three at a time, as runners
/// record them; returns how many events that is.
async fn seed_runs(store: &EventStore, actor: &Actor, card_id: Uuid, case_id: Uuid) -> usize {
    const REPEAT: u32 = 6;
    let runs = [Uuid::now_v7(), Uuid::now_v7()];
    let mut written = 0;
    for run_id in runs {
        let events = vec![
            run_requested(run_id, actor.workspace_id, card_id, case_id, REPEAT),
            run_started(),
        ];
        written += events.len();
        actor
            .append(
                store,
                true,
                vec![stream(run_id, "test_run", ExpectedVersion::NoStream, events)],
            )
            .await;
    }
    for half in [0..REPEAT / 2, REPEAT / 2..REPEAT] {
        for run_id in runs {
            let mut events: Vec<NewEvent> = half.clone().map(|r| result_recorded(card_id, case_id, r)).collect();
            if half.end == REPEAT {
                events.push(run_completed(4, 2));
            }
            let expected = ExpectedVersion::Exact(2 + i64::from(half.start));
            written += events.len();
            actor
                .append(store, false, vec![stream(run_id, "test_run", expected, events)])
                .await;
        }
    }
    written
}

/// All `n` events of the store in its global order. Polls, because the store's tailing reader
/// does not pass transactions still open anywhere in the cluster.
pub async fn read_everything(store: &EventStore, n: usize) -> Vec<RecordedEvent> {
    let mut events: Vec<RecordedEvent> = Vec::new();
    let mut cursor = Cursor::START;
    let deadline = Instant::now() + DEADLINE;
    while events.len() < n {
        let batch = store.read_all(cursor, 1000).await.unwrap();
        match batch.last() {
            Some(last) => cursor = Cursor::after(last),
            None => {
                assert!(
                    Instant::now() < deadline,
                    "the store's reader delivered {} of {n} events",
                    events.len()
                );
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
        events.extend(batch);
    }
    assert_eq!(events.len(), n, "the store holds more events than were written");
    events
}

// --- Kafka -----------------------------------------------------------------------------------

/// A unique consumer group id.
pub fn group_id(what: &str) -> String {
    format!("pipeline-test-{what}-{}", Uuid::new_v4().simple())
}

/// One message of the events topic.
#[derive(Debug, Clone)]
pub struct Message {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub headers: HashMap<String, String>,
    pub value: Value,
}

impl Message {
    pub fn event(&self) -> RecordedEvent {
        serde_json::from_value(self.value.clone()).expect("every message's value is a recorded event")
    }
}

/// Everything on `topic`, read from the beginning of every partition by a fresh consumer, up
/// to the high watermarks taken when the call starts; in (partition, offset) order.
pub async fn consume_all(brokers: &str, topic: &str) -> Vec<Message> {
    let (b, t) = (brokers.to_owned(), topic.to_owned());
    let high: BTreeMap<i32, i64> = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .set("group.id", group_id("watermarks"))
            .create()
            .unwrap();
        partition_ids(&b, &t)
            .into_iter()
            .map(|p| {
                (
                    p,
                    consumer
                        .fetch_watermarks(&t, p, Duration::from_secs(10))
                        .expect("watermarks")
                        .1,
                )
            })
            .collect()
    })
    .await
    .unwrap();
    assert!(!high.is_empty(), "topic {topic} has no partitions");

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group_id("reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for &partition in high.keys() {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();

    let mut messages = Vec::new();
    let mut next: BTreeMap<i32, i64> = high.keys().map(|&p| (p, 0)).collect();
    let deadline = Instant::now() + DEADLINE;
    while next.iter().any(|(p, offset)| *offset < high[p]) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(remaining, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out reading {topic} up to {high:?}; reached {next:?}"))
            .expect("consume");
        let headers = message
            .headers()
            .map(|h| {
                (0..h.count())
                    .map(|i| {
                        let header = h.get(i);
                        let value = String::from_utf8(header.value.unwrap_or_default().to_vec()).unwrap();
                        (header.key.to_owned(), value)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let partition = message.partition();
        next.insert(partition, message.offset() + 1);
        if message.offset() >= high[&partition] {
            continue;
        }
        messages.push(Message {
            partition,
            offset: message.offset(),
            key: message.key().map(|k| String::from_utf8(k.to_vec()).unwrap()),
            headers,
            value: serde_json::from_slice(message.payload().unwrap_or_default()).expect("JSON value"),
        });
    }
    messages.sort_by_key(|m| (m.partition, m.offset));
    messages
}

/// Steps the relay until it has published `n` events, then checks it has nothing left.
pub async fn publish_all(relay: &mut Relay, n: usize) {
    let mut published = 0;
    let deadline = Instant::now() + DEADLINE;
    while published < n {
        assert!(
            Instant::now() < deadline,
            "the relay published {published} of {n} events"
        );
        match relay.step().await.expect("relay step") {
            Outcome::Published { count, .. } => published += count,
            Outcome::Idle => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
    assert_eq!(published, n, "the relay published more events than were written");
    assert_eq!(relay.step().await.expect("relay step"), Outcome::Idle);
}

/// A relay for `topic` on `brokers` over the test's store.
pub async fn relay_for(store: &EventStore, brokers: &str, topic: &str, batch_size: i64) -> Relay {
    Relay::new(store.clone(), kafka::producer(brokers).unwrap(), topic, batch_size)
        .await
        .unwrap()
}

/// Steps the worker until it has taken exactly `n` events off the topic.
pub async fn consume_n<S: Sink>(worker: &Worker<S>, n: usize) {
    let mut taken = 0;
    let deadline = Instant::now() + DEADLINE;
    while taken < n {
        let remaining = deadline.saturating_duration_since(Instant::now());
        // A step retries a failing sink for ever; the deadline bounds that too.
        let step = tokio::time::timeout(remaining, worker.step(WORKER_WAIT))
            .await
            .unwrap_or_else(|_| {
                panic!("the worker took {taken} of {n} events (a step is stuck, e.g. retrying a failing batch)")
            });
        if let projector::Outcome::Applied { events, .. } = step.expect("worker step") {
            taken += events;
        }
    }
    assert_eq!(taken, n, "the worker took more events than expected");
}

/// Per stream, the versions in the order the topic holds them (partition, then offset), and
/// checks every stream's messages are keyed by its id and all in one partition.
pub fn versions_by_stream(messages: &[Message]) -> HashMap<Uuid, Vec<i64>> {
    let mut by_stream: HashMap<Uuid, Vec<i64>> = HashMap::new();
    let mut partition_of: HashMap<Uuid, i32> = HashMap::new();
    for message in messages {
        let event = message.event();
        assert_eq!(
            message.key.as_deref(),
            Some(event.stream_id.to_string().as_str()),
            "message key"
        );
        let partition = *partition_of.entry(event.stream_id).or_insert(message.partition);
        assert_eq!(
            partition, message.partition,
            "stream {} is spread over partitions",
            event.stream_id
        );
        by_stream.entry(event.stream_id).or_default().push(event.version);
    }
    by_stream
}

// --- a private broker ------------------------------------------------------------------------

/// An Apache Kafka node of one test's own, on free ports, storing in a directory of its own so
/// it can be killed and restarted on the same data. Started by `deploy/local/kafka/broker`, the
/// script `deploy/local/up` uses, with the jars in `KAFKA_LIBS` (default `.local/kafka/libs`,
/// which `deploy/local/test` fills). Killed (SIGKILL) and removed on drop.
pub struct PrivateBroker {
    dir: PathBuf,
    port: u16,
    controller_port: u16,
    child: Option<Child>,
}

impl PrivateBroker {
    pub async fn start() -> Self {
        let free_port = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (port, controller_port) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("pipeline-kafka-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut broker = Self {
            dir,
            port,
            controller_port,
            child: None,
        };
        broker.restart().await;
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker on the same ports and storage and waits until it answers metadata.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("kafka.log"))
            .unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/kafka/broker");
        let child = Command::new(script)
            .arg(self.dir.join("node"))
            .args([self.port.to_string(), self.controller_port.to_string()])
            .env("KAFKA_HEAP", "256m")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn deploy/local/kafka/broker");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        while !kafka::answers(&self.brokers()).await {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("Kafka exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "Kafka does not answer on {}: {}",
                self.brokers(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no chance to flush or say goodbye. The script execs java, so the child is
    /// the broker itself.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("kafka.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
