//! Sending what the outbox holds. Per endpoint, one delivery at a time in the order they were
//! recorded: the next goes out only once the one before was delivered or given up on, so an
//! endpoint sees each stream's events in order. Different endpoints are sent to concurrently.
//! An endpoint is leased while this process sends to it, so a second deliverer never sends its
//! deliveries out of order; a deliverer restarted under the same name takes its leases back.
//!
//! A failed attempt is retried with exponential backoff and jitter, never sooner than the
//! receiver's `Retry-After`, until the retry horizon has passed since the series' first attempt;
//! 4xx answers other than 408 and 429, redirects and refused targets are not retried. An
//! endpoint whose every attempt has failed for `disable_after` is disabled, with an event
//! saying why.

use crate::endpoints::Endpoints;
use crate::sender::{Sender, Verdict};
use chrono::{DateTime, Utc};
use domain::webhook::{Webhook, WebhookCommand};
use event_store::{AppendError, ExecuteError, Metadata, Repository};
use rand::Rng;
use sqlx::PgPool;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;
use webhook::outbox::{self, Delivery, Next};
use webhook::Keyring;

/// Deliveries of one endpoint read at a time.
const BATCH: i64 = 50;

/// How deliveries are retried and for how long.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// The wait after a series' first failure; it doubles with each further one.
    pub base: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
    /// How long after a series' first attempt the deliverer keeps trying.
    pub horizon: Duration,
    /// How long an endpoint may fail every attempt before it is disabled.
    pub disable_after: Duration,
}

impl RetryPolicy {
    /// The wait before attempt `failures + 1`: `base * 2^(failures - 1)`, at most `max_delay`,
    /// drawn uniformly from its upper half so that endpoints failing together do not retry in
    /// lockstep.
    pub fn backoff(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1u32 << exponent).min(self.max_delay);
        let half = full / 2;
        half + full
            .saturating_sub(half)
            .mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
    }

    /// What becomes of `delivery` after an attempt at `now` with this verdict.
    pub fn next(&self, delivery: &Delivery, verdict: &Verdict, error: Option<&str>, now: DateTime<Utc>) -> Next {
        match verdict {
            Verdict::Delivered => Next::Delivered,
            Verdict::GiveUp(why) => Next::Failed(why.clone()),
            Verdict::Retry { retry_after } => {
                let failures = delivery.series_attempts as u32 + 1;
                let wait = self.backoff(failures).max(retry_after.unwrap_or_default());
                let started = delivery.series_started_at.unwrap_or(now);
                let at = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                let horizon = chrono::Duration::from_std(self.horizon).unwrap_or(chrono::Duration::MAX);
                if at > started + horizon {
                    Next::Failed(format!(
                        "gave up after {failures} attempts over {}s (the retry horizon is {}s); the last: {}",
                        (now - started).num_seconds(),
                        self.horizon.as_secs(),
                        error.unwrap_or("failed")
                    ))
                } else {
                    Next::RetryAt(at)
                }
            }
        }
    }
}

/// How a dispatcher sends, besides where it reads.
#[derive(Clone)]
pub struct Sending {
    /// Opens the endpoints' signing secrets.
    pub keyring: Arc<Keyring>,
    pub sender: Sender,
    pub retry: RetryPolicy,
    /// The name endpoints are leased under: stable across restarts of this process.
    pub owner: String,
    /// How long an endpoint stays leased without a word from its owner.
    pub lease: Duration,
    /// Endpoints sent to at once.
    pub max_in_flight: usize,
}

#[derive(Clone)]
pub struct Dispatcher {
    pool: PgPool,
    repo: Repository,
    endpoints: Endpoints,
    keyring: Arc<Keyring>,
    sender: Sender,
    retry: RetryPolicy,
    owner: String,
    lease: Duration,
    /// Endpoints this process is sending to now; guarded only to add and remove.
    busy: Arc<Mutex<HashSet<Uuid>>>,
    /// Bounds the endpoints sent to at once.
    slots: Arc<Semaphore>,
    /// Woken when there may be something to send: new deliveries, or an endpoint let go of
    /// (deliveries recorded while it was being sent to were not claimable then).
    wake: Arc<Notify>,
}

