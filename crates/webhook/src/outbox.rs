//! Every SQL statement on the deliverer's tables (schema `webhooks`, see
//! migrations/*_webhooks_and_alerts.sql): deliveries written before the deliverer commits its
//! Kafka offset, the attempts made for them, and per endpoint who sends and how long it has been
//! failing. The deliverer writes them; the command API and the query API only read.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// A delivery to record: one event for one endpoint, its body fixed once for every attempt.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub delivery_id: Uuid,
    pub webhook_id: Uuid,
    pub workspace_id: Uuid,
    pub event_id: Uuid,
    pub event_position: i64,
    pub event_type: String,
    pub body: String,
    pub event_recorded_at: DateTime<Utc>,
}

/// Records deliveries; one already recorded for its (endpoint, event) is left as it is, so a
/// batch consumed twice adds nothing. Returns how many were new.
pub async fn enqueue(tx: &mut PgConnection, deliveries: &[NewDelivery]) -> Result<u64, sqlx::Error> {
    if deliveries.is_empty() {
        return Ok(0);
    }
    let column = |f: fn(&NewDelivery) -> Uuid| deliveries.iter().map(f).collect::<Vec<_>>();
    let inserted = sqlx::query(
        "INSERT INTO webhooks.deliveries
            (delivery_id, webhook_id, workspace_id, event_id, event_position, event_type, body, event_recorded_at)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::bigint[], $6::text[], $7::text[],
                              $8::timestamptz[])
         ON CONFLICT ON CONSTRAINT deliveries_once DO NOTHING",
    )
    .bind(column(|d| d.delivery_id))
    .bind(column(|d| d.webhook_id))
    .bind(column(|d| d.workspace_id))
    .bind(column(|d| d.event_id))
    .bind(deliveries.iter().map(|d| d.event_position).collect::<Vec<_>>())
    .bind(deliveries.iter().map(|d| d.event_type.clone()).collect::<Vec<_>>())
    .bind(deliveries.iter().map(|d| d.body.clone()).collect::<Vec<_>>())
    .bind(deliveries.iter().map(|d| d.event_recorded_at).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected())
}

/// Puts a delivery back at the head of its endpoint's queue with a fresh series of attempts
/// (same `webhook-id`). `request_id` (the request event's id) makes a request seen twice count
/// once. False when the delivery is not the endpoint's.
pub async fn redeliver(
    tx: &mut PgConnection,
    webhook_id: Uuid,
    delivery_id: Uuid,
    request_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE webhooks.deliveries
         SET status = 'pending', series_attempts = 0, series_started_at = NULL, next_attempt_at = now(),
             redelivery_id = $3
         WHERE delivery_id = $1 AND webhook_id = $2 AND redelivery_id IS DISTINCT FROM $3",
    )
    .bind(delivery_id)
    .bind(webhook_id)
    .bind(request_id)
    .execute(&mut *tx)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// An endpoint enabled again starts afresh: its waiting deliveries get a new series of attempts
