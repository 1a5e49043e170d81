//! Read-your-writes: `X-Min-Position` waits for the projector (woken by its NOTIFY, not by the
//! deadline) and answers STALE when the position is not applied in time.

use crate::support::*;
use projector::postgres::PostgresSink;
use projector::Sink;
use query_api::Settings;
use serde_json::json;
use sqlx::{Connection, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const CARD: &str = "query Card($id: ID!) { promptCard(id: $id) { id title version } }";

/// How long the request is left waiting before the projector applies the event.
const PROJECTOR_DELAY: Duration = Duration::from_millis(300);

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_request_waits_for_its_position_and_sees_the_new_data(pool: PgPool) {
    let app = Arc::new(TestApp::new(pool).await); // min_position_wait: 10 s
    let ada = app.tenant("ada").await;
    app.project().await;

    // Written after the app was built, not projected yet.
    let (card_id, appended) = app.create_card(&ada, titled("Fresh off the press")).await;
    let variables = json!({ "id": card_id });
    let unsynchronised = app.data(&ada.token, CARD, variables.clone()).await;
    assert!(
        unsynchronised["promptCard"].is_null(),
        "not projected yet, so not readable: {unsynchronised}"
    );

    let position = appended.position.to_string();
    let started = Instant::now();
    let request = {
        let (app, token, variables) = (app.clone(), ada.token.clone(), variables.clone());
        tokio::spawn(async move {
            app.graphql_with(&token, &[("X-Min-Position", &position)], CARD, variables)
                .await
        })
    };
    tokio::time::sleep(PROJECTOR_DELAY).await;
    assert!(
        !request.is_finished(),
        "the request must wait for the projector, not answer at once"
    );
    app.project().await;

    let answer = tokio::time::timeout(Duration::from_secs(8), request)
        .await
        .expect("the request is woken by the projector's NOTIFY, well before its 10 s deadline")
        .unwrap();
    let waited = started.elapsed();
    assert!(answer.get("errors").is_none(), "{answer}");
    assert_eq!(answer["data"]["promptCard"]["title"], "Fresh off the press", "{answer}");
    assert_eq!(answer["data"]["promptCard"]["version"], 1);
    assert!(
        waited >= PROJECTOR_DELAY,
        "answered after {waited:?}, before the projector ran"
    );

    // A position already applied answers at once.
    let started = Instant::now();
    let again = app
        .graphql_with(
            &ada.token,
            &[("x-min-position", &appended.position.to_string())],
            CARD,
            variables,
        )
        .await;
    assert_eq!(again["data"]["promptCard"]["title"], "Fresh off the press", "{again}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "an applied position must not wait"
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_position_not_applied_in_time_answers_stale(pool: PgPool) {
    let wait = Duration::from_millis(300);
    let app = TestApp::with_settings(
        pool,
        Settings {
            min_position_wait: wait,
            ..settings()
        },
    )
    .await;
    let ada = app.tenant("ada").await;
    app.project().await;
    let (card_id, appended) = app.create_card(&ada, titled("Never projected")).await;
    let variables = json!({ "id": card_id });

    for position in [appended.position, appended.position + 1_000] {
        let started = Instant::now();
        let answer = app
            .graphql_with(
                &ada.token,
                &[("X-Min-Position", &position.to_string())],
                CARD,
                variables.clone(),
            )
            .await;
        assert_refused(&answer, "STALE", &format!("position {position}"));
        let waited = started.elapsed();
        assert!(
            waited >= wait,
            "gave up after {waited:?}, before the {wait:?} wait ran out"
        );
        assert!(
            waited < Duration::from_secs(5),
            "waited {waited:?} for a {wait:?} limit"
        );
    }

    // Positions already applied are fine; a header that is not a position is a bad request.
    let applied = app.head().await - 1;
    let answer = app
        .graphql_with(
            &ada.token,
            &[("X-Min-Position", &applied.to_string())],
            CARD,
            variables.clone(),
        )
        .await;
    assert!(answer.get("errors").is_none(), "{answer}");
    let answer = app
        .graphql_with(&ada.token, &[("X-Min-Position", "soon")], CARD, variables)
        .await;
    assert_refused(&answer, "BAD_REQUEST", "a malformed X-Min-Position");
}

/// Redis is projected by its own consumer group and may lag behind Postgres. A request that
/// names the position of an update must see the update even then, not a document cached
/// before it.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_cached_document_does_not_defeat_read_your_writes(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ada = app.tenant("ada").await;
    let (card_id, _) = app.create_card(&ada, titled("First draft")).await;
    app.project_with_redis(0).await;
    let variables = json!({ "id": card_id });
    let cached = app.data(&ada.token, CARD, variables.clone()).await;
    assert_eq!(cached["promptCard"]["title"], "First draft");

    let updated = app.update_card(&ada, card_id, titled("Second draft")).await;
    app.project().await; // Postgres only: the Redis sink has not caught up.

    let answer = app
        .graphql_with(
            &ada.token,
            &[("X-Min-Position", &updated.position.to_string())],
            CARD,
            variables,
        )
        .await;
    assert_eq!(answer["data"]["promptCard"]["title"], "Second draft", "{answer}");
    assert_eq!(answer["data"]["promptCard"]["version"], 2, "{answer}");

    let mut redis = redis().await;
    let _: () = redis::cmd("DEL")
        .arg(format!("promptcards:doc:card:{card_id}"))
        .arg(domain::names::version_key(card_id))
        .query_async(&mut redis)
        .await
        .unwrap();
}

/// The connection that receives the projector's notifications can drop (a restart, a network
/// blip, an idle reaper) and take a while to come back (here: its pool is fully checked out and
/// the database refuses new sessions). A request waiting meanwhile must be answered as soon as
/// the listener is back, not STALE at its deadline because the projector's notification was
/// sent while nobody listened.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_wait_survives_the_notification_connection_dropping(pool: PgPool) {
    let wait = Duration::from_secs(3);
    let app = Arc::new(
        TestApp::with_settings(
            pool.clone(),
            Settings {
                min_position_wait: wait,
                ..settings()
            },
        )
        .await,
    );
    let ada = app.tenant("ada").await;
    app.project().await;
    let listener = || async {
        sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
        )
        .fetch_optional(&pool)
        .await
        .unwrap()
    };
    let pid = eventually("the query API listens for the projector's notifications", listener).await;
    // The projector has its own connections.
    let projector_pool = PgPool::connect_with((*pool.connect_options()).clone()).await.unwrap();

    let (card_id, appended) = app.create_card(&ada, titled("Applied during a reconnect")).await;
    let events = app.events_through_head().await;
    let request = {
        let (app, token, position) = (app.clone(), ada.token.clone(), appended.position.to_string());
        tokio::spawn(async move {
            app.graphql_with(&token, &[("X-Min-Position", &position)], CARD, json!({ "id": card_id }))
                .await
        })
    };
    tokio::time::sleep(PROJECTOR_DELAY).await;
    assert!(!request.is_finished(), "the request waits");

    // Hold every other connection of the app's pool and refuse new ones, then drop the
    // listening connection: it cannot come back until connections are allowed again.
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 1..pool.options().get_max_connections() {
        held.push(pool.acquire().await.unwrap());
    }
    allow_connections(&pool, &database, false).await;
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut *held[0])
        .await
        .unwrap();
    assert!(terminated);
    PostgresSink::new(projector_pool.clone()).apply(&events).await.unwrap();
    tokio::time::sleep(PROJECTOR_DELAY).await;
    allow_connections(&pool, &database, true).await;
    let reconnectable = Instant::now();
    drop(held);

    let answer = tokio::time::timeout(wait + Duration::from_secs(5), request)
        .await
        .unwrap()
        .unwrap();
    let waited = reconnectable.elapsed();
    assert!(answer.get("errors").is_none(), "{answer}");
    assert_eq!(answer["data"]["promptCard"]["title"], "Applied during a reconnect");
    assert!(
        waited < wait / 2,
        "woken {waited:?} after the reconnect: by the deadline, not the reconnect"
    );
    // And the query API listens again.
    eventually("the query API listens again", || async {
        listener().await.filter(|p| *p != pid)
    })
    .await;
    projector_pool.close().await;
}

/// Lets sessions connect to the test's database, or refuses them (existing ones stay). A
/// database's own sessions may not change this, so it goes through the `postgres` database.
async fn allow_connections(pool: &PgPool, database: &str, allow: bool) {
    let options = (*pool.connect_options()).clone().database("postgres");
    let mut admin = sqlx::PgConnection::connect_with(&options).await.unwrap();
    sqlx::query(&format!("ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS {allow}"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
}