/// What draining one endpoint did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    pub attempts: usize,
    pub delivered: usize,
}

impl Dispatcher {
    pub fn new(repo: Repository, endpoints: Endpoints, sending: Sending, wake: Arc<Notify>) -> Self {
        Self {
            pool: repo.store().pool().clone(),
            repo,
            endpoints,
            keyring: sending.keyring,
            sender: sending.sender,
            retry: sending.retry,
            owner: sending.owner,
            lease: sending.lease,
            busy: Arc::default(),
            slots: Arc::new(Semaphore::new(sending.max_in_flight.max(1))),
            wake,
        }
    }

    /// Sends until the process stops: whenever woken, and every `poll` for retries coming due
    /// and for endpoints another deliverer let go of.
    pub async fn run(self, poll: Duration) {
        let mut failing = false;
        loop {
            match self.dispatch_due().await {
                Ok(_) if failing => {
                    tracing::info!("Dispatching deliveries again.");
                    failing = false;
                }
                Ok(_) => {}
                Err(error) => {
                    if !failing {
                        tracing::warn!(error = format!("{error:#}"), "Dispatching deliveries failed; retrying.");
                        failing = true;
                    }
                }
            }
            let _ = tokio::time::timeout(poll, self.wake.notified()).await;
        }
    }

    /// Claims the endpoints with a delivery due and starts draining each in a task of its own.
    /// Returns how many it started.
    pub async fn dispatch_due(&self) -> anyhow::Result<usize> {
        let available = self.slots.available_permits();
        if available == 0 {
            return Ok(0);
        }
        let busy: Vec<Uuid> = self.busy.lock().expect("never poisoned").iter().copied().collect();
        let claimed = outbox::claim_due(
            &self.pool,
            &self.owner,
            self.lease.as_secs_f64(),
            &busy,
            available as i64,
        )
        .await?;
        for webhook_id in &claimed {
            let permit = self.slots.clone().acquire_owned().await?;
            self.busy.lock().expect("never poisoned").insert(*webhook_id);
            let (dispatcher, webhook_id) = (self.clone(), *webhook_id);
            tokio::spawn(async move {
                if let Err(error) = dispatcher.drain(webhook_id).await {
                    tracing::warn!(webhook_id = %webhook_id, error = format!("{error:#}"),
                        "Sending an endpoint's deliveries failed; they are tried again shortly.");
                    let _ = outbox::release(&dispatcher.pool, webhook_id, &dispatcher.owner).await;
                }
                dispatcher.busy.lock().expect("never poisoned").remove(&webhook_id);
                drop(permit);
                dispatcher.wake.notify_one();
            });
        }
        Ok(claimed.len())
    }

    /// Claims what is due and drains it here, one endpoint after the other: one step of the
    /// dispatcher, for tests.
    pub async fn step(&self) -> anyhow::Result<Drained> {
        let claimed = outbox::claim_due(&self.pool, &self.owner, self.lease.as_secs_f64(), &[], 1000).await?;
        let mut total = Drained::default();
        for webhook_id in claimed {
            let drained = self.drain(webhook_id).await?;
            total.attempts += drained.attempts;
            total.delivered += drained.delivered;
        }
        Ok(total)
    }

