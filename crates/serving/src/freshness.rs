//! Read-your-writes: waits until the read models have applied a given global position, woken by
//! the projector's NOTIFY after each batch rather than by polling on a timer.

use domain::names::READ_MODELS_CHANNEL;
use event_store::EventStore;
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Put in a request's data once its `X-Min-Position` has been reached: resolvers then read the
/// read models themselves, not the Redis document cache, which is projected separately and
/// may not know of that position yet.
#[derive(Debug, Clone, Copy)]
pub struct MinPosition(pub i64);

#[derive(Clone)]
pub struct Freshness {
    /// The read models' connections, which also receive the projector's notifications.
    pool: PgPool,
    store: EventStore,
    /// Bumped on every notification; waiters re-check when it changes.
    batches: watch::Receiver<u64>,
}

impl Freshness {
    /// Starts the listener task; it reconnects by itself if the connection drops.
    pub fn start(pool: PgPool, store: EventStore) -> Self {
        let (sender, batches) = watch::channel(0u64);
        let listener_pool = pool.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = listen(&listener_pool, &sender).await {
                    tracing::warn!(error = %error, "Read-model notifications lost; reconnecting.");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                if sender.is_closed() {
                    return;
                }
            }
        });
        Self { pool, store, batches }
    }

    /// True once the event at `position` is visible in the read models, false if `wait` ran
    /// out first.
    pub async fn wait_for(&self, position: i64, wait: Duration) -> Result<bool, sqlx::Error> {
        let deadline = Instant::now() + wait;
        let mut batches = self.batches.clone();
        loop {
            batches.borrow_and_update();
            if self.applied(position).await? {
                return Ok(true);
            }
            match tokio::time::timeout_at(deadline, batches.changed()).await {
                Ok(Ok(())) => continue,
                // Without notifications, check once more at the deadline.
                Ok(Err(_)) => {
                    tokio::time::sleep_until(deadline).await;
                    return self.applied(position).await;
                }
                // A notification can be lost with its connection: check once more at the deadline.
                Err(_) => return self.applied(position).await,
            }
        }
    }

    async fn applied(&self, position: i64) -> Result<bool, sqlx::Error> {
        let Some(event) = self.store.stream_version_at(position).await? else {
            // No event holds the position: it is passed once the store's head is beyond it
            // (an append that rolled back leaves its positions unused).
            return Ok(position <= self.store.head().await?);
        };
        sqlx::query_scalar(
            "SELECT COALESCE((SELECT version >= $2 FROM read.stream_versions WHERE stream_id = $1), false)",
        )
        .bind(event.stream_id)
        .bind(event.version)
        .fetch_one(&self.pool)
        .await
    }
}

async fn listen(pool: &PgPool, sender: &watch::Sender<u64>) -> Result<(), sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(READ_MODELS_CHANNEL).await?;
    // Notifications sent while no connection listened are lost: waiters re-check now.
    sender.send_modify(|n| *n += 1);
    loop {
        // `None` means the connection dropped and was re-established, losing notifications;
        // either way, waiters re-check.
        listener.try_recv().await?;
        sender.send_modify(|n| *n += 1);
    }
}
