//! Every SQL statement on the event store's tables.

use crate::{
    Append, AppendError, Appended, Cursor, ExpectedVersion, Idempotency, RecordedEvent, StreamInfo, StreamVersion,
};
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

macro_rules! event_columns {
    () => {
        "position, tx_id::text::bigint AS tx_id, event_id, stream_id, stream_type, version, \
         event_type, schema_version, workspace_id, actor_id, correlation_id, causation_id, \
         traceparent, tracestate, data, recorded_at"
    };
}

/// Appends a batch of commands in one statement (one transaction, one round trip). Returns one
/// outcome per command.
///
/// The common batch, plain writes at exact versions of distinct streams, goes to
/// `promptcards_append_batch_fast` (migrations/*_append_fast.sql): a few set-based statements.
/// When it meets any conflict it writes nothing, and the batch goes to
/// `promptcards_append_batch` (migrations/*_append_batch.sql), which runs each command in a
/// subtransaction, so a conflict fails that command alone; so does every other batch.
pub(crate) async fn append_batch(
    conn: &mut PgConnection,
    appends: &[Append],
) -> Result<Vec<Result<Appended, AppendError>>, sqlx::Error> {
    if let Some(fast) = FastBatch::of(appends) {
        match fast.append(conn, appends).await {
            Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("PC409" | "23505")) => {
                tracing::debug!("A command of a batch met a conflict; each command is appended on its own.");
            }
            outcome => return outcome,
        }
    }
    append_each(conn, appends).await
}

/// A batch as `promptcards_append_batch_fast` takes it: one array per column. The function
/// forces generic plans (`SET plan_cache_mode`): Postgres kept re-planning its statements over
/// the arrays for every call (in process, 5,594 commands/s with custom plans, 5,922 without).
#[derive(Default)]
struct FastBatch {
    unchanged_ids: Vec<Uuid>,
    unchanged_versions: Vec<i64>,
    stream_ids: Vec<Uuid>,
    stream_types: Vec<String>,
    stream_expected: Vec<i64>,
    stream_counts: Vec<i64>,
    stream_workspaces: Vec<Option<Uuid>>,
    event_ids: Vec<Uuid>,
    event_streams: Vec<Uuid>,
    event_stream_types: Vec<String>,
    event_versions: Vec<i64>,
    event_types: Vec<String>,
    event_schemas: Vec<i32>,
    event_workspaces: Vec<Option<Uuid>>,
    event_actors: Vec<Option<Uuid>>,
    event_correlations: Vec<Uuid>,
    event_causations: Vec<Option<Uuid>>,
    event_traceparents: Vec<Option<String>>,
    event_tracestates: Vec<Option<String>>,
    event_data: Vec<Value>,
    event_canonical: Vec<String>,
}

impl FastBatch {
    /// The batch in columns, if it qualifies: no idempotency key, reservation or release, every
    /// written stream at an exact version (0: new), and no stream written by two commands or
    /// written by one and read by another.
    fn of(appends: &[Append]) -> Option<Self> {
        let mut batch = Self::default();
        let mut written = std::collections::HashSet::new();
        for append in appends {
            if append.idempotency.is_some() || !append.reservations.is_empty() || !append.releases.is_empty() {
                return None;
            }
            let meta = &append.metadata;
            for stream in append.streams.iter().filter(|s| !s.events.is_empty()) {
                let expected = base_version(stream.expected)?;
                if !written.insert(stream.stream_id) {
                    return None;
                }
                batch.stream_ids.push(stream.stream_id);
                batch.stream_types.push(stream.stream_type.clone());
                batch.stream_expected.push(expected);
                batch.stream_counts.push(stream.events.len() as i64);
                batch.stream_workspaces.push(meta.workspace_id);
                for (version, event) in (expected + 1..).zip(&stream.events) {
                    batch.event_ids.push(event.event_id);
                    batch.event_streams.push(stream.stream_id);
                    batch.event_stream_types.push(stream.stream_type.clone());
                    batch.event_versions.push(version);
                    batch.event_types.push(event.event_type.clone());
                    batch.event_schemas.push(event.schema_version);
                    batch.event_workspaces.push(meta.workspace_id);
                    batch.event_actors.push(meta.actor_id);
                    batch.event_correlations.push(meta.correlation_id);
                    batch.event_causations.push(meta.causation_id);
                    batch.event_traceparents.push(meta.traceparent.clone());
                    batch.event_tracestates.push(meta.tracestate.clone());
                    batch.event_data.push(event.data.clone());
                    batch.event_canonical.push(crate::chain::canonical(&event.data));
                }
            }
            for unchanged in &append.unchanged {
                batch.unchanged_ids.push(unchanged.stream_id);
                batch.unchanged_versions.push(unchanged.version);
            }
        }
        if batch.unchanged_ids.iter().any(|id| written.contains(id)) {
            return None;
        }
        Some(batch)
    }

