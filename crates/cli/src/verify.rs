//! `promptcards verify`: the store's integrity, and that what is derived from it matches.

use crate::output::{self, json_line, progress};
use crate::{shadow, Outcome, Settings};
use anyhow::{anyhow, bail, Context};
use chrono::Utc;
use clap::Args;
use event_store::{Cursor, EventFilter, EventStore, IntegrityProblem};
use futures::TryStreamExt;
use projector::checksum;
use projector::postgres::{PostgresSink, READ_SCHEMA};
use projector::Sink;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::time::Duration;
use uuid::Uuid;

/// Shown by `--help` after the options.
pub const DETAILS: &str = "\
Always checks that every stream's versions are contiguous and its hash chain intact (an \
edited or deleted event breaks it). `--kafka` also reads the whole events topic with a \
fresh consumer group that commits nothing and checks every event the relay has \
acknowledged for the topic is on it (all events, when the relay never ran for it); it is \
opt-in because it consumes the whole topic. `--read-models` also projects the store into a \
scratch schema with the projector's own sink, cut at the versions the live read models \
have applied, and compares per-table checksums; events older than `--max-lag` that the \
live read models have not applied count as lost.";

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Also check the Kafka topic holds every event (reads the whole topic).
    #[arg(long)]
    pub kafka: bool,
    /// Also check the Postgres read models against a fresh projection.
    #[arg(long)]
    pub read_models: bool,
    /// How long reading the whole topic may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub kafka_timeout: u64,
    /// Events older than this that the read models have not applied are reported as lost;
    /// younger ones are projector lag.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub max_lag: u64,
    /// One JSON object per problem and line, then a summary line.
    #[arg(long)]
    pub json: bool,
}

/// One difference found.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// `chain`, `kafka` or `read_models`.
    pub check: &'static str,
    pub problem: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    pub detail: String,
}

impl Problem {
    fn new(check: &'static str, problem: &'static str, detail: String) -> Self {
        Self {
            check,
            problem,
            stream_id: None,
            version: None,
            detail,
        }
    }

    fn at(mut self, stream_id: Uuid, version: i64) -> Self {
        self.stream_id = Some(stream_id);
        self.version = Some(version);
        self
    }
}

pub async fn run(settings: &Settings, args: VerifyArgs) -> anyhow::Result<Outcome> {
    let store = settings.store().await?;
    let head = store.head().await?;
    let mut problems: Vec<Problem> = store
        .verify_chains(None)
        .await?
        .into_iter()
        .map(chain_problem)
        .collect();
    let mut passed = vec![format!(
        "stream versions contiguous and hash chains intact up to position {head}"
    )];

    if args.kafka {
        let topic = &settings.kafka_topic;
        match check_kafka(
            &store,
            &settings.kafka_brokers,
            topic,
            Duration::from_secs(args.kafka_timeout),
        )
        .await
        {
            Ok(kafka) => {
                let unrelayed = if kafka.unrelayed > 0 {
                    format!(", {} newer ones not relayed yet", kafka.unrelayed)
                } else {
                    String::new()
                };
                if kafka.missing.is_empty() {
                    passed.push(format!(
                        "Kafka topic {topic} holds all {} relayed events{unrelayed}",
                        kafka.expected
                    ));
                }
                problems.extend(kafka.missing);
            }
            Err(error) => problems.push(Problem::new("kafka", "unverifiable", format!("{error:#}"))),
        }
    }

    if args.read_models {
        let checked = check_read_models(&store, Duration::from_secs(args.max_lag)).await?;
        if checked.problems.is_empty() {
            let lag = if checked.lagging > 0 {
                format!(", {} recent events not applied yet", checked.lagging)
            } else {
                String::new()
            };
            passed.push(format!(
                "read models equal a fresh projection ({} tables, {} streams{lag})",
                checked.tables, checked.streams
            ));
        }
        problems.extend(checked.problems);
    }

    let mut out = std::io::stdout().lock();
    if args.json {
        for problem in &problems {
            json_line(&mut out, problem)?;
        }
        json_line(
            &mut out,
            &json!({ "ok": problems.is_empty(), "problems": problems.len(), "head": head, "passed": passed }),
        )?;
    } else if problems.is_empty() {
        writeln!(out, "OK: {}", passed.join("; "))?;
    } else {
        writeln!(
            out,
            "FAILED: {} problem{} found",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        )?;
        let mut table = output::table(["CHECK", "STREAM", "VERSION", "PROBLEM"]);
        for problem in &problems {
            table.add_row(vec![
                problem.check.to_owned(),
                output::optional(&problem.stream_id),
                output::optional(&problem.version),
                problem.detail.clone(),
            ]);
        }
        writeln!(out, "{table}")?;
        for check in &passed {
            writeln!(out, "passed: {check}")?;
        }
    }
    Ok(if problems.is_empty() {
        Outcome::Done
    } else {
        Outcome::Differences
    })
}

