//! From the events topic to the outbox: a consumer group of its own (a projector [`Sink`], so
//! it is consumed as every sink is: a batch applied until it succeeds, then its offsets
//! committed). Each event an endpoint subscribes to becomes one delivery row per endpoint,
//! written in one transaction before the offsets are committed: a deliverer killed at any
//! moment loses no delivery, and a batch consumed again adds none (one row per endpoint and
//! event). The endpoints' own events steer the outbox: a redelivery request puts a delivery
//! back, an endpoint enabled again starts afresh, a deleted one gives up what it had waiting.

use crate::endpoints::{Endpoint, Endpoints};
use crate::payload;
use domain::names::stream_types;
use domain::webhook::WebhookEvent;
use event_store::{EventStore, RecordedEvent};
use projector::Sink;
use sqlx::PgPool;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;
use uuid::Uuid;
use webhook::outbox::{self, NewDelivery};

#[derive(Clone)]
pub struct FanOut {
    pool: PgPool,
    store: EventStore,
    endpoints: Endpoints,
    /// Woken after new deliveries were recorded, so the dispatcher sends them at once.
    wake: Arc<Notify>,
}

impl FanOut {
    pub fn new(store: EventStore, endpoints: Endpoints, wake: Arc<Notify>) -> Self {
        Self {
            pool: store.pool().clone(),
            store,
            endpoints,
            wake,
        }
    }

    /// The deliveries `events` make, each endpoint's in event order.
    async fn deliveries(&self, events: &[RecordedEvent]) -> anyhow::Result<Vec<NewDelivery>> {
        let mut by_workspace: HashMap<Uuid, Vec<Endpoint>> = HashMap::new();
        let mut deliveries = Vec::new();
        for event in events {
            let (Some(kind), Some(workspace_id)) = (payload::delivery_type(event), event.workspace_id) else {
                continue;
            };
            let endpoints = match by_workspace.entry(workspace_id) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(first) => first.insert(self.endpoints.of_workspace(workspace_id).await?),
            };
            let targets: Vec<Uuid> = endpoints
                .iter()
                .filter(|e| {
                    e.state.is_live()
                        && e.state.enabled
                        && e.state.subscribes_to(kind)
                        && e.created_position < event.position
                })
                .map(|e| e.id)
                .collect();
            if targets.is_empty() {
                continue;
            }
            let body = payload::body(&self.store, event, kind).await?;
            deliveries.extend(targets.into_iter().map(|webhook_id| NewDelivery {
                delivery_id: Uuid::now_v7(),
                webhook_id,
                workspace_id,
                event_id: event.event_id,
                event_position: event.position,
                event_type: kind.to_owned(),
                body: body.clone(),
                event_recorded_at: event.recorded_at,
            }));
        }
        Ok(deliveries)
    }
}

impl Sink for FanOut {
    fn name(&self) -> &'static str {
        "webhooks"
    }

    async fn apply(&self, events: &[RecordedEvent]) -> anyhow::Result<()> {
        let deliveries = self.deliveries(events).await?;
        let mut tx = self.pool.begin().await?;
        let recorded = outbox::enqueue(&mut tx, &deliveries).await?;
        let mut resumed = false;
        for event in events.iter().filter(|e| e.stream_type == stream_types::WEBHOOK) {
            let webhook_id = event.stream_id;
            match event.decode::<WebhookEvent>()? {
                WebhookEvent::WebhookRedeliveryRequested { delivery_id } => {
                    resumed |= outbox::redeliver(&mut tx, webhook_id, delivery_id, event.event_id).await?;
                }
                WebhookEvent::WebhookEnabled {} => {
                    outbox::restart_endpoint(&mut tx, webhook_id).await?;
                    resumed = true;
                }
                WebhookEvent::WebhookDeleted {} => {
                    outbox::abandon_endpoint(&mut tx, webhook_id, "the webhook was deleted").await?;
                }
                _ => {}
            }
        }
        tx.commit().await?;
        metrics::counter!("deliverer_deliveries_enqueued_total").increment(recorded);
        if recorded > 0 || resumed {
            self.wake.notify_one();
        }
        Ok(())
    }
}
