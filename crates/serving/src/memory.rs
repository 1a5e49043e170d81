//! What a serving process remembers: prompts, callers, and whether a caller may read a
//! workspace; and the projector's notices that make it forget.
//!
//! Nothing is removed when a notice arrives. Instead each remembered thing carries the version
//! of the stream it was read from (a card's, or the workspace's), and the notices raise a floor
//! per stream: a thing below its stream's floor is never answered again. A reload racing a
//! notice therefore cannot bring an old answer back. Losing the notices' connection raises the
//! epoch, which every thing carries too, so after a reconnection nothing from before is trusted.

use crate::freshness::Notice;
use crate::{Selector, Served};
use auth::Principal;
use moka::sync::Cache;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::broadcast;
use uuid::Uuid;

#[derive(Clone)]
struct Entry<T> {
    value: T,
    /// The epoch it was read in.
    epoch: u64,
    /// The stream it depends on, and that stream's version when it was read.
    stream: Uuid,
    version: i64,
}

/// A caller as a cache key (`Principal` is not `Hash`).
fn caller(principal: Principal) -> (Uuid, Uuid) {
    match principal {
        Principal::User(id) => (id, Uuid::nil()),
        Principal::ApiKey { key_id, workspace_id } => (key_id, workspace_id),
    }
}

pub(crate) struct Memory {
    /// By workspace, name and selector.
    prompts: Cache<(Uuid, String, String), Entry<Arc<Served>>>,
    /// By the SHA-256 of the bearer token; API keys depend on their workspace's stream (a
    /// revocation), users' tokens on nothing but their expiry, checked again after a minute.
    /// Each is stamped with the version its stream was read at, in the same statement.
    principals: Cache<String, Entry<Principal>>,
    /// Whether a caller may read a workspace; depends on the workspace's stream.
    allowed: Cache<((Uuid, Uuid), Uuid), Entry<bool>>,
    /// The highest version noticed per stream.
    floors: RwLock<HashMap<Uuid, i64>>,
    /// Raised whenever notices may have been lost.
    epoch: AtomicU64,
}

impl Memory {
    pub(crate) fn new() -> Self {
        Self {
            prompts: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            principals: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            allowed: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
            floors: RwLock::default(),
            // The listener's connection raises it when it (re)connects, so what is read before
            // the notices flow is not trusted past that moment.
            epoch: AtomicU64::new(1),
        }
    }

    pub(crate) fn floor(&self, stream: Uuid) -> i64 {
        self.floors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&stream)
            .copied()
            .unwrap_or(0)
    }

    fn current<T: Clone>(&self, entry: Option<Entry<T>>) -> Option<T> {
        let entry = entry?;
        let epoch = self.epoch.load(Ordering::Acquire);
        (entry.epoch == epoch && entry.version >= self.floor(entry.stream)).then_some(entry.value)
    }

    pub(crate) fn prompt(&self, workspace_id: Uuid, name: &str, selector: &Selector) -> Option<Arc<Served>> {
        self.current(self.prompts.get(&(workspace_id, name.to_owned(), selector.key())))
    }

    /// Remembers a prompt read at its stream version (an exact stamp: the version is the read's).
    pub(crate) fn remember_prompt(&self, name: &str, selector: &Selector, served: Arc<Served>, epoch: u64) {
        let entry = Entry {
            epoch,
            stream: served.prompt.id,
            version: served.stream_version,
            value: served.clone(),
        };
        self.prompts
            .insert((served.workspace_id, name.to_owned(), selector.key()), entry);
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn principal(&self, token: &str) -> Option<Principal> {
        self.current(self.principals.get(&auth::hash_secret(token)))
    }

    pub(crate) fn remember_principal(&self, token: &str, principal: Principal, (epoch, version): (u64, i64)) {
        let stream = match principal {
            Principal::ApiKey { workspace_id, .. } => workspace_id,
            Principal::User(_) => Uuid::nil(),
        };
        let entry = Entry {
            value: principal,
            epoch,
            stream,
            version,
        };
        self.principals.insert(auth::hash_secret(token), entry);
    }

    pub(crate) fn allowed(&self, principal: Principal, workspace_id: Uuid) -> Option<bool> {
        self.current(self.allowed.get(&(caller(principal), workspace_id)))
    }

    pub(crate) fn remember_allowed(
        &self,
        principal: Principal,
        workspace_id: Uuid,
        allowed: bool,
        (epoch, version): (u64, i64),
    ) {
        let entry = Entry {
            value: allowed,
            epoch,
            stream: workspace_id,
            version,
        };
        self.allowed.insert((caller(principal), workspace_id), entry);
    }

    /// A notice: these streams reached these versions in the read models.
    fn noticed(&self, streams: &[(Uuid, i64)]) {
        let mut floors = self.floors.write().unwrap_or_else(|e| e.into_inner());
        for (stream, version) in streams {
            let floor = floors.entry(*stream).or_insert(0);
            *floor = (*floor).max(*version);
        }
    }

    /// Notices may have been lost: trust nothing remembered so far.
    fn forget_everything(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// Applies the projector's notices for as long as the process runs; notices this task fell
/// behind on count as lost.
pub(crate) fn follow(mut notices: broadcast::Receiver<Notice>, memory: Arc<Memory>) {
    tokio::spawn(async move {
        loop {
            match notices.recv().await {
                Ok(Notice::Streams(streams)) => memory.noticed(&streams),
                Ok(Notice::Lost) | Err(broadcast::error::RecvError::Lagged(_)) => memory.forget_everything(),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}