fn chain_problem(problem: IntegrityProblem) -> Problem {
    match problem {
        IntegrityProblem::MissingVersions { stream_id, from, to } => {
            let which = if from == to { format!("version {from} is") } else { format!("versions {from} to {to} are") };
            Problem::new("chain", "missing_versions", format!("stream {stream_id}: {which} missing; events were deleted"))
                .at(stream_id, from)
        }
        IntegrityProblem::HashMismatch { stream_id, version, event_id } => Problem::new(
            "chain",
            "hash_mismatch",
            format!("stream {stream_id} version {version} (event {event_id}) does not match its hash; it was edited"),
        )
        .at(stream_id, version),
        IntegrityProblem::StreamVersionMismatch { stream_id, claimed, stored } => Problem::new(
            "chain",
            "stream_version_mismatch",
            format!("stream {stream_id} claims version {claimed} but its events end at version {stored}; its last events were deleted"),
        )
        .at(stream_id, stored + 1),
    }
}

struct KafkaCheck {
    /// Events the topic must hold.
    expected: usize,
    /// Events after the relay's checkpoint: not on the topic yet, and not a problem.
    unrelayed: usize,
    missing: Vec<Problem>,
}

/// Every event up to the relay's checkpoint for `topic` must be on the topic.
async fn check_kafka(store: &EventStore, brokers: &str, topic: &str, timeout: Duration) -> anyhow::Result<KafkaCheck> {
    // The relay's own record of what the broker acknowledged (see crates/relay).
    let checkpoint: Option<Cursor> =
        sqlx::query_as::<_, (i64, i64)>("SELECT tx_id, position FROM relay_checkpoints WHERE name = $1")
            .bind(format!("kafka:{topic}"))
            .fetch_optional(store.pool())
            .await?
            .map(|(tx_id, position)| Cursor { tx_id, position });
    let on_topic = topic_event_ids(brokers, topic, timeout).await?;
    let mut check = KafkaCheck {
        expected: 0,
        unrelayed: 0,
        missing: Vec::new(),
    };
    let mut events = store.events(&EventFilter::default());
    while let Some(event) = events.try_next().await? {
        if checkpoint.is_some_and(|c| Cursor::after(&event) > c) {
            check.unrelayed += 1;
            continue;
        }
        check.expected += 1;
        if !on_topic.contains(&event.event_id) {
            check.missing.push(
                Problem::new(
                    "kafka",
                    "missing_on_topic",
                    format!(
                        "event {} ({} of stream {} version {}, position {}) is not on topic {topic}",
                        event.event_id, event.event_type, event.stream_id, event.version, event.position
                    ),
                )
                .at(event.stream_id, event.version),
            );
        }
    }
    Ok(check)
}

/// The event ids on every partition of `topic`, read from the start up to the high watermarks
/// taken first, by a consumer of a fresh group that is assigned its partitions and commits
/// nothing.
async fn topic_event_ids(brokers: &str, topic: &str, timeout: Duration) -> anyhow::Result<HashSet<Uuid>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let group = format!("promptcards-verify-{}", Uuid::new_v4().simple());
    let config = {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "50");
        config
    };
    let (metadata_config, name) = (config.clone(), topic.to_owned());
    let watermarks: BTreeMap<i32, (i64, i64)> = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let consumer: BaseConsumer = metadata_config.create()?;
        let metadata = consumer
            .fetch_metadata(Some(&name), Duration::from_secs(10))
            .context("the Kafka broker does not answer")?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .with_context(|| format!("the broker does not know topic {name}"))?;
        if let Some(error) = found.error() {
            bail!("topic {name} cannot be read: {error:?}");
        }
        found
            .partitions()
            .iter()
            .map(|p| {
                Ok((
                    p.id(),
                    consumer.fetch_watermarks(&name, p.id(), Duration::from_secs(10))?,
                ))
            })
            .collect()
    })
    .await??;
    if watermarks.is_empty() {
        bail!("topic {topic} has no partitions");
    }

    let consumer: StreamConsumer = config.create()?;
    let mut assignment = TopicPartitionList::new();
    for &partition in watermarks.keys() {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut next: BTreeMap<i32, i64> = watermarks.iter().map(|(p, (low, _))| (*p, *low)).collect();
    let mut ids = HashSet::new();
    let mut read = 0u64;
    while next.iter().any(|(p, offset)| *offset < watermarks[p].1) {
        let message = tokio::time::timeout_at(deadline, consumer.recv()).await.map_err(|_| {
            anyhow!(
                "read {read} messages of topic {topic} but not the whole topic within {} s",
                timeout.as_secs()
            )
        })??;
        let (partition, offset) = (message.partition(), message.offset());
        next.insert(partition, offset + 1);
        if offset >= watermarks[&partition].1 {
            continue;
        }
        read += 1;
        let id = serde_json::from_slice::<serde_json::Value>(message.payload().unwrap_or_default())
            .ok()
            .and_then(|value| value.get("event_id")?.as_str()?.parse::<Uuid>().ok());
        if let Some(id) = id {
            ids.insert(id);
        }
    }
    Ok(ids)
}

