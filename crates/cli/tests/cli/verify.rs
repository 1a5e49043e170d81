//! `verify`: tampering with the store, a topic missing a message, read models that differ.

use crate::support::*;
use event_store::{EventStore, RecordedEvent};
use projector::postgres::PostgresSink;
use projector::Sink;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use sqlx::PgPool;
use std::time::Duration;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn verify_catches_an_edited_payload(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let actor = Actor::new();
    let cards = seed(&store, &actor, 2, 3).await;
    let ok = promptcards(&pool, &["verify"]).await.success();
    assert!(
        ok.stdout.starts_with("OK: ") && ok.stdout.lines().count() == 1,
        "{}",
        ok.stdout
    );

    sqlx::query(
        "UPDATE events SET data = jsonb_set(data, '{title}', '\"tampered\"') WHERE stream_id = $1 AND version = 2",
    )
    .bind(cards[1])
    .execute(&pool)
    .await
    .unwrap();
    let failed = promptcards(&pool, &["verify"]).await;
    assert_eq!(failed.code, 1, "{}", failed.stdout);
    assert!(failed.stdout.starts_with("FAILED: 1 problem"), "{}", failed.stdout);
    assert!(
        failed.stdout.contains(&format!("stream {} version 2", cards[1])),
        "{}",
        failed.stdout
    );
    assert!(failed.stdout.contains("edited"), "{}", failed.stdout);

    let json = promptcards(&pool, &["verify", "--json"]).await;
    assert_eq!(json.code, 1);
    let lines = json.json_lines();
    assert_eq!(lines[0]["problem"], "hash_mismatch");
    assert_eq!(lines[0]["stream_id"], cards[1].to_string());
    assert_eq!(lines[0]["version"], 2);
    assert_eq!(lines.last().unwrap()["ok"], false);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn verify_catches_a_deleted_event(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let actor = Actor::new();
    let cards = seed(&store, &actor, 2, 3).await;
    promptcards(&pool, &["verify"]).await.success();

    sqlx::query("DELETE FROM events WHERE stream_id = $1 AND version = 2")
        .bind(cards[0])
        .execute(&pool)
        .await
        .unwrap();
    let failed = promptcards(&pool, &["verify", "--json"]).await;
    assert_eq!(failed.code, 1, "{}", failed.stdout);
    let lines = failed.json_lines();
    let missing = lines
        .iter()
        .find(|l| l["problem"] == "missing_versions")
        .expect("the gap is reported");
    assert_eq!(missing["stream_id"], cards[0].to_string());
    assert_eq!(missing["version"], 2);

    // Deleting a stream's last event leaves the stream row claiming more than there is.
    let last: i64 = sqlx::query_scalar("SELECT max(version) FROM events WHERE stream_id = $1")
        .bind(cards[1])
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM events WHERE stream_id = $1 AND version = $2")
        .bind(cards[1])
        .bind(last)
        .execute(&pool)
        .await
        .unwrap();
    let failed = promptcards(&pool, &["verify"]).await;
    assert_eq!(failed.code, 1);
    assert!(
        failed
            .stdout
            .contains(&format!("stream {} claims version {last}", cards[1])),
        "{}",
        failed.stdout
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn verify_read_models_catches_a_row_that_differs_from_a_fresh_projection(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let actor = Actor::new();
    let cards = seed(&store, &actor, 3, 2).await;
    PostgresSink::new(pool.clone())
        .apply(&all_events(&store).await)
        .await
        .unwrap();
    let ok = promptcards(&pool, &["verify", "--read-models"]).await.success();
    assert!(
        ok.stdout.contains("read models equal a fresh projection"),
        "{}",
        ok.stdout
    );

    sqlx::query("UPDATE read.prompt_cards SET title = 'edited by hand' WHERE card_id = $1")
        .bind(cards[2])
        .execute(&pool)
        .await
        .unwrap();
    let failed = promptcards(&pool, &["verify", "--read-models"]).await;
    assert_eq!(failed.code, 1, "{}", failed.stdout);
    assert!(failed.stdout.contains("read.prompt_cards"), "{}", failed.stdout);
    let leftovers: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'read_verify_%'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(leftovers, 0, "the scratch schema is dropped");
}

/// Publishes events as the relay does: keyed by stream id, the recorded event as JSON.
async fn publish(topic: &str, events: &[RecordedEvent]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .unwrap();
    for event in events {
        let (key, payload) = (event.stream_id.to_string(), serde_json::to_vec(event).unwrap());
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(error, _)| panic!("publishing failed: {error}"));
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn verify_kafka_catches_a_missing_message(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let actor = Actor::new();
    seed(&store, &actor, 2, 2).await;
    let events = all_events(&store).await;
    let topic = test_support::kafka::create_topic(&kafka_brokers(), "cli-test", 3).await;
    let left_out = &events[events.len() / 2];
    let published: Vec<RecordedEvent> = events
        .iter()
        .filter(|e| e.event_id != left_out.event_id)
        .cloned()
        .collect();
    publish(&topic, &published).await;
    let env = [("KAFKA_TOPIC", topic.clone()), ("KAFKA_BROKERS", kafka_brokers())];

    let failed = promptcards_with(&pool, &["verify", "--kafka"], &env).await;
    assert_eq!(failed.code, 1, "{}\n{}", failed.stdout, failed.stderr);
    assert!(failed.stdout.starts_with("FAILED: 1 problem"), "{}", failed.stdout);
    assert!(
        failed.stdout.contains(&left_out.event_id.to_string()),
        "{}",
        failed.stdout
    );
    assert!(
        failed
            .stdout
            .contains(&format!("stream {} version {}", left_out.stream_id, left_out.version)),
        "{}",
        failed.stdout
    );

    publish(&topic, std::slice::from_ref(left_out)).await;
    let ok = promptcards_with(&pool, &["verify", "--kafka"], &env).await.success();
    assert!(
        ok.stdout.contains(&format!(
            "Kafka topic {topic} holds all {} relayed events",
            events.len()
        )),
        "{}",
        ok.stdout
    );

    let nowhere = format!("cli-test-absent-{}", uuid::Uuid::new_v4().simple());
    let absent = promptcards_with(&pool, &["verify", "--kafka", "--kafka-topic", &nowhere], &env).await;
    assert_eq!(absent.code, 1, "{}", absent.stdout);
}
