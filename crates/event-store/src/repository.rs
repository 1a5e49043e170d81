//! Loading aggregates: a fold over the stream, sped up by a cache of recent states.

use crate::{
    Append, AppendError, Appended, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StreamAppend,
};
use domain::{Aggregate, DomainError};
use std::any::Any;
use std::sync::Arc;
use uuid::Uuid;

/// An aggregate's state and the stream version it reflects (0 when the stream is empty).
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub state: A,
    pub version: i64,
}

impl<A: Aggregate> Loaded<A> {
    /// A stream that does not exist yet, for commands that create one.
    pub fn empty() -> Self {
        Self {
            state: A::default(),
            version: 0,
        }
    }

    /// Decides `command` on this state. The events come back as an append that expects the
    /// version they were decided on, so a writer that got there first makes the append fail
    /// instead of being overwritten; the state after them comes back too.
    pub fn decide(&self, stream_id: Uuid, command: A::Command) -> Result<Decided<A>, DomainError> {
        let events = self.state.decide(command)?;
        let state = events
            .iter()
            .fold(self.state.clone(), |state, event| state.evolve(event));
        Ok(Decided {
            state,
            append: StreamAppend {
                stream_id,
                stream_type: A::STREAM_TYPE.to_owned(),
                expected: if self.version == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(self.version)
                },
                events: events.iter().map(NewEvent::from_domain).collect(),
            },
        })
    }
}

/// What a command decided on one stream: the append to make and the state it leads to.
#[derive(Debug, Clone)]
pub struct Decided<A> {
    pub state: A,
    pub append: StreamAppend,
}

impl<A: Aggregate> Decided<A> {
    /// Decides a further command on the state reached; its events join the same append, e.g.
    /// the test cases attached to a card created by the same import.
    pub fn then(&mut self, command: A::Command) -> Result<(), DomainError> {
        let events = self.state.decide(command)?;
        let state = std::mem::take(&mut self.state);
        self.state = events.iter().fold(state, |state, event| state.evolve(event));
        self.append.events.extend(events.iter().map(NewEvent::from_domain));
        Ok(())
    }
}

/// A single-stream command carried out: the state after it and, unless it changed nothing,
/// the append's outcome.
#[derive(Debug, Clone)]
pub struct Executed<A> {
    pub state: A,
    pub events: usize,
    pub appended: Option<Appended>,
}

/// Why [`Repository::execute`] did not append.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The aggregate refused the command.
    #[error(transparent)]
    Refused(#[from] DomainError),
    /// The store refused the append; `WrongExpectedVersion` means another writer came first.
    #[error(transparent)]
    Append(#[from] AppendError),
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
/// writing. [`Repository::cached`] skips even that read, for decisions whose append checks the
/// versions they were made on.
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

    /// The last state this process saw of the stream, without reading Postgres: current unless
    /// another process (or a path that bypassed this repository) wrote since. Only for
    /// decisions appended at this version, so that staleness costs a retry, never a wrong write.
    pub fn cached<A: Aggregate>(&self, stream_id: Uuid) -> Option<Loaded<A>> {
        let entry = self.cache.get(&stream_id)?.downcast::<Loaded<A>>().ok()?;
        Some(Loaded::clone(&entry))
    }

    /// Records the state a successful append produced, so the next command on the stream can
    /// decide without reading it back.
    pub fn remember<A: Aggregate>(&self, stream_id: Uuid, state: A, version: i64) {
        self.cache.insert(stream_id, Arc::new(Loaded { state, version }));
    }
}

impl Repository {
    /// Loads a stream, decides `command` on it and appends the events at the version loaded:
    /// the domain half of a command. The HTTP command path does the same steps with
    /// [`Loaded::decide`] for commands that write several streams or carry an idempotency key.
    #[tracing::instrument(skip_all, fields(stream_id = %stream_id, stream_type = A::STREAM_TYPE), err)]
    pub async fn execute<A: Aggregate>(
        &self,
        stream_id: Uuid,
        command: A::Command,
        metadata: Metadata,
    ) -> Result<Executed<A>, ExecuteError>
    where
        A::Command: Clone,
    {
        // First on the state in memory, without a read; anything but success there is decided
        // again on the stream as stored.
        if let Some(cached) = self.cached::<A>(stream_id) {
            if let Ok(decided) = cached.decide(stream_id, command.clone()) {
                match self.append_decided(decided, metadata.clone()).await {
                    Err(ExecuteError::Append(AppendError::WrongExpectedVersion { .. })) => {}
                    outcome => return outcome,
                }
            }
        }
        let decided = self.load::<A>(stream_id).await?.decide(stream_id, command)?;
        self.append_decided(decided, metadata).await
    }

    /// [`execute`](Self::execute), deciding again for as long as another writer appends to the
    /// stream first: for background writers whose command is decided afresh on whatever came
    /// first (the runner recording results while a cancel races it). A refusal ends it.
    pub async fn execute_retrying<A: Aggregate>(
        &self,
        stream_id: Uuid,
        command: A::Command,
        metadata: Metadata,
    ) -> Result<Executed<A>, ExecuteError>
    where
        A::Command: Clone,
    {
        loop {
            match self.execute::<A>(stream_id, command.clone(), metadata.clone()).await {
                Err(ExecuteError::Append(AppendError::WrongExpectedVersion { .. })) => continue,
                outcome => return outcome,
            }
        }
    }

    async fn append_decided<A: Aggregate>(
        &self,
        decided: Decided<A>,
        metadata: Metadata,
    ) -> Result<Executed<A>, ExecuteError> {
        let stream_id = decided.append.stream_id;
        let events = decided.append.events.len();
        let appended = if events == 0 {
            None
        } else {
            Some(
                self.store
                    .append(Append {
                        streams: vec![decided.append],
                        metadata,
                        ..Default::default()
                    })
                    .await?,
            )
        };
        if let Some(version) = appended.as_ref().and_then(|a| a.streams.first()).map(|s| s.version) {
            self.remember(stream_id, decided.state.clone(), version);
        }
        Ok(Executed {
            state: decided.state,
            events,
            appended,
        })
    }
}

/// Folds already-read events, e.g. a stream cut at a version or a time.
pub fn fold_recorded<A: Aggregate>(events: &[RecordedEvent]) -> Result<A, domain::DecodeError> {
    events.iter().try_fold(A::default(), |state, event| {
        Ok(state.evolve(&event.decode::<A::Event>()?))
    })
}