struct ReadModelCheck {
    tables: usize,
    streams: usize,
    /// Events younger than the allowed lag that the read models have not applied yet.
    lagging: u64,
    problems: Vec<Problem>,
}

/// Compares the live read models with a fresh projection of the same events. The live side is
/// read in one snapshot: its applied stream versions and its checksums. The fresh projection
/// applies, per stream, the events up to the version live has applied, so a projector that is
/// merely behind compares equal; every read-model row belongs to one stream, so the order
/// across streams does not matter.
async fn check_read_models(store: &EventStore, max_lag: Duration) -> anyhow::Result<ReadModelCheck> {
    let pool = store.pool();
    let mut snapshot = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *snapshot)
        .await?;
    let tables = checksum::tables(&mut snapshot, READ_SCHEMA).await?;
    let applied: HashMap<Uuid, i64> =
        sqlx::query_as::<_, (Uuid, i64)>(&format!("SELECT stream_id, version FROM {READ_SCHEMA}.stream_versions"))
            .fetch_all(&mut *snapshot)
            .await?
            .into_iter()
            .collect();
    let live = checksum::checksums(&mut snapshot, READ_SCHEMA, &tables).await?;
    snapshot.commit().await?;

    let scratch = format!("read_verify_{}", Uuid::new_v4().simple());
    shadow::create(pool, &scratch).await?;
    let fresh = project_cut(store, &scratch, &applied, max_lag, &tables).await;
    shadow::drop(pool, &scratch).await?;
    let (fresh, mut problems, lagging) = fresh?;

    for (table, (rows, sum)) in &live {
        let (fresh_rows, fresh_sum) = fresh.get(table).cloned().unwrap_or_default();
        if *sum != fresh_sum {
            problems.push(Problem::new(
                "read_models",
                "table_differs",
                format!("{READ_SCHEMA}.{table} has {rows} rows (md5 {sum}); a fresh projection has {fresh_rows} rows (md5 {fresh_sum})"),
            ));
        }
    }
    Ok(ReadModelCheck {
        tables: tables.len(),
        streams: applied.len(),
        lagging,
        problems,
    })
}

type Projected = (checksum::Checksums, Vec<Problem>, u64);

async fn project_cut(
    store: &EventStore,
    scratch: &str,
    applied: &HashMap<Uuid, i64>,
    max_lag: Duration,
    tables: &[String],
) -> anyhow::Result<Projected> {
    let sink = PostgresSink::with_schema(store.pool().clone(), scratch)?;
    let bar = progress(store.head().await?.max(1) as u64, "verify");
    let oldest_allowed = Utc::now() - chrono::Duration::from_std(max_lag)?;
    let mut problems = Vec::new();
    let mut lagging = 0u64;
    // Per stream, the highest version the store holds; for streams the read models claim more of.
    let mut stored: HashMap<Uuid, i64> = HashMap::new();
    let mut reported: HashSet<Uuid> = HashSet::new();
    let mut batch = Vec::with_capacity(500);
    let mut events = store.events(&EventFilter::default());
    while let Some(event) = events.try_next().await? {
        stored.insert(event.stream_id, event.version);
        bar.set_position(bar.position().max(event.position as u64));
        if applied.get(&event.stream_id).is_some_and(|v| event.version <= *v) {
            batch.push(event);
            if batch.len() == 500 {
                sink.apply(&batch).await?;
                batch.clear();
            }
        } else if event.recorded_at >= oldest_allowed {
            lagging += 1;
        } else if reported.insert(event.stream_id) {
            problems.push(
                Problem::new(
                    "read_models",
                    "not_applied",
                    format!(
                        "stream {} version {} ({}, position {}, recorded {}) is not in the read models after more than {} s",
                        event.stream_id,
                        event.version,
                        event.event_type,
                        event.position,
                        output::time(&event.recorded_at),
                        max_lag.as_secs()
                    ),
                )
                .at(event.stream_id, event.version),
            );
        }
    }
    sink.apply(&batch).await?;
    bar.finish_and_clear();
    for (stream_id, version) in applied {
        let held = stored.get(stream_id).copied().unwrap_or(0);
        if held < *version {
            problems.push(
                Problem::new(
                    "read_models",
                    "ahead_of_store",
                    format!(
                        "the read models applied stream {stream_id} up to version {version}; the store holds {held}"
                    ),
                )
                .at(*stream_id, held + 1),
            );
        }
    }
    let mut conn = store.pool().acquire().await?;
    let sums = checksum::checksums(&mut conn, scratch, tables).await?;
    Ok((sums, problems, lagging))
}
