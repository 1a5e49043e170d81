//! Running the binary, writing histories, and probing the read models.

use domain::card::{CardContent, CardEvent};
use domain::role::Role;
use domain::run::{ProviderSpec, ResultKey, RunCase, RunEvent, RunPlan, TestResult};
use domain::template::{VarType, Variable};
use domain::test_case::{TestCaseContent, TestCaseEvent};
use domain::workspace::WorkspaceEvent;
use event_store::{
    Append, Appended, Cursor, EventFilter, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StreamAppend,
};
use futures::TryStreamExt;
use projector::postgres::PostgresSink;
use projector::Sink;
use serde_json::{json, Map, Value};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::future::Future;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// How long something may take before the test fails. Generous: every open transaction in the
/// Postgres cluster (other tests' too) holds back what the store's safe reader returns.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// Pause between two probes of a bounded poll loop; not a synchronisation point.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

pub fn clickhouse_url() -> String {
    std::env::var("CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The URL of the test's own database: the server `DATABASE_URL` names, with the database
/// `#[sqlx::test]` created for this test.
pub fn database_url(pool: &PgPool) -> String {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL names the test database server");
    let database = pool
        .connect_options()
        .get_database()
        .expect("the test's database")
        .to_owned();
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base.to_owned(), format!("?{query}")),
        None => (server.clone(), String::new()),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let server_part = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base.as_str(),
    };
    format!("{server_part}/{database}{query}")
}

/// What a run of the binary printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(self) -> Self {
        assert_eq!(
            self.code, 0,
            "promptcards failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}")))
            .collect()
    }
}

