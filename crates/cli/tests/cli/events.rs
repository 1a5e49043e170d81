//! `events`: listing with filters, and following new events live.

use crate::support::*;
use domain::card::CardEvent;
use event_store::EventStore;
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn events_lists_in_global_order_with_filters(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let (a, b) = (Actor::new(), Actor::new());
    seed(&store, &a, 3, 2).await;
    seed(&store, &b, 1, 1).await;
    let all = all_events(&store).await;
    let of_a: Vec<_> = all.iter().filter(|e| e.workspace_id == Some(a.workspace_id)).collect();

    let listed = promptcards(&pool, &["events", "--workspace", &a.workspace_id.to_string(), "--json"])
        .await
        .success();
    let ids: Vec<String> = listed
        .json_lines()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, of_a.iter().map(|e| e.event_id.to_string()).collect::<Vec<_>>());

    let updates = promptcards(&pool, &["events", "--type", "PromptCardUpdated", "--json"])
        .await
        .success()
        .json_lines();
    assert_eq!(
        updates.len(),
        all.iter().filter(|e| e.event_type == "PromptCardUpdated").count()
    );
    assert!(updates.iter().all(|e| e["event_type"] == "PromptCardUpdated"));

    let (from, to) = (all[2].position, all[5].position);
    let window = promptcards(
        &pool,
        &[
            "events",
            "--from-position",
            &from.to_string(),
            "--to-position",
            &to.to_string(),
            "--limit",
            "3",
            "--json",
        ],
    )
    .await
    .success()
    .json_lines();
    assert_eq!(
        window
            .iter()
            .map(|e| e["position"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![all[2].position, all[3].position, all[4].position]
    );

    let table = promptcards(&pool, &["events", "--stream", &a.workspace_id.to_string()])
        .await
        .success()
        .stdout;
    assert!(
        table.contains("WorkspaceCreated") && table.contains("MemberAdded") && table.contains("2 events"),
        "{table}"
    );
    let future = promptcards(&pool, &["events", "--since", "2100-01-01"])
        .await
        .success()
        .stdout;
    assert_eq!(future.trim(), "0 events");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn events_follow_prints_new_events_as_they_commit(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let actor = Actor::new();
    actor.create_workspace(&store, &MEMBERS).await;
    let (card, _) = actor.create_card(&store, "Followed").await;

    let mut child = command(
        &pool,
        &[
            "events",
            "--follow",
            "--json",
            "--stream",
            &card.to_string(),
            "--limit",
            "3",
        ],
        &[],
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .expect("spawn promptcards events --follow");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("the history is printed")
        .unwrap()
        .unwrap();
    assert!(first.contains("PromptCardCreated"), "{first}");

    let mut version = 1;
    for (v, title) in [(2, "Later"), (3, "Latest")] {
        version = actor
            .card_events(
                &store,
                card,
                version,
                vec![CardEvent::PromptCardUpdated {
                    version: v,
                    content: content(title, "Hello {{ name }}"),
                }],
            )
            .await;
    }
    for title in ["Later", "Latest"] {
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("a new event is printed")
            .unwrap()
            .unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["data"]["title"], title);
    }
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("--limit ends the follow")
        .unwrap();
    assert!(status.success());
}
