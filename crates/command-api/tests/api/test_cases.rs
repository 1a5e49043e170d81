//! Test cases: vars checked against the card's declared variables, promptfoo assertion types.

use crate::helpers::*;
use axum::http::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

struct Fixture {
    app: TestApp,
    token: String,
    workspace_id: Uuid,
    card_id: Uuid,
}

/// A card declaring a string, a number, and a boolean with a default (so optional).
async fn fixture(pool: PgPool) -> Fixture {
    let app = TestApp::new(pool);
    let (token, _, workspace_id) = app.signup("ada@example.com").await;
    let (status, _, body) = app
        .post(
            &cards_path(workspace_id),
            &token,
            json!({
                "title": "Typed",
                "template": "{{ text }} x{{ n }} {% if loud %}!{% endif %}",
                "variables": [
                    { "name": "text", "type": "string" },
                    { "name": "n", "type": "number" },
                    { "name": "loud", "type": "boolean", "default": false },
                ],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let card_id = uuid_at(&body, "id");
    Fixture {
        app,
        token,
        workspace_id,
        card_id,
    }
}

impl Fixture {
    fn cases_path(&self) -> String {
        format!("{}/test-cases", card_path(self.workspace_id, self.card_id))
    }

    fn case_path(&self, case_id: Uuid) -> String {
        format!("{}/{case_id}", self.cases_path())
    }

    async fn create(&self, body: Value) -> Answer {
        self.app.post(&self.cases_path(), &self.token, body).await
    }
}

fn case(vars: Value, assertions: Value) -> Value {
    json!({ "name": "greets", "vars": vars, "expected_output": "hi x3", "assertions": assertions })
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn model_graded_assertions_are_accepted_with_their_grading_options(pool: PgPool) {
    let f = fixture(pool).await;
    let (status, _, body) = f
        .create(case(
            json!({ "text": "hi", "n": 1 }),
            json!([
                { "type": "llm-rubric", "value": "is polite about {{ text }}", "threshold": 0.8,
                  "provider": { "id": "openai:chat:gpt-4.1-mini", "config": { "temperature": 0 } } },
                { "type": "not-llm-rubric", "value": "is rude", "rubricPrompt": [{ "role": "user", "content": "{{ output }}: {{ rubric }}?" }] },
                { "type": "model-graded-closedqa", "value": "says hi" },
                { "type": "factuality", "value": "hi is a greeting" },
                { "type": "similar", "value": ["hi", "hello"], "threshold": 0.7, "provider": "openai:embedding:text-embedding-3-small" },
                { "type": "g-eval", "value": "friendly", "rubricPrompt": { "steps": "Steps for {{ criteria }}" } },
            ]),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_case_with_well_typed_vars_is_created(pool: PgPool) {
    let f = fixture(pool).await;
    let (status, _, body) = f
        .create(case(
            json!({ "text": "hi", "n": 3, "loud": true }),
            json!([{ "type": "contains", "value": "hi" }, { "type": "not-contains", "value": "bye" },
                   { "type": "word-count", "value": { "min": 1, "max": 10 } },
                   { "type": "not-icontains-any", "value": ["sorry", "cannot"], "weight": 2.0 },
                   { "type": "levenshtein", "value": "hi x3", "threshold": 2.0 }]),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let case_id = uuid_at(&body, "id");
    let (position, card_id, event_type): (i64, Uuid, String) =
        sqlx::query_as("SELECT position, (data->>'card_id')::uuid, event_type FROM events WHERE stream_id = $1")
            .bind(case_id)
            .fetch_one(&f.app.pool)
            .await
            .unwrap();
    assert_eq!(body["position"].as_i64(), Some(position));
    assert_eq!(card_id, f.card_id);
    assert_eq!(event_type, "TestCaseCreated");
    // The optional variable may be left out.
    let (status, _, body) = f.create(case(json!({ "text": "hi", "n": 3.5 }), json!([]))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn vars_must_match_the_cards_declarations(pool: PgPool) {
    let f = fixture(pool).await;
    let before = f.app.events_count().await;
    let answer = f.create(case(json!({ "text": "hi", "n": "three" }), json!([]))).await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "vars.n");
    assert_eq!(invalid_fields(&answer.2), ["vars.n"]);
    assert!(answer.2["message"].as_str().unwrap().contains("number"), "{}", answer.2);

    let answer = f
        .create(case(json!({ "text": "hi", "n": 1, "extra": 1 }), json!([])))
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "vars.extra",
    );
    assert_eq!(invalid_fields(&answer.2), ["vars.extra"]);

    let answer = f.create(case(json!({ "n": 1 }), json!([]))).await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "vars.text",
    );

    let answer = f
        .create(case(json!({ "text": "hi", "n": 1, "loud": "yes" }), json!([])))
        .await;
    assert_eq!(invalid_fields(&answer.2), ["vars.loud"], "{}", answer.2);
    assert_eq!(f.app.events_count().await, before);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn assertions_use_promptfoo_types(pool: PgPool) {
    let f = fixture(pool).await;
    let vars = json!({ "text": "hi", "n": 1 });
    let before = f.app.events_count().await;
    let answer = f
        .create(case(
            vars.clone(),
            json!([{ "type": "context-recall", "value": "is polite" }]),
        ))
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "assertions[0].type",
    );
    assert_eq!(invalid_fields(&answer.2), ["assertions[0].type"]);
    assert!(answer.2["message"].as_str().unwrap().contains("context-recall"));

    // Model-graded types take a grading provider where it fits, and nowhere else.
    let answer = f
        .create(case(
            vars.clone(),
            json!([
                { "type": "similar", "value": "hi", "provider": "openai:chat:gpt-4.1-mini" },
                { "type": "contains", "value": "hi", "rubricPrompt": "Grade {{ output }}" },
                { "type": "llm-rubric" },
            ]),
        ))
        .await;
    assert_eq!(
        invalid_fields(&answer.2),
        [
            "assertions[0].provider",
            "assertions[1].rubricPrompt",
            "assertions[2].value"
        ],
        "{}",
        answer.2
    );

    let answer = f
        .create(case(
            vars.clone(),
            json!([{ "type": "contains", "value": "ok" }, { "type": "contains" }]),
        ))
        .await;
    assert_eq!(invalid_fields(&answer.2), ["assertions[1].value"], "{}", answer.2);
    let answer = f
        .create(case(
            vars.clone(),
            json!([{ "type": "contains", "value": "ok", "colour": "red" }]),
        ))
        .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "colour");
    assert_eq!(f.app.events_count().await, before);

    let (status, _, body) = f
        .create(case(
            vars,
            json!([{ "type": "not-contains", "value": "error" }, { "type": "is-json" }]),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_archived_card_takes_no_new_cases(pool: PgPool) {
    let f = fixture(pool).await;
    let (status, _, _) = f
        .app
        .post(
            &format!("{}/archive", card_path(f.workspace_id, f.card_id)),
            &f.token,
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let before = f.app.events_count().await;
    let answer = f.create(case(json!({ "text": "hi", "n": 1 }), json!([]))).await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", "archived");
    assert_eq!(f.app.events_count().await, before);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_case_is_updated_then_deleted_for_good(pool: PgPool) {
    let f = fixture(pool).await;
    let (_, _, body) = f.create(case(json!({ "text": "hi", "n": 1 }), json!([]))).await;
    let case_id = uuid_at(&body, "id");
    let path = f.case_path(case_id);

    let (status, _, body) = f
        .app
        .put(
            &path,
            &f.token,
            case(
                json!({ "text": "hello", "n": 2 }),
                json!([{ "type": "icontains", "value": "HELLO" }]),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], json!(case_id));
    let stored: Value = sqlx::query_scalar("SELECT data FROM events WHERE stream_id = $1 AND version = 2")
        .bind(case_id)
        .fetch_one(&f.app.pool)
        .await
        .unwrap();
    assert_eq!(stored["vars"], json!({ "text": "hello", "n": 2 }));

    // An update is checked like a creation.
    let answer = f
        .app
        .put(&path, &f.token, case(json!({ "text": 5, "n": 2 }), json!([])))
        .await;
    assert_eq!(invalid_fields(&answer.2), ["vars.text"], "{}", answer.2);

    let (status, _, body) = f.app.delete(&path, &f.token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deleted"], true);
    let before = f.app.events_count().await;
    let answer = f
        .app
        .put(&path, &f.token, case(json!({ "text": "hi", "n": 1 }), json!([])))
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "test case");
    let answer = f.app.delete(&path, &f.token).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "test case");
    assert_eq!(f.app.events_count().await, before);
    assert_eq!(f.app.stream_versions(case_id).await, vec![1, 2, 3]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_case_belongs_to_its_card_only(pool: PgPool) {
    let f = fixture(pool).await;
    let (_, _, body) = f.create(case(json!({ "text": "hi", "n": 1 }), json!([]))).await;
    let case_id = uuid_at(&body, "id");
    let other_card = f.app.create_card(&f.token, f.workspace_id, "Other").await;
    let elsewhere = format!("{}/test-cases/{case_id}", card_path(f.workspace_id, other_card));
    let before = f.app.events_count().await;

    let answer = f
        .app
        .put(
            &elsewhere,
            &f.token,
            json!({ "name": "moved", "vars": { "text": "x" }, "assertions": [] }),
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "test case");
    let answer = f.app.delete(&elsewhere, &f.token).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "test case");
    // A card id where a case id belongs is not a case either.
    let answer = f.app.delete(&f.case_path(other_card), &f.token).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "test case");
    assert_eq!(f.app.events_count().await, before);
    // The case is untouched under its own card.
    let (status, _, body) = f.app.delete(&f.case_path(case_id), &f.token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