    /// Sends one leased endpoint's due deliveries in order, until none is due or one waits for
    /// a retry; then lets the endpoint go. Deliveries are read a batch at a time, with the
    /// endpoint as it then stands; the lease is renewed whenever a third of it has passed.
    #[tracing::instrument(skip_all, fields(webhook_id = %webhook_id), err)]
    pub async fn drain(&self, webhook_id: Uuid) -> anyhow::Result<Drained> {
        let mut drained = Drained::default();
        let mut renewed = Instant::now();
        'endpoint: loop {
            let batch = outbox::due(&self.pool, webhook_id, BATCH).await?;
            if batch.is_empty() {
                break;
            }
            let Some(endpoint) = self.endpoints.get(webhook_id).await? else {
                self.abandon(webhook_id, "the webhook does not exist").await?;
                break;
            };
            if !endpoint.state.is_live() {
                self.abandon(webhook_id, "the webhook was deleted").await?;
                break;
            }
            if !endpoint.state.enabled {
                outbox::pause_endpoint(&self.pool, webhook_id).await?;
                break;
            }
            let secret = self.keyring.open(&endpoint.state.sealed_secret, webhook_id);
            for delivery in &batch {
                if renewed.elapsed() > self.lease / 3 {
                    if !outbox::renew(&self.pool, webhook_id, &self.owner, self.lease.as_secs_f64()).await? {
                        // Another deliverer has the endpoint now; it sends the rest, in order.
                        return Ok(drained);
                    }
                    renewed = Instant::now();
                }
                let sent = match &secret {
                    Ok(secret) => {
                        let url = &endpoint.state.url;
                        self.sender
                            .send(url, webhook_id, delivery.delivery_id, secret, &delivery.body)
                            .await
                    }
                    // The operator's keys are wrong: keep the delivery and try again later.
                    Err(error) => crate::sender::Sent {
                        attempt: webhook::outbox::Attempt {
                            at: Utc::now(),
                            status: None,
                            latency_ms: 0,
                            error: Some(format!("the signing secret does not open: {error}")),
                            response_excerpt: None,
                        },
                        verdict: Verdict::Retry { retry_after: None },
                    },
                };
                let next = self
                    .retry
                    .next(delivery, &sent.verdict, sent.attempt.error.as_deref(), sent.attempt.at);
                let failing_since = outbox::record(&self.pool, delivery, &sent.attempt, &next).await?;
                drained.attempts += 1;
                crate::instruments::attempted(delivery, &sent, &next);
                if next == Next::Delivered {
                    drained.delivered += 1;
                }
                if let Some(since) = failing_since {
                    let failing_for = (Utc::now() - since).to_std().unwrap_or_default();
                    if failing_for >= self.retry.disable_after {
                        self.disable(&endpoint.state, webhook_id, since, sent.attempt.error.as_deref())
                            .await?;
                        outbox::pause_endpoint(&self.pool, webhook_id).await?;
                        break 'endpoint;
                    }
                }
                // What comes after a delivery waiting for its retry waits too.
                if matches!(next, Next::RetryAt(_)) {
                    break 'endpoint;
                }
            }
        }
        outbox::release(&self.pool, webhook_id, &self.owner).await?;
        Ok(drained)
    }

    async fn abandon(&self, webhook_id: Uuid, reason: &str) -> anyhow::Result<()> {
        let mut connection = self.pool.acquire().await?;
        outbox::abandon_endpoint(&mut connection, webhook_id, reason).await?;
        Ok(())
    }

    async fn disable(
        &self,
        hook: &Webhook,
        webhook_id: Uuid,
        since: DateTime<Utc>,
        last_error: Option<&str>,
    ) -> anyhow::Result<()> {
        let reason = format!(
            "every attempt has failed since {} (more than {}s); the last: {}",
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            self.retry.disable_after.as_secs(),
            last_error.unwrap_or("failed")
        );
        let metadata = Metadata {
            workspace_id: hook.workspace_id,
            correlation_id: webhook_id,
            ..Default::default()
        };
        let command = WebhookCommand::DisableFailing { reason: reason.clone() };
        loop {
            match self
                .repo
                .execute::<Webhook>(webhook_id, command.clone(), metadata.clone())
                .await
            {
                Ok(_) => break,
                Err(ExecuteError::Append(AppendError::WrongExpectedVersion { .. })) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        metrics::counter!("deliverer_endpoints_disabled_total").increment(1);
        tracing::warn!(webhook_id = %webhook_id, reason, "Disabled a webhook endpoint that kept failing.");
        Ok(())
    }
}
