//! Importing a promptfoo config: cards and test cases in one append, or a 422 naming every
//! item that cannot be represented and appending nothing.

use crate::helpers::*;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use domain::card::PromptCard;
use domain::test_case::TestCase;
use event_store::{EventStore, Repository};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

const CONFIG: &str = r#"
description: Support replies
prompts:
  - "Reply to {{ customer }}: {{ message }}"
  - raw: "Answer {{ message }} briefly."
    label: Brief
providers:
  - echo
  - id: openai:gpt-4o-mini
    config: {temperature: 0}
outputPath: results.json
defaultTest:
  vars: {customer: Ada}
  assert:
    - type: icontains
      value: "{{ message }}"
tests:
  - description: refund
    vars: {message: I want a refund}
    assert:
      - {type: not-contains, value: sorry, weight: 2}
  - description: tone
    vars: {message: [Hello, Thanks]}
"#;

fn import_path(workspace_id: Uuid) -> String {
    format!("/v1/workspaces/{workspace_id}/imports/promptfoo")
}

async fn import(
    app: &TestApp,
    token: &str,
    workspace_id: Uuid,
    content_type: &str,
    body: &str,
    key: Option<&str>,
) -> Answer {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(import_path(workspace_id))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, content_type);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    app.send(request.body(Body::from(body.to_owned())).expect("a valid request"))
        .await
}