    async fn append(
        self,
        conn: &mut PgConnection,
        appends: &[Append],
    ) -> Result<Vec<Result<Appended, AppendError>>, sqlx::Error> {
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT * FROM promptcards_append_batch_fast($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                                                         $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)",
        )
        .bind(lock_keys(appends))
        .bind(self.unchanged_ids)
        .bind(self.unchanged_versions)
        .bind(self.stream_ids)
        .bind(self.stream_types)
        .bind(self.stream_expected)
        .bind(self.stream_counts)
        .bind(self.stream_workspaces)
        .bind(self.event_ids)
        .bind(self.event_streams)
        .bind(self.event_stream_types)
        .bind(self.event_versions)
        .bind(self.event_types)
        .bind(self.event_schemas)
        .bind(self.event_workspaces)
        .bind(self.event_actors)
        .bind(self.event_correlations)
        .bind(self.event_causations)
        .bind(self.event_traceparents)
        .bind(self.event_tracestates)
        .bind(self.event_data)
        .bind(self.event_canonical)
        .fetch_all(conn)
        .await?;
        let positions: std::collections::HashMap<Uuid, i64> = rows.into_iter().collect();
        appends
            .iter()
            .map(|append| {
                let written = append.streams.iter().filter(|s| !s.events.is_empty());
                let mut position = None;
                for event in written.clone().flat_map(|s| &s.events) {
                    let stored = positions.get(&event.event_id).copied().ok_or_else(|| {
                        sqlx::Error::Protocol(format!("the append batch stored no event {}", event.event_id))
                    })?;
                    position = position.max(Some(stored));
                }
                let streams = written
                    .map(|s| StreamVersion {
                        stream_id: s.stream_id,
                        version: base_version(s.expected).unwrap_or_default() + s.events.len() as i64,
                    })
                    .collect();
                Ok(Ok(Appended {
                    streams,
                    position: position.unwrap_or_default(),
                    replayed: false,
                    response: None,
                }))
            })
            .collect()
    }
}

/// The version a stream's new events follow: 0 for a new stream; none for `Any`, which only the
/// stored stream can tell.
fn base_version(expected: ExpectedVersion) -> Option<i64> {
    match expected {
        ExpectedVersion::NoStream => Some(0),
        ExpectedVersion::Exact(version) => Some(version),
        ExpectedVersion::Any => None,
    }
}

/// Every command of the batch in a subtransaction of its own, by `promptcards_append_batch`.
async fn append_each(
    conn: &mut PgConnection,
    appends: &[Append],
) -> Result<Vec<Result<Appended, AppendError>>, sqlx::Error> {
    let commands = Value::Array(appends.iter().map(command_json).collect());
    let sqlx::types::Json(outcomes): sqlx::types::Json<Vec<Value>> =
        sqlx::query_scalar("SELECT promptcards_append_batch($1, $2)")
            .bind(sqlx::types::Json(commands))
            .bind(lock_keys(appends))
            .fetch_one(conn)
            .await?;
    if outcomes.len() != appends.len() {
        return Err(sqlx::Error::Protocol(format!(
            "the append batch answered {} outcomes for {} commands",
            outcomes.len(),
            appends.len()
        )));
    }
    Ok(outcomes.into_iter().zip(appends).map(|(o, a)| outcome(o, a)).collect())
}

