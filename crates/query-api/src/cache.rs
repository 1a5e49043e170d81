//! Redis-cached card documents. A document remembers the stream version it reflects and is
//! served only while no newer version has been projected (the projector raises
//! `promptcards:version:<stream>` as it applies events), so a cached document is never staler
//! than what Redis knows. Any Redis failure is a miss, never an error.

use crate::schema::CardNode;
use domain::names::version_key;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};
use uuid::Uuid;

#[derive(Clone)]
pub struct DocCache {
    /// Set once Redis first answers; from then on the manager reconnects by itself, and its
    /// timeouts turn a Redis that is away into quick misses.
    redis: Arc<OnceLock<ConnectionManager>>,
}

#[derive(Serialize, Deserialize)]
struct CachedCard {
    stream_version: i64,
    card: CardNode,
}

fn doc_key(card_id: Uuid) -> String {
    format!("promptcards:doc:card:{card_id}")
}

impl DocCache {
    /// Connects in the background: queries are answered from Postgres, uncached, until Redis
    /// answers (a Redis that is down at start means no cache for now, not no service).
    pub fn connect(url: &str) -> Self {
        let cache = Self {
            redis: Arc::new(OnceLock::new()),
        };
        let (slot, url) = (cache.redis.clone(), url.to_owned());
        tokio::spawn(async move {
            let connection = service::retry("connecting to Redis for the document cache", || {
                projector::redis_sink::connect(&url)
            })
            .await;
            tracing::info!("Redis answers; the document cache is on.");
            let _ = slot.set(connection);
        });
        cache
    }

    pub async fn card(&self, card_id: Uuid) -> Option<CardNode> {
        let mut redis = self.redis.get()?.clone();
        let (doc, latest): (Option<String>, Option<i64>) = redis::cmd("MGET")
            .arg(doc_key(card_id))
            .arg(version_key(card_id))
            .query_async(&mut redis)
            .await
            .ok()?;
        let cached: CachedCard = serde_json::from_str(&doc?).ok()?;
        let fresh = cached.stream_version >= latest.unwrap_or(0);
        metrics::counter!("query_cache_requests_total", "result" => if fresh { "hit" } else { "stale" }).increment(1);
        fresh.then_some(cached.card)
    }

    pub async fn put_card(&self, card: &CardNode, stream_version: i64) {
        let Some(mut redis) = self.redis.get().cloned() else {
            return;
        };
        let Ok(doc) = serde_json::to_string(&CachedCard {
            stream_version,
            card: card.clone(),
        }) else {
            return;
        };
        let _: Result<(), _> = redis::cmd("SET")
            .arg(doc_key(card.id))
            .arg(doc)
            .arg("EX")
            .arg(3600)
            .query_async(&mut redis)
            .await;
    }

    pub fn miss() {
        metrics::counter!("query_cache_requests_total", "result" => "miss").increment(1);
    }
}
