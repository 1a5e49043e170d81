//! Group commit: the appends that this process's callers make at the same moment go to Postgres
//! together, as one batch in one transaction and one round trip (`sql::append_batch`).
//!
//! Nothing waits to fill a batch: the committer takes whatever is queued when it becomes free,
//! so an idle store commits each append at once, and a busy one commits many per transaction.
//! One committer: appends that arrive while it commits form the next batch. Two, one collecting
//! while the other committed, measured worse (README, Benchmark: smaller batches, more commits
//! for the disk to flush, and a p99 over HTTP of 22 to 28 ms against 19).
//!
//! Tailing readers are woken after the commit by a notifier task, not by a NOTIFY inside the
//! batch: Postgres holds its database-wide notify lock from a notifying transaction's commit
//! until its WAL is flushed, which made every commit wait for the previous one's flush
//! (measured: single-command batches took 7 to 18 ms).
//!
//! The committer and the notifier each keep one connection ([`Held`]) instead of taking one from
//! the pool per batch: sqlx pings a connection when it is taken and when it is given back, two
//! round trips as long as the batch's own.

use crate::{sql, Append, AppendError, Appended};
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The most commands one batch holds; larger bursts form several batches.
const MAX_BATCH: usize = 256;
/// Attempts at a batch that Postgres aborted as a deadlock (two batches waiting on each
/// other's reservations or idempotency keys) before its commands get the error.
const ATTEMPTS: usize = 3;

/// How long the committer (or the notifier) keeps its connection with nothing to do, before it
/// gives it back to the pool: a busy store does not pay for taking one per batch, an idle one
/// holds none (the pool is shared with the process's reads, and tests' pools are small).
const KEEP_IDLE: Duration = Duration::from_millis(100);

type Job = (Append, oneshot::Sender<Result<Appended, AppendError>>);

#[derive(Debug)]
pub(crate) struct GroupCommit {
    queue: mpsc::UnboundedSender<Job>,
}

impl GroupCommit {
    /// Starts the committer on the current Tokio runtime; it stops when the store is dropped.
    pub(crate) fn start(pool: PgPool) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        // Capacity one: wake-ups that arrive while one is pending merge into it.
        let (appended, wake_ups) = mpsc::channel(1);
        tokio::spawn(committer(pool.clone(), jobs, appended));
        tokio::spawn(notifier(pool, wake_ups));
        Self { queue }
    }

    pub(crate) async fn append(&self, append: Append) -> Result<Appended, AppendError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || AppendError::Database(sqlx::Error::Protocol("the store's committer stopped".into()));
        self.queue.send((append, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One connection kept across batches while they keep coming. After a statement fails it is
/// closed (it may be broken) and the next batch takes a fresh one from the pool, which checks
/// it.
struct Held {
    pool: PgPool,
    conn: Option<PoolConnection<Postgres>>,
}

impl Held {
    fn new(pool: PgPool) -> Self {
        Self { pool, conn: None }
    }

    /// Runs `f` on the kept connection, taking one first if none is kept.
    async fn run<T>(
        &mut self,
        f: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.pool.acquire().await?,
        };
        let conn = self.conn.insert(conn);
        let outcome = f(conn).await;
        if outcome.is_err() {
            if let Some(mut conn) = self.conn.take() {
                conn.close_on_drop();
            }
        }
        outcome
    }

    /// Awaits `wait`, giving the connection back to the pool if that takes over [`KEEP_IDLE`].
    async fn idle<F: Future>(&mut self, wait: F) -> F::Output {
        let mut wait = std::pin::pin!(wait);
        match tokio::time::timeout(KEEP_IDLE, &mut wait).await {
            Ok(output) => output,
            Err(_) => {
                self.conn = None;
                wait.await
            }
        }
    }
}

/// Sends one NOTIFY for however many batches committed since the last one; stops with the
/// committer.
async fn notifier(pool: PgPool, mut wake_ups: mpsc::Receiver<()>) {
    let mut conn = Held::new(pool);
    while conn.idle(wake_ups.recv()).await.is_some() {
        if let Err(error) = conn.run(async |conn| sql::notify_appended(conn).await).await {
            tracing::debug!(error = %error, "Could not wake the tailing readers; they poll.");
        }
    }
}

async fn committer(pool: PgPool, mut jobs: mpsc::UnboundedReceiver<Job>, appended: mpsc::Sender<()>) {
    let mut conn = Held::new(pool);
    while let Some(first) = conn.idle(jobs.recv()).await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (appends, replies): (Vec<Append>, Vec<_>) = batch.into_iter().unzip();
        let started = Instant::now();
        let outcomes = conn.run(async |conn| commit(conn, &appends).await).await;
        metrics::histogram!("event_store_batch_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("event_store_batch_commands").record(appends.len() as f64);
        match outcomes {
            Ok(outcomes) => {
                if outcomes.iter().any(|o| o.as_ref().is_ok_and(|a| !a.replayed)) {
                    let _ = appended.try_send(());
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // A caller that went away no longer needs its answer; its append stands.
                    let _ = reply.send(outcome);
                }
            }
            Err(error) => {
                // The transaction did not commit: no command of the batch wrote anything.
                let message = error.to_string();
                for reply in replies {
                    let _ = reply.send(Err(AppendError::Database(sqlx::Error::Protocol(message.clone()))));
                }
            }
        }
    }
}

async fn commit(
    conn: &mut PgConnection,
    appends: &[Append],
) -> Result<Vec<Result<Appended, AppendError>>, sqlx::Error> {
    let mut attempt = 1;
    loop {
        match sql::append_batch(conn, appends).await {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("40P01") && attempt < ATTEMPTS => {
                tracing::debug!(attempt, "An append batch met a deadlock; trying it again.");
                attempt += 1;
            }
            other => return other,
        }
    }
}