/// One command as the batch function reads it. `canonical` is the data as the hash chain
/// covers it, so the function computes the same hash as `chain::event_hash`.
fn command_json(append: &Append) -> Value {
    let streams: Vec<Value> = append
        .streams
        .iter()
        .map(|stream| {
            let events: Vec<Value> = stream
                .events
                .iter()
                .map(|e| {
                    json!({
                        "event_id": e.event_id,
                        "event_type": e.event_type,
                        "schema_version": e.schema_version,
                        "data": e.data,
                        "canonical": crate::chain::canonical(&e.data),
                    })
                })
                .collect();
            let expected = match stream.expected {
                ExpectedVersion::NoStream => json!("no_stream"),
                ExpectedVersion::Any => json!("any"),
                ExpectedVersion::Exact(version) => json!(version),
            };
            json!({
                "stream_id": stream.stream_id,
                "stream_type": stream.stream_type,
                "expected": expected,
                "events": events,
            })
        })
        .collect();
    let meta = &append.metadata;
    json!({
        "streams": streams,
        "metadata": {
            "actor_id": meta.actor_id,
            "workspace_id": meta.workspace_id,
            "correlation_id": meta.correlation_id,
            "causation_id": meta.causation_id,
            "traceparent": meta.traceparent,
            "tracestate": meta.tracestate,
        },
        "unchanged": append.unchanged.iter().map(|u| json!({
            "stream_id": u.stream_id, "version": u.version,
        })).collect::<Vec<_>>(),
        "reservations": append.reservations.iter().map(|r| json!({
            "scope": r.scope, "value": r.value, "stream_id": r.stream_id,
        })).collect::<Vec<_>>(),
        "releases": append.releases.iter().map(|r| json!({
            "scope": r.scope, "value": r.value, "stream_id": r.stream_id,
        })).collect::<Vec<_>>(),
        "idempotency": append.idempotency.as_ref().map(|i| json!({
            "scope": i.scope, "key": i.key, "request_hash": i.request_hash, "response": i.response,
        })),
    })
}

