//! INVARIANT 1 over HTTP: racing writers at one expected version get exactly one winner.

use crate::helpers::*;
use axum::http::{Method, StatusCode};
use futures::future::join_all;
use serde_json::json;
use sqlx::PgPool;
use std::sync::Arc;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn twelve_racing_updates_at_one_version_have_one_winner(pool: PgPool) {
    let app = Arc::new(TestApp::new(pool));
    let (token, _, ws) = app.signup("ada@example.com").await;
    let card_id = app.create_card(&token, ws, "Contested").await;
    let path = card_path(ws, card_id);

    let tasks = (0..12).map(|i| {
        let (app, token, path) = (app.clone(), token.clone(), path.clone());
        tokio::spawn(async move {
            let mut body = card_body(&format!("Writer {i}"));
            body["expected_version"] = json!(1);
            app.json(Method::PUT, &path, &token, body, &[]).await
        })
    });
    let answers: Vec<Answer> = join_all(tasks).await.into_iter().map(Result::unwrap).collect();

    let winners: Vec<&Answer> = answers.iter().filter(|a| a.0 == StatusCode::OK).collect();
    assert_eq!(
        winners.len(),
        1,
        "statuses: {:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    assert_eq!(winners[0].2["version"], 2);
    for answer in answers.iter().filter(|a| a.0 != StatusCode::OK) {
        assert_error(answer, StatusCode::CONFLICT, "conflict", "version 2");
        assert_eq!(answer.2["current_version"], 2, "{}", answer.2);
    }
    assert_eq!(app.stream_versions(card_id).await, vec![1, 2]);
    assert_eq!(app.count_events_of_type("PromptCardUpdated").await, 1);
    // The stored version 2 is the winner's.
    let title: String = sqlx::query_scalar("SELECT data->>'title' FROM events WHERE stream_id = $1 AND version = 2")
        .bind(card_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let winner_position = winners[0].2["position"].as_i64().unwrap();
    let stored_position: i64 = sqlx::query_scalar("SELECT position FROM events WHERE stream_id = $1 AND version = 2")
        .bind(card_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(winner_position, stored_position);
    assert!(title.starts_with("Writer "), "{title}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn racing_signups_with_one_email_make_one_account(pool: PgPool) {
    let app = Arc::new(TestApp::new(pool));
    let tasks = (0..6).map(|i| {
        let app = app.clone();
        tokio::spawn(async move {
            app.post(
                "/v1/auth/signup",
                "",
                json!({ "email": if i % 2 == 0 { "ada@example.com" } else { "ADA@example.com" },
                        "password": PASSWORD, "workspace_name": format!("Team {i}") }),
            )
            .await
        })
    });
    let answers: Vec<Answer> = join_all(tasks).await.into_iter().map(Result::unwrap).collect();
    let created = answers.iter().filter(|a| a.0 == StatusCode::CREATED).count();
    assert_eq!(
        created,
        1,
        "statuses: {:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    for answer in answers.iter().filter(|a| a.0 != StatusCode::CREATED) {
        assert_error(answer, StatusCode::CONFLICT, "conflict", "email");
    }
    assert_eq!(app.count_events_of_type("UserRegistered").await, 1);
    assert_eq!(app.count_events_of_type("WorkspaceCreated").await, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn racing_member_additions_are_serialised_on_the_workspace(pool: PgPool) {
    let app = Arc::new(TestApp::new(pool));
    let (owner, _, ws) = app.signup("owner@example.com").await;
    for i in 0..5 {
        app.signup(&format!("user{i}@example.com")).await;
    }
    let tasks = (0..5).map(|i| {
        let (app, owner) = (app.clone(), owner.clone());
        tokio::spawn(async move {
            app.post(
                &format!("/v1/workspaces/{ws}/members"),
                &owner,
                json!({ "email": format!("user{i}@example.com"), "role": "member" }),
            )
            .await
        })
    });
    let answers: Vec<Answer> = join_all(tasks).await.into_iter().map(Result::unwrap).collect();
    // Each addition either wins its race or gets a 409 telling the client to retry; none is
    // silently lost, and the workspace stream stays contiguous.
    let added = answers.iter().filter(|a| a.0 == StatusCode::CREATED).count() as i64;
    for answer in answers.iter().filter(|a| a.0 != StatusCode::CREATED) {
        assert_error(answer, StatusCode::CONFLICT, "conflict", "concurrently");
    }
    assert!(added >= 1);
    assert_eq!(app.count_events_of_type("MemberAdded").await, added);
    let versions = app.stream_versions(ws).await;
    assert_eq!(versions, (1..=1 + added).collect::<Vec<_>>());
}

/// Two owners removing each other at once: each check alone passes ("another owner remains"),
/// so only the single-winner rule on the workspace stream keeps the workspace owned.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn two_owners_removing_each_other_leave_one_owner(pool: PgPool) {
    let app = Arc::new(TestApp::new(pool));
    let (ada, ada_id, ws) = app.signup("ada@example.com").await;
    let (bob, bob_id, _) = app.signup("bob@example.com").await;
    app.add_member(&ada, ws, "bob@example.com", "owner").await;
    let version_before = *app.stream_versions(ws).await.last().unwrap();

    let remove = |token: String, target: uuid::Uuid| {
        let app = app.clone();
        tokio::spawn(async move {
            app.delete(&format!("/v1/workspaces/{ws}/members/{target}"), &token)
                .await
        })
    };
    let answers = join_all([remove(ada, bob_id), remove(bob, ada_id)]).await;
    let statuses: Vec<StatusCode> = answers.into_iter().map(|a| a.unwrap().0).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    // The loser either lost the race (409) or ran after it and is no longer a member (404).
    assert!(
        statuses.contains(&StatusCode::CONFLICT) || statuses.contains(&StatusCode::NOT_FOUND),
        "{statuses:?}"
    );
    assert_eq!(app.count_events_of_type("MemberRemoved").await, 1);
    assert_eq!(*app.stream_versions(ws).await.last().unwrap(), version_before + 1);
}
