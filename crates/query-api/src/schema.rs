//! The GraphQL schema of API.md, served from the read models, the event store's read path
//! (history, time travel) and ClickHouse (analytics).

use crate::access::{Access, Principal};
use crate::analytics::Analytics;
use crate::errors::{bad_request, forbidden, internal};
use crate::AppState;
use async_graphql::connection::{Connection, Edge};
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, Json, Object, Result, Subscription, ID};
use base64::Engine;
use chrono::{DateTime, Utc};
use domain::card::PromptCard as CardState;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

pub type AppSchema = async_graphql::Schema<QueryRoot, async_graphql::EmptyMutation, SubscriptionRoot>;

const MAX_PAGE: i64 = 100;
const DEFAULT_PAGE: i64 = 20;

fn parse_id(id: &ID, what: &str) -> Result<Uuid> {
    Uuid::try_parse(id.as_str()).map_err(|_| bad_request(format!("{what} must be a UUID")))
}

fn page_size(first: Option<i32>) -> Result<i64> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE as i32).contains(&n) => Ok(n as i64),
        Some(_) => Err(bad_request(format!("first must be 1 to {MAX_PAGE}"))),
    }
}

fn encode_cursor<T: Serialize>(value: &T) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

fn decode_cursor<T: for<'de> Deserialize<'de>>(cursor: &str) -> Result<T> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| bad_request("after is not a cursor this API gave out"))
}

/// A page of a keyset query fetched with `LIMIT limit + 1`: the extra row only says whether
/// there is a next page.
pub fn page<T: async_graphql::OutputType>(
    rows: Vec<T>,
    limit: i64,
    had_cursor: bool,
    cursor: impl Fn(&T) -> String,
) -> Connection<String, T> {
    let has_next = rows.len() as i64 > limit;
    let mut connection = Connection::new(had_cursor, has_next);
    connection.edges.extend(
        rows.into_iter()
            .take(limit as usize)
            .map(|node| Edge::new(cursor(&node), node)),
    );
    connection
}

fn state<'a>(ctx: &Context<'a>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

fn access(ctx: &Context<'_>) -> Access {
    *ctx.data_unchecked::<Access>()
}

/// A prompt card as the read model (or a fold of its history) has it.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct CardNode {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub title: String,
    pub description: String,
    pub template: String,
    pub variables: Value,
    pub tags: Vec<String>,
    pub version: i32,
    pub labels: Value,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[Object(name = "PromptCard")]
impl CardNode {
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    async fn workspace_id(&self) -> ID {
        ID(self.workspace_id.to_string())
    }
    async fn title(&self) -> &str {
        &self.title
    }
    async fn description(&self) -> &str {
        &self.description
    }
    async fn template(&self) -> &str {
        &self.template
    }
    /// Declared variables: `[{name, type, description?, default?, required}]`.
    async fn variables(&self) -> Json<&Value> {
        Json(&self.variables)
    }
    async fn tags(&self) -> &[String] {
        &self.tags
    }
    async fn version(&self) -> i32 {
        self.version
    }
    /// Label name to the version it points at, e.g. `{"production": 3}`.
    async fn labels(&self) -> Json<&Value> {
        Json(&self.labels)
    }
    async fn archived(&self) -> bool {
        self.archived
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }
    async fn test_cases(&self, ctx: &Context<'_>) -> Result<Vec<TestCaseNode>> {
        let loader = ctx.data_unchecked::<DataLoader<TestCasesByCard>>();
        Ok(loader.load_one(self.id).await.map_err(internal)?.unwrap_or_default())
    }
    /// Every label move, oldest first: who pointed which label at which version, and when.
    async fn label_history(&self, ctx: &Context<'_>) -> Result<Vec<LabelMove>> {
        sqlx::query_as(
            "SELECT label, version, previous_version, actor_id, moved_at, position
             FROM read.label_moves WHERE card_id = $1 ORDER BY position",
        )
        .bind(self.id)
        .fetch_all(&state(ctx).pool)
        .await
        .map_err(internal)
    }
}

