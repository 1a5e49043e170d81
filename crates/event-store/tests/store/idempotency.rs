//! INVARIANT 3: a retry by idempotency key or by event ids appends nothing and returns the
//! original result; reuse with different content is refused. Reservations are claimed atomically
//! with the append.

use crate::support::{append_of, append_to, event_count, event_ids, stream, versions};
use event_store::{AppendError, EventStore, ExpectedVersion, Idempotency, Reservation};
use serde_json::json;
use sqlx::PgPool;
use std::sync::Arc;
use tokio::sync::Barrier;
use uuid::Uuid;

use ExpectedVersion::{Any, Exact, NoStream};

fn key(scope: &str, key: &str, request_hash: &str) -> Idempotency {
    Idempotency {
        scope: scope.to_owned(),
        key: key.to_owned(),
        request_hash: request_hash.to_owned(),
        response: json!({ "status": 201, "for": request_hash }),
    }
}

fn email(value: &str, stream_id: Uuid) -> Reservation {
    Reservation {
        scope: "user_email".to_owned(),
        value: value.to_owned(),
        stream_id,
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_retried_key_replays_the_first_result(pool: PgPool) {
    // Given an append made with an idempotency key
    let store = EventStore::new(pool);
    let id = Uuid::now_v7();
    let idempotency = key("client-1", "k-1", "hash-a");
    let mut first = append_to(id, NoStream, 2);
    first.idempotency = Some(idempotency.clone());
    let original = store.append(first).await.unwrap();
    assert!(!original.replayed);

    // When the command is retried: same key and request, freshly generated events
    let mut retry = append_to(id, NoStream, 2);
    retry.idempotency = Some(idempotency.clone());
    let replayed = store.append(retry).await.unwrap();

    // Then the first result comes back and nothing is appended
    assert!(replayed.replayed);
    assert_eq!(
        (&replayed.streams, replayed.position),
        (&original.streams, original.position)
    );
    assert_eq!(replayed.response, Some(idempotency.response.clone()));
    assert_eq!(versions(&store, id).await, vec![1, 2]);
    assert_eq!(event_count(store.pool()).await, 2);
    let stored = store.idempotent_result(&idempotency).await.unwrap().unwrap();
    assert_eq!((stored.streams, stored.position), (original.streams, original.position));
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_key_reused_for_another_request_is_refused(pool: PgPool) {
    // Given an append made with key k-1
    let store = EventStore::new(pool);
    let id = Uuid::now_v7();
    let mut first = append_to(id, Any, 1);
    first.idempotency = Some(key("client-1", "k-1", "hash-a"));
    store.append(first).await.unwrap();

    // When another request comes with the same key
    let mut other = append_to(id, Any, 1);
    other.idempotency = Some(key("client-1", "k-1", "hash-b"));
    let result = store.append(other).await;

    // Then it is refused and nothing is appended
    assert!(matches!(result, Err(AppendError::IdempotencyKeyReused)), "{result:?}");
    let lookup = store.idempotent_result(&key("client-1", "k-1", "hash-b")).await;
    assert!(matches!(lookup, Err(AppendError::IdempotencyKeyReused)), "{lookup:?}");
    assert_eq!(versions(&store, id).await, vec![1]);

    // The same key in another client's scope is a different key
    let mut elsewhere = append_to(id, Any, 1);
    elsewhere.idempotency = Some(key("client-2", "k-1", "hash-b"));
    let appended = store.append(elsewhere).await.unwrap();
    assert!(!appended.replayed);
    assert_eq!(versions(&store, id).await, vec![1, 2]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_failed_append_does_not_use_up_its_key(pool: PgPool) {
    let store = EventStore::new(pool);
    let id = Uuid::now_v7();

    // Given an append with a key that fails on its expected version
    let mut wrong = append_to(id, Exact(4), 1);
    wrong.idempotency = Some(key("client-1", "k-1", "hash-a"));
    assert!(matches!(
        store.append(wrong).await,
        Err(AppendError::WrongExpectedVersion { .. })
    ));

    // Then the corrected retry with the same key is appended, not replayed nor refused
    let mut corrected = append_to(id, NoStream, 1);
    corrected.idempotency = Some(key("client-1", "k-1", "hash-a"));
    let appended = store.append(corrected).await.unwrap();
    assert!(!appended.replayed);
    assert_eq!(versions(&store, id).await, vec![1]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn racing_retries_of_one_key_store_one_append(pool: PgPool) {
    // Given 8 copies of one request, each with its own freshly generated events
    let store = EventStore::new(pool);
    let id = Uuid::now_v7();
    let barrier = Arc::new(Barrier::new(8));
    let retries: Vec<_> = (0..8)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            let mut append = append_to(id, Any, 3);
            append.idempotency = Some(key("client-1", "k-1", "hash-a"));
            tokio::spawn(async move {
                let ids = event_ids(&append);
                barrier.wait().await;
                (ids, store.append(append).await.unwrap())
            })
        })
        .collect();

    // When they are sent at once
    let results: Vec<_> = futures::future::join_all(retries)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    // Then one of them is stored, and all report its result
    let (firsts, replays): (Vec<_>, Vec<_>) = results.iter().partition(|(_, a)| !a.replayed);
    assert_eq!(firsts.len(), 1, "{results:?}");
    let (winner_ids, original) = firsts[0];
    for (_, replay) in replays {
        assert_eq!(
            (&replay.streams, replay.position, &replay.response),
            (&original.streams, original.position, &original.response)
        );
    }
    let stored = store.read_stream(id, 0).await.unwrap();
    assert_eq!(&stored.iter().map(|e| e.event_id).collect::<Vec<_>>(), winner_ids);
    assert_eq!(event_count(store.pool()).await, 3);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn resending_the_same_event_ids_replays_the_append(pool: PgPool) {
    let store = EventStore::new(pool);
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());

    // Each kind of expectation, resent verbatim (same event ids) as a client retrying after a
    // lost response would, gets the original outcome back and appends nothing
    let requests = [
        append_to(a, NoStream, 2),
        append_to(a, Exact(2), 1),
        append_to(a, Any, 2),
        append_of(vec![stream(a, Exact(5), 1), stream(b, NoStream, 2)]),
    ];
    for request in requests {
        let original = store.append(request.clone()).await.unwrap();
        let count = event_count(store.pool()).await;
        let retried = store.append(request.clone()).await;
        let retried = retried.unwrap_or_else(|e| panic!("retry of {request:?} failed: {e}"));
        assert!(retried.replayed);
        assert_eq!(
            (&retried.streams, retried.position),
            (&original.streams, original.position)
        );
        assert_eq!(event_count(store.pool()).await, count);
    }
    assert_eq!(versions(&store, a).await, (1..=6).collect::<Vec<_>>());
    assert_eq!(versions(&store, b).await, vec![1, 2]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_event_id_reused_in_another_append_is_refused(pool: PgPool) {
    // Given a stream with one event
    let store = EventStore::new(pool);
    let (id, other) = (Uuid::now_v7(), Uuid::now_v7());
    let first = append_to(id, NoStream, 1);
    let taken = first.streams[0].events[0].event_id;
    store.append(first).await.unwrap();

    // When a different append on the same stream carries that id among new ones
    let mut reusing = append_to(id, Exact(1), 2);
    reusing.streams[0].events[1].event_id = taken;
    let result = store.append(reusing).await;

    // Then it is refused and none of its events is stored
    assert!(
        matches!(result, Err(AppendError::DuplicateEvent(e)) if e == taken),
        "{result:?}"
    );
    assert_eq!(versions(&store, id).await, vec![1]);

    // Nor may another stream take the id, not even as its only event
    let mut elsewhere = append_to(other, NoStream, 1);
    elsewhere.streams[0].events[0].event_id = taken;
    let result = store.append(elsewhere).await;
    assert!(
        matches!(result, Err(AppendError::DuplicateEvent(e)) if e == taken),
        "{result:?}"
    );
    assert_eq!(store.stream_info(other).await.unwrap(), None);
    assert_eq!(event_count(store.pool()).await, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_taken_reservation_refuses_the_whole_append(pool: PgPool) {
    // Given user `ada` holding an email address
    let store = EventStore::new(pool);
    let (ada, impostor, grace) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut first = append_to(ada, NoStream, 1);
    first.reservations = vec![email("ada@example.com", ada)];
    store.append(first).await.unwrap();

    // When another user's creation claims the same address
    let mut second = append_to(impostor, NoStream, 1);
    second.reservations = vec![email("ada@example.com", impostor)];
    let result = store.append(second).await;

    // Then it is refused, its events are not stored and the address stays with ada
    match result {
        Err(AppendError::Reserved { scope, value }) => {
            assert_eq!((scope.as_str(), value.as_str()), ("user_email", "ada@example.com"));
        }
        other => panic!("expected Reserved, got {other:?}"),
    }
    assert_eq!(store.stream_info(impostor).await.unwrap(), None);
    assert_eq!(event_count(store.pool()).await, 1);
    assert_eq!(
        store.reservation("user_email", "ada@example.com").await.unwrap(),
        Some(ada)
    );

    // An append that fails for another reason does not keep its claim
    let mut failing = append_to(grace, Exact(3), 1);
    failing.reservations = vec![email("grace@example.com", grace)];
    assert!(store.append(failing).await.is_err());
    assert_eq!(
        store.reservation("user_email", "grace@example.com").await.unwrap(),
        None
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn one_of_many_racing_claims_gets_the_reservation(pool: PgPool) {
    let store = EventStore::new(pool);
    let barrier = Arc::new(Barrier::new(8));
    let claims: Vec<_> = (0..8)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            let user = Uuid::now_v7();
            let mut append = append_to(user, NoStream, 1);
            append.reservations = vec![email("ada@example.com", user)];
            tokio::spawn(async move {
                barrier.wait().await;
                (user, store.append(append).await)
            })
        })
        .collect();
    let results: Vec<_> = futures::future::join_all(claims)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let winners: Vec<Uuid> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(user, _)| *user)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (_, result) in &results {
        assert!(
            matches!(result, Ok(_) | Err(AppendError::Reserved { .. })),
            "{result:?}"
        );
    }
    assert_eq!(
        store.reservation("user_email", "ada@example.com").await.unwrap(),
        Some(winners[0])
    );
    assert_eq!(event_count(store.pool()).await, 1);
}
