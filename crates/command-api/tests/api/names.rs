//! Card names: given or derived, unique in the workspace under racing creators, renamable.

use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn racing_creators_of_one_name_get_one_winner_and_409s_naming_it(pool: PgPool) {
    let app = std::sync::Arc::new(TestApp::new(pool));
    let (token, _, ws) = app.signup("ada@example.com").await;
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (app, token) = (app.clone(), token.clone());
        racers.spawn(async move {
            let mut body = card_body(&format!("Racer {i}"));
            body["name"] = json!("support-reply");
            app.post(&cards_path(ws), &token, body).await
        });
    }
    let answers = racers.join_all().await;
    let winners = answers.iter().filter(|a| a.0 == StatusCode::CREATED).count();
    assert_eq!(winners, 1, "{answers:?}");
    for answer in answers.iter().filter(|a| a.0 != StatusCode::CREATED) {
        assert_error(answer, StatusCode::CONFLICT, "conflict", "support-reply");
        assert_eq!(answer.2["details"]["name"], "support-reply");
    }
    assert_eq!(app.count_events_of_type("PromptCardCreated").await, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn names_are_derived_unique_checked_and_renamable(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, ws) = app.signup("ada@example.com").await;
    let first = app.post(&cards_path(ws), &token, card_body("Support Reply!")).await;
    assert_eq!(first.2["name"], "support-reply", "{}", first.2);
    let second = app.post(&cards_path(ws), &token, card_body("support reply")).await;
    assert_eq!(second.2["name"], "support-reply-2");

    let mut bad = card_body("x");
    bad["name"] = json!("Not A Slug");
    let answer = app.post(&cards_path(ws), &token, bad).await;
    assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(invalid_fields(&answer.2), ["name"]);

    // Renaming the first card to the second's name is refused; to a free one frees the old.
    let first_id = uuid_at(&first.2, "id");
    let mut rename = card_body("Support Reply!");
    rename["expected_version"] = json!(1);
    rename["name"] = json!("support-reply-2");
    let answer = app.put(&card_path(ws, first_id), &token, rename.clone()).await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", "support-reply-2");
    rename["name"] = json!("replies");
    let answer = app.put(&card_path(ws, first_id), &token, rename).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
    assert_eq!(answer.2["name"], "replies");
    let mut taker = card_body("Taker");
    taker["name"] = json!("support-reply");
    let answer = app.post(&cards_path(ws), &token, taker).await;
    assert_eq!(answer.0, StatusCode::CREATED, "the old name was released: {}", answer.2);

    // Another workspace may use any of these names.
    let (other_token, _, other_ws) = app.signup("bob@example.com").await;
    let mut same = card_body("Other");
    same["name"] = json!("replies");
    assert_eq!(
        app.post(&cards_path(other_ws), &other_token, same).await.0,
        StatusCode::CREATED
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_chat_card_with_config_is_created_and_a_bad_one_names_each_problem(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, ws) = app.signup("ada@example.com").await;
    let chat = json!({"title": "Chat", "name": "chat", "messages": [
        {"role": "system", "content": "You are {{ persona }}"}, {"role": "user", "content": "Hi"}],
        "variables": [{"name": "persona", "type": "string"}], "config": {"model": "gpt-4o-mini", "temperature": 0}});
    let answer = app.post(&cards_path(ws), &token, chat).await;
    assert_eq!(answer.0, StatusCode::CREATED, "{}", answer.2);
    let bad = json!({"title": "Chat", "messages": [{"role": "narrator", "content": "x"}]});
    assert_eq!(
        app.post(&cards_path(ws), &token, bad).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let bad = json!({"title": "Chat", "messages": [{"role": "user", "content": "{{ nope }}"}]});
    let answer = app.post(&cards_path(ws), &token, bad).await;
    assert_eq!(invalid_fields(&answer.2), ["messages[0].content"]);
}
