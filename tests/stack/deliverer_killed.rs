//! The deliverer SIGKILLed while it delivers, and started again as `up` starts it: every event
//! an endpoint subscribes to still reaches the receiver, and an event that arrives twice carries
//! the same `webhook-id` both times, so the receiver can drop the copy.

use crate::support::{eventually, Load, Stack};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;
use test_support::webhooks::{Receiver, Reply};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deliverer_killed_mid_delivery_loses_nothing_and_repeats_only_with_the_same_id() {
    let mut stack = Stack::start().await;
    let receiver = Receiver::start().await;
    // Slow answers keep deliveries in flight when the kill comes.
    receiver.answer((0..10_000).map(|_| Reply::status(204).delay(Duration::from_millis(15))));
    let clients = futures::future::join_all((0..3).map(|_| stack.client())).await;
    let mut secrets = BTreeMap::new();
    for client in &clients {
        let created = client
            .post(
                "/webhooks",
                json!({ "url": receiver.url(), "events": ["card.created"] }),
            )
            .await;
        secrets.insert(client.workspace.clone(), created["secret"].as_str().unwrap().to_owned());
    }

    let load = Load::start(&clients);
    load.until_more(40).await;
    receiver.wait_for(10, Duration::from_secs(60)).await;
    stack.kill("deliverer");
    load.until_more(40).await;
    stack.start_process("deliverer").await;
    load.until_more(20).await;
    let acknowledged = load.stop().await;

    let expected: HashSet<String> = acknowledged.iter().map(|c| c.to_string()).collect();
    let delivered = eventually(
        Duration::from_secs(90),
        "every card's creation is delivered",
        || async {
            let received = receiver.received();
            let cards: HashSet<String> = received
                .iter()
                .map(|r| r.json()["data"]["card_id"].as_str().unwrap().to_owned())
                .collect();
            expected.is_subset(&cards).then_some(received)
        },
    )
    .await;

    let mut ids_per_card: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for request in &delivered {
        let body = request.json();
        let workspace = body["data"]["workspace_id"].as_str().unwrap();
        request
            .verify(&secrets[workspace])
            .unwrap_or_else(|e| panic!("a delivery does not verify: {e}"));
        ids_per_card
            .entry(body["data"]["card_id"].as_str().unwrap().to_owned())
            .or_default()
            .insert(request.id().to_owned());
    }
    let repeated = delivered.len() - ids_per_card.len();
    for (card, ids) in &ids_per_card {
        assert_eq!(
            ids.len(),
            1,
            "card {card} was delivered under several webhook-ids: {ids:?}"
        );
    }
    let delivered_cards: HashSet<String> = ids_per_card.keys().cloned().collect();
    assert_eq!(
        delivered_cards, expected,
        "a card that was never acknowledged was delivered"
    );
    eprintln!(
        "deliverer killed mid-delivery: {} cards delivered, {repeated} delivered again after the restart (same webhook-id)",
        expected.len()
    );
    stack.drained(Duration::from_secs(30)).await;

    // GraphQL shows the deliveries with their attempts.
    let webhooks = clients[0]
        .try_graphql(
            &stack.url("query-api"),
            &format!(r#"{{ webhooks(workspaceId: "{}") {{ id }} }}"#, clients[0].workspace),
        )
        .await
        .expect("webhooks answers");
    let webhook_id = webhooks["webhooks"][0]["id"].as_str().unwrap().to_owned();
    let page = clients[0]
        .try_graphql(
            &stack.url("query-api"),
            &format!(
                r#"{{ webhookDeliveries(webhookId: "{webhook_id}", first: 5) {{ edges {{ node {{ id eventType status attempts {{ status latencyMs }} }} }} }} }}"#
            ),
        )
        .await
        .expect("webhookDeliveries answers");
    let edges = page["webhookDeliveries"]["edges"].as_array().unwrap();
    assert!(!edges.is_empty());
    for edge in edges {
        assert_eq!(edge["node"]["eventType"], "card.created");
        assert_eq!(edge["node"]["status"], "DELIVERED");
        assert_eq!(
            edge["node"]["attempts"].as_array().unwrap().last().unwrap()["status"],
            204
        );
    }
}
