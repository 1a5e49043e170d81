//! Bad input gets a clear 4xx JSON error naming the problem, never a 5xx, and appends nothing.

use crate::helpers::*;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// An owner with one card, and the events count after setting that up.
struct Fixture {
    app: TestApp,
    token: String,
    workspace_id: Uuid,
    card_id: Uuid,
    events: i64,
}

async fn fixture(app: TestApp) -> Fixture {
    let (token, _, workspace_id) = app.signup("ada@example.com").await;
    let card_id = app.create_card(&token, workspace_id, "Existing").await;
    let events = app.events_count().await;
    Fixture {
        app,
        token,
        workspace_id,
        card_id,
        events,
    }
}

impl Fixture {
    /// A request with a raw body and an optional Content-Type.
    async fn raw(&self, method: Method, path: &str, content_type: Option<&str>, body: impl Into<Body>) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        self.app.send(request.body(body.into()).unwrap()).await
    }

    async fn create(&self, body: Value) -> Answer {
        self.app.post(&cards_path(self.workspace_id), &self.token, body).await
    }

    async fn assert_nothing_appended(&self) {
        assert_eq!(
            self.app.events_count().await,
            self.events,
            "a refused request appended events"
        );
    }
}

/// Asserts a 422 whose details name `field` and whose message mentions `needle`.
#[track_caller]
fn assert_invalid(answer: &Answer, field: &str, needle: &str) {
    assert_error(answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", needle);
    let fields = invalid_fields(&answer.2);
    assert!(fields.iter().any(|f| f == field), "{field} not among {fields:?}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn malformed_json_is_400(pool: PgPool) {
    let f = fixture(TestApp::new(pool)).await;
    let answer = f
        .raw(
            Method::POST,
            &cards_path(f.workspace_id),
            Some("application/json"),
            r#"{"title": "x", "#,
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request", "JSON");
    let answer = f
        .raw(
            Method::POST,
            &cards_path(f.workspace_id),
            Some("application/json"),
            r#"{"title": "x", "template": "t"} trailing"#,
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request", "trailing");
    f.assert_nothing_appended().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn wrong_missing_and_unknown_fields_are_422_naming_the_field(pool: PgPool) {
    let f = fixture(TestApp::new(pool)).await;

    let mut wrong_type = card_body("Wrong type");
    wrong_type["title"] = json!(5);
    let answer = f.create(wrong_type).await;
    assert_invalid(&answer, "body", "title");
    assert!(
        answer.2["message"].as_str().unwrap().contains("invalid type"),
        "{}",
        answer.2
    );

    let mut nested_wrong_type = card_body("Nested wrong type");
    nested_wrong_type["variables"][0]["type"] = json!("date");
    let answer = f.create(nested_wrong_type).await;
    assert_invalid(&answer, "body", "variables[0].type");

    // A card gives a template or chat messages: with neither, the template is what is missing.
    let mut missing = card_body("Missing template");
    missing.as_object_mut().unwrap().remove("template");
    let answer = f.create(missing).await;
    assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.2);
    assert_eq!(invalid_fields(&answer.2), ["template"]);

    let mut unknown = card_body("Unknown field");
    unknown["colour"] = json!("red");
    let answer = f.create(unknown).await;
    assert_invalid(&answer, "body", "unknown field `colour`");

    // A JSON value that is not an object at all.
    let answer = f.create(json!(["title"])).await;
    assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.2);
    f.assert_nothing_appended().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_body_that_is_not_declared_as_json_is_415(pool: PgPool) {
    let f = fixture(TestApp::new(pool)).await;
    let body = card_body("Untyped").to_string();
    let answer = f
        .raw(Method::POST, &cards_path(f.workspace_id), None, body.clone())
        .await;
    assert_error(
        &answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "Content-Type: application/json",
    );
    let answer = f
        .raw(
            Method::POST,
            &cards_path(f.workspace_id),
            Some("text/plain"),
            body.clone(),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "Content-Type: application/json",
    );
    // `application/<x>+json` and a charset parameter are still JSON.
    let (status, _, answer) = f
        .raw(
            Method::POST,
            &cards_path(f.workspace_id),
            Some("application/json; charset=utf-8"),
            body,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(f.app.events_count().await, f.events + 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_body_over_the_limit_is_413_with_or_without_an_idempotency_key(pool: PgPool) {
    let mut settings = settings();
    settings.body_limit = 2_048;
    let f = fixture(TestApp::with_settings(pool, settings)).await;
    let mut big = card_body("Big");
    big["description"] = json!("x".repeat(4_000));
    let path = cards_path(f.workspace_id);

    let answer = f.create(big.clone()).await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "larger");
    let answer = f
        .app
        .json(Method::POST, &path, &f.token, big, &[("idempotency-key", "big-1")])
        .await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "larger");
    f.assert_nothing_appended().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn invalid_utf8_in_a_json_string_is_a_json_4xx(pool: PgPool) {
    let f = fixture(TestApp::new(pool)).await;
    let mut bytes = br#"{"title": ""#.to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, 0x80]);
    bytes.extend_from_slice(br#"", "template": "hi"}"#);
    let answer = f
        .raw(
            Method::POST,
            &cards_path(f.workspace_id),
            Some("application/json"),
            bytes,
        )
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "title: invalid unicode",
    );
    // A lone surrogate escape is not a Unicode scalar value either.
    let answer = f
        .raw(
            Method::POST,
            &cards_path(f.workspace_id),
            Some("application/json"),
            r#"{"title": "\udc00", "template": "hi"}"#,
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request", "surrogate");
    f.assert_nothing_appended().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_malformed_uuid_in_the_path_is_400_and_an_unknown_card_is_404(pool: PgPool) {
    let f = fixture(TestApp::new(pool)).await;
    let answer = f
        .app
        .post("/v1/workspaces/not-a-uuid/prompt-cards", &f.token, card_body("x"))
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request", "not-a-uuid");
    let answer = f
        .app
        .put(
            &format!("/v1/workspaces/{}/prompt-cards/12345", f.workspace_id),
            &f.token,
            json!({ "title": "x", "template": "x", "expected_version": 1 }),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request", "12345");

    let unknown = Uuid::now_v7();
    let mut update = card_body("Unknown");
    update["expected_version"] = json!(1);
    let answer = f.app.put(&card_path(f.workspace_id, unknown), &f.token, update).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "prompt card");
    let answer = f
        .app
        .post(
            &format!("{}/archive", card_path(f.workspace_id, unknown)),
            &f.token,
            Value::Null,
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "prompt card");
    // An id that exists but is not a card (the workspace's own id) is not a card either.
    let answer = f
        .app
        .post(
            &format!("{}/archive", card_path(f.workspace_id, f.workspace_id)),
            &f.token,
            Value::Null,
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "prompt card");
    f.assert_nothing_appended().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn card_content_rules_are_422_naming_the_field(pool: PgPool) {
    let f = fixture(TestApp::new(pool)).await;

    let mut undeclared = card_body("Undeclared");
    undeclared["template"] = json!("{{ text }} in {{ language }}");
    let answer = f.create(undeclared).await;
    assert_invalid(&answer, "template", "language");

    let answer = f.create(card_body(&"t".repeat(501))).await;
    assert_invalid(&answer, "title", "title");

    let mut many_tags = card_body("Tags");
    many_tags["tags"] = json!((0..21).map(|i| format!("tag{i}")).collect::<Vec<_>>());
    let answer = f.create(many_tags).await;
    assert_invalid(&answer, "tags", "21");

    let mut bad_name = card_body("Bad variable name");
    bad_name["variables"] = json!([{ "name": "9lives", "type": "string" }]);
    bad_name["template"] = json!("static");
    let answer = f.create(bad_name).await;
    assert_invalid(&answer, "variables[0].name", "9lives");

    let mut broken = card_body("Broken template");
    broken["template"] = json!("{{ text ");
    let answer = f.create(broken).await;
    assert_invalid(&answer, "template", "does not parse");
    f.assert_nothing_appended().await;

    // The limits are inclusive: 500 characters and 20 tags are fine.
    let mut at_limits = card_body(&"t".repeat(500));
    at_limits["tags"] = json!((0..20).map(|i| format!("tag{i}")).collect::<Vec<_>>());
    let (status, _, body) = f.create(at_limits).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_update_must_say_which_version_it_edits(pool: PgPool) {
    let f = fixture(TestApp::new(pool)).await;
    let path = card_path(f.workspace_id, f.card_id);

    let answer = f.app.put(&path, &f.token, card_body("No version")).await;
    assert_invalid(&answer, "expected_version", "expected_version");

    for if_match in ["soon", "\"v2\"", "\"-1\""] {
        let answer = f
            .app
            .json(
                Method::PUT,
                &path,
                &f.token,
                card_body("Bad If-Match"),
                &[("if-match", if_match)],
            )
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request", "If-Match");
    }

    let mut disagreeing = card_body("Disagreeing");
    disagreeing["expected_version"] = json!(1);
    let answer = f
        .app
        .json(Method::PUT, &path, &f.token, disagreeing, &[("if-match", "\"2\"")])
        .await;
    assert_invalid(&answer, "expected_version", "If-Match");
    f.assert_nothing_appended().await;
}

/// Every route, fed assorted garbage, answers a JSON 4xx: never a 5xx, never a non-JSON body.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn no_route_answers_garbage_with_a_5xx(pool: PgPool) {
    let f = fixture(TestApp::new(pool)).await;
    let ws = f.workspace_id;
    let card = card_path(ws, f.card_id);
    let case = format!("{card}/test-cases/{}", Uuid::now_v7());
    let member = format!("/v1/workspaces/{ws}/members/{}", Uuid::now_v7());
    let routes: Vec<(Method, String)> = vec![
        (Method::POST, "/v1/auth/signup".into()),
        (Method::POST, "/v1/auth/login".into()),
        (Method::POST, "/v1/auth/refresh".into()),
        (Method::POST, "/v1/workspaces".into()),
        (Method::POST, format!("/v1/workspaces/{ws}/members")),
        (Method::PATCH, member.clone()),
        (Method::DELETE, member),
        (Method::POST, format!("/v1/workspaces/{ws}/api-keys")),
        (Method::POST, cards_path(ws)),
        (Method::PUT, card.clone()),
        (Method::POST, format!("{card}/labels")),
        (Method::POST, format!("{card}/archive")),
        (Method::POST, format!("{card}/test-cases")),
        (Method::PUT, case.clone()),
        (Method::DELETE, case),
    ];
    let bodies: Vec<(Option<&str>, Vec<u8>)> = vec![
        (Some("application/json"), b"".to_vec()),
        (Some("application/json"), b"null".to_vec()),
        (Some("application/json"), b"[]".to_vec()),
        (Some("application/json"), b"{}".to_vec()),
        (Some("application/json"), b"{\"name\": 1e400}".to_vec()),
        (
            Some("application/json"),
            br#"{"email": {"$ne": null}, "role": "root", "label": "", "version": -1}"#.to_vec(),
        ),
        (Some("application/json"), vec![0xff; 16]),
        (
            Some("application/json"),
            "{\"title\": \"\u{0}\", \"template\": \"{{\", \"vars\": 3}"
                .as_bytes()
                .to_vec(),
        ),
        (Some("application/yaml"), b"title: x".to_vec()),
        (None, b"{}".to_vec()),
    ];
    for (method, path) in &routes {
        for (content_type, body) in &bodies {
            let (status, _, answer) = f.raw(method.clone(), path, *content_type, body.clone()).await;
            assert!(
                !status.is_server_error(),
                "{method} {path} with {:?} answered {status}: {answer}",
                String::from_utf8_lossy(body)
            );
            if !status.is_success() {
                assert!(
                    answer["error"].is_string() && answer["message"].is_string(),
                    "{method} {path} with {:?} answered {status} without a JSON error: {answer}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }
    // Some of these are valid commands (archive takes no body, deletes of unknown ids are
    // 404s); the only events are from archiving the fixture's card once.
    assert!(f.app.events_count().await <= f.events + 1);
}

/// PostgreSQL can store neither `\u0000` in jsonb nor NUL in text; such input is the client's
/// problem, not a 500.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_escaped_nul_character_is_refused_not_a_500(pool: PgPool) {
    let f = fixture(TestApp::new(pool)).await;
    let nul = "a\u{0}b";
    let mut card = card_body(nul);
    let answer = f.create(card.clone()).await;
    assert_invalid(&answer, "title", "NUL");
    card["title"] = json!("ok");
    card["tags"] = json!(["fine", nul]);
    let answer = f.create(card).await;
    assert_invalid(&answer, "tags[1]", "NUL");
    let answer = f
        .app
        .post(
            &format!("{}/test-cases", card_path(f.workspace_id, f.card_id)),
            &f.token,
            json!({ "name": "case", "vars": { "text": nul }, "assertions": [] }),
        )
        .await;
    assert_invalid(&answer, "vars.text", "NUL");
    let answer = f
        .app
        .post(
            "/v1/auth/signup",
            "",
            json!({ "email": "a\u{0}@example.com", "password": PASSWORD, "workspace_name": "W" }),
        )
        .await;
    assert_invalid(&answer, "email", "NUL");
    let answer = f
        .app
        .post(
            "/v1/auth/login",
            "",
            json!({ "email": "a\u{0}@example.com", "password": PASSWORD }),
        )
        .await;
    assert_invalid(&answer, "email", "NUL");
    let answer = f
        .app
        .post(
            &format!("/v1/workspaces/{}/members", f.workspace_id),
            &f.token,
            json!({ "email": nul, "role": "viewer" }),
        )
        .await;
    assert_invalid(&answer, "email", "NUL");
    let answer = f
        .app
        .post("/v1/workspaces", &f.token, json!({ nul: 1, "name": "x" }))
        .await;
    assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.2);
    f.assert_nothing_appended().await;
    // A backslash followed by "u0000" is an ordinary string.
    let (status, _, body) = f.create(card_body("literally \\u0000")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
