//! Prompt cards in GraphQL: `promptCard` (now, at a version, or as of a moment) and
//! `promptCards`, with their test cases (batched by a loader) and label history.

use crate::cache::DocCache;
use crate::context::{access, parse_id, state};
use crate::errors::{bad_request, internal};
use crate::freshness::MinPosition;
use crate::pagination::{decode_cursor, encode_cursor, page, page_size};
use async_graphql::connection::Connection;
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, Json, Object, Result, ID};
use chrono::{DateTime, Utc};
use domain::card::PromptCard as CardState;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

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
            "SELECT label, version, previous_version, actor_id, moved_at, position, cause_id
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
    /// What caused the move when it was not a person's own command: the comparison that
    /// promoted its candidate.
    pub cause_id: Option<Uuid>,
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

const CARD_COLUMNS: &str = "c.card_id AS id, c.workspace_id, c.title, c.description, c.template, c.variables, c.tags, c.version, c.labels, c.archived, c.created_at, c.updated_at";

#[derive(Default)]
pub struct CardsQuery;

#[Object]
impl CardsQuery {
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
        let cached: Option<CardNode> = match ctx.data_opt::<MinPosition>() {
            Some(_) => None,
            None => state.cache.card(card_id).await,
        };
        let card = match cached {
            Some(card) => card,
            None => {
                DocCache::miss();
                let row: Option<(CardNode, i64)> = load_card(&state.pool, card_id).await?;
                let Some((card, stream_version)) = row else {
                    return Ok(None);
                };
                state.cache.put_card(card_id, &card, stream_version).await;
                card
            }
        };
        // Tenancy after the cache: a cached document is served only to members.
        if access(ctx).sees(state, card.workspace_id).await?.is_none() {
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
        access(ctx).role_in(state, workspace_id).await?;
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
    if access(ctx).sees(state, workspace_id).await?.is_none() {
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