fn ids(value: &Value) -> Vec<Uuid> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|id| Uuid::try_parse(id.as_str().expect("an id")).expect("a UUID"))
        .collect()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_config_becomes_one_card_per_prompt_with_its_tests_in_order(pool: PgPool) {
    let app = TestApp::new(pool.clone());
    let (token, _, workspace_id) = app.signup("ada@example.com").await;
    let (status, _, body) = import(&app, &token, workspace_id, "application/yaml", CONFIG, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["position"].as_i64().is_some_and(|p| p > 0), "{body}");
    assert_eq!(body["ignored"], json!(["outputPath"]));
    assert_eq!(
        body["providers"],
        json!([{"id": "echo", "config": null}, {"id": "openai:gpt-4o-mini", "config": {"temperature": 0}}])
    );
    let cards = body["cards"].as_array().expect("cards");
    assert_eq!(cards.len(), 2);

    let repo = Repository::new(EventStore::new(pool), 10);
    for (card, title) in cards.iter().zip(["Support replies (prompt 1)", "Brief"]) {
        let card_id = uuid_at(card, "id");
        let case_ids = ids(&card["test_case_ids"]);
        // One case for "refund", two for the expanded "tone".
        assert_eq!(case_ids.len(), 3, "{card}");
        let loaded = repo.load::<PromptCard>(card_id).await.expect("load the card").state;
        assert_eq!(loaded.workspace_id, Some(workspace_id));
        assert_eq!(loaded.current().expect("a version").content.title, title);
        assert_eq!(
            loaded.test_cases, case_ids,
            "the card records its cases in the config's order"
        );

        let mut names = Vec::new();
        for case_id in &case_ids {
            let case = repo.load::<TestCase>(*case_id).await.expect("load the case").state;
            assert_eq!(case.card_id, Some(card_id));
            let content = case.content.expect("content");
            assert_eq!(content.vars["customer"], json!("Ada"), "defaultTest vars fill in");
            assert_eq!(
                content.assertions[0].kind, "icontains",
                "defaultTest assertions come first"
            );
            names.push(content.name);
        }
        assert_eq!(names, ["refund", "tone (1/2)", "tone (2/2)"]);
    }
    assert_eq!(app.count_events_of_type("PromptCardCreated").await, 2);
    assert_eq!(app.count_events_of_type("TestCaseCreated").await, 6);
    assert_eq!(app.count_events_of_type("TestCaseAttached").await, 6);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn model_graded_assertions_are_imported_with_their_grading_options(pool: PgPool) {
    let app = TestApp::new(pool.clone());
    let (token, _, workspace_id) = app.signup("ada@example.com").await;
    let config = r#"
prompts: ["What is the capital of {{ country }}?"]
providers: [openai:chat:gpt-4.1-mini]
defaultTest:
  options:
    provider: openai:chat:gpt-4.1-mini
tests:
  - vars: {country: France}
    assert:
      - {type: llm-rubric, value: "names the capital of {{ country }}"}
      - {type: similar, value: Paris, threshold: 0.8, provider: openai:embedding:text-embedding-3-small}
      - {type: factuality, value: Paris is the capital of France}
      - {type: model-graded-closedqa, value: gives a city}
      - {type: g-eval, value: [concise, correct]}
"#;
    let (status, _, body) = import(&app, &token, workspace_id, "application/yaml", config, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let case_id: Uuid = body["cards"][0]["test_case_ids"][0].as_str().unwrap().parse().unwrap();
    let repo = Repository::new(EventStore::new(pool), 10);
    let case = repo.load::<TestCase>(case_id).await.unwrap().state;
    let assertions = case.content.unwrap().assertions;
    let kinds: Vec<(&str, Option<&str>)> = assertions
        .iter()
        .map(|a| (a.kind.as_str(), a.provider.as_ref().and_then(Value::as_str)))
        .collect();
    assert_eq!(
        kinds,
        [
            ("llm-rubric", Some("openai:chat:gpt-4.1-mini")),
            ("similar", Some("openai:embedding:text-embedding-3-small")),
            ("factuality", Some("openai:chat:gpt-4.1-mini")),
            ("model-graded-closedqa", Some("openai:chat:gpt-4.1-mini")),
            ("g-eval", Some("openai:chat:gpt-4.1-mini")),
        ]
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn what_cannot_be_represented_is_a_422_listing_each_item_and_appends_nothing(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, workspace_id) = app.signup("ada@example.com").await;
    let before = app.events_count().await;
    let config = r#"
prompts: ["{{ q }}", "file://prompts/second.txt"]
tests:
  - vars: {q: file://q.txt}
    assert:
      - {type: javascript, value: "output.length > 1"}
      - {type: context-recall, value: is polite}
      - {type: equals, value: fine}
      - {type: contains, value: file://expected.txt}
"#;
    let answer = import(&app, &token, workspace_id, "application/yaml", config, None).await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "javascript",
    );
    assert_eq!(
        invalid_fields(&answer.2),
        [
            "prompts[1]",
            "tests[0].vars.q",
            "tests[0].assert[0]",
            "tests[0].assert[1]",
            "tests[0].assert[3].value"
        ]
    );
    assert_eq!(app.events_count().await, before);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_rule_broken_by_one_test_is_named_where_the_config_has_it(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, workspace_id) = app.signup("ada@example.com").await;
    let before = app.events_count().await;
    let long = "d".repeat(201);
    let config = format!(
        "prompts: ['{{{{ q }}}}']\ndefaultTest:\n  assert: [{{type: levenshtein, value: x, threshold: -1}}]\ntests:\n  - vars: {{q: a}}\n  - description: {long}\n    vars: {{q: b}}\n    assert: [{{type: word-count, value: many}}]\n"
    );
    let (status, _, body) = import(&app, &token, workspace_id, "application/yaml", &config, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let fields = invalid_fields(&body);
    for expected in [
        "defaultTest.assert[0].threshold",
        "tests[1].description",
        "tests[1].assert[0].value",
    ] {
        assert!(
            fields.iter().any(|f| f == expected),
            "{expected} missing from {fields:?}"
        );
    }
    // Each problem is listed once even though every card carries the same tests.
    let mut unique = fields.clone();
    unique.dedup();
    assert_eq!(unique, fields);
    assert_eq!(app.events_count().await, before);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn bodies_that_are_not_yaml_configs_are_refused(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, workspace_id) = app.signup("ada@example.com").await;
    let before = app.events_count().await;
    let answer = import(&app, &token, workspace_id, "text/plain", CONFIG, None).await;
    assert_error(
        &answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "application/yaml",
    );
    let answer = import(
        &app,
        &token,
        workspace_id,
        "application/yaml",
        "prompts: [unclosed",
        None,
    )
    .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request", "not valid YAML");
    let answer = import(
        &app,
        &token,
        workspace_id,
        "application/yaml",
        "- just\n- a list\n",
        None,
    )
    .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "promptfoo config",
    );
    let answer = import(
        &app,
        &token,
        workspace_id,
        "application/yaml",
        "prompts: [\"a\\0b\"]\n",
        None,
    )
    .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "NUL");
    // JSON is YAML too.
    let (status, _, body) = import(
        &app,
        &token,
        workspace_id,
        "application/json",
        r#"{"prompts": ["hi"]}"#,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(app.count_events_of_type("PromptCardCreated").await, 1);
    assert!(app.events_count().await > before);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_retried_import_answers_the_first_response_and_appends_nothing(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, workspace_id) = app.signup("ada@example.com").await;
    let first = import(&app, &token, workspace_id, "application/yaml", CONFIG, Some("import-1")).await;
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.2);
    let after_first = app.events_count().await;
    let retry = import(&app, &token, workspace_id, "application/yaml", CONFIG, Some("import-1")).await;
    assert_eq!(retry.0, StatusCode::CREATED);
    assert_eq!(retry.2, first.2);
    assert_eq!(app.events_count().await, after_first);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn viewers_may_not_import_and_strangers_do_not_see_the_workspace(pool: PgPool) {
    let app = TestApp::new(pool);
    let (owner, _, workspace_id) = app.signup("ada@example.com").await;
    let (viewer, _, _) = app.signup("vera@example.com").await;
    app.add_member(&owner, workspace_id, "vera@example.com", "viewer").await;
    let (stranger, _, _) = app.signup("sam@example.com").await;
    let before = app.events_count().await;
    let answer = import(&app, &viewer, workspace_id, "application/yaml", CONFIG, None).await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "viewer");
    let answer = import(&app, &stranger, workspace_id, "application/yaml", CONFIG, None).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "workspace");
    assert_eq!(app.events_count().await, before);
}
