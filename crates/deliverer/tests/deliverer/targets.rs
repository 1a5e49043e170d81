//! Server-side request forgery refused at delivery too: an endpoint that points inside the
//! network (written as an address, behind a name, or through a redirect) is never reached,
//! whatever it was registered as, unless the operator allows the range.

use crate::support::*;
use sqlx::PgPool;
use webhook::TargetPolicy;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn internal_targets_are_refused_when_the_operator_has_not_allowed_them(pool: PgPool) {
    let world = World::new(pool).await;
    let receiver = Receiver::start().await;
    let port = receiver.addr.port();
    let targets = [
        (format!("http://127.0.0.1:{port}/hook"), "a loopback address"),
        // A name: refused for the address it resolves to, as the client connects.
        (format!("http://localhost:{port}/hook"), "a loopback address"),
        ("http://10.255.255.1:81/hook".to_owned(), "a private address"),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "a link-local address",
        ),
        ("http://[::ffff:127.0.0.1]:9/".to_owned(), "a loopback address"),
    ];
    let mut endpoints = Vec::new();
    for (url, kind) in &targets {
        // Registered while it was allowed (or before a name moved): the deliverer checks again.
        let (webhook_id, _) = world.register(url, &["*"]).await;
        endpoints.push((webhook_id, url, *kind));
    }
    world.create_card("Bait").await;
    world.fan_out().await;
    let dispatcher = world.dispatcher(TargetPolicy::default(), quick_retries());
    dispatcher.step().await.unwrap();

    assert!(receiver.received().is_empty(), "an internal target was reached");
    for (webhook_id, url, kind) in endpoints {
        let deliveries = world.deliveries(webhook_id).await;
        let delivery = &deliveries[0];
        assert_eq!((delivery.status.as_str(), delivery.attempts), ("failed", 1), "{url}");
        let error = delivery.last_error.as_deref().unwrap();
        assert!(
            error.contains(kind) && error.contains("WEBHOOK_ALLOWED_CIDRS"),
            "{url}: {error}"
        );
        assert_eq!(world.attempt_statuses(delivery.delivery_id).await, vec![None]);
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn redirects_are_not_followed(pool: PgPool) {
    let world = World::new(pool).await;
    let receiver = Receiver::start().await;
    let elsewhere = Receiver::start().await;
    receiver.answer([Reply::status(302).header("location", elsewhere.url())]);
    let (webhook_id, _) = world.register(&receiver.url(), &["*"]).await;
    world.create_card("Redirected").await;
    world.fan_out().await;
    world
        .dispatcher(loopback_allowed(), quick_retries())
        .step()
        .await
        .unwrap();
    assert_eq!(receiver.received().len(), 1);
    assert!(elsewhere.received().is_empty(), "the redirect was followed");
    let delivery = &world.deliveries(webhook_id).await[0];
    assert_eq!(delivery.status, "failed");
    let error = delivery.last_error.as_deref().unwrap();
    assert!(
        error.contains("302") && error.contains("redirects are not followed"),
        "{error}"
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_allowed_range_is_reached_and_no_other(pool: PgPool) {
    let world = World::new(pool).await;
    let receiver = Receiver::start().await;
    let (allowed, _) = world.register(&receiver.url(), &["*"]).await;
    let (private, _) = world.register("http://10.255.255.1:81/hook", &["*"]).await;
    world.create_card("Split").await;
    world.fan_out().await;
    world
        .dispatcher(loopback_allowed(), quick_retries())
        .step()
        .await
        .unwrap();
    assert_eq!(world.deliveries(allowed).await[0].status, "delivered");
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(world.deliveries(private).await[0].status, "failed");
}