/// and it is no longer counted as failing.
pub async fn restart_endpoint(tx: &mut PgConnection, webhook_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhooks.deliveries SET series_attempts = 0, series_started_at = NULL, next_attempt_at = now()
         WHERE webhook_id = $1 AND status = 'pending'",
    )
    .bind(webhook_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE webhooks.endpoints SET failing_since = NULL WHERE webhook_id = $1")
        .bind(webhook_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A disabled endpoint's waiting deliveries wait until it is enabled again
/// ([`restart_endpoint`]) instead of coming due over and over.
pub async fn pause_endpoint(pool: &PgPool, webhook_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhooks.deliveries SET next_attempt_at = now() + interval '100 years'
         WHERE webhook_id = $1 AND status = 'pending'",
    )
    .bind(webhook_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// A deleted endpoint's waiting deliveries fail, naming why.
pub async fn abandon_endpoint(tx: &mut PgConnection, webhook_id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhooks.deliveries SET status = 'failed', last_error = $2 WHERE webhook_id = $1 AND status = 'pending'",
    )
    .bind(webhook_id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A delivery as the dispatcher sends it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub delivery_id: Uuid,
    pub webhook_id: Uuid,
    pub workspace_id: Uuid,
    pub event_type: String,
    pub body: String,
    pub event_recorded_at: DateTime<Utc>,
    pub series_attempts: i32,
    pub series_started_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
    /// Whether an earlier series ended, i.e. this is a redelivery.
    pub redelivery_id: Option<Uuid>,
}

/// Endpoints with a delivery due now whose lease this `owner` took (for `lease` seconds): no
/// other deliverer sends their deliveries meanwhile. An owner takes back its own leases at once,
/// so a deliverer restarted under the same name does not wait for them to lapse. `busy` are
/// endpoints this owner is already sending to.
pub async fn claim_due(
    pool: &PgPool,
    owner: &str,
    lease_seconds: f64,
    busy: &[Uuid],
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH heads AS (
             SELECT DISTINCT ON (webhook_id) webhook_id, next_attempt_at
             FROM webhooks.deliveries WHERE status = 'pending'
             ORDER BY webhook_id, seq
         ), due AS (
             SELECT webhook_id FROM heads
             WHERE next_attempt_at <= now() AND NOT (webhook_id = ANY($3))
             LIMIT $4
         )
         INSERT INTO webhooks.endpoints AS e (webhook_id, lease_owner, lease_until)
         SELECT webhook_id, $1, now() + make_interval(secs => $2) FROM due
         ON CONFLICT (webhook_id) DO UPDATE SET lease_owner = EXCLUDED.lease_owner, lease_until = EXCLUDED.lease_until
         WHERE e.lease_until IS NULL OR e.lease_until < now() OR e.lease_owner = EXCLUDED.lease_owner
         RETURNING webhook_id",
    )
    .bind(owner)
    .bind(lease_seconds)
    .bind(busy)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Extends this owner's lease on an endpoint; false when it lost it.
pub async fn renew(pool: &PgPool, webhook_id: Uuid, owner: &str, lease_seconds: f64) -> Result<bool, sqlx::Error> {
    let renewed = sqlx::query(
        "UPDATE webhooks.endpoints SET lease_until = now() + make_interval(secs => $3)
         WHERE webhook_id = $1 AND lease_owner = $2",
    )
    .bind(webhook_id)
    .bind(owner)
    .bind(lease_seconds)
    .execute(pool)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

pub async fn release(pool: &PgPool, webhook_id: Uuid, owner: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhooks.endpoints SET lease_until = NULL WHERE webhook_id = $1 AND lease_owner = $2")
        .bind(webhook_id)
        .bind(owner)
        .execute(pool)
        .await?;
    Ok(())
}

/// The endpoint's oldest waiting deliveries, in the order they go out, up to the first one
/// not due yet: nothing later goes out before an earlier one is done.
pub async fn due(pool: &PgPool, webhook_id: Uuid, limit: i64) -> Result<Vec<Delivery>, sqlx::Error> {
    let mut waiting: Vec<Delivery> = sqlx::query_as(
        "SELECT delivery_id, webhook_id, workspace_id, event_type, body, event_recorded_at, series_attempts,
                series_started_at, next_attempt_at, redelivery_id
         FROM webhooks.deliveries WHERE webhook_id = $1 AND status = 'pending' ORDER BY seq LIMIT $2",
    )
    .bind(webhook_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let now = Utc::now();
    if let Some(first_waiting) = waiting.iter().position(|d| d.next_attempt_at > now) {
        waiting.truncate(first_waiting);
    }
    Ok(waiting)
}

/// One attempt: what was sent back, or why nothing was.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub status: Option<u16>,
    pub latency_ms: u32,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

/// What becomes of a delivery after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Delivered,
    RetryAt(DateTime<Utc>),
    /// Given up on, saying why.
    Failed(String),
}

/// Records an attempt and its consequence in one statement (so in one transaction), and
/// returns since when the endpoint has been failing (`None` once an attempt succeeded).
pub async fn record(
    pool: &PgPool,
    delivery: &Delivery,
    attempt: &Attempt,
    next: &Next,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let (status, next_attempt_at, delivered_at, error) = match next {
        Next::Delivered => ("delivered", None, Some(attempt.at), None),
        Next::RetryAt(at) => ("pending", Some(*at), None, attempt.error.clone()),
        Next::Failed(why) => ("failed", None, None, Some(why.clone())),
    };
    sqlx::query_scalar(
        "WITH attempt AS (
             INSERT INTO webhooks.attempts (delivery_id, attempt, at, status, latency_ms, error, response_excerpt)
             SELECT $1, COALESCE(MAX(attempt), 0) + 1, $2, $3, $4, $5, $6 FROM webhooks.attempts WHERE delivery_id = $1
         ), delivery AS (
             UPDATE webhooks.deliveries
             SET status = $7, series_attempts = series_attempts + 1,
                 series_started_at = COALESCE(series_started_at, $2),
                 next_attempt_at = COALESCE($8, next_attempt_at), delivered_at = COALESCE($9, delivered_at),
                 last_error = $10
             WHERE delivery_id = $1
         )
         INSERT INTO webhooks.endpoints AS e (webhook_id, failing_since, last_success_at)
         VALUES ($11, CASE WHEN $12 THEN NULL ELSE $2 END, CASE WHEN $12 THEN $2 END)
         ON CONFLICT (webhook_id) DO UPDATE SET
             failing_since = CASE WHEN $12 THEN NULL ELSE COALESCE(e.failing_since, $2) END,
             last_success_at = CASE WHEN $12 THEN $2 ELSE e.last_success_at END
         RETURNING e.failing_since",
    )
    .bind(delivery.delivery_id)
    .bind(attempt.at)
    .bind(attempt.status.map(i32::from))
    .bind(attempt.latency_ms as i32)
    .bind(&attempt.error)
    .bind(&attempt.response_excerpt)
    .bind(status)
    .bind(next_attempt_at)
    .bind(delivered_at)
    .bind(error)
    .bind(delivery.webhook_id)
    .bind(*next == Next::Delivered)
    .fetch_one(pool)
    .await
}

/// Which endpoint a delivery belongs to, for the command API's redelivery request.
pub async fn webhook_of(pool: &PgPool, delivery_id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT webhook_id FROM webhooks.deliveries WHERE delivery_id = $1")
        .bind(delivery_id)
        .fetch_optional(pool)
        .await
}

/// A delivery as the query API lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub seq: i64,
    pub delivery_id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    pub event_position: i64,
    pub event_type: String,
    pub status: String,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub delivery_id: Uuid,
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub status: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

/// An endpoint's deliveries, newest first, below `before_seq` when given.
pub async fn deliveries(
    pool: &PgPool,
    webhook_id: Uuid,
    before_seq: Option<i64>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, delivery_id, webhook_id, event_id, event_position, event_type, status, next_attempt_at,
                delivered_at, last_error, created_at
         FROM webhooks.deliveries WHERE webhook_id = $1 AND ($2::bigint IS NULL OR seq < $2)
         ORDER BY seq DESC LIMIT $3",
    )
    .bind(webhook_id)
    .bind(before_seq)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Every attempt of these deliveries, oldest first.
pub async fn attempts(pool: &PgPool, delivery_ids: &[Uuid]) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT delivery_id, attempt, at, status, latency_ms, error, response_excerpt
         FROM webhooks.attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt",
    )
    .bind(delivery_ids)
    .fetch_all(pool)
    .await
}
