//! A whole stack of one test's own: the six processes of `deploy/local/up`, started from the
//! binaries `cargo build --bins` makes, with the environment `up` gives them, on free ports,
//! over a Postgres database, a Kafka topic, consumer groups and a ClickHouse database of the
//! test's own (Redis is shared: its keys are fresh stream ids). Processes are killed with
//! SIGKILL and started again the way `up` does, and the probes below say whether the
//! pipeline is whole again.

use futures::{SinkExt, StreamExt};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

pub const PROCESSES: [&str; 6] = ["command-api", "relay", "query-api", "projector", "runner", "deliverer"];
/// The projector's sinks, each a consumer group `<prefix>.<sink>`.
pub const SINKS: [&str; 3] = ["postgres", "redis", "clickhouse"];
/// The consumer groups besides the projector's: the runner's and the deliverer's two.
pub const OTHER_GROUPS: [&str; 3] = ["runner", "deliverer", "alerts"];

pub use test_support::{clickhouse_url, kafka_brokers as brokers, redis_url};

/// `target/debug` (or wherever this test binary was built): the stack's binaries are beside it.
pub fn binary_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` first (deploy/local/test does)",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Stack {
    pub id: String,
    pub database_url: String,
    pub pool: PgPool,
    pub topic: String,
    pub clickhouse_database: String,
    /// Listen address per process label (a label is a binary's name, or another name for a
    /// second instance of one, such as a standby relay).
    addrs: HashMap<&'static str, String>,
    children: HashMap<&'static str, Child>,
    logs: PathBuf,
    http: reqwest::Client,
}

impl Stack {
    pub async fn start() -> Self {
        let id = Uuid::new_v4().simple().to_string()[..12].to_owned();
        let server = test_support::database_url();
        let admin = PgPoolOptions::new().max_connections(1).connect(&server).await.unwrap();
        let database = format!("stack_{id}");
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let (base, _) = server.rsplit_once('/').unwrap();
        let database_url = format!("{base}/{database}");
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&database_url)
            .await
            .unwrap();
        // As `up` does (ensure_clickhouse_database) before any process starts: the query API's
        // readiness asks ClickHouse through this database.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let create = format!("CREATE DATABASE IF NOT EXISTS {database}");
        let created = http.post(clickhouse_url()).body(create).send().await.unwrap();
        assert!(
            created.status().is_success(),
            "ClickHouse: {}",
            created.text().await.unwrap()
        );
        let logs = std::env::temp_dir().join(format!("stack-{id}"));
        std::fs::create_dir_all(&logs).unwrap();
        let addrs = PROCESSES
            .iter()
            .map(|&name| (name, format!("127.0.0.1:{}", free_port())))
            .collect();
        let mut stack = Self {
            database_url,
            pool,
            topic: format!("stack-{id}"),
            clickhouse_database: format!("stack_{id}"),
            id,
            addrs,
            children: HashMap::new(),
            logs,
            http,
        };
        for name in PROCESSES {
            stack.start_process(name).await;
        }
        stack
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}", self.addrs[name])
    }

    pub fn group(&self, sink: &str) -> String {
        match sink {
            "runner" | "deliverer" | "alerts" => format!("stack-{}-{sink}", self.id),
            sink => format!("stack-{}-projector.{sink}", self.id),
        }
    }

    /// The environment `deploy/local/up` gives a process (`export_stack_env`), with this
    /// stack's own names.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("DATABASE_URL".into(), self.database_url.clone()),
            ("REDIS_URL".into(), redis_url()),
            ("KAFKA_BROKERS".into(), brokers()),
            ("KAFKA_TOPIC".into(), self.topic.clone()),
            ("KAFKA_TOPIC_PARTITIONS".into(), "3".into()),
            ("CLICKHOUSE_URL".into(), clickhouse_url()),
            ("CLICKHOUSE_DATABASE".into(), self.clickhouse_database.clone()),
            ("JWT_SECRET".into(), "stack-test-secret".into()),
            ("PROJECTOR_GROUP_PREFIX".into(), format!("stack-{}-projector", self.id)),
            ("RUNNER_GROUP".into(), format!("stack-{}-runner", self.id)),
            ("DELIVERER_GROUP".into(), format!("stack-{}-deliverer", self.id)),
            ("ALERTS_GROUP".into(), format!("stack-{}-alerts", self.id)),
            // As `up` sets it: the tests' receivers listen on loopback.
            ("WEBHOOK_ALLOWED_CIDRS".into(), "127.0.0.0/8".into()),
            // Static membership under an id of this stack's, as a host name would give.
            ("KAFKA_GROUP_INSTANCE_ID".into(), format!("stack-{}", self.id)),
            ("RUST_LOG".into(), "info".into()),
        ];
        let var = |name: &str| format!("{}_ADDR", name.to_uppercase().replace('-', "_"));
        env.extend(PROCESSES.iter().map(|&name| (var(name), self.addrs[name].clone())));
        env
    }

    /// Starts `name` as `up`'s `start_process` does and waits until `/readyz` answers 200.
    pub async fn start_process(&mut self, name: &'static str) {
        self.start_instance(name, name).await;
    }

    /// Starts one more instance of the binary `binary` under `label`, on a port of its own.
    pub async fn start_instance(&mut self, label: &'static str, binary: &'static str) {
        let name = label;
        assert!(!self.children.contains_key(name), "{name} is running");
        let addr = self
            .addrs
            .entry(label)
            .or_insert_with(|| format!("127.0.0.1:{}", free_port()))
            .clone();
        let addr_var = format!("{}_ADDR", binary.to_uppercase().replace('-', "_"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{name}.log")))
            .unwrap();
        let child = Command::new(binary_path(binary))
            .envs(self.env())
            .env(addr_var, addr)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.insert(name, child);
        let url = format!("{}/readyz", self.url(name));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = self.http.get(&url).send().await {
                if response.status() == 200 {
                    return;
                }
            }
            if let Some(status) = self.children.get_mut(name).unwrap().try_wait().unwrap() {
                panic!("{name} exited with {status}:\n{}", self.log(name));
            }
            assert!(
                Instant::now() < deadline,
                "{name} not ready within 60 s:\n{}",
                self.log(name)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to flush, commit or leave the group.
    pub fn kill(&mut self, name: &str) {
        let mut child = self
            .children
            .remove(name)
            .unwrap_or_else(|| panic!("{name} is not running"));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn is_running(&self, name: &str) -> bool {
        self.children.contains_key(name)
    }

    /// A gauge or counter of a process's `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str, metric: &str) -> f64 {
        let text = match self.http.get(format!("{}/metrics", self.url(name))).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => return 0.0,
        };
        text.lines()
            .find_map(|line| line.strip_prefix(metric)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until the command API accepts a command and the query API answers a query, each
    /// tried with a 2 s timeout, and returns how long that took and the card the command
    /// created. Every attempt carries one idempotency key, so the probe creates one card however
    /// many attempts timed out.
    pub async fn apis_answer(&self, client: &Client, within: Duration) -> (Duration, Uuid) {
        let started = Instant::now();
        let key = Uuid::new_v4().to_string();
        eventually(within, "the command and query APIs answer", || async {
            let command = client.try_create_card("Probe", &key).await;
            let query = client.try_graphql(&self.url("query-api"), "{ me { id } }").await;
            Some((started.elapsed(), command?)).filter(|_| query.is_some())
        })
        .await
    }

    /// Every card a client was told was created exists, created exactly once, and no other.
    pub async fn assert_every_card_once(&self, acknowledged: &[Uuid]) {
        let created: Vec<Uuid> =
            sqlx::query_scalar("SELECT stream_id FROM events WHERE event_type = 'PromptCardCreated'")
                .fetch_all(&self.pool)
                .await
                .unwrap();
        let distinct: HashSet<Uuid> = created.iter().copied().collect();
        assert_eq!(distinct.len(), created.len(), "a card was created twice");
        let acknowledged: HashSet<Uuid> = acknowledged.iter().copied().collect();
        assert_eq!(
            distinct, acknowledged,
            "the store's cards differ from those acknowledged"
        );
    }

    pub fn log(&self, name: &str) -> String {
        let log = std::fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A new user with a workspace of their own, as a client of the command API.
    pub async fn client(&self) -> Client {
        let email = format!("{}@stack.test", Uuid::new_v4().simple());
        let signup: Value = self
            .http
            .post(format!("{}/v1/auth/signup", self.url("command-api")))
            .json(&json!({ "email": email, "password": "stack test password", "workspace_name": "Stack" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Client {
            http: self.http.clone(),
            base: self.url("command-api"),
            token: signup["access_token"]
                .as_str()
                .unwrap_or_else(|| panic!("signup failed: {signup}"))
                .to_owned(),
            workspace: signup["workspace_id"].as_str().unwrap().to_owned(),
        }
    }

    /// Per consumer group, how many messages of the topic it has not committed yet.
    pub async fn lag(&self, group: &str) -> i64 {
        let (brokers, topic, group) = (brokers(), self.topic.clone(), group.to_owned());
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", &group)
                .create()
                .unwrap();
            let timeout = Duration::from_secs(5);
            let metadata = consumer.fetch_metadata(Some(&topic), timeout).unwrap();
            let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
            let mut list = TopicPartitionList::new();
            for &p in &partitions {
                list.add_partition(&topic, p);
            }
            let committed = consumer.committed_offsets(list, timeout).unwrap();
            partitions
                .iter()
                .map(|&p| {
                    let (_, high) = consumer.fetch_watermarks(&topic, p, timeout).unwrap();
                    let done = match committed.find_partition(&topic, p).map(|e| e.offset()) {
                        Some(Offset::Offset(offset)) => offset,
                        _ => 0,
                    };
                    high - done
                })
                .sum()
        })
        .await
        .unwrap()
    }

    /// Waits until every consumer group has committed the whole topic, and returns how long
    /// that took. Before that, the relay must have published the whole store.
    pub async fn drained(&self, within: Duration) -> Duration {
        let started = Instant::now();
        eventually(within, "the relay publishes the whole store", || async {
            // The relay reads in (tx_id, position) order; nothing may be left behind its cursor.
            let unpublished: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM events e
                 WHERE NOT EXISTS (SELECT 1 FROM relay_checkpoints c WHERE (e.tx_id::text::bigint, e.position) <= (c.tx_id, c.position))",
            )
            .fetch_one(&self.pool)
            .await
            .unwrap();
            (unpublished == 0).then_some(())
        })
        .await;
        let groups: Vec<String> = SINKS.iter().chain(OTHER_GROUPS.iter()).map(|s| self.group(s)).collect();
        for group in &groups {
            let remaining = within.saturating_sub(started.elapsed());
            eventually(remaining, &format!("group {group} reaches the topic's end"), || async {
                (self.lag(group).await == 0).then_some(())
            })
            .await;
        }
        started.elapsed()
    }

    /// Per stream, the store's version.
    pub async fn store_versions(&self) -> BTreeMap<Uuid, i64> {
        test_support::read_models::store_versions(&self.pool).await
    }

    /// Per stream, the version the Postgres read models applied.
    pub async fn projected_versions(&self) -> BTreeMap<Uuid, i64> {
        test_support::read_models::projected_versions(&self.pool).await
    }

    pub async fn store_event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Distinct events in ClickHouse (its table dedupes on merge; count what is there).
    pub async fn clickhouse_event_count(&self) -> i64 {
        let query = format!("SELECT uniqExact(event_id) FROM {}.events", self.clickhouse_database);
        let body = self
            .http
            .post(clickhouse_url())
            .body(query)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.trim()
            .parse()
            .unwrap_or_else(|_| panic!("ClickHouse answered {body}"))
    }

    /// Asserts the Postgres read models and ClickHouse hold exactly what the store holds.
    pub async fn assert_projections_equal_the_store(&self) {
        assert_eq!(
            self.projected_versions().await,
            self.store_versions().await,
            "read models differ from the store"
        );
        assert_eq!(
            self.clickhouse_event_count().await,
            self.store_event_count().await,
            "ClickHouse differs from the store"
        );
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, mut child) in self.children.drain() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.logs);
        } else {
            eprintln!("stack logs kept in {}", self.logs.display());
        }
    }
}

