//! Signed deliveries, retried as the issue says: 5xx and timeouts with backoff, `Retry-After`
//! honoured, other 4xx never, in order per endpoint, until the horizon; an endpoint that keeps
//! failing is disabled with an event saying why.

use crate::support::*;
use chrono::Utc;
use domain::webhook::{Webhook, WebhookCommand};
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn deliveries_are_signed_as_the_specification_says(pool: PgPool) {
    let world = World::new(pool).await;
    let receiver = Receiver::start().await;
    let (webhook_id, secret) = world.register(&receiver.url(), &["card.created"]).await;
    let first = world.create_card("First").await;
    let second = world.create_card("Second").await;
    world.fan_out().await;
    let dispatcher = world.dispatcher(loopback_allowed(), quick_retries());
    dispatcher.step().await.unwrap();

    let received = receiver.wait_for(2, WAIT).await;
    let deliveries = world.deliveries(webhook_id).await;
    for ((request, delivery), card) in received.iter().zip(&deliveries).zip([first, second]) {
        // The verifier of test-support is written from the specification, not from the sender.
        request.verify(&secret).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(request.id(), delivery.delivery_id.to_string());
        assert_eq!(request.header("content-type"), "application/json");
        let sent_at: i64 = request.header("webhook-timestamp").parse().unwrap();
        assert!((Utc::now().timestamp() - sent_at).abs() < 60);
        let body = request.json();
        assert_eq!(body["type"], "card.created");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'), "{body}");
        assert_eq!(body["data"]["card_id"], json!(card));
        assert_eq!(body["data"]["workspace_id"], json!(world.actor.workspace_id));
        assert!(body["data"]["position"].as_i64().unwrap() > 0);
        // Any other secret does not verify it.
        assert!(request.verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
    }
    assert_eq!(received[0].json()["data"]["title"], "First");
    assert_eq!(
        deliveries.iter().map(|d| d.status.as_str()).collect::<Vec<_>>(),
        ["delivered"; 2]
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn server_errors_are_retried_with_growing_waits_until_one_succeeds(pool: PgPool) {
    let world = World::new(pool).await;
    let receiver = Receiver::start().await;
    receiver.answer([
        Reply::status(500).body("boom"),
        Reply::status(503),
        Reply::status(502),
        Reply::status(200).body("thanks"),
    ]);
    let (webhook_id, secret) = world.register(&receiver.url(), &["*"]).await;
    world.create_card("Retried").await;
    world.fan_out().await;
    let dispatcher = world.dispatcher(loopback_allowed(), quick_retries());
    world
        .dispatch_until(&dispatcher, "the delivery succeeds", || async {
            world.deliveries(webhook_id).await[0].status == "delivered"
        })
        .await;

    let received = receiver.received();
    assert_eq!(received.len(), 4);
    let ids: Vec<&str> = received.iter().map(|r| r.id()).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "every attempt carries one webhook-id: {ids:?}"
    );
    for request in &received {
        request.verify(&secret).unwrap();
        assert_eq!(request.body, received[0].body, "every attempt sends the same body");
    }
    // Waits of 20, 40 and 80 ms at least half of each: they grow.
    let gaps: Vec<Duration> = received.windows(2).map(|w| w[1].at - w[0].at).collect();
    for (gap, least) in gaps.iter().zip([10, 20, 40]) {
        assert!(*gap >= Duration::from_millis(least), "{gaps:?}");
    }
    let delivery = &world.deliveries(webhook_id).await[0];
    assert_eq!(delivery.attempts, 4);
    assert_eq!(
        world.attempt_statuses(delivery.delivery_id).await,
        vec![Some(500), Some(503), Some(502), Some(200)]
    );
    let excerpts: Vec<Option<String>> =
        sqlx::query_scalar("SELECT response_excerpt FROM webhooks.attempts ORDER BY attempt")
            .fetch_all(&world.pool)
            .await
            .unwrap();
    assert_eq!(excerpts, vec![Some("boom".into()), None, None, Some("thanks".into())]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn retry_after_is_honoured(pool: PgPool) {
    let world = World::new(pool).await;
    let receiver = Receiver::start().await;
    receiver.answer([Reply::status(429).header("retry-after", "2"), Reply::status(204)]);
    let (webhook_id, _) = world.register(&receiver.url(), &["*"]).await;
    world.create_card("Throttled").await;
    world.fan_out().await;
    let dispatcher = world.dispatcher(loopback_allowed(), quick_retries());
    dispatcher.step().await.unwrap();
    let waiting = &world.deliveries(webhook_id).await[0];
    assert_eq!((waiting.status.as_str(), waiting.attempts), ("pending", 1));
    let asked = receiver.received()[0].at;
    // Backoff alone would retry within 20 ms; the receiver asked for two seconds.
    world
        .dispatch_until(&dispatcher, "the delivery succeeds", || async {
            world.deliveries(webhook_id).await[0].status == "delivered"
        })
        .await;
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    let waited = received[1].at - asked;
    assert!(waited >= Duration::from_millis(1900), "retried after {waited:?}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn client_errors_are_not_retried_but_408_and_429_are(pool: PgPool) {
    let world = World::new(pool).await;
    let receiver = Receiver::start().await;
    // Each card's delivery gets these answers in turn: 400; 410; 408 then 200; 429 then 200.
    receiver.answer([
        Reply::status(400).body("{\"error\": \"bad\"}"),
        Reply::status(410),
        Reply::status(408),
        Reply::status(200),
        Reply::status(429),
        Reply::status(200),
    ]);
    let (webhook_id, _) = world.register(&receiver.url(), &["card.created"]).await;
    for title in ["a", "b", "c", "d"] {
        world.create_card(title).await;
    }
    world.fan_out().await;
    let dispatcher = world.dispatcher(loopback_allowed(), quick_retries());
    world
        .dispatch_until(&dispatcher, "every delivery is over", || async {
            world.deliveries(webhook_id).await.iter().all(|d| d.status != "pending")
        })
        .await;
    let deliveries = world.deliveries(webhook_id).await;
    let outcome: Vec<(&str, i64)> = deliveries.iter().map(|d| (d.status.as_str(), d.attempts)).collect();
    assert_eq!(
        outcome,
        vec![("failed", 1), ("failed", 1), ("delivered", 2), ("delivered", 2)]
    );
    assert_eq!(
        deliveries[0].last_error.as_deref(),
        Some("the receiver answered 400, which is not retried")
    );
    assert_eq!(receiver.received().len(), 6);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_endpoint_gets_its_deliveries_in_order_even_while_one_is_retried(pool: PgPool) {
    let world = World::new(pool).await;
    let receiver = Receiver::start().await;
    receiver.answer([Reply::status(500), Reply::status(500)]);
    let (webhook_id, _) = world.register(&receiver.url(), &["card.created"]).await;
    let mut cards = Vec::new();
    for n in 0..5 {
        cards.push(world.create_card(&format!("card {n}")).await);
    }
    world.fan_out().await;
    let dispatcher = world.dispatcher(loopback_allowed(), quick_retries());
    world
        .dispatch_until(&dispatcher, "every delivery is delivered", || async {
            world
                .deliveries(webhook_id)
                .await
                .iter()
                .all(|d| d.status == "delivered")
        })
        .await;
    let received: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.json()["data"]["card_id"].as_str().unwrap().to_owned())
        .collect();
    let first = cards[0].to_string();
    let mut expected = vec![first.clone(), first.clone(), first];
    expected.extend(cards[1..].iter().map(|c| c.to_string()));
    assert_eq!(
        received, expected,
        "the first card's retries come before anything later"
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_delivery_is_given_up_after_the_horizon_and_a_failing_endpoint_disabled(pool: PgPool) {
    let world = World::new(pool).await;
    let receiver = Receiver::start().await;
    receiver.answer((0..100).map(|_| Reply::status(500)));
    let (webhook_id, _) = world.register(&receiver.url(), &["card.created"]).await;
    world.create_card("Doomed").await;
    world.create_card("Waiting").await;
    world.fan_out().await;
    let mut retry = quick_retries();
    retry.horizon = Duration::from_millis(300);
    let dispatcher = world.dispatcher(loopback_allowed(), retry.clone());
    world
        .dispatch_until(&dispatcher, "the first delivery is given up", || async {
            world.deliveries(webhook_id).await[0].status == "failed"
        })
        .await;
    let given_up = &world.deliveries(webhook_id).await[0];
    assert!(given_up.attempts >= 3, "{given_up:?}");
    let error = given_up.last_error.clone().unwrap();
    assert!(error.starts_with("gave up after"), "{error}");
    assert!(error.ends_with("the last: the receiver answered 500"), "{error}");

    // An endpoint failing for longer than allowed is disabled, with an event saying why, and
    // what it still has waits instead of coming due again and again.
    retry.disable_after = Duration::from_millis(1);
    let strict = world.dispatcher(loopback_allowed(), retry);
    strict.step().await.unwrap();
    let hook = world.repo.load::<Webhook>(webhook_id).await.unwrap().state;
    assert!(!hook.enabled);
    let reason = hook.disabled_reason.unwrap();
    assert!(reason.starts_with("every attempt has failed since"), "{reason}");
    let automatic: bool = sqlx::query_scalar(
        "SELECT (data->>'automatic')::boolean FROM events WHERE event_type = 'WebhookDisabled' AND stream_id = $1",
    )
    .bind(webhook_id)
    .fetch_one(&world.pool)
    .await
    .unwrap();
    assert!(automatic);
    let waiting = &world.deliveries(webhook_id).await[1];
    assert_eq!(waiting.status, "pending");
    assert!(waiting.next_attempt_at > Utc::now() + chrono::Duration::days(365));
    let attempts = receiver.received().len();
    assert_eq!(strict.step().await.unwrap().attempts, 0);

    // Enabled again, it starts afresh with what was waiting.
    world
        .webhook(
            webhook_id,
            WebhookCommand::Update {
                url: None,
                events: None,
                enabled: Some(true),
            },
        )
        .await;
    receiver.clear_answers();
    assert_eq!(receiver.received().len(), attempts, "nothing was sent while disabled");
    world.fan_out().await;
    let forgiving = world.dispatcher(loopback_allowed(), quick_retries());
    world
        .dispatch_until(&forgiving, "the waiting delivery goes out", || async {
            world.deliveries(webhook_id).await[1].status == "delivered"
        })
        .await;
}