/// The lock keys of every stream the batch writes, sorted and without repeats.
///
/// Appends are serialised per stream before the transaction writes anything. Tailing readers
/// order by transaction id, and a transaction gets its id at its first write: an append that
/// wrote (an idempotency key, a reservation, another stream) and then waited for a stream's row
/// lock would commit that stream's next versions under an older id than the append it waited
/// for, and be delivered before it (INVARIANT 6). Advisory locks assign no transaction id, so
/// the ones the batch takes first make id order follow each stream's version order. Keys are
/// taken in sorted order so batches cannot deadlock on them; two streams sharing a key only
/// serialise.
fn lock_keys(appends: &[Append]) -> Vec<i64> {
    let mut keys: Vec<i64> = appends
        .iter()
        .flat_map(|a| a.streams.iter())
        .filter(|s| !s.events.is_empty())
        .map(|s| {
            let (high, low) = s.stream_id.as_u64_pair();
            (high ^ low) as i64
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Reads one command's outcome as the batch function reports it.
fn outcome(value: Value, append: &Append) -> Result<Appended, AppendError> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let uuid = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .and_then(|v| Uuid::try_parse(v).ok())
    };
    match value.get("error").and_then(Value::as_str) {
        None => {
            let replayed = value.get("replayed").and_then(Value::as_bool).unwrap_or(false);
            let appended: Appended = serde_json::from_value(value)
                .map_err(|e| sqlx::Error::Protocol(format!("an append outcome did not parse: {e}")))?;
            Ok(Appended { replayed, ..appended })
        }
        Some("wrong_expected_version") => {
            let stream_id = uuid("stream_id").unwrap_or_default();
            let expected = append
                .streams
                .iter()
                .find(|s| s.stream_id == stream_id)
                .map(|s| s.expected)
                .or_else(|| {
                    let unchanged = append.unchanged.iter().find(|u| u.stream_id == stream_id)?;
                    Some(ExpectedVersion::Exact(unchanged.version))
                })
                .unwrap_or(ExpectedVersion::Any);
            Err(AppendError::WrongExpectedVersion {
                stream_id,
                expected,
                actual: value.get("actual").and_then(Value::as_i64),
            })
        }
        Some("reserved") => Err(AppendError::Reserved {
            scope: text("scope"),
            value: text("value"),
        }),
        Some("idempotency_key_reused") => Err(AppendError::IdempotencyKeyReused),
        Some("duplicate_event") => Err(AppendError::DuplicateEvent(uuid("event_id").unwrap_or_default())),
        Some(_) => Err(AppendError::Database(sqlx::Error::Protocol(text("message")))),
    }
}

/// Wakes tailing readers (the Kafka relay), which also poll, so a lost wake-up only delays them.
pub(crate) async fn notify_appended(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(crate::EVENTS_CHANNEL)
        .execute(conn)
        .await
        .map(drop)
}

pub(crate) async fn idempotent_result(
    pool: &PgPool,
    idempotency: &Idempotency,
) -> Result<Option<Appended>, AppendError> {
    let row: Option<(String, Option<sqlx::types::Json<Appended>>)> =
        sqlx::query_as("SELECT request_hash, result FROM idempotency_keys WHERE scope = $1 AND key = $2")
            .bind(&idempotency.scope)
            .bind(&idempotency.key)
            .fetch_optional(pool)
            .await?;
    match row {
        None => Ok(None),
        Some((hash, _)) if hash != idempotency.request_hash => Err(AppendError::IdempotencyKeyReused),
        Some((_, result)) => Ok(result.map(|r| Appended { replayed: true, ..r.0 })),
    }
}

pub(crate) async fn read_stream(
    pool: &PgPool,
    stream_id: Uuid,
    after_version: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        event_columns!(),
        " FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version"
    ))
    .bind(stream_id)
    .bind(after_version)
    .fetch_all(pool)
    .await
}

pub(crate) async fn event_at_version(
    pool: &PgPool,
    stream_id: Uuid,
    version: i64,
) -> Result<Option<RecordedEvent>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        event_columns!(),
        " FROM events WHERE stream_id = $1 AND version = $2"
    ))
    .bind(stream_id)
    .bind(version)
    .fetch_optional(pool)
    .await
}

pub(crate) async fn streams_of(pool: &PgPool, workspace_id: Uuid, stream_type: &str) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT stream_id FROM streams WHERE workspace_id = $1 AND stream_type = $2 ORDER BY stream_id")
        .bind(workspace_id)
        .bind(stream_type)
        .fetch_all(pool)
        .await
}

pub(crate) async fn stream_info(pool: &PgPool, stream_id: Uuid) -> Result<Option<StreamInfo>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.stream_id, s.stream_type, s.version, s.workspace_id, e.position AS last_position
         FROM streams s JOIN events e ON e.stream_id = s.stream_id AND e.version = s.version
         WHERE s.stream_id = $1",
    )
    .bind(stream_id)
    .fetch_optional(pool)
    .await
}

/// Everything below the snapshot's xmin has committed or rolled back, so no event can later
/// appear behind the cursor; what is visible of it is exactly what committed.
///
/// `ORDER BY events.tx_id`, qualified: a bare `tx_id` names the output column, the `bigint`
/// cast, which the `(tx_id, position)` index cannot deliver in order, so every read sorted all
/// the events after the cursor (a 1M-event replay fell to 900 events/s).
const READ_ALL: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events
      WHERE (tx_id, position) > ($1::bigint::text::xid8, $2)
        AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
      ORDER BY events.tx_id, events.position
      LIMIT $3"
);

pub(crate) async fn read_all(pool: &PgPool, after: Cursor, limit: i64) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    sqlx::query_as(READ_ALL)
        .bind(after.tx_id)
        .bind(after.position)
        .bind(limit)
        .fetch_all(pool)
        .await
}