/// Polls `probe` until it returns `Some`, or panics after `within`; every 50 ms, because the
/// stack's processes share the machine's cores with the probes.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    test_support::eventually_within(within, Duration::from_millis(50), what, probe).await
}

/// A signed-up user of the command API.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    pub workspace: String,
}

impl Client {
    /// POSTs with an idempotency key, retrying the same request until it is answered: a
    /// command that was accepted once is applied once, however often it is sent.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        let key = Uuid::new_v4().to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let sent = self
                .http
                .post(format!("{}/v1/workspaces/{}{path}", self.base, self.workspace))
                .bearer_auth(&self.token)
                .header("idempotency-key", &key)
                .json(&body)
                .send()
                .await;
            if let Ok(response) = sent {
                let status = response.status();
                if let Ok(value) = response.json::<Value>().await {
                    if status.is_success() {
                        return value;
                    }
                    assert!(status.is_server_error(), "POST {path} answered {status}: {value}");
                }
            }
            assert!(Instant::now() < deadline, "POST {path} not accepted within a minute");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One attempt, with a 2 s timeout: the card's id if it was created.
    pub async fn try_create_card(&self, title: &str, idempotency_key: &str) -> Option<Uuid> {
        let response = self
            .http
            .post(format!("{}/v1/workspaces/{}/prompt-cards", self.base, self.workspace))
            .bearer_auth(&self.token)
            .header("idempotency-key", idempotency_key)
            .timeout(Duration::from_secs(2))
            .json(&json!({ "title": title, "template": "Say {{ word }}.", "variables": [{"name": "word", "type": "string"}] }))
            .send()
            .await
            .ok()?;
        let body: Value = response.error_for_status().ok()?.json().await.ok()?;
        body["id"].as_str()?.parse().ok()
    }

