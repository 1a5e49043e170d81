//! Prompts served by name (`GET /v1/workspaces/{ws}/prompts/{name}`, `.../render`, GraphQL
//! `prompt` and `renderPrompt`), on the read models the projector's own sink writes, with the
//! projector's notices making the serving memory forget.

use crate::support::*;
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use domain::card::CardCommand;
use domain::prompt::{ChatMessage, ChatRole};
use domain::Role;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = match body {
        Some(body) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    let response = app.router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn prompt_path(tenant: &Tenant, name: &str) -> String {
    format!("/v1/workspaces/{}/prompts/{name}", tenant.workspace_id)
}

/// A card named `name` with versions "v1 {{ text }}" .. "vN {{ text }}", projected.
async fn card_with_versions(app: &TestApp, tenant: &Tenant, name: &str, versions: u32) -> Uuid {
    let card_id = Uuid::now_v7();
    let command = CardCommand::Create {
        card_id,
        workspace_id: tenant.workspace_id,
        name: name.into(),
        content: content("Greeter", "", "v1 {{ text }}", &["text"], &[]),
    };
    app.card_command(tenant, card_id, command).await;
    for v in 2..=versions {
        app.update_card(
            tenant,
            card_id,
            content("Greeter", "", &format!("v{v} {{{{ text }}}}"), &["text"], &[]),
        )
        .await;
    }
    app.project().await;
    card_id
}

async fn move_label(app: &TestApp, tenant: &Tenant, card_id: Uuid, label: &str, version: u32) -> i64 {
    let command = CardCommand::MoveLabel {
        label: label.into(),
        version,
    };
    app.card_command(tenant, card_id, command).await.position
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_viewer_key_fetches_by_label_and_defaults_to_production_then_latest(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant("Acme").await;
    let key = app.api_key(&tenant, Role::Viewer).await;
    let card_id = card_with_versions(&app, &tenant, "support-reply", 3).await;
    app.project().await;

    let (status, headers, body) = call(
        &app,
        Method::GET,
        &prompt_path(&tenant, "support-reply"),
        &key,
        &[],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 3, "no production label: the latest");
    assert_eq!(body["type"], "text");
    assert_eq!(body["template"], "v3 {{ text }}");
    assert_eq!(body["id"], json!(card_id));
    assert!(body.get("messages").is_none());
    assert_eq!(body["config"], json!({}));
    assert!(headers.get(header::ETAG).is_some());
    assert!(headers[header::CACHE_CONTROL].to_str().unwrap().contains("no-cache"));

    move_label(&app, &tenant, card_id, "production", 2).await;
    app.project().await;
    let path = prompt_path(&tenant, "support-reply");
    let body = eventually("the default follows the production label", || async {
        let (_, _, body) = call(&app, Method::GET, &path, &key, &[], None).await;
        (body["version"] == 2).then_some(body)
    })
    .await;
    assert_eq!(body["labels"], json!({"production": 2}));
    let (_, _, body) = call(&app, Method::GET, &format!("{path}?version=1"), &key, &[], None).await;
    assert_eq!(body["template"], "v1 {{ text }}");
    let (status, _, body) = call(&app, Method::GET, &format!("{path}?label=staging"), &key, &[], None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "not_found");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_moved_label_is_seen_at_once_with_min_position_and_soon_without(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant("Acme").await;
    let token = app.token(tenant.user_id);
    let card_id = card_with_versions(&app, &tenant, "digest", 2).await;
    move_label(&app, &tenant, card_id, "production", 1).await;
    app.project().await;
    let path = format!("{}?label=production", prompt_path(&tenant, "digest"));
    let etag = eventually("the label is served", || async {
        let (status, headers, body) = call(&app, Method::GET, &path, &token, &[], None).await;
        (status == StatusCode::OK && body["version"] == 1).then(|| headers[header::ETAG].to_str().unwrap().to_owned())
    })
    .await;
    // Unchanged: 304, with the same ETag.
    let (status, headers, _) = call(&app, Method::GET, &path, &token, &[("if-none-match", &etag)], None).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(headers[header::ETAG].to_str().unwrap(), etag);

    // The move is appended but not projected: a fetch with its position waits for it.
    let position = move_label(&app, &tenant, card_id, "production", 2).await;
    let waiting = {
        let (app_path, token, position) = (path.clone(), token.clone(), position.to_string());
        let router = app.router.clone();
        tokio::spawn(async move {
            let request = Request::builder()
                .uri(app_path)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header("x-min-position", position)
                .body(Body::empty())
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        })
    };
    // Until the projector applies it, a plain fetch still answers the version served before.
    let (_, _, before) = call(&app, Method::GET, &path, &token, &[], None).await;
    assert_eq!(before["version"], 1);
    app.project().await;
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2, "X-Min-Position sees the move at once");
    assert!(body["position"].as_i64().unwrap() >= position);
    // Without the header, the projector's notice makes every fetch see it soon after.
    eventually("a plain fetch sees the move", || async {
        let (status, _, body) = call(&app, Method::GET, &path, &token, &[("if-none-match", &etag)], None).await;
        (status == StatusCode::OK && body["version"] == 2).then_some(())
    })
    .await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn render_names_every_bad_variable_and_renders_chat_prompts(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant("Acme").await;
    let key = app.api_key(&tenant, Role::Viewer).await;
    let mut chat = content("Chat", "", "", &["topic"], &[]);
    chat.messages = vec![
        ChatMessage {
            role: ChatRole::System,
            content: "You write about {{ topic }}.".into(),
        },
        ChatMessage {
            role: ChatRole::User,
            content: "Go.".into(),
        },
    ];
    chat.config.insert("temperature".into(), json!(0.3));
    let card_id = Uuid::now_v7();
    let command = CardCommand::Create {
        card_id,
        workspace_id: tenant.workspace_id,
        name: "chatty".into(),
        content: chat,
    };
    app.card_command(&tenant, card_id, command).await;
    app.project().await;
    let render = format!("{}/render", prompt_path(&tenant, "chatty"));

    let (status, _, body) = call(&app, Method::GET, &prompt_path(&tenant, "chatty"), &key, &[], None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["type"], "chat");
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "You write about {{ topic }}."})
    );
    assert_eq!(body["config"], json!({"temperature": 0.3}));
    assert!(body.get("template").is_none());

    let (status, _, body) = call(
        &app,
        Method::POST,
        &render,
        &key,
        &[],
        Some(json!({"variables": {"topic": "tides"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"version": 1, "type": "chat", "messages": [
            {"role": "system", "content": "You write about tides."}, {"role": "user", "content": "Go."}]})
    );

    let (status, _, body) = call(
        &app,
        Method::POST,
        &render,
        &key,
        &[],
        Some(json!({"variables": {"topic": 7, "extra": "x"}})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["variables.extra", "variables.topic"]);
    let (status, _, body) = call(&app, Method::POST, &render, &key, &[], Some(json!({"variables": {}}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["details"][0]["field"], "variables.topic");
    assert_eq!(body["details"][0]["message"], "is required");

    // The same through GraphQL.
    let data = app
        .data(
            &key,
            "query($ws: ID!) { prompt(workspaceId: $ws, name: \"chatty\") { name version type messages config }
               renderPrompt(workspaceId: $ws, name: \"chatty\", variables: {topic: \"moss\"}) { type messages } }",
            json!({"ws": tenant.workspace_id}),
        )
        .await;
    assert_eq!(data["prompt"]["type"], "chat");
    assert_eq!(data["prompt"]["config"], json!({"temperature": 0.3}));
    assert_eq!(data["renderPrompt"]["messages"][0]["content"], "You write about moss.");
    let answer = app
        .graphql(
            &key,
            "query($ws: ID!) { renderPrompt(workspaceId: $ws, name: \"chatty\", variables: {}) { type } }",
            json!({"ws": tenant.workspace_id}),
        )
        .await;
    assert_eq!(error_codes(&answer), ["BAD_REQUEST"]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_strangers_key_or_token_gets_404_and_no_credential_401(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant("Acme").await;
    let stranger = app.tenant("Other").await;
    let strangers_key = app.api_key(&stranger, Role::Admin).await;
    let strangers_token = app.token(stranger.user_id);
    card_with_versions(&app, &tenant, "secret-sauce", 1).await;
    app.project().await;
    let path = prompt_path(&tenant, "secret-sauce");
    for credential in [&strangers_key, &strangers_token] {
        let (status, _, body) = call(&app, Method::GET, &path, credential, &[], None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, _, _) = call(
            &app,
            Method::POST,
            &format!("{path}/render"),
            credential,
            &[],
            Some(json!({"variables": {"text": "x"}})),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let answer = app
        .graphql(
            &strangers_key,
            "query($ws: ID!) { prompt(workspaceId: $ws, name: \"secret-sauce\") { name } }",
            json!({"ws": tenant.workspace_id}),
        )
        .await;
    assert_eq!(error_codes(&answer), ["NOT_FOUND"]);
    let (status, _, _) = app.get(&path).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_key_created_a_moment_ago_fetches_before_the_read_models_know_it(pool: PgPool) {
    // CI jobs create a key and use it at once; the key is found in its workspace's stream
    // when the read model does not have it yet.
    let app = TestApp::new(pool).await;
    let tenant = app.tenant("Acme").await;
    card_with_versions(&app, &tenant, "support-reply", 1).await;
    app.project().await;
    let key = app.api_key(&tenant, Role::Viewer).await;
    let (status, _, body) = call(
        &app,
        Method::GET,
        &prompt_path(&tenant, "support-reply"),
        &key,
        &[],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 1);
    let (status, _, _) = call(
        &app,
        Method::GET,
        &prompt_path(&tenant, "support-reply"),
        "pc_00000000000000000000000000000000_nope",
        &[],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an unknown key is still refused");
}