pub(crate) fn events<'a>(
    pool: &'a PgPool,
    filter: &crate::EventFilter,
) -> futures_util::stream::BoxStream<'a, Result<RecordedEvent, sqlx::Error>> {
    sqlx::query_as(concat!(
        "SELECT ",
        event_columns!(),
        " FROM events
          WHERE ($1::uuid IS NULL OR workspace_id = $1)
            AND ($2::uuid IS NULL OR stream_id = $2)
            AND ($3::text IS NULL OR event_type = $3)
            AND ($4::bigint IS NULL OR position >= $4)
            AND ($5::bigint IS NULL OR position <= $5)
            AND ($6::timestamptz IS NULL OR recorded_at >= $6)
            AND ($7::timestamptz IS NULL OR recorded_at < $7)
          ORDER BY events.tx_id, events.position
          LIMIT $8"
    ))
    .bind(filter.workspace_id)
    .bind(filter.stream_id)
    .bind(filter.event_type.clone())
    .bind(filter.from_position)
    .bind(filter.to_position)
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.limit)
    .fetch(pool)
}

pub(crate) async fn workspace_history(
    pool: &PgPool,
    workspace_id: Uuid,
    stream_id: Option<Uuid>,
    before_position: Option<i64>,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        event_columns!(),
        " FROM events
          WHERE workspace_id = $1 AND ($2::uuid IS NULL OR stream_id = $2)
            AND ($3::bigint IS NULL OR position < $3)
          ORDER BY position DESC LIMIT $4"
    ))
    .bind(workspace_id)
    .bind(stream_id)
    .bind(before_position)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub(crate) async fn stream_version_at(pool: &PgPool, position: i64) -> Result<Option<StreamVersion>, sqlx::Error> {
    let row: Option<(Uuid, i64)> = sqlx::query_as("SELECT stream_id, version FROM events WHERE position = $1")
        .bind(position)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|(stream_id, version)| StreamVersion { stream_id, version }))
}

pub(crate) async fn reservation(pool: &PgPool, scope: &str, value: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT stream_id FROM reservations WHERE scope = $1 AND value = $2")
        .bind(scope)
        .bind(value)
        .fetch_optional(pool)
        .await
}

pub(crate) async fn oldest_transaction_age_seconds(pool: &PgPool) -> Result<f64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(xact_start)), 0)::float8
         FROM pg_stat_activity
         WHERE datname = current_database() AND xact_start IS NOT NULL AND pid <> pg_backend_pid()",
    )
    .fetch_one(pool)
    .await
}

pub(crate) async fn head(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM events")
        .fetch_one(pool)
        .await
}