/// The binary, with the test's database and the given environment.
pub fn command(pool: &PgPool, args: &[&str], env: &[(&str, String)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_promptcards"));
    command
        .args(args)
        .env("DATABASE_URL", database_url(pool))
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

pub async fn promptcards(pool: &PgPool, args: &[&str]) -> Output {
    promptcards_with(pool, args, &[]).await
}

pub async fn promptcards_with(pool: &PgPool, args: &[&str], env: &[(&str, String)]) -> Output {
    let output = tokio::time::timeout(DEADLINE * 2, command(pool, args, env).output())
        .await
        .unwrap_or_else(|_| panic!("promptcards {args:?} did not finish"))
        .expect("run promptcards");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

/// Probes until `probe` returns `Some`, failing the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

// --- histories -------------------------------------------------------------------------------

pub fn variable(name: &str) -> Variable {
    Variable {
        name: name.to_owned(),
        kind: VarType::String,
        description: None,
        default: None,
        required: true,
    }
}

pub fn content(title: &str, template: &str) -> CardContent {
    CardContent {
        title: title.to_owned(),
        description: format!("What {title} is for"),
        template: template.to_owned(),
        variables: vec![variable("name")],
        tags: vec!["demo".to_owned()],
    }
}

pub fn case_content(name: &str) -> TestCaseContent {
    TestCaseContent {
        name: name.to_owned(),
        vars: json!({ "name": name }).as_object().cloned().unwrap(),
        expected_output: None,
        assertions: vec![serde_json::from_value(json!({ "type": "contains", "value": "Hello" })).unwrap()],
    }
}

pub fn stream(stream_id: Uuid, stream_type: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamAppend {
    StreamAppend {
        stream_id,
        stream_type: stream_type.to_owned(),
        expected,
        events,
    }
}

/// Someone acting in a workspace of their own.
#[derive(Debug, Clone)]
pub struct Actor {
    pub workspace_id: Uuid,
    pub actor_id: Uuid,
}

impl Actor {
    pub fn new() -> Self {
        Self {
            workspace_id: Uuid::now_v7(),
            actor_id: Uuid::now_v7(),
        }
    }

    pub async fn append(&self, store: &EventStore, streams: Vec<StreamAppend>) -> Appended {
        store
            .append(Append {
                streams,
                metadata: Metadata {
                    actor_id: Some(self.actor_id),
                    workspace_id: Some(self.workspace_id),
                    correlation_id: Uuid::now_v7(),
                    ..Metadata::default()
                },
                ..Append::default()
            })
            .await
            .expect("append")
    }

    /// The workspace, owned by the actor, with one more member: 2 events.
    pub async fn create_workspace(&self, store: &EventStore) {
        let events = vec![
            NewEvent::from_domain(&WorkspaceEvent::WorkspaceCreated {
                workspace_id: self.workspace_id,
                name: format!("workspace {}", self.workspace_id.simple()),
                owner_id: self.actor_id,
            }),
            NewEvent::from_domain(&WorkspaceEvent::MemberAdded {
                user_id: Uuid::now_v7(),
                role: Role::Member,
            }),
        ];
        self.append(
            store,
            vec![stream(
                self.workspace_id,
                "workspace",
                ExpectedVersion::NoStream,
                events,
            )],
        )
        .await;
    }

    /// A card with a test case (one append, two streams): 2 events. Returns (card, case).
    pub async fn create_card(&self, store: &EventStore, title: &str) -> (Uuid, Uuid) {
        let (card_id, case_id) = (Uuid::now_v7(), Uuid::now_v7());
        let card = NewEvent::from_domain(&CardEvent::PromptCardCreated {
            card_id,
            workspace_id: self.workspace_id,
            content: content(title, "Hello {{ name }}!"),
        });
        let case = NewEvent::from_domain(&TestCaseEvent::TestCaseCreated {
            case_id,
            card_id,
            workspace_id: self.workspace_id,
            content: case_content(&format!("case of {title}")),
        });
        self.append(
            store,
            vec![
                stream(card_id, "prompt_card", ExpectedVersion::NoStream, vec![card]),
                stream(case_id, "test_case", ExpectedVersion::NoStream, vec![case]),
            ],
        )
        .await;
        (card_id, case_id)
    }

    /// Appends `events` to the card at `version` and returns the new version.
    pub async fn card_events(&self, store: &EventStore, card_id: Uuid, version: i64, events: Vec<CardEvent>) -> i64 {
        let n = events.len() as i64;
        self.append(
            store,
            vec![stream(
                card_id,
                "prompt_card",
                ExpectedVersion::Exact(version),
                events.iter().map(NewEvent::from_domain).collect(),
            )],
        )
        .await;
        version + n
    }

    /// A completed echo run of the card over `outputs` (one case each; `None` is a failed
    /// call), with each result's original verdict. Returns the run id and the case ids.
    pub async fn run(
        &self,
        store: &EventStore,
        card_id: Uuid,
        outputs: &[(&str, Option<&str>, bool)],
    ) -> (Uuid, Vec<Uuid>) {
        let run_id = Uuid::now_v7();
        let cases: Vec<RunCase> = outputs
            .iter()
            .map(|(name, _, _)| RunCase {
                case_id: Uuid::now_v7(),
                name: (*name).to_owned(),
                vars: json!({ "name": name }).as_object().cloned().unwrap_or_else(Map::new),
                expected_output: None,
                assertions: vec![serde_json::from_value(json!({ "type": "contains", "value": "Hello" })).unwrap()],
            })
            .collect();
        let plan = RunPlan {
            workspace_id: self.workspace_id,
            card_id,
            card_version: 1,
            template: "Hello {{ name }}!".to_owned(),
            variables: vec![variable("name")],
            cases: cases.clone(),
            providers: vec![ProviderSpec {
                id: "echo".to_owned(),
                config: Value::Null,
            }],
            repeat: 1,
        };
        let total = plan.total();
        let mut events = vec![
            RunEvent::TestRunRequested { run_id, plan, total },
            RunEvent::TestRunStarted {},
        ];
        let (mut passed, mut failed) = (0, 0);
        for (case, (_, output, pass)) in cases.iter().zip(outputs) {
            if *pass {
                passed += 1
            } else {
                failed += 1
            }
            events.push(RunEvent::TestResultRecorded {
                card_id,
                card_version: 1,
                result: TestResult {
                    key: ResultKey {
                        case_id: case.case_id,
                        provider: "echo".to_owned(),
                        repetition: 0,
                    },
                    rendered_prompt: format!("Hello {}!", case.name),
                    output: output.map(str::to_owned),
                    error: output.is_none().then(|| "the provider failed".to_owned()),
                    latency_ms: 3,
                    prompt_tokens: 4,
                    completion_tokens: 5,
                    cost_micro_usd: 0,
                    passed: *pass,
                    score: if *pass { 1.0 } else { 0.0 },
                    assertions: vec![],
                },
            });
        }
        events.push(RunEvent::TestRunCompleted { passed, failed });
        self.append(
            store,
            vec![stream(
                run_id,
                "test_run",
                ExpectedVersion::NoStream,
                events.iter().map(NewEvent::from_domain).collect(),
            )],
        )
        .await;
        (run_id, cases.iter().map(|c| c.case_id).collect())
    }
}

/// A realistic history for one actor: the workspace, `cards` cards with a test case each, each
/// card updated `updates` times with a label moved along, every other card archived, and one
/// run of the first card. Returns the card ids.
pub async fn seed(store: &EventStore, actor: &Actor, cards: usize, updates: u32) -> Vec<Uuid> {
    actor.create_workspace(store).await;
    let mut ids = Vec::new();
    for c in 0..cards {
        let (card_id, case_id) = actor.create_card(store, &format!("card {c}")).await;
        let mut version = 1;
        for v in 2..=updates + 1 {
            let mut events = vec![CardEvent::PromptCardUpdated {
                version: v,
                content: content(
                    &format!("card {c} v{v}"),
                    &format!("Hello {{{{ name }}}}, version {v}!"),
                ),
            }];
            if v % 2 == 0 {
                events.push(CardEvent::PromptCardLabelMoved {
                    label: "production".to_owned(),
                    version: v,
                    previous_version: (v > 2).then(|| v - 2),
                });
            }
            version = actor.card_events(store, card_id, version, events).await;
        }
        actor
            .append(
                store,
                vec![stream(
                    case_id,
                    "test_case",
                    ExpectedVersion::Exact(1),
                    vec![NewEvent::from_domain(&TestCaseEvent::TestCaseUpdated {
                        content: case_content(&format!("case {c} renamed")),
                    })],
                )],
            )
            .await;
        if c % 2 == 1 {
            actor
                .card_events(store, card_id, version, vec![CardEvent::PromptCardArchived {}])
                .await;
        }
        ids.push(card_id);
    }
    if let Some(first) = ids.first() {
        actor
            .run(
                store,
                *first,
                &[("Ada", Some("Hello Ada!"), true), ("Bob", None, false)],
            )
            .await;
    }
    ids
}

/// Every event of the store, from one snapshot, in the global order.
pub async fn all_events(store: &EventStore) -> Vec<RecordedEvent> {
    store.events(&EventFilter::default()).try_collect().await.unwrap()
}

pub async fn store_versions(pool: &PgPool) -> BTreeMap<Uuid, i64> {
    sqlx::query_as::<_, (Uuid, i64)>("SELECT stream_id, version FROM streams")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

pub async fn projected_versions(pool: &PgPool) -> BTreeMap<Uuid, i64> {
    sqlx::query_as::<_, (Uuid, i64)>("SELECT stream_id, version FROM read.stream_versions")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

// --- read models -----------------------------------------------------------------------------

pub async fn read_tables(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'read' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Per table of `schema`: its row count and an md5 over all its rows, every column included.
pub async fn checksum(pool: &PgPool, schema: &str) -> BTreeMap<String, (i64, String)> {
    let mut sums = BTreeMap::new();
    for table in read_tables(pool).await {
        let sum: (i64, String) = sqlx::query_as(&format!(
            "SELECT count(*), md5(coalesce(string_agg(row_to_json(t)::text, ',' ORDER BY row_to_json(t)::text), ''))
             FROM {schema}.{table} t"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        sums.insert(table, sum);
    }
    sums
}

/// The checksum of a projection of every event of the store into a new schema of its own.
pub async fn fresh_projection(pool: &PgPool, store: &EventStore) -> BTreeMap<String, (i64, String)> {
    let schema = format!("fresh_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(pool)
        .await
        .unwrap();
    for table in read_tables(pool).await {
        sqlx::query(&format!(
            "CREATE TABLE {schema}.{table} (LIKE read.{table} INCLUDING ALL)"
        ))
        .execute(pool)
        .await
        .unwrap();
    }
    let sink = PostgresSink::with_schema(pool.clone(), &schema).unwrap();
    for batch in all_events(store).await.chunks(200) {
        sink.apply(batch).await.unwrap();
    }
    let sums = checksum(pool, &schema).await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(pool)
        .await
        .unwrap();
    sums
}

/// The live projector as a test drives it: tails the store with its safe reader and applies
/// batches to schema `read` with the projector's sink, until told to stop and caught up.
pub struct LiveProjector {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<usize>,
}

impl LiveProjector {
    pub fn start(store: EventStore, batch_size: i64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let sink = PostgresSink::new(store.pool().clone());
                let mut cursor = Cursor::START;
                let mut applied = 0;
                loop {
                    let stopping = stop.load(Ordering::SeqCst);
                    let batch = store.read_all(cursor, batch_size).await.expect("read the store");
                    match batch.last() {
                        Some(last) => {
                            sink.apply(&batch).await.expect("the live projection applies");
                            cursor = Cursor::after(last);
                            applied += batch.len();
                        }
                        None if stopping => return applied,
                        None => tokio::time::sleep(POLL_INTERVAL).await,
                    }
                }
            })
        };
        Self { stop, task }
    }

    /// Stops once everything the store's reader returns is applied; returns how many events
    /// it applied.
    pub async fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the live projector stops")
            .unwrap()
    }
}