#[derive(Debug, Clone, sqlx::FromRow, async_graphql::SimpleObject)]
pub struct LabelMove {
    pub label: String,
    pub version: i32,
    pub previous_version: Option<i32>,
    pub actor_id: Option<Uuid>,
    pub moved_at: DateTime<Utc>,
    pub position: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TestCaseNode {
    pub case_id: Uuid,
    pub card_id: Uuid,
    pub name: String,
    pub vars: Value,
    pub expected_output: Option<String>,
    pub assertions: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[Object(name = "TestCase")]
impl TestCaseNode {
    async fn id(&self) -> ID {
        ID(self.case_id.to_string())
    }
    async fn card_id(&self) -> ID {
        ID(self.card_id.to_string())
    }
    async fn name(&self) -> &str {
        &self.name
    }
    async fn vars(&self) -> Json<&Value> {
        Json(&self.vars)
    }
    async fn expected_output(&self) -> Option<&str> {
        self.expected_output.as_deref()
    }
    async fn assertions(&self) -> Json<&Value> {
        Json(&self.assertions)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }
}

/// Loads the live test cases of many cards in one query (a page of cards costs one query).
pub struct TestCasesByCard(pub PgPool);

impl Loader<Uuid> for TestCasesByCard {
    type Value = Vec<TestCaseNode>;
    type Error = Arc<sqlx::Error>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows: Vec<TestCaseNode> = sqlx::query_as(
            "SELECT case_id, card_id, name, vars, expected_output, assertions, created_at, updated_at
             FROM read.test_cases WHERE card_id = ANY($1) AND NOT deleted
             ORDER BY created_at, case_id",
        )
        .bind(keys)
        .fetch_all(&self.0)
        .await
        .map_err(Arc::new)?;
        let mut by_card: HashMap<Uuid, Vec<TestCaseNode>> = HashMap::new();
        for row in rows {
            by_card.entry(row.card_id).or_default().push(row);
        }
        Ok(by_card)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkspaceNode {
    pub workspace_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow, async_graphql::SimpleObject)]
pub struct Member {
    pub user_id: Uuid,
    pub email: Option<String>,
    pub role: String,
}

#[Object(name = "Workspace")]
impl WorkspaceNode {
    async fn id(&self) -> ID {
        ID(self.workspace_id.to_string())
    }
    async fn name(&self) -> &str {
        &self.name
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    /// The caller's role here.
    async fn role(&self, ctx: &Context<'_>) -> Result<String> {
        access(ctx).role_in(&state(ctx).pool, self.workspace_id).await
    }
    async fn members(&self, ctx: &Context<'_>) -> Result<Vec<Member>> {
        sqlx::query_as(
            "SELECT m.user_id, u.email, m.role FROM read.members m
             LEFT JOIN read.users u ON u.user_id = m.user_id
             WHERE m.workspace_id = $1 ORDER BY m.added_at, m.user_id",
        )
        .bind(self.workspace_id)
        .fetch_all(&state(ctx).pool)
        .await
        .map_err(internal)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserNode {
    pub user_id: Uuid,
    pub email: String,
}

#[Object(name = "User")]
impl UserNode {
    async fn id(&self) -> ID {
        ID(self.user_id.to_string())
    }
    async fn email(&self) -> &str {
        &self.email
    }
    async fn workspaces(&self, ctx: &Context<'_>) -> Result<Vec<WorkspaceNode>> {
        sqlx::query_as(
            "SELECT w.workspace_id, w.name, w.created_at FROM read.workspaces w
             JOIN read.members m ON m.workspace_id = w.workspace_id
             WHERE m.user_id = $1 ORDER BY w.created_at",
        )
        .bind(self.user_id)
        .fetch_all(&state(ctx).pool)
        .await
        .map_err(internal)
    }
}

/// One event of a workspace, as the audit log and `workspaceEvents` show it.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(complex)]
pub struct AuditEntry {
    pub position: i64,
    pub stream_id: Uuid,
    pub stream_type: String,
    pub version: i64,
    pub event_type: String,
    pub actor_id: Option<Uuid>,
    pub recorded_at: DateTime<Utc>,
    #[graphql(skip)]
    pub data: Value,
}

#[async_graphql::ComplexObject]
impl AuditEntry {
    /// The event's payload.
    async fn data(&self) -> Json<&Value> {
        Json(&self.data)
    }
}

const CARD_COLUMNS: &str = "c.card_id AS id, c.workspace_id, c.title, c.description, c.template, c.variables, c.tags, c.version, c.labels, c.archived, c.created_at, c.updated_at";

pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// The calling user (null for an API key).
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<UserNode>> {
        let Principal::User(user_id) = access(ctx).principal()? else {
            return Ok(None);
        };
        sqlx::query_as("SELECT user_id, email FROM read.users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&state(ctx).pool)
            .await
            .map_err(internal)
    }

    async fn workspace(&self, ctx: &Context<'_>, id: ID) -> Result<Option<WorkspaceNode>> {
        let workspace_id = parse_id(&id, "id")?;
        let state = state(ctx);
        access(ctx).role_in(&state.pool, workspace_id).await?;
        sqlx::query_as("SELECT workspace_id, name, created_at FROM read.workspaces WHERE workspace_id = $1")
            .bind(workspace_id)
            .fetch_optional(&state.pool)
            .await
            .map_err(internal)
    }

    /// A card as it is now, at one of its versions, or as it was at a moment (`asOf`), folded
    /// from its event history with the domain's own rules.
    async fn prompt_card(
        &self,
        ctx: &Context<'_>,
        id: ID,
        version: Option<i32>,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Option<CardNode>> {
        let card_id = parse_id(&id, "id")?;
        access(ctx).principal()?;
        let state = state(ctx);
        if version.is_some() || as_of.is_some() {
            return card_in_history(ctx, card_id, version, as_of).await;
        }
        // After an X-Min-Position wait only the read model is known to have the position; the
        // cache is trusted up to the version Redis knows, which may lag behind it.
        let cached = match ctx.data_opt::<crate::freshness::MinPosition>() {
            Some(_) => None,
            None => state.cache.card(card_id).await,
        };
        let card = match cached {
            Some(card) => card,
            None => {
                crate::cache::DocCache::miss();
                let row: Option<(CardNode, i64)> = load_card(&state.pool, card_id).await?;
                let Some((card, stream_version)) = row else {
                    return Ok(None);
                };
                state.cache.put_card(&card, stream_version).await;
                card
            }
        };
        // Tenancy after the cache: a cached document is served only to members.
        if access(ctx).role_in(&state.pool, card.workspace_id).await.is_err() {
            return Ok(None);
        }
        Ok(Some(card))
    }

    /// Live (not archived) cards of a workspace, oldest first, with full-text `search` over
    /// title, description and template, and a `tag` filter.
    async fn prompt_cards(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        search: Option<String>,
        tag: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, CardNode>> {
        let workspace_id = parse_id(&workspace_id, "workspaceId")?;
        let state = state(ctx);
        access(ctx).role_in(&state.pool, workspace_id).await?;
        let limit = page_size(first)?;
        let after: Option<(DateTime<Utc>, Uuid)> = after.as_deref().map(decode_cursor).transpose()?;
        let search = search.filter(|s| !s.trim().is_empty());
        let rows: Vec<CardNode> = sqlx::query_as(&format!(
            "SELECT {CARD_COLUMNS} FROM read.prompt_cards c
             WHERE workspace_id = $1 AND NOT archived
               AND ($2::text IS NULL OR search @@ websearch_to_tsquery('simple', $2))
               AND ($3::text IS NULL OR $3 = ANY(tags))
               AND ($4::timestamptz IS NULL OR (created_at, card_id) > ($4, $5))
             ORDER BY created_at, card_id
             LIMIT $6"
        ))
        .bind(workspace_id)
        .bind(search)
        .bind(tag)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit + 1)
        .fetch_all(&state.pool)
        .await
        .map_err(internal)?;
        Ok(page(rows, limit, after.is_some(), |card| {
            encode_cursor(&(card.created_at, card.id))
        }))
    }

    /// Every event of a workspace (optionally of one stream), newest first.
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        stream_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, AuditEntry>> {
        let workspace_id = parse_id(&workspace_id, "workspaceId")?;
        let stream_id = stream_id.as_ref().map(|s| parse_id(s, "streamId")).transpose()?;
        let state = state(ctx);
        access(ctx).role_in(&state.pool, workspace_id).await?;
        let limit = page_size(first)?;
        let after: Option<i64> = after.as_deref().map(decode_cursor).transpose()?;
        let rows: Vec<AuditEntry> = sqlx::query_as(
            "SELECT position, stream_id, stream_type, version, event_type, actor_id, recorded_at, data
             FROM events
             WHERE workspace_id = $1 AND ($2::uuid IS NULL OR stream_id = $2)
               AND ($3::bigint IS NULL OR position < $3)
             ORDER BY position DESC LIMIT $4",
        )
        .bind(workspace_id)
        .bind(stream_id)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&state.pool)
        .await
        .map_err(internal)?;
        Ok(page(rows, limit, after.is_some(), |entry| {
            encode_cursor(&entry.position)
        }))
    }

    async fn test_run(&self, ctx: &Context<'_>, id: ID) -> Result<Option<crate::runs::RunNode>> {
        let run_id = parse_id(&id, "id")?;
        access(ctx).principal()?;
        let state = state(ctx);
        let run: Option<crate::runs::RunNode> = sqlx::query_as(&format!(
            "SELECT {} FROM read.test_runs WHERE run_id = $1",
            crate::runs::RUN_COLUMNS
        ))
        .bind(run_id)
        .fetch_optional(&state.pool)
        .await
        .map_err(internal)?;
        match run {
            Some(run) if access(ctx).role_in(&state.pool, run.workspace_id).await.is_ok() => Ok(Some(run)),
            _ => Ok(None),
        }
    }

    /// Runs of a workspace (optionally of one card), newest first.
    async fn test_runs(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        card_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, crate::runs::RunNode>> {
        let workspace_id = parse_id(&workspace_id, "workspaceId")?;
        let card_id = card_id.as_ref().map(|c| parse_id(c, "cardId")).transpose()?;
        let state = state(ctx);
        access(ctx).role_in(&state.pool, workspace_id).await?;
        let limit = page_size(first)?;
        let after: Option<(DateTime<Utc>, Uuid)> = after.as_deref().map(decode_cursor).transpose()?;
        let rows: Vec<crate::runs::RunNode> = sqlx::query_as(&format!(
            "SELECT {} FROM read.test_runs
             WHERE workspace_id = $1 AND ($2::uuid IS NULL OR card_id = $2)
               AND ($3::timestamptz IS NULL OR (created_at, run_id) < ($3, $4))
             ORDER BY created_at DESC, run_id DESC LIMIT $5",
            crate::runs::RUN_COLUMNS
        ))
        .bind(workspace_id)
        .bind(card_id)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit + 1)
        .fetch_all(&state.pool)
        .await
        .map_err(internal)?;
        Ok(page(rows, limit, after.is_some(), |run| {
            encode_cursor(&(run.created_at, run.run_id))
        }))
    }

    /// Pass rates, cost and latency of test results, from ClickHouse.
    async fn analytics(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Analytics> {
        let workspace_id = parse_id(&workspace_id, "workspaceId")?;
        access(ctx).role_in(&state(ctx).pool, workspace_id).await?;
        if let (Some(from), Some(to)) = (from, to) {
            if from > to {
                return Err(bad_request("from must not be after to"));
            }
        }
        Ok(Analytics { workspace_id, from, to })
    }
}

async fn load_card(pool: &PgPool, card_id: Uuid) -> Result<Option<(CardNode, i64)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        card: CardNode,
        stream_version: i64,
    }
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {CARD_COLUMNS}, COALESCE(v.version, 0) AS stream_version
         FROM read.prompt_cards c LEFT JOIN read.stream_versions v ON v.stream_id = c.card_id
         WHERE c.card_id = $1 AND NOT c.archived"
    ))
    .bind(card_id)
    .fetch_optional(pool)
    .await
    .map_err(internal)?;
    Ok(row.map(|r| (r.card, r.stream_version)))
}

/// Folds the card's stream, cut at `as_of`, and picks `version` (or the latest then).
async fn card_in_history(
    ctx: &Context<'_>,
    card_id: Uuid,
    version: Option<i32>,
    as_of: Option<DateTime<Utc>>,
) -> Result<Option<CardNode>> {
    let state = state(ctx);
    let events = state.store.read_stream(card_id, 0).await.map_err(internal)?;
    let events: Vec<_> = events
        .into_iter()
        .filter(|e| {
            e.stream_type == domain::names::stream_types::PROMPT_CARD && as_of.is_none_or(|t| e.recorded_at <= t)
        })
        .collect();
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Ok(None);
    };
    let (created_at, updated_at) = (first.recorded_at, last.recorded_at);
    let card: CardState = event_store::fold_recorded(&events).map_err(internal)?;
    let Some(workspace_id) = card.workspace_id else {
        return Ok(None);
    };
    if access(ctx).role_in(&state.pool, workspace_id).await.is_err() {
        return Ok(None);
    }
    let chosen = match version {
        Some(v) if v < 1 => return Err(bad_request("version must be 1 or more")),
        Some(v) => card.at_version(v as u32),
        None => card.current(),
    };
    let Some(chosen) = chosen else { return Ok(None) };
    Ok(Some(CardNode {
        id: card_id,
        workspace_id,
        title: chosen.content.title.clone(),
        description: chosen.content.description.clone(),
        template: chosen.content.template.clone(),
        variables: serde_json::to_value(&chosen.content.variables).map_err(internal)?,
        tags: chosen.content.tags.clone(),
        version: chosen.version as i32,
        labels: serde_json::to_value(&card.labels).map_err(internal)?,
        archived: card.archived,
        created_at,
        updated_at,
    }))
}

/// Decrements the subscriber gauge when a subscription stream is dropped.
pub struct SubscriberGuard;

impl SubscriberGuard {
    /// Counts one more subscriber until the guard is dropped.
    pub fn count() -> Self {
        metrics::gauge!("query_subscribers").increment(1.0);
        SubscriberGuard
    }
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        metrics::gauge!("query_subscribers").decrement(1.0);
    }
}

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// The run's current progress, then every change; completes after the terminal state.
    async fn test_run_progress(
        &self,
        ctx: &Context<'_>,
        run_id: ID,
    ) -> Result<impl Stream<Item = crate::runs::TestRunProgress>> {
        let run_id = parse_id(&run_id, "runId")?;
        crate::runs::run_progress(ctx, run_id).await
    }

    /// Every event of the workspace from now on, fed by Redis pub/sub so any replica delivers.
    async fn workspace_events(&self, ctx: &Context<'_>, workspace_id: ID) -> Result<impl Stream<Item = AuditEntry>> {
        let workspace_id = parse_id(&workspace_id, "workspaceId")?;
        let state = state(ctx);
        if access(ctx).role_in(&state.pool, workspace_id).await.is_err() {
            return Err(forbidden("not a member of this workspace"));
        }
        let client = state
            .redis_client
            .clone()
            .ok_or_else(|| internal("Redis is not configured"))?;
        let mut pubsub = client.get_async_pubsub().await.map_err(internal)?;
        pubsub
            .subscribe(domain::names::workspace_channel(workspace_id))
            .await
            .map_err(internal)?;
        let guard = SubscriberGuard::count();
        Ok(pubsub.into_on_message().filter_map(move |message| {
            let _alive = &guard;
            let entry = message
                .get_payload::<String>()
                .ok()
                .and_then(|payload: String| serde_json::from_str::<AuditEntry>(&payload).ok());
            async move { entry }
        }))
    }
}