    /// One GraphQL query with a 2 s timeout: its data, if it answered without errors.
    pub async fn try_graphql(&self, query_api: &str, query: &str) -> Option<Value> {
        let response = self
            .http
            .post(format!("{query_api}/graphql"))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(2))
            .json(&json!({ "query": query }))
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        body.get("errors").is_none().then(|| body["data"].clone())
    }

    /// One request to a path of the workspace, with this client's token.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, format!("{}/v1/workspaces/{}{path}", self.base, self.workspace))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// A GET of `path` on another of the stack's APIs (`base`), with this client's token.
    pub async fn get_at(&self, base: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{base}{path}"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    /// A GraphQL query with variables: its data, or a panic naming the errors.
    pub async fn graphql(&self, query_api: &str, query: &str, variables: Value) -> Value {
        let body: Value = self
            .http
            .post(format!("{query_api}/graphql"))
            .bearer_auth(&self.token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(body.get("errors").is_none(), "{query}: {body}");
        body["data"].clone()
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub async fn create_card(&self, title: &str) -> Uuid {
        let body = self
            .post("/prompt-cards", json!({ "title": title, "template": "Say {{ word }}.", "variables": [{"name": "word", "type": "string"}] }))
            .await;
        body["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn create_case(&self, card: Uuid, word: &str) -> Uuid {
        let body = self
            .post(
                &format!("/prompt-cards/{card}/test-cases"),
                json!({ "name": word, "vars": { "word": word }, "assertions": [{ "type": "contains", "value": word }] }),
            )
            .await;
        body["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn request_run(&self, card: Uuid) -> Uuid {
        let body = self
            .post("/runs", json!({ "card_id": card, "providers": ["echo"], "repeat": 2 }))
            .await;
        body["run_id"].as_str().unwrap().parse().unwrap()
    }
}

/// Clients creating cards until stopped; each card they were told was created is recorded.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub acknowledged: Arc<Mutex<Vec<Uuid>>>,
}

impl Load {
    pub fn start(clients: &[Client]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let tasks = clients
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, client)| {
                let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let card = client.create_card(&format!("Load {i}.{n}")).await;
                        acknowledged.lock().unwrap().push(card);
                        n += 1;
                    }
                })
            })
            .collect();
        Self {
            stop,
            tasks,
            acknowledged,
        }
    }

    pub fn count(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// Waits until `more` further commands were acknowledged.
    pub async fn until_more(&self, more: usize) {
        let target = self.count() + more;
        eventually(Duration::from_secs(60), "the load makes progress", || async {
            (self.count() >= target).then_some(())
        })
        .await;
    }

    /// Stops the clients and returns every card acknowledged.
    pub async fn stop(self) -> Vec<Uuid> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let acknowledged = self.acknowledged.lock().unwrap().clone();
        acknowledged
    }
}

// GraphQL subscriptions over graphql-transport-ws, as a browser opens them.

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens graphql-transport-ws with `token`; `None` when the server refuses the connection.
pub async fn open_socket(url: &str, token: &str) -> Option<Socket> {
    let mut request = format!("{}/graphql/ws", url.replacen("http", "ws", 1))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket.send(Message::Text(init.to_string().into())).await.unwrap();
    match next_message(&mut socket).await {
        Some(message) if message["type"] == "connection_ack" => Some(socket),
        _ => None,
    }
}

/// The next protocol message; `None` once the socket is closed (or after 10 s).
pub async fn next_message(socket: &mut Socket) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] == "ping" {
                    let pong = json!({ "type": "pong" }).to_string();
                    socket.send(Message::Text(pong.into())).await.unwrap();
                    continue;
                }
                return Some(message);
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}
