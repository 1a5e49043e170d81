//! The Postgres read models (schema `read`). Each batch is one transaction that also records
//! the applied stream versions, so a crash anywhere neither loses nor doubles an effect.
//!
//! The statements name the read tables without a schema; each batch sets its transaction's
//! `search_path` to the sink's schema. That is what lets `promptcards replay` project the very
//! same rules into a shadow schema and later rename it to `read` while this sink keeps running:
//! names are resolved per statement, so after the rename the live batches write the new tables.

use crate::Sink;
use domain::card::{CardContent, CardEvent};
use domain::names::{stream_types, PROMPTS_CHANNEL, READ_MODELS_CHANNEL};
use domain::run::RunEvent;
use domain::run::TestResult;
use domain::test_case::TestCaseEvent;
use domain::user::UserEvent;
use domain::workspace::WorkspaceEvent;
use event_store::RecordedEvent;
use sqlx::{PgConnection, PgPool};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// The schema the query API reads.
pub const READ_SCHEMA: &str = "read";

#[derive(Clone)]
pub struct PostgresSink {
    pool: PgPool,
    /// The schema written: `read`, or a shadow with the same tables (a rebuild, a verification).
    schema: String,
    /// Whether applied batches are announced on [`READ_MODELS_CHANNEL`]; nothing reads a
    /// shadow schema, so waking read-your-writes waiters for it would only make them look again.
    notify: bool,
}

