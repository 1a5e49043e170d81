//! API keys as their workspace's stream records them, and when each was last used.
//!
//! Both APIs look a presented key up in the event store, not in a read model: the stream is the
//! source of truth, so a revocation or an expiry is seen by the very next request on every
//! process of either API, whatever the projector's lag. `Repository::load` keeps the folded
//! workspace in memory and reads only the events after it, so a lookup is two small reads.

use crate::{AuthError, StoredApiKey};
use chrono::{DateTime, Utc};
use domain::workspace::Workspace;
use event_store::Repository;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// Reservation scope mapping an API key id to its workspace.
pub const API_KEY_SCOPE: &str = "api_key";

/// How long a liveness answer is shared by the open subscriptions of one process; with their
/// check interval it bounds the time from a revocation to the close of a subscription.
pub const LIVENESS_TTL: Duration = Duration::from_millis(250);

/// How often a use of one key is written, at most, per process.
const USAGE_WRITE_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct ApiKeys {
    repo: Repository,
    /// Keys whose use this process wrote in the last [`USAGE_WRITE_INTERVAL`].
    recently_used: moka::sync::Cache<Uuid, ()>,
    /// Whether each key was live when last checked, for at most [`LIVENESS_TTL`]: the answer
    /// every subscription opened with that key shares.
    liveness: moka::sync::Cache<Uuid, bool>,
}

impl ApiKeys {
    pub fn new(repo: Repository) -> Self {
        Self {
            repo,
            recently_used: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(USAGE_WRITE_INTERVAL)
                .build(),
            liveness: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(LIVENESS_TTL)
                .build(),
        }
    }

    /// The key's workspace and secret hash while it is live (neither revoked nor expired).
    pub async fn find_live(&self, key_id: Uuid) -> Result<Option<StoredApiKey>, AuthError> {
        let internal = |e: &dyn std::fmt::Display| AuthError::Internal(e.to_string());
        let Some(workspace_id) = self
            .repo
            .store()
            .reservation(API_KEY_SCOPE, &key_id.to_string())
            .await
            .map_err(|e| internal(&e))?
        else {
            return Ok(None);
        };
        let workspace = self
            .repo
            .load::<Workspace>(workspace_id)
            .await
            .map_err(|e| internal(&e))?
            .state;
        Ok(workspace
            .api_keys
            .get(&key_id)
            .filter(|key| key.is_live(Utc::now()))
            .map(|key| StoredApiKey {
                workspace_id,
                secret_hash: key.secret_hash.clone(),
            }))
    }

    /// Whether the key is still live, answered from a check at most [`LIVENESS_TTL`] old.
    pub async fn still_live(&self, key_id: Uuid) -> Result<bool, AuthError> {
        if let Some(live) = self.liveness.get(&key_id) {
            return Ok(live);
        }
        let live = self.find_live(key_id).await?.is_some();
        self.liveness.insert(key_id, live);
        Ok(live)
    }

    /// Resolves a bearer token (see [`crate::authenticate`]) and records an API key's use.
    pub async fn authenticate(&self, tokens: &crate::TokenKeys, token: &str) -> Result<crate::Principal, AuthError> {
        let principal = crate::authenticate(tokens, token, |key_id| self.find_live(key_id)).await?;
        if let crate::Principal::ApiKey { key_id, .. } = principal {
            self.record_use(key_id);
        }
        Ok(principal)
    }

    /// Writes the key's last use in the background, at most once a minute per process: the
    /// request does not wait for it, and a failure costs only the freshness of "last used".
    fn record_use(&self, key_id: Uuid) {
        if self.recently_used.contains_key(&key_id) {
            return;
        }
        self.recently_used.insert(key_id, ());
        let pool = self.repo.store().pool().clone();
        tokio::spawn(async move {
            let written = sqlx::query(
                "INSERT INTO api_key_usage (key_id, last_used_at) VALUES ($1, now())
                 ON CONFLICT (key_id) DO UPDATE SET last_used_at = GREATEST(api_key_usage.last_used_at, EXCLUDED.last_used_at)",
            )
            .bind(key_id)
            .execute(&pool)
            .await;
            if let Err(error) = written {
                tracing::warn!(%key_id, %error, "Recording an API key's last use failed.");
            }
        });
    }

    /// When each of the keys was last used, for those used at all.
    pub async fn last_used(&self, key_ids: &[Uuid]) -> Result<HashMap<Uuid, DateTime<Utc>>, AuthError> {
        let rows: Vec<(Uuid, DateTime<Utc>)> =
            sqlx::query_as("SELECT key_id, last_used_at FROM api_key_usage WHERE key_id = ANY($1)")
                .bind(key_ids)
                .fetch_all(self.repo.store().pool())
                .await
                .map_err(|e| AuthError::Internal(e.to_string()))?;
        Ok(rows.into_iter().collect())
    }
}
