//! The relay publishes every committed event once, keyed by stream, in stream-version order.

use crate::support::*;
use event_store::EventStore;
use relay::Outcome;
use sqlx::PgPool;
use std::collections::HashMap;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn every_event_reaches_the_topic_keyed_by_stream_with_headers_and_in_version_order(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let n = seed(&store, 2, 5, 22).await;
    assert!(n >= 300, "the seed wrote only {n} events");
    let events = read_everything(&store, n).await;
    let streams = store_versions(&pool).await;
    assert!(streams.len() >= 20, "only {} streams", streams.len());
    let topic = create_topic(&kafka_brokers(), "pipeline-test", 3).await;

    let mut relay = relay_for(&store, &kafka_brokers(), &topic, 40).await;
    publish_all(&mut relay, n).await;

    let messages = consume_all(&kafka_brokers(), &topic).await;
    assert_eq!(
        messages.len(),
        n,
        "with a healthy broker every event is published exactly once"
    );
    let by_id: HashMap<String, &Message> = messages
        .iter()
        .map(|m| (m.headers.get("event_id").cloned().expect("event_id header"), m))
        .collect();
    let (mut traced, mut untraced) = (0, 0);
    for event in &events {
        let message = by_id
            .get(&event.event_id.to_string())
            .unwrap_or_else(|| panic!("event {} ({}) is not on the topic", event.event_id, event.event_type));
        assert_eq!(message.key.as_deref(), Some(event.stream_id.to_string().as_str()));
        assert_eq!(message.headers.get("event_type"), Some(&event.event_type));
        assert_eq!(message.headers.get("traceparent"), event.traceparent.as_ref());
        match &event.traceparent {
            Some(_) => traced += 1,
            None => untraced += 1,
        }
        for field in [
            "event_id",
            "position",
            "stream_id",
            "stream_type",
            "version",
            "event_type",
            "workspace_id",
            "recorded_at",
            "data",
        ] {
            assert!(
                message.value.get(field).is_some(),
                "the message value lacks {field}: {}",
                message.value
            );
        }
        assert_eq!(
            &message.event(),
            event,
            "the message value round-trips to the stored event"
        );
    }
    assert!(
        traced > 0 && untraced > 0,
        "the seed should mix traced ({traced}) and untraced ({untraced}) appends"
    );

    let by_stream = versions_by_stream(&messages);
    assert_eq!(by_stream.len(), streams.len());
    for (stream_id, version) in &streams {
        let expected: Vec<i64> = (1..=*version).collect();
        assert_eq!(by_stream[stream_id], expected, "stream {stream_id} on the topic");
    }

    // The checkpoint was stored: a relay started again for this topic has nothing to resend.
    let mut restarted = relay_for(&store, &kafka_brokers(), &topic, 40).await;
    assert_eq!(restarted.cursor(), relay.cursor());
    assert_eq!(restarted.step().await.unwrap(), Outcome::Idle);
}
