//! Redis: per-stream versions that only ever rise, and workspace notifications for
//! subscriptions that carry only that workspace's events.

use crate::support::*;
use event_store::{EventStore, ExpectedVersion, RecordedEvent};
use futures::StreamExt;
use projector::redis_sink::{self, RedisSink};
use projector::Sink;
use redis::AsyncCommands;
use sqlx::PgPool;
use std::collections::BTreeMap;
use uuid::Uuid;

async fn versions_in_redis(
    connection: &mut redis::aio::MultiplexedConnection,
    streams: &[Uuid],
) -> BTreeMap<Uuid, i64> {
    let mut versions = BTreeMap::new();
    for &stream_id in streams {
        let version: Option<i64> = connection.get(domain::names::version_key(stream_id)).await.unwrap();
        versions.insert(stream_id, version.unwrap_or(0));
    }
    versions
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn versions_only_rise_and_a_workspace_channel_carries_its_events(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let (ours, theirs) = (Actor::new(), Actor::new());
    ours.create_workspace(&store, &MEMBERS).await;
    theirs.create_workspace(&store, &MEMBERS).await;
    // Interleaved: our card, their card, our updates, their update.
    let (our_card, their_card) = (Uuid::now_v7(), Uuid::now_v7());
    let create = |actor: &Actor, card_id| {
        vec![stream(
            card_id,
            "prompt_card",
            ExpectedVersion::NoStream,
            vec![card_created(card_id, actor.workspace_id, "a card")],
        )]
    };
    ours.append(&store, false, create(&ours, our_card)).await;
    theirs.append(&store, false, create(&theirs, their_card)).await;
    ours.append(
        &store,
        false,
        vec![stream(
            our_card,
            "prompt_card",
            ExpectedVersion::Exact(1),
            vec![card_updated(2, "two"), label_moved("production", 2, None)],
        )],
    )
    .await;
    theirs
        .append(
            &store,
            false,
            vec![stream(
                their_card,
                "prompt_card",
                ExpectedVersion::Exact(1),
                vec![card_updated(2, "two")],
            )],
        )
        .await;
    ours.append(
        &store,
        false,
        vec![stream(
            our_card,
            "prompt_card",
            ExpectedVersion::Exact(3),
            vec![card_archived()],
        )],
    )
    .await;
    let n = 3 + 3 + 4 + 2;
    let events = read_everything(&store, n).await;
    let streams: Vec<Uuid> = store_versions(&pool).await.into_keys().collect();

    let client = redis::Client::open(redis_url().as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(domain::names::workspace_channel(ours.workspace_id))
        .await
        .unwrap();

    let sink = RedisSink::connect(&redis_url()).await.unwrap();
    sink.apply(&events).await.unwrap();

    // Our workspace's events arrive, in order, as AuditEntry JSON; theirs never do.
    let expected: Vec<&RecordedEvent> = events
        .iter()
        .filter(|e| e.workspace_id == Some(ours.workspace_id))
        .collect();
    assert_eq!(expected.len(), 3 + 1 + 2 + 1);
    let mut messages = pubsub.on_message();
    for event in expected {
        let message = tokio::time::timeout(DEADLINE, messages.next())
            .await
            .unwrap_or_else(|_| panic!("no notification for {} v{}", event.stream_id, event.version))
            .expect("the subscription ended");
        let entry: serde_json::Value = serde_json::from_str(&message.get_payload::<String>().unwrap()).unwrap();
        assert_eq!(
            entry["workspaceId"],
            ours.workspace_id.to_string(),
            "another workspace's event: {entry}"
        );
        assert_eq!(entry["streamId"], event.stream_id.to_string());
        assert_eq!(entry["version"], event.version);
        assert_eq!(entry["eventType"], event.event_type);
        assert_eq!(entry["position"], event.position);
        assert_eq!(entry["actorId"], ours.actor_id.to_string());
        assert_eq!(entry["data"], event.data);
        assert_eq!(entry, redis_sink::audit_entry(event));
    }
    drop(messages);

    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let highest = store_versions(&pool).await;
    assert_eq!(versions_in_redis(&mut connection, &streams).await, highest);

    // Older events again, alone and newest-first: nothing goes down.
    sink.apply(&events[..5]).await.unwrap();
    let reversed: Vec<RecordedEvent> = events.iter().rev().cloned().collect();
    sink.apply(&reversed).await.unwrap();
    assert_eq!(
        versions_in_redis(&mut connection, &streams).await,
        highest,
        "a redelivered event lowered a version"
    );

    let keys: Vec<String> = streams.iter().map(|&s| domain::names::version_key(s)).collect();
    let _: () = connection.del(keys).await.unwrap();
}
