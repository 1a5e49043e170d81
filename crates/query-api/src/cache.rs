//! Redis-cached card documents. A document remembers the stream version it reflects and is
//! served only while no newer version has been projected (the projector raises
//! `promptcards:version:<stream>` as it applies events), so a cached document is never staler
//! than what Redis knows. Any Redis failure is a miss, never an error.

use crate::metrics::cache_lookup;
use domain::names::version_key;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone)]
pub struct DocCache {
    /// Set once Redis first answers; from then on the manager reconnects by itself, and its
    /// timeouts turn a Redis that is away into quick misses.
    redis: service::redis::Lazy,
}

/// A card document as the cards area serves it; the cache only stores and dates it.
#[derive(Serialize, Deserialize)]
struct CachedCard<T> {
    stream_version: i64,
    card: T,
}

fn doc_key(card_id: Uuid) -> String {
    format!("promptcards:doc:card:{card_id}")
}

impl DocCache {
    /// Connects in the background: queries are answered from Postgres, uncached, until Redis
    /// answers (a Redis that is down at start means no cache for now, not no service).
    pub fn connect(url: &str) -> Self {
        Self {
            redis: service::redis::connect_in_background(url, "connecting to Redis for the document cache"),
        }
    }

    /// The cached card, if Redis knows of no newer version of its stream.
    pub async fn card<T: DeserializeOwned>(&self, card_id: Uuid) -> Option<T> {
        let mut redis = self.redis.get()?.clone();
        let (doc, latest): (Option<String>, Option<i64>) = redis::cmd("MGET")
            .arg(doc_key(card_id))
            .arg(version_key(card_id))
            .query_async(&mut redis)
            .await
            .ok()?;
        let cached: CachedCard<T> = serde_json::from_str(&doc?).ok()?;
        let fresh = cached.stream_version >= latest.unwrap_or(0);
        cache_lookup(if fresh { "hit" } else { "stale" });
        fresh.then_some(cached.card)
    }

    pub async fn put_card<T: Serialize>(&self, card_id: Uuid, card: &T, stream_version: i64) {
        let Some(mut redis) = self.redis.get().cloned() else {
            return;
        };
        let Ok(doc) = serde_json::to_string(&CachedCard { stream_version, card }) else {
            return;
        };
        let _: Result<(), _> = redis::cmd("SET")
            .arg(doc_key(card_id))
            .arg(doc)
            .arg("EX")
            .arg(3600)
            .query_async(&mut redis)
            .await;
    }

    pub fn miss() {
        cache_lookup("miss");
    }
}
