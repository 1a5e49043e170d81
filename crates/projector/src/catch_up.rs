//! The one replay loop: what `promptcards replay` runs, what the bench measures and what the
//! tests rebuild read models with.

use crate::Sink;
use anyhow::Context;
use event_store::{Cursor, EventStore, RecordedEvent};
use std::ops::ControlFlow;

/// Reads the store after `cursor` in batches of `batch` events, in the global order, applies
/// each batch to `sink` and then hands it to `on_batch`; returns the cursor after the last
/// batch applied.
///
/// It stops when a read comes back empty or when `on_batch` breaks. The store's reader never
/// passes a transaction that may still commit, so an empty read means caught up with what has
/// committed so far, not that nothing more will come. While a full batch is applied the next
/// one is read; after a short one, which says the reader had nothing more, the next read waits
/// for `on_batch`, so a caller that stops at a short batch reads no more than it applies.
///
/// Nothing here is transactional across batches: each batch is one `Sink::apply` (one
/// transaction for Postgres, whose sink skips what a stream's version says it already holds),
/// so a caller that stops or fails can resume from the last cursor it was told about.
#[tracing::instrument(skip_all, fields(sink = sink.name(), from = cursor.position, batch), err)]
pub async fn catch_up<S, F>(
    store: &EventStore,
    sink: &S,
    mut cursor: Cursor,
    batch: i64,
    mut on_batch: F,
) -> anyhow::Result<Cursor>
where
    S: Sink,
    F: FnMut(&[RecordedEvent]) -> ControlFlow<()>,
{
    let mut events = store.read_all(cursor, batch).await?;
    while let Some(last) = events.last() {
        let after = Cursor::after(last);
        let full = events.len() as i64 >= batch;
        let next = async {
            match full {
                true => store.read_all(after, batch).await.map(Some),
                false => Ok(None),
            }
        };
        let (applied, next) = tokio::join!(sink.apply(&events), next);
        applied.with_context(|| format!("applying events up to position {} to {}", last.position, sink.name()))?;
        cursor = after;
        if on_batch(&events).is_break() {
            break;
        }
        events = match next? {
            Some(next) => next,
            None => store.read_all(cursor, batch).await?,
        };
    }
    Ok(cursor)
}
