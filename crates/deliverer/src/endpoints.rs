//! The webhook endpoints as the event store holds them, not as the read models do: the
//! deliverer must know an endpoint registered a moment before an event, whatever the
//! projector's lag. Each endpoint's stream is folded once and then read only for what was
//! appended since.

use domain::names::stream_types;
use domain::webhook::{Webhook, WebhookEvent};
use domain::Aggregate;
use event_store::EventStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// An endpoint, and where in the global order it was registered.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: Uuid,
    pub state: Webhook,
    /// The position of its `WebhookCreated`: events before it are not its business.
    pub created_position: i64,
}

#[derive(Clone)]
pub struct Endpoints {
    store: EventStore,
    /// Per endpoint: the last version folded and the state and creation position at it. Held
    /// only to copy an entry in or out, never across a read.
    known: Arc<Mutex<HashMap<Uuid, (i64, Endpoint)>>>,
}

impl Endpoints {
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            known: Arc::default(),
        }
    }

    /// The endpoint as stored now; `None` when no such endpoint was ever registered.
    pub async fn get(&self, id: Uuid) -> anyhow::Result<Option<Endpoint>> {
        let known = self.known.lock().expect("never poisoned").get(&id).cloned();
        let (mut version, mut endpoint) = match known {
            Some(known) => known,
            None => (
                0,
                Endpoint {
                    id,
                    state: Webhook::default(),
                    created_position: 0,
                },
            ),
        };
        let events = self.store.read_stream(id, version).await?;
        if events.first().is_some_and(|e| e.stream_type != stream_types::WEBHOOK) {
            return Ok(None);
        }
        for event in &events {
            if version == 0 {
                endpoint.created_position = event.position;
            }
            endpoint.state = endpoint.state.evolve(&event.decode::<WebhookEvent>()?);
            version = event.version;
        }
        if version == 0 {
            return Ok(None);
        }
        if !events.is_empty() {
            self.known
                .lock()
                .expect("never poisoned")
                .insert(id, (version, endpoint.clone()));
        }
        Ok(Some(endpoint))
    }

    /// Every endpoint ever registered in the workspace, deleted ones included.
    pub async fn of_workspace(&self, workspace_id: Uuid) -> anyhow::Result<Vec<Endpoint>> {
        let mut endpoints = Vec::new();
        for id in self.store.streams_of(workspace_id, stream_types::WEBHOOK).await? {
            endpoints.extend(self.get(id).await?);
        }
        Ok(endpoints)
    }
}
