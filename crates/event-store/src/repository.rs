//! Loading aggregates: a fold over the stream, sped up by a cache of recent states.

use crate::{EventStore, RecordedEvent};
use domain::Aggregate;
use std::any::Any;
use std::sync::Arc;
use uuid::Uuid;

/// An aggregate's state and the stream version it reflects (0 when the stream is empty).
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub state: A,
    pub version: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Decode(#[from] domain::DecodeError),
}

/// Loads aggregates. A long stream is folded once; afterwards each load reads only the events
/// appended since the cached version, so the cache is never stale, even with several replicas
/// writing.
#[derive(Clone)]
pub struct Repository {
    store: EventStore,
    /// Last known state per stream, type-erased; entries are `Arc<Loaded<A>>`.
    cache: moka::sync::Cache<Uuid, Arc<dyn Any + Send + Sync>>,
}

impl Repository {
    pub fn new(store: EventStore, capacity: u64) -> Self {
        Self {
            store,
            cache: moka::sync::Cache::new(capacity),
        }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Folds the stream into `A`. A stream of another type loads as empty, so a guessed id of
    /// the wrong kind reads as "not found".
    #[tracing::instrument(skip_all, fields(stream_id = %stream_id, stream_type = A::STREAM_TYPE), err)]
    pub async fn load<A: Aggregate>(&self, stream_id: Uuid) -> Result<Loaded<A>, LoadError> {
        let cached = self
            .cache
            .get(&stream_id)
            .and_then(|entry| entry.downcast::<Loaded<A>>().ok());
        let Loaded { mut state, mut version } = match cached {
            Some(loaded) => Loaded::clone(&loaded),
            None => Loaded {
                state: A::default(),
                version: 0,
            },
        };
        let events = self.store.read_stream(stream_id, version).await?;
        if events.first().is_some_and(|e| e.stream_type != A::STREAM_TYPE) {
            return Ok(Loaded {
                state: A::default(),
                version: 0,
            });
        }
        for event in &events {
            state = state.evolve(&event.decode::<A::Event>()?);
            version = event.version;
        }
        if !events.is_empty() {
            self.cache.insert(
                stream_id,
                Arc::new(Loaded {
                    state: state.clone(),
                    version,
                }),
            );
        }
        Ok(Loaded { state, version })
    }
}

/// Folds already-read events, e.g. a stream cut at a version or a time.
pub fn fold_recorded<A: Aggregate>(events: &[RecordedEvent]) -> Result<A, domain::DecodeError> {
    events.iter().try_fold(A::default(), |state, event| {
        Ok(state.evolve(&event.decode::<A::Event>()?))
    })
}
