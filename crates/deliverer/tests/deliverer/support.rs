//! A workspace of the test's own in the event store, endpoints registered the way the command
//! API registers them (sealed secret and all), and the deliverer's parts driven one step at a
//! time against a real receiver.

use deliverer::dispatch::{Dispatcher, RetryPolicy, Sending};
use deliverer::endpoints::Endpoints;
use deliverer::fanout::FanOut;
use deliverer::sender::Sender;
use domain::card::{CardContent, CardEvent};
use domain::webhook::{Webhook, WebhookCommand};
use domain::Role;
use event_store::{EventFilter, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, Repository};
use futures::TryStreamExt;
use projector::Sink;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use uuid::Uuid;
use webhook::{Keyring, SigningSecret, TargetPolicy};

pub use test_support::history::{stream, Actor};
pub use test_support::webhooks::{Receiver, Reply};

pub const KEK: &str = "dGVzdC1vbmx5LXdlYmhvb2sta2V5LTMyLWJ5dGVzISE=";

/// Retries quick enough for a test: 20 ms doubling to 200 ms, for 30 s.
pub fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        horizon: Duration::from_secs(30),
        disable_after: Duration::from_secs(3600),
    }
}

/// The receivers of these tests listen on loopback, which the operator allows here.
pub fn loopback_allowed() -> TargetPolicy {
    TargetPolicy::parse("127.0.0.0/8").unwrap()
}

pub struct World {
    pub pool: PgPool,
    pub store: EventStore,
    pub repo: Repository,
    pub keyring: Arc<Keyring>,
    pub actor: Actor,
    pub endpoints: Endpoints,
}

impl World {
    pub async fn new(pool: PgPool) -> Self {
        let store = EventStore::new(pool.clone());
        let actor = Actor::new();
        actor.create_workspace(&store, &[Role::Admin]).await;
        Self {
            pool,
            repo: Repository::new(store.clone(), 1_000),
            endpoints: Endpoints::new(store.clone()),
            keyring: Arc::new(Keyring::new(KEK, None).unwrap()),
            store,
            actor,
        }
    }

    pub fn metadata(&self) -> Metadata {
        self.actor.metadata(false)
    }

    /// Registers an endpoint as the command API does; returns its id and its `whsec_` secret.
    pub async fn register(&self, url: &str, events: &[&str]) -> (Uuid, String) {
        let webhook_id = Uuid::now_v7();
        let secret = SigningSecret::generate();
        let command = WebhookCommand::Create {
            webhook_id,
            workspace_id: self.actor.workspace_id,
            url: url.to_owned(),
            events: events.iter().map(|e| e.to_string()).collect(),
            sealed_secret: self.keyring.seal(&secret, webhook_id),
        };
        self.webhook(webhook_id, command).await;
        (webhook_id, secret.expose())
    }

    pub async fn webhook(&self, webhook_id: Uuid, command: WebhookCommand) {
        self.repo
            .execute::<Webhook>(webhook_id, command, self.metadata())
            .await
            .expect("the webhook command is appended");
    }

    /// Appends a card's creation; returns the card's id.
    pub async fn create_card(&self, title: &str) -> Uuid {
        let card_id = Uuid::now_v7();
        let created = CardEvent::PromptCardCreated {
            card_id,
            workspace_id: self.actor.workspace_id,
            name: format!("card-{}", card_id.simple()),
            content: CardContent {
                title: title.to_owned(),
                description: String::new(),
                template: "Say {{ word }}.".into(),
                messages: vec![],
                variables: vec![test_support::history::string_variable("word")],
                tags: vec![],
                config: Default::default(),
            },
        };
        let events = vec![NewEvent::from_domain(&created)];
        self.actor
            .append(
                &self.store,
                false,
                vec![stream(card_id, "prompt_card", ExpectedVersion::NoStream, events)],
            )
            .await;
        card_id
    }

    /// Every committed event, oldest first.
    pub async fn events(&self) -> Vec<RecordedEvent> {
        self.store.events(&EventFilter::default()).try_collect().await.unwrap()
    }

    pub fn fanout(&self) -> FanOut {
        FanOut::new(self.store.clone(), self.endpoints.clone(), Arc::new(Notify::new()))
    }

    /// Hands the whole history to the fan-out, as a consumer that starts from the beginning.
    pub async fn fan_out(&self) {
        self.fanout().apply(&self.events().await).await.unwrap();
    }

    pub fn dispatcher(&self, policy: TargetPolicy, retry: RetryPolicy) -> Dispatcher {
        let sending = Sending {
            keyring: self.keyring.clone(),
            sender: Sender::new(policy, Duration::from_secs(5)).unwrap(),
            retry,
            owner: format!("test-{}", Uuid::now_v7()),
            lease: Duration::from_secs(30),
            max_in_flight: 8,
        };
        Dispatcher::new(
            self.repo.clone(),
            self.endpoints.clone(),
            sending,
            Arc::new(Notify::new()),
        )
    }

    /// Per delivery of the endpoint, in the order they go out: id, status, attempts made.
    pub async fn deliveries(&self, webhook_id: Uuid) -> Vec<Delivery> {
        sqlx::query_as(
            "SELECT d.delivery_id, d.status, d.last_error, d.next_attempt_at,
                    (SELECT count(*) FROM webhooks.attempts a WHERE a.delivery_id = d.delivery_id) AS attempts
             FROM webhooks.deliveries d WHERE d.webhook_id = $1 ORDER BY d.seq",
        )
        .bind(webhook_id)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// The HTTP statuses of a delivery's attempts, in order (`None` where nothing answered).
    pub async fn attempt_statuses(&self, delivery_id: Uuid) -> Vec<Option<i32>> {
        sqlx::query_scalar("SELECT status FROM webhooks.attempts WHERE delivery_id = $1 ORDER BY attempt")
            .bind(delivery_id)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    /// Steps the dispatcher until `done` holds (retries come due after their backoff).
    pub async fn dispatch_until<F, Fut>(&self, dispatcher: &Dispatcher, what: &str, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        test_support::eventually(what, || {
            let step = dispatcher.step();
            let check = done();
            async move {
                step.await.unwrap();
                check.await.then_some(())
            }
        })
        .await
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub delivery_id: Uuid,
    pub status: String,
    pub last_error: Option<String>,
    pub next_attempt_at: chrono::DateTime<chrono::Utc>,
    pub attempts: i64,
}