impl PostgresSink {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            schema: READ_SCHEMA.to_owned(),
            notify: true,
        }
    }

    /// A sink writing the same tables in another schema, announcing nothing. The name must be a
    /// plain lower-case identifier.
    pub fn with_schema(pool: PgPool, schema: &str) -> anyhow::Result<Self> {
        let plain = schema
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        anyhow::ensure!(plain && schema.len() < 64, "{schema:?} is not a plain schema name");
        Ok(Self {
            pool,
            schema: schema.to_owned(),
            notify: schema == READ_SCHEMA,
        })
    }

    /// Applies a batch inside the caller's transaction, skipping events at or below the
    /// stream versions already applied. Leaves the transaction's `search_path` set to the
    /// sink's schema.
    ///
    /// The batch costs few round trips: the applied versions of all its streams are read (and
    /// locked) in one statement and written back in one, and consecutive test results, the bulk
    /// of any store, are inserted together. Everything else is applied event by event, in order.
    pub async fn apply_in(&self, tx: &mut PgConnection, events: &[RecordedEvent]) -> anyhow::Result<()> {
        sqlx::query("SELECT set_config('search_path', $1, true)")
            .bind(&self.schema)
            .execute(&mut *tx)
            .await?;
        let mut stream_ids: Vec<Uuid> = events.iter().map(|e| e.stream_id).collect();
        stream_ids.sort_unstable();
        stream_ids.dedup();
        let mut applied: HashMap<Uuid, i64> = sqlx::query_as(
            "SELECT stream_id, version FROM stream_versions WHERE stream_id = ANY($1) ORDER BY stream_id FOR UPDATE",
        )
        .bind(&stream_ids)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let mut moved: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new();
        let mut results = Results::default();
        for event in events {
            if applied.get(&event.stream_id).is_some_and(|v| event.version <= *v) {
                metrics::counter!("projector_redeliveries_skipped_total", "sink" => "postgres").increment(1);
                continue;
            }
            match decode_result(event)? {
                Some(result) => results.push(event, result)?,
                None => {
                    results.flush(tx).await?;
                    apply_event(tx, event).await?;
                }
            }
            applied.insert(event.stream_id, event.version);
            moved.insert(event.stream_id, (event.version, event.position));
        }
        results.flush(tx).await?;
        if !moved.is_empty() {
            let (ids, rest): (Vec<Uuid>, Vec<(i64, i64)>) = moved.into_iter().unzip();
            let (versions, positions): (Vec<i64>, Vec<i64>) = rest.into_iter().unzip();
            sqlx::query(
                "INSERT INTO stream_versions (stream_id, version, position)
                 SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[])
                 ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version, position = EXCLUDED.position",
            )
            .bind(&ids)
            .bind(&versions)
            .bind(&positions)
            .execute(&mut *tx)
            .await?;
        }
        // Tells processes serving prompts from memory which cards and workspaces (members, keys)
        // changed, once the batch is visible (a NOTIFY is delivered at commit): a caller refused
        // before their membership was projected is asked again. Chunked: a payload holds at
        // most 8,000 bytes.
        if self.notify {
            let changed: Vec<(Uuid, i64)> = events
                .iter()
                .filter(|e| [stream_types::PROMPT_CARD, stream_types::WORKSPACE].contains(&e.stream_type.as_str()))
                .map(|e| (e.stream_id, e.version))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect();
            for chunk in changed.chunks(100) {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(PROMPTS_CHANNEL)
                    .bind(serde_json::to_string(chunk)?)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        // Wakes read-your-writes waiters in the query API once the batch is visible.
        if let Some(last) = events.iter().map(|e| e.position).max().filter(|_| self.notify) {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(READ_MODELS_CHANNEL)
                .bind(last.to_string())
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}

impl Sink for PostgresSink {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn apply(&self, events: &[RecordedEvent]) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        self.apply_in(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Applies one event to the read models. Events of stream types this projection does not
/// know are recorded as applied and otherwise ignored.
async fn apply_event(tx: &mut PgConnection, event: &RecordedEvent) -> anyhow::Result<()> {
    match event.stream_type.as_str() {
        stream_types::USER => apply_user(tx, event, event.decode()?).await,
        stream_types::WORKSPACE => apply_workspace(tx, event, event.decode()?).await,
        stream_types::PROMPT_CARD => apply_card(tx, event, event.decode()?).await,
        stream_types::TEST_CASE => apply_test_case(tx, event, event.decode()?).await,
        stream_types::TEST_RUN => apply_run(tx, event, event.decode()?).await,
        stream_types::WEBHOOK => crate::integrations::apply_webhook(tx, event, event.decode()?).await,
        stream_types::ALERT_RULE => crate::integrations::apply_alert_rule(tx, event, event.decode()?).await,
        _ => Ok(()),
    }
}

async fn apply_user(tx: &mut PgConnection, event: &RecordedEvent, user: UserEvent) -> anyhow::Result<()> {
    match user {
        UserEvent::UserRegistered { user_id, email, .. } => {
            sqlx::query("INSERT INTO users (user_id, email, created_at) VALUES ($1, $2, $3)")
                .bind(user_id)
                .bind(email)
                .bind(event.recorded_at)
                .execute(&mut *tx)
                .await?;
        }
        // No read model shows passwords.
        UserEvent::PasswordChanged { .. } => {}
    }
    Ok(())
}

async fn apply_workspace(
    tx: &mut PgConnection,
    event: &RecordedEvent,
    workspace: WorkspaceEvent,
) -> anyhow::Result<()> {
    let id = event.stream_id;
    let at = event.recorded_at;
    match workspace {
        WorkspaceEvent::WorkspaceCreated { name, owner_id, .. } => {
            sqlx::query("INSERT INTO workspaces (workspace_id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)")
                .bind(id)
                .bind(name)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            upsert_member(tx, id, owner_id, "owner", at).await?;
        }
        WorkspaceEvent::MemberAdded { user_id, role } => {
            upsert_member(tx, id, user_id, role.as_str(), at).await?;
        }
        WorkspaceEvent::MemberRoleChanged { user_id, to, .. } => {
            sqlx::query("UPDATE members SET role = $3 WHERE workspace_id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .bind(to.as_str())
                .execute(&mut *tx)
                .await?;
        }
        WorkspaceEvent::MemberRemoved { user_id } => {
            sqlx::query("DELETE FROM members WHERE workspace_id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        WorkspaceEvent::ApiKeyCreated {
            key_id,
            name,
            role,
            secret_hash,
            ..
        } => {
            sqlx::query(
                "INSERT INTO api_keys (key_id, workspace_id, name, role, secret_hash, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(key_id)
            .bind(id)
            .bind(name)
            .bind(role.as_str())
            .bind(secret_hash)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        // The APIs authenticate keys from the store; the read model forgets a revoked key so
        // that nothing reading it can mistake it for a live one.
        WorkspaceEvent::ApiKeyRevoked { key_id, .. } => {
            sqlx::query("DELETE FROM api_keys WHERE key_id = $1")
                .bind(key_id)
                .execute(&mut *tx)
                .await?;
        }
        // Provider settings and budgets are read from the workspace's stream by the command
        // API and the runner; no read model shows them.
        WorkspaceEvent::ProviderCredentialSet { .. }
        | WorkspaceEvent::ProviderCredentialRemoved { .. }
        | WorkspaceEvent::SpendBudgetSet { .. }
        | WorkspaceEvent::SpendRecorded { .. } => {}
    }
    sqlx::query("UPDATE workspaces SET updated_at = $2 WHERE workspace_id = $1")
        .bind(id)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn upsert_member(
    tx: &mut PgConnection,
    workspace_id: uuid::Uuid,
    user_id: uuid::Uuid,
    role: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO members (workspace_id, user_id, role, added_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = $3",
    )
    .bind(workspace_id)
    .bind(user_id)
    .bind(role)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn insert_card_version(
    tx: &mut PgConnection,
    event: &RecordedEvent,
    version: u32,
    content: &CardContent,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO card_versions (card_id, version, title, description, template, variables, tags, actor_id, created_at,
                                    messages, config)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(event.stream_id)
    .bind(version as i32)
    .bind(&content.title)
    .bind(&content.description)
    .bind(&content.template)
    .bind(serde_json::to_value(&content.variables)?)
    .bind(&content.tags)
    .bind(event.actor_id)
    .bind(event.recorded_at)
    .bind(serde_json::to_value(&content.messages)?)
    .bind(serde_json::Value::Object(content.config.clone()))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn apply_card(tx: &mut PgConnection, event: &RecordedEvent, card: CardEvent) -> anyhow::Result<()> {
    let id = event.stream_id;
    let at = event.recorded_at;
    match card {
        CardEvent::PromptCardCreated {
            workspace_id,
            name,
            content,
            ..
        } => {
            sqlx::query(
                "INSERT INTO prompt_cards
                   (card_id, workspace_id, title, description, template, variables, tags, version, created_at, updated_at,
                    name, kind, messages, config)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8, $9, $10, $11, $12)",
            )
            .bind(id)
            .bind(workspace_id)
            .bind(&content.title)
            .bind(&content.description)
            .bind(&content.template)
            .bind(serde_json::to_value(&content.variables)?)
            .bind(&content.tags)
            .bind(at)
            .bind(&name)
            .bind(content.kind().as_str())
            .bind(serde_json::to_value(&content.messages)?)
            .bind(serde_json::Value::Object(content.config.clone()))
            .execute(&mut *tx)
            .await?;
            insert_card_version(tx, event, 1, &content).await?;
        }
        CardEvent::PromptCardUpdated { version, content } => {
            sqlx::query(
                "UPDATE prompt_cards SET title = $2, description = $3, template = $4, variables = $5,
                        tags = $6, version = $7, updated_at = $8, kind = $9, messages = $10, config = $11
                 WHERE card_id = $1",
            )
            .bind(id)
            .bind(&content.title)
            .bind(&content.description)
            .bind(&content.template)
            .bind(serde_json::to_value(&content.variables)?)
            .bind(&content.tags)
            .bind(version as i32)
            .bind(at)
            .bind(content.kind().as_str())
            .bind(serde_json::to_value(&content.messages)?)
            .bind(serde_json::Value::Object(content.config.clone()))
            .execute(&mut *tx)
            .await?;
            insert_card_version(tx, event, version, &content).await?;
        }
        CardEvent::PromptCardLabelMoved {
            label,
            version,
            previous_version,
        } => {
            sqlx::query(
                "UPDATE prompt_cards SET labels = labels || jsonb_build_object($2::text, $3::int), updated_at = $4
                 WHERE card_id = $1",
            )
            .bind(id)
            .bind(&label)
            .bind(version as i32)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO label_moves (card_id, position, label, version, previous_version, actor_id, moved_at, cause_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id)
            .bind(event.position)
            .bind(&label)
            .bind(version as i32)
            .bind(previous_version.map(|v| v as i32))
            .bind(event.actor_id)
            .bind(at)
            .bind(event.causation_id)
            .execute(&mut *tx)
            .await?;
        }
        CardEvent::PromptCardRenamed { name, .. } => {
            sqlx::query("UPDATE prompt_cards SET name = $2, updated_at = $3 WHERE card_id = $1")
                .bind(id)
                .bind(&name)
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        CardEvent::PromptCardArchived {} => {
            sqlx::query("UPDATE prompt_cards SET archived = true, updated_at = $2 WHERE card_id = $1")
                .bind(id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        // The test case's own stream carries everything read.test_cases shows.
        CardEvent::TestCaseAttached { .. } | CardEvent::TestCaseDetached { .. } => {}
    }
    Ok(())
}

async fn set_run_status(
    tx: &mut PgConnection,
    event: &RecordedEvent,
    status: &str,
    failure: Option<&str>,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE test_runs SET status = $2, failure = COALESCE($3, failure), updated_at = $4 WHERE run_id = $1")
        .bind(event.stream_id)
        .bind(status)
        .bind(failure)
        .bind(event.recorded_at)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn apply_run(tx: &mut PgConnection, event: &RecordedEvent, run: RunEvent) -> anyhow::Result<()> {
    let id = event.stream_id;
    match run {
        RunEvent::TestRunRequested { plan, total, .. } => {
            sqlx::query(
                "INSERT INTO test_runs (run_id, workspace_id, card_id, card_version, providers, repeat, status,
                                             total, requested_by, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'QUEUED', $7, $8, $9, $9)",
            )
            .bind(id)
            .bind(plan.workspace_id)
            .bind(plan.card_id)
            .bind(plan.card_version as i32)
            .bind(serde_json::to_value(&plan.providers)?)
            .bind(plan.repeat as i32)
            .bind(total as i64)
            .bind(event.actor_id)
            .bind(event.recorded_at)
            .execute(&mut *tx)
            .await?;
        }
        RunEvent::TestRunStarted {} => set_run_status(tx, event, "RUNNING", None).await?,
        // Not reached from `apply_in`, which takes results aside and inserts them in bulk
        // (`Results`); the arm applies one the same way so this match stays complete.
        RunEvent::TestResultRecorded { result, .. } => {
            let mut one = Results::default();
            one.push(event, result)?;
            one.flush(tx).await?;
        }
        RunEvent::TestRunCompleted { .. } => set_run_status(tx, event, "COMPLETED", None).await?,
        RunEvent::TestRunFailed { reason } => set_run_status(tx, event, "FAILED", Some(&reason)).await?,
        RunEvent::TestRunCancelled {} => set_run_status(tx, event, "CANCELLED", None).await?,
        // Re-grades stay in the run's history; the read models show the verdicts recorded
        // when the run ran.
        RunEvent::TestRunRegraded { .. } => {}
    }
    Ok(())
}

async fn apply_test_case(tx: &mut PgConnection, event: &RecordedEvent, case: TestCaseEvent) -> anyhow::Result<()> {
    let id = event.stream_id;
    let at = event.recorded_at;
    match case {
        TestCaseEvent::TestCaseCreated {
            card_id,
            workspace_id,
            content,
            ..
        } => {
            sqlx::query(
                "INSERT INTO test_cases
                   (case_id, card_id, workspace_id, name, vars, expected_output, assertions, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            )
            .bind(id)
            .bind(card_id)
            .bind(workspace_id)
            .bind(&content.name)
            .bind(serde_json::Value::Object(content.vars.clone()))
            .bind(&content.expected_output)
            .bind(serde_json::to_value(&content.assertions)?)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        TestCaseEvent::TestCaseUpdated { content } => {
            sqlx::query(
                "UPDATE test_cases SET name = $2, vars = $3, expected_output = $4, assertions = $5, updated_at = $6
                 WHERE case_id = $1",
            )
            .bind(id)
            .bind(&content.name)
            .bind(serde_json::Value::Object(content.vars.clone()))
            .bind(&content.expected_output)
            .bind(serde_json::to_value(&content.assertions)?)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        TestCaseEvent::TestCaseDeleted {} => {
            sqlx::query("UPDATE test_cases SET deleted = true, updated_at = $2 WHERE case_id = $1")
                .bind(id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

/// The result an event records, if it is a `TestResultRecorded`.
fn decode_result(event: &RecordedEvent) -> anyhow::Result<Option<TestResult>> {
    if event.stream_type != stream_types::TEST_RUN || event.event_type != RunEvent::TEST_RESULT_RECORDED {
        return Ok(None);
    }
    match event.decode::<RunEvent>()? {
        RunEvent::TestResultRecorded { result, .. } => Ok(Some(result)),
        _ => Ok(None),
    }
}

/// Consecutive test results, inserted with one statement and counted on their runs with
/// another.
#[derive(Default)]
struct Results {
    run_ids: Vec<Uuid>,
    case_ids: Vec<Uuid>,
    providers: Vec<String>,
    repetitions: Vec<i32>,
    rendered_prompts: Vec<String>,
    outputs: Vec<Option<String>>,
    errors: Vec<Option<String>>,
    latencies_ms: Vec<i64>,
    prompt_tokens: Vec<i32>,
    completion_tokens: Vec<i32>,
    costs_micro_usd: Vec<i64>,
    grading_prompt_tokens: Vec<i32>,
    grading_completion_tokens: Vec<i32>,
    grading_costs_micro_usd: Vec<i64>,
    passed: Vec<bool>,
    scores: Vec<f64>,
    assertions: Vec<serde_json::Value>,
    positions: Vec<i64>,
    recorded_at: Vec<chrono::DateTime<chrono::Utc>>,
}

impl Results {
    fn push(&mut self, event: &RecordedEvent, result: TestResult) -> anyhow::Result<()> {
        self.run_ids.push(event.stream_id);
        self.case_ids.push(result.key.case_id);
        self.providers.push(result.key.provider);
        self.repetitions.push(result.key.repetition as i32);
        self.rendered_prompts.push(result.rendered_prompt);
        self.outputs.push(result.output);
        self.errors.push(result.error);
        self.latencies_ms.push(result.latency_ms as i64);
        self.prompt_tokens.push(result.prompt_tokens as i32);
        self.completion_tokens.push(result.completion_tokens as i32);
        self.costs_micro_usd.push(result.cost_micro_usd);
        self.grading_prompt_tokens
            .push(i32::try_from(result.grading.grading_prompt_tokens).unwrap_or(i32::MAX));
        self.grading_completion_tokens
            .push(i32::try_from(result.grading.grading_completion_tokens).unwrap_or(i32::MAX));
        self.grading_costs_micro_usd.push(result.grading.grading_cost_micro_usd);
        self.passed.push(result.passed);
        self.scores.push(result.score);
        self.assertions.push(serde_json::to_value(&result.assertions)?);
        self.positions.push(event.position);
        self.recorded_at.push(event.recorded_at);
        Ok(())
    }

    async fn flush(&mut self, tx: &mut PgConnection) -> anyhow::Result<()> {
        if self.run_ids.is_empty() {
            return Ok(());
        }
        let r = std::mem::take(self);
        sqlx::query(
            "INSERT INTO test_results (run_id, case_id, provider, repetition, rendered_prompt, output, error,
                latency_ms, prompt_tokens, completion_tokens, cost_micro_usd, passed, score, assertions, position, recorded_at,
                grading_prompt_tokens, grading_completion_tokens, grading_cost_micro_usd)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[],
                $8::bigint[], $9::int[], $10::int[], $11::bigint[], $12::bool[], $13::float8[], $14::jsonb[],
                $15::bigint[], $16::timestamptz[], $17::int[], $18::int[], $19::bigint[])",
        )
        .bind(&r.run_ids)
        .bind(&r.case_ids)
        .bind(&r.providers)
        .bind(&r.repetitions)
        .bind(&r.rendered_prompts)
        .bind(&r.outputs)
        .bind(&r.errors)
        .bind(&r.latencies_ms)
        .bind(&r.prompt_tokens)
        .bind(&r.completion_tokens)
        .bind(&r.costs_micro_usd)
        .bind(&r.passed)
        .bind(&r.scores)
        .bind(&r.assertions)
        .bind(&r.positions)
        .bind(&r.recorded_at)
        .bind(&r.grading_prompt_tokens)
        .bind(&r.grading_completion_tokens)
        .bind(&r.grading_costs_micro_usd)
        .execute(&mut *tx)
        .await?;
        // Per run: how many results, how many passed, and when the last was recorded.
        let mut runs: BTreeMap<Uuid, (i32, i32, chrono::DateTime<chrono::Utc>)> = BTreeMap::new();
        for ((run_id, passed), at) in r.run_ids.iter().zip(&r.passed).zip(&r.recorded_at) {
            let entry = runs.entry(*run_id).or_insert((0, 0, *at));
            entry.0 += 1;
            entry.1 += i32::from(*passed);
            entry.2 = entry.2.max(*at);
        }
        let mut ids = Vec::new();
        let (mut counts, mut passes, mut ats) = (Vec::new(), Vec::new(), Vec::new());
        for (id, (count, passed, at)) in runs {
            ids.push(id);
            counts.push(count);
            passes.push(passed);
            ats.push(at);
        }
        sqlx::query(
            "UPDATE test_runs t SET completed = t.completed + u.n, passed = t.passed + u.p,
                    failed = t.failed + (u.n - u.p), updated_at = u.at
             FROM UNNEST($1::uuid[], $2::int[], $3::int[], $4::timestamptz[]) AS u(run_id, n, p, at)
             WHERE t.run_id = u.run_id",
        )
        .bind(&ids)
        .bind(&counts)
        .bind(&passes)
        .bind(&ats)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
