//! The fan-out: one delivery per endpoint and event, whatever is consumed twice; only to
//! endpoints that are live, enabled, subscribed and registered before the event; redelivery on
//! request with the same `webhook-id`.

use crate::support::*;
use domain::webhook::WebhookCommand;
use sqlx::PgPool;
use uuid::Uuid;

async fn count(world: &World, webhook_id: Uuid) -> usize {
    world.deliveries(webhook_id).await.len()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn each_subscribed_endpoint_gets_each_event_once(pool: PgPool) {
    let world = World::new(pool).await;
    let (cards, _) = world.register("https://93.184.216.34/cards", &["card.created"]).await;
    let (runs, _) = world.register("https://93.184.216.34/runs", &["run.completed"]).await;
    let (disabled, _) = world.register("https://93.184.216.34/off", &["*"]).await;
    world
        .webhook(
            disabled,
            WebhookCommand::Update {
                url: None,
                events: None,
                enabled: Some(false),
            },
        )
        .await;
    let (deleted, _) = world.register("https://93.184.216.34/gone", &["*"]).await;
    world.webhook(deleted, WebhookCommand::Delete).await;
    world.create_card("One").await;
    world.create_card("Two").await;
    let (late, _) = world.register("https://93.184.216.34/late", &["*"]).await;

    world.fan_out().await;
    world.fan_out().await;
    let fanout = world.fanout();
    let events = world.events().await;
    projector::Sink::apply(&fanout, &events[events.len() / 2..])
        .await
        .unwrap();

    assert_eq!(count(&world, cards).await, 2);
    for quiet in [runs, disabled, deleted, late] {
        assert_eq!(count(&world, quiet).await, 0, "{quiet} got a delivery");
    }
    // Events after its registration do reach the late endpoint.
    world.create_card("Three").await;
    world.fan_out().await;
    assert_eq!(count(&world, late).await, 1);
    assert_eq!(count(&world, cards).await, 3);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_redelivery_resends_once_with_the_same_webhook_id(pool: PgPool) {
    let world = World::new(pool).await;
    let receiver = Receiver::start().await;
    let (webhook_id, secret) = world.register(&receiver.url(), &["card.created"]).await;
    world.create_card("Again").await;
    world.fan_out().await;
    let dispatcher = world.dispatcher(loopback_allowed(), quick_retries());
    dispatcher.step().await.unwrap();
    let delivery = world.deliveries(webhook_id).await[0].clone();
    assert_eq!(delivery.status, "delivered");

    world
        .webhook(
            webhook_id,
            WebhookCommand::Redeliver {
                delivery_id: delivery.delivery_id,
            },
        )
        .await;
    world.fan_out().await;
    assert_eq!(world.deliveries(webhook_id).await[0].status, "pending");
    dispatcher.step().await.unwrap();
    // The request seen again (a consumer restarted before committing) resends nothing more.
    world.fan_out().await;
    dispatcher.step().await.unwrap();

    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].id(), received[1].id());
    assert_eq!(received[1].id(), delivery.delivery_id.to_string());
    assert_eq!(received[0].body, received[1].body);
    received[1].verify(&secret).unwrap();
    let again = &world.deliveries(webhook_id).await[0];
    assert_eq!((again.status.as_str(), again.attempts), ("delivered", 2));
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_deleted_endpoint_gives_up_what_it_had_waiting(pool: PgPool) {
    let world = World::new(pool).await;
    let (webhook_id, _) = world.register("https://93.184.216.34/hook", &["*"]).await;
    world.create_card("Orphan").await;
    world.fan_out().await;
    world.webhook(webhook_id, WebhookCommand::Delete).await;
    world.fan_out().await;
    let delivery = &world.deliveries(webhook_id).await[0];
    assert_eq!(delivery.status, "failed");
    assert_eq!(delivery.last_error.as_deref(), Some("the webhook was deleted"));
    assert_eq!(delivery.attempts, 0);
}

/// A comparison's end goes to endpoints subscribed to `comparison.completed`, with its verdict.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_finished_comparison_is_delivered_with_its_verdict(pool: PgPool) {
    use domain::card::PromptCard;
    use domain::comparison::{compare, Comparison, ComparisonCommand, ComparisonPlan, Side};
    use domain::Aggregate;
    use event_store::{ExpectedVersion, NewEvent};
    let world = World::new(pool).await;
    let (comparisons, _) = world
        .register("https://93.184.216.34/comparisons", &["comparison.completed"])
        .await;
    let (runs, _) = world.register("https://93.184.216.34/runs", &["run.completed"]).await;
    let comparison_id = Uuid::now_v7();
    let side = |version| Side {
        version,
        label: None,
        run_id: Uuid::now_v7(),
    };
    let plan = ComparisonPlan {
        workspace_id: world.actor.workspace_id,
        card_id: Uuid::now_v7(),
        baseline: side(1),
        candidate: side(2),
        providers: vec!["echo".into()],
        repeat: 1,
        promote: None,
    };
    let requested = Comparison::default()
        .decide(ComparisonCommand::Request { comparison_id, plan })
        .unwrap();
    let finished = Comparison::fold(&requested)
        .decide(ComparisonCommand::Finish {
            report: compare(&[], &[]),
            card: Box::new(PromptCard::default()),
        })
        .unwrap();
    let events = requested.iter().chain(&finished).map(NewEvent::from_domain).collect();
    world
        .actor
        .append(
            &world.store,
            false,
            vec![stream(comparison_id, "comparison", ExpectedVersion::NoStream, events)],
        )
        .await;

    world.fan_out().await;
    assert_eq!(count(&world, runs).await, 0);
    let delivered = world.deliveries(comparisons).await;
    assert_eq!(delivered.len(), 1);
    let body: serde_json::Value =
        sqlx::query_scalar::<_, String>("SELECT body FROM webhooks.deliveries WHERE delivery_id = $1")
            .bind(delivered[0].delivery_id)
            .fetch_one(&world.pool)
            .await
            .map(|b| serde_json::from_str(&b).unwrap())
            .unwrap();
    assert_eq!(body["type"], "comparison.completed");
    assert_eq!(body["data"]["comparison_id"], comparison_id.to_string());
    assert_eq!(body["data"]["verdict"], "NO_SIGNIFICANT_DIFFERENCE");
}
