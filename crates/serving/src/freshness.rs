//! Read-your-writes: waits until the read models have applied a given global position, woken by
//! the projector's NOTIFY after each batch rather than by polling on a timer.

use domain::names::{PROMPTS_CHANNEL, READ_MODELS_CHANNEL};
use event_store::EventStore;
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

/// What the projector said about the streams served from memory (see `crate::memory`).
#[derive(Debug, Clone)]
pub enum Notice {
    /// These streams reached these versions in the read models.
    Streams(Vec<(Uuid, i64)>),
    /// Notices may have been missed (the connection was down or dropped): trust nothing older.
    Lost,
}
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
    /// The projector's notices about served streams, received on the same connection (one
    /// listening connection per process, not one per use).
    notices: broadcast::Sender<Notice>,
}

impl Freshness {
    /// Starts the listener task; it reconnects by itself if the connection drops.
    pub fn start(pool: PgPool, store: EventStore) -> Self {
        let (sender, batches) = watch::channel(0u64);
        let (notices, _) = broadcast::channel(1024);
        let listener_pool = pool.clone();
        let notifier = notices.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = listen(&listener_pool, &sender, &notifier).await {
                    tracing::warn!(error = %error, "Read-model notifications lost; reconnecting.");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                if sender.is_closed() {
                    return;
                }
            }
        });
        Self {
            pool,
            store,
            batches,
            notices,
        }
    }

    /// The projector's notices about served streams from now on.
    pub fn notices(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
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

async fn listen(
    pool: &PgPool,
    sender: &watch::Sender<u64>,
    notices: &broadcast::Sender<Notice>,
) -> Result<(), sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen_all([READ_MODELS_CHANNEL, PROMPTS_CHANNEL]).await?;
    // Notifications sent while no connection listened are lost: waiters re-check now.
    sender.send_modify(|n| *n += 1);
    let _ = notices.send(Notice::Lost);
    loop {
        // `None` means the connection dropped and was re-established, losing notifications;
        // either way, waiters re-check.
        match listener.try_recv().await? {
            Some(notification) if notification.channel() == PROMPTS_CHANNEL => {
                let notice = serde_json::from_str(notification.payload())
                    .map(Notice::Streams)
                    .unwrap_or(Notice::Lost);
                let _ = notices.send(notice);
            }
            Some(_) => sender.send_modify(|n| *n += 1),
            None => {
                sender.send_modify(|n| *n += 1);
                let _ = notices.send(Notice::Lost);
            }
        }
    }
}