/// Walks every stream (or one) in version order and reports each break: a version missing
/// from the sequence, a stream row claiming more events than exist, or a hash that does not
/// match its event's content and predecessor.
pub(crate) async fn verify_chains(
    pool: &PgPool,
    stream: Option<Uuid>,
) -> Result<Vec<crate::IntegrityProblem>, sqlx::Error> {
    use crate::IntegrityProblem;
    use futures_util::TryStreamExt;
    let mut problems = Vec::new();
    let mut rows = sqlx::query_as::<_, (Uuid, i64, Uuid, String, i32, serde_json::Value, Option<String>)>(
        "SELECT stream_id, version, event_id, event_type, schema_version, data, hash
         FROM events WHERE ($1::uuid IS NULL OR stream_id = $1) ORDER BY stream_id, version",
    )
    .bind(stream)
    .fetch(pool);
    let mut current: Option<(Uuid, i64, String)> = None;
    while let Some((stream_id, version, event_id, event_type, schema_version, data, hash)) = rows.try_next().await? {
        let (expected_version, previous) = match &current {
            Some((id, last, previous)) if *id == stream_id => (last + 1, previous.clone()),
            _ => (1, crate::chain::GENESIS.to_owned()),
        };
        if version != expected_version {
            problems.push(IntegrityProblem::MissingVersions {
                stream_id,
                from: expected_version,
                to: version - 1,
            });
        }
        let recomputed = crate::chain::event_hash(
            &previous,
            event_id,
            stream_id,
            version,
            &event_type,
            schema_version,
            &data,
        );
        if hash.as_deref() != Some(recomputed.as_str()) {
            problems.push(IntegrityProblem::HashMismatch {
                stream_id,
                version,
                event_id,
            });
        }
        // Continue the walk from the stored hash, so one edit is reported once.
        current = Some((stream_id, version, hash.unwrap_or(recomputed)));
    }
    drop(rows);
    let short: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT s.stream_id, s.version, COALESCE(max(e.version), 0)
         FROM streams s LEFT JOIN events e ON e.stream_id = s.stream_id
         WHERE ($1::uuid IS NULL OR s.stream_id = $1)
         GROUP BY s.stream_id, s.version HAVING s.version <> COALESCE(max(e.version), 0)",
    )
    .bind(stream)
    .fetch_all(pool)
    .await?;
    for (stream_id, claimed, stored) in short {
        problems.push(IntegrityProblem::StreamVersionMismatch {
            stream_id,
            claimed,
            stored,
        });
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::FastBatch;
    use crate::{Append, ExpectedVersion, Idempotency, NewEvent, Reservation, StreamAppend, StreamVersion};
    use sqlx::PgPool;
    use uuid::Uuid;

    fn write(stream_id: Uuid, expected: ExpectedVersion) -> Append {
        Append {
            streams: vec![StreamAppend {
                stream_id,
                stream_type: "test".into(),
                expected,
                events: vec![NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: "Happened".into(),
                    schema_version: 1,
                    data: serde_json::json!({}),
                }],
            }],
            ..Append::default()
        }
    }

    /// Which batches the set-based append takes; the rest go command by command.
    #[test]
    fn only_plain_writes_of_distinct_streams_are_appended_set_based() {
        use ExpectedVersion::{Any, Exact, NoStream};
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let set_based = |batch: Vec<Append>| FastBatch::of(&batch).is_some();

        let plain = FastBatch::of(&[write(a, Exact(3)), write(b, NoStream)]).unwrap();
        assert_eq!(plain.stream_expected, vec![3, 0]);
        assert_eq!(plain.event_versions, vec![4, 1]);

        assert!(
            !set_based(vec![write(a, Exact(3)), write(a, Exact(4))]),
            "one stream twice"
        );
        assert!(!set_based(vec![write(a, Any)]), "no expected version");
        let mut read_and_written = write(b, NoStream);
        read_and_written.unchanged = vec![StreamVersion {
            stream_id: a,
            version: 3,
        }];
        assert!(!set_based(vec![write(a, Exact(3)), read_and_written.clone()]));
        assert!(set_based(vec![read_and_written]), "a stream read alone");
        let mut named = write(a, NoStream);
        named.reservations = vec![Reservation {
            scope: "name".into(),
            value: "n".into(),
            stream_id: a,
        }];
        assert!(!set_based(vec![named.clone()]));
        named.releases = std::mem::take(&mut named.reservations);
        assert!(!set_based(vec![named]));
        let mut keyed = write(a, NoStream);
        keyed.idempotency = Some(Idempotency {
            scope: "s".into(),
            key: "k".into(),
            request_hash: "h".into(),
            response: serde_json::json!({}),
        });
        assert!(!set_based(vec![keyed]));
    }

    /// The tailing read walks the global-order index: with sorting disabled, the planner sorts
    /// only when no index gives the order asked for.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn read_all_is_served_in_index_order_without_a_sort(pool: PgPool) {
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("SET enable_sort = off").execute(&mut *conn).await.unwrap();
        let explain = format!("EXPLAIN {}", super::READ_ALL.replace("$3", "1000"));
        let plan: Vec<String> = sqlx::query_scalar(&explain)
            .bind(0_i64)
            .bind(0_i64)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("events_global_order"), "{plan}");
        assert!(!plan.contains("Sort"), "{plan}");
    }
}
