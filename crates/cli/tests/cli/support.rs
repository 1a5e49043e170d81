//! Running the binary, writing histories, and probing the read models.

use domain::card::{CardContent, CardEvent};
use domain::role::Role;
use domain::run::{ProviderSpec, ResultKey, RunCase, RunEvent, RunPlan, TestResult};
use domain::test_case::{TestCaseContent, TestCaseEvent};
use event_store::{Cursor, EventFilter, EventStore, ExpectedVersion, NewEvent, RecordedEvent};
use futures::TryStreamExt;
use projector::postgres::PostgresSink;
use serde_json::{json, Map, Value};
use sqlx::PgPool;
use std::ops::ControlFlow;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use uuid::Uuid;

pub use test_support::clickhouse::ScratchDatabase;
pub use test_support::history::{stream, string_variable as variable, Actor};
pub use test_support::read_models::{fresh_projection, projected_versions, read_model_checksum, store_versions};
pub use test_support::{clickhouse_url, eventually, kafka_brokers, redis_url, DEADLINE, POLL_INTERVAL};

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

// --- histories -------------------------------------------------------------------------------

pub fn content(title: &str, template: &str) -> CardContent {
    CardContent {
        title: title.to_owned(),
        description: format!("What {title} is for"),
        template: template.to_owned(),
        variables: vec![variable("name")],
        tags: vec!["demo".to_owned()],
        ..Default::default()
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

/// The roles of the members every test workspace has besides its owner: its creation is 2
/// events.
pub const MEMBERS: [Role; 1] = [Role::Member];

/// The histories the CLI's tests write, appended untraced by an actor.
pub trait Histories {
    async fn create_card(&self, store: &EventStore, title: &str) -> (Uuid, Uuid);
    async fn card_events(&self, store: &EventStore, card_id: Uuid, version: i64, events: Vec<CardEvent>) -> i64;
    async fn run(&self, store: &EventStore, card_id: Uuid, outputs: &[(&str, Option<&str>, bool)])
        -> (Uuid, Vec<Uuid>);
}

impl Histories for Actor {
    /// A card with a test case (one append, two streams): 2 events. Returns (card, case).
    async fn create_card(&self, store: &EventStore, title: &str) -> (Uuid, Uuid) {
        let (card_id, case_id) = (Uuid::now_v7(), Uuid::now_v7());
        let card = NewEvent::from_domain(&CardEvent::PromptCardCreated {
            card_id,
            workspace_id: self.workspace_id,
            name: domain::prompt::legacy_name(title, card_id),
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
            false,
            vec![
                stream(card_id, "prompt_card", ExpectedVersion::NoStream, vec![card]),
                stream(case_id, "test_case", ExpectedVersion::NoStream, vec![case]),
            ],
        )
        .await;
        (card_id, case_id)
    }

    /// Appends `events` to the card at `version` and returns the new version.
    async fn card_events(&self, store: &EventStore, card_id: Uuid, version: i64, events: Vec<CardEvent>) -> i64 {
        let n = events.len() as i64;
        self.append(
            store,
            false,
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
    async fn run(
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
            messages: vec![],
            config: Default::default(),
            variables: vec![variable("name")],
            cases: cases.clone(),
            providers: vec![ProviderSpec {
                id: "echo".to_owned(),
                config: Value::Null,
            }],
            repeat: 1,
            comparison_id: None,
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
                    grading: Default::default(),
                },
            });
        }
        events.push(RunEvent::TestRunCompleted { passed, failed });
        self.append(
            store,
            false,
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
    actor.create_workspace(store, &MEMBERS).await;
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
                false,
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

// --- read models -----------------------------------------------------------------------------

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
                    let before = applied;
                    cursor = projector::catch_up(&store, &sink, cursor, batch_size, |events| {
                        applied += events.len();
                        ControlFlow::Continue(())
                    })
                    .await
                    .expect("the live projection applies");
                    match applied > before {
                        true => {}
                        false if stopping => return applied,
                        false => tokio::time::sleep(POLL_INTERVAL).await,
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
