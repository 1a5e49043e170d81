//! What a resolver gets: the process's handles ([`AppState`], put in the schema's data) and,
//! per request, who is asking ([`Access`]); the areas' loaders are added per request by the
//! schema root. Resolvers read them through [`state`] and [`access`].

use crate::access::Access;
use crate::cache::DocCache;
use crate::errors::{bad_request, error, internal};
use crate::freshness::Freshness;
use crate::settings::Settings;
use async_graphql::{Context, Result, ID};
use auth::TokenKeys;
use event_store::EventStore;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Handles shared by resolvers and handlers.
#[derive(Clone)]
pub struct AppState {
    /// Read models, and the event store's read path for history.
    pub pool: PgPool,
    pub store: EventStore,
    /// Folds streams for history and live run progress; reads only the store's read path.
    pub repo: event_store::Repository,
    pub cache: DocCache,
    /// Subscriptions open their own pub/sub connection from this client.
    pub redis_client: Option<redis::Client>,
    pub clickhouse: clickhouse::Client,
    pub tokens: Arc<TokenKeys>,
    /// API keys as their workspaces' streams record them: a revoked or expired key is refused
    /// by the next request, whatever the projector's lag.
    pub api_keys: auth::ApiKeys,
    pub freshness: Freshness,
    /// Prompts served by name (`serving`): REST beside GraphQL, and `prompt`/`renderPrompt`.
    pub prompts: serving::Prompts,
    /// Queries and new subscriptions per caller (user, API key or client address).
    pub caller_limiter: Arc<service::rate_limit::RateLimiter>,
    /// Queries and new subscriptions per workspace, counted for its members.
    pub workspace_limiter: Arc<service::rate_limit::RateLimiter>,
    pub settings: Arc<Settings>,
}

impl AppState {
    /// A Redis pub/sub connection of one GraphQL subscription's own, subscribed to `channels`.
    /// Subscribe before reading the state the first message follows, so no change falls between.
    pub async fn subscribe(&self, channels: impl IntoIterator<Item = String>) -> Result<redis::aio::PubSub> {
        let client = self
            .redis_client
            .as_ref()
            .ok_or_else(|| internal("Redis is not configured"))?;
        let mut pubsub = client.get_async_pubsub().await.map_err(internal)?;
        for channel in channels {
            pubsub.subscribe(channel).await.map_err(internal)?;
        }
        Ok(pubsub)
    }

    /// Connects what it can; a Redis that is down means no cache, not no service.
    pub async fn new(pool: PgPool, settings: Settings) -> Self {
        let redis_client = redis::Client::open(settings.redis_url.expose()).ok();
        let store = EventStore::new(pool.clone());
        let freshness = Freshness::start(pool.clone(), store.clone());
        let tokens = Arc::new(TokenKeys::new(
            settings.jwt_secret.expose(),
            Duration::from_secs(900),
            Duration::from_secs(900),
        ));
        let repo = event_store::Repository::new(store.clone(), 1_000);
        let api_keys = auth::ApiKeys::new(repo.clone());
        Self {
            api_keys: api_keys.clone(),
            repo,
            prompts: serving::Prompts::start(
                pool.clone(),
                settings.redis_url.expose(),
                tokens.clone(),
                api_keys,
                freshness.clone(),
                settings.min_position_wait,
            ),
            freshness,
            store,
            pool,
            cache: DocCache::connect(settings.redis_url.expose()),
            redis_client,
            clickhouse: service::clickhouse::client(&settings.clickhouse_url, &settings.clickhouse_database),
            tokens,
            caller_limiter: service::rate_limit::RateLimiter::new(
                settings.rate_limit_per_second,
                settings.rate_limit_burst,
            ),
            workspace_limiter: service::rate_limit::RateLimiter::new(
                settings.workspace_rate_limit_per_second,
                settings.workspace_rate_limit_burst,
            ),
            settings: Arc::new(settings),
        }
    }

    /// The caller an `Authorization` value names; no value is an anonymous caller.
    pub async fn access_from_header(&self, value: Option<&str>) -> Result<Access> {
        let Some(value) = value else { return Ok(Access(None)) };
        let token = auth::bearer(value).map_err(|e| error("UNAUTHENTICATED", e.to_string()))?;
        match self.api_keys.authenticate(&self.tokens, token).await {
            Ok(principal) => Ok(Access(Some(principal))),
            Err(auth::AuthError::Unauthorized(message)) => Err(error("UNAUTHENTICATED", message)),
            Err(auth::AuthError::Internal(message)) => Err(internal(message)),
        }
    }
}

pub fn state<'a>(ctx: &Context<'a>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

pub fn access(ctx: &Context<'_>) -> Access {
    *ctx.data_unchecked::<Access>()
}

/// An `ID` argument as a UUID; BAD_REQUEST naming the argument otherwise.
pub fn parse_id(id: &ID, what: &str) -> Result<Uuid> {
    Uuid::try_parse(id.as_str()).map_err(|_| bad_request(format!("{what} must be a UUID")))
}
