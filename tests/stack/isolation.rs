//! Isolation proven, not sampled: every route of the command API's `/openapi.json` and every
//! query, mutation and subscription field of the GraphQL schema (by introspection) is called
//! against one workspace as a stranger, as a viewer (user and API key) where it writes, and
//! with a revoked API key; each is refused (404, 403 or 401; NOT_FOUND, FORBIDDEN or
//! UNAUTHENTICATED) and the events table is exactly as it was. The cases are a table: a route
//! or field the table does not know fails the test, naming it, until a case is added below.
//!
//! The second test measures how long a revoked key keeps working on processes other than the
//! one that revoked it: a second command API and a second query API, and a WebSocket open on
//! the second query API.

use crate::support::{eventually, next_message, open_socket, Stack};
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const PASSWORD: &str = "stack test password";

/// What a route does, and so who must be refused.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Sign-up, login, refresh, logout: no bearer credential; their own tests cover them.
    Public,
    /// Acts on the caller's own account or creates their own workspace: a stranger may; API
    /// keys may not; a revoked key is 401.
    Own,
    /// Reads a workspace: strangers 404, revoked key 401; viewers may.
    Read,
    /// Reads only admins may: strangers 404, viewers 403, revoked key 401.
    AdminRead,
    /// Writes a workspace: strangers 404, viewers (user and key) 403, revoked key 401.
    Write,
}

#[derive(Clone)]
enum Body {
    None,
    Json(Value),
    Yaml(&'static str),
}

/// The table: every `METHOD path` of `/openapi.json`, its kind and a valid body, so that a
/// refusal can only come from who is calling. The helpers' routes are added when merged.
fn route_case(method: &str, path: &str, f: &Fixture) -> Option<(Kind, Body)> {
    let card =
        json!({ "title": "Intruder", "template": "Hi {{ who }}", "variables": [{ "name": "who", "type": "string" }] });
    let case = json!({ "name": "intruder", "vars": { "who": "x" }, "assertions": [] });
    Some(match (method, path) {
        ("POST", "/v1/auth/signup" | "/v1/auth/login" | "/v1/auth/refresh" | "/v1/auth/logout") => {
            (Kind::Public, Body::None)
        }
        ("POST", "/v1/auth/password") => (
            Kind::Own,
            Body::Json(json!({ "current_password": PASSWORD, "new_password": "another long password" })),
        ),
        ("POST", "/v1/workspaces") => (Kind::Own, Body::Json(json!({ "name": "Mine" }))),
        ("POST", "/v1/workspaces/{ws}/members") => (
            Kind::Write,
            Body::Json(json!({ "email": f.stranger_email, "role": "admin" })),
        ),
        ("PATCH", "/v1/workspaces/{ws}/members/{user_id}") => (Kind::Write, Body::Json(json!({ "role": "admin" }))),
        ("DELETE", "/v1/workspaces/{ws}/members/{user_id}") => (Kind::Write, Body::None),
        ("POST", "/v1/workspaces/{ws}/api-keys") => {
            (Kind::Write, Body::Json(json!({ "name": "mine", "role": "viewer" })))
        }
        ("GET", "/v1/workspaces/{ws}/api-keys") => (Kind::AdminRead, Body::None),
        ("DELETE", "/v1/workspaces/{ws}/api-keys/{key}") => (Kind::Write, Body::None),
        ("POST", "/v1/workspaces/{ws}/prompt-cards") => (Kind::Write, Body::Json(card)),
        ("PUT", "/v1/workspaces/{ws}/prompt-cards/{card}") => {
            let mut update = card;
            update["expected_version"] = json!(1);
            (Kind::Write, Body::Json(update))
        }
        ("POST", "/v1/workspaces/{ws}/prompt-cards/{card}/labels") => {
            (Kind::Write, Body::Json(json!({ "label": "prod", "version": 1 })))
        }
        ("POST", "/v1/workspaces/{ws}/prompt-cards/{card}/archive") => (Kind::Write, Body::None),
        ("POST", "/v1/workspaces/{ws}/prompt-cards/{card}/test-cases") => (Kind::Write, Body::Json(case)),
        ("PUT", "/v1/workspaces/{ws}/prompt-cards/{card}/test-cases/{case}") => (Kind::Write, Body::Json(case)),
        ("DELETE", "/v1/workspaces/{ws}/prompt-cards/{card}/test-cases/{case}") => (Kind::Write, Body::None),
        ("POST", "/v1/workspaces/{ws}/runs") => (
            Kind::Write,
            Body::Json(json!({ "card_id": f.card, "providers": ["echo"] })),
        ),
        ("POST", "/v1/workspaces/{ws}/runs/{run}/cancel") => (Kind::Write, Body::None),
        ("POST", "/v1/workspaces/{ws}/imports/promptfoo") => (
            Kind::Write,
            Body::Yaml("prompts: ['Hi {{who}}']\ntests:\n  - vars: { who: x }\n"),
        ),
        ("GET", "/v1/workspaces/{ws}/provider-credentials") => (Kind::Read, Body::None),
        ("PUT", "/v1/workspaces/{ws}/provider-credentials/{provider}") => {
            (Kind::Write, Body::Json(json!({ "api_key": "sk-intruder" })))
        }
        ("DELETE", "/v1/workspaces/{ws}/provider-credentials/{provider}") => (Kind::Write, Body::None),
        ("PUT", "/v1/workspaces/{ws}/budget") => (Kind::Write, Body::Json(json!({ "limit_micro_usd": 1 }))),
        ("POST", "/v1/workspaces/{ws}/prompt-cards/{card}/comparisons") => (
            Kind::Write,
            Body::Json(json!({ "baseline": { "version": 1 }, "candidate": { "version": 2 }, "providers": ["echo"] })),
        ),
        ("GET", "/v1/workspaces/{ws}/runs/{run}/export") => (Kind::Read, Body::None),
        ("GET", "/v1/workspaces/{ws}/comparisons/{comparison}/export") => (Kind::Read, Body::None),
        ("GET", "/v1/workspaces/{ws}/prompts/{name}") => (Kind::Read, Body::None),
        ("POST", "/v1/workspaces/{ws}/webhooks") => (
            Kind::Write,
            Body::Json(json!({ "url": "https://93.184.216.34/intruder", "events": ["*"] })),
        ),
        ("PATCH", "/v1/workspaces/{ws}/webhooks/{webhook}") => (Kind::Write, Body::Json(json!({ "enabled": false }))),
        ("DELETE", "/v1/workspaces/{ws}/webhooks/{webhook}") => (Kind::Write, Body::None),
        ("POST", "/v1/workspaces/{ws}/webhooks/{webhook}/deliveries/{delivery}/redeliver") => (Kind::Write, Body::None),
        ("POST", "/v1/workspaces/{ws}/alert-rules") => (
            Kind::Write,
            Body::Json(json!({ "kind": "pass_rate_below", "card_id": f.card, "threshold": 0.5 })),
        ),
        ("DELETE", "/v1/workspaces/{ws}/alert-rules/{rule}") => (Kind::Write, Body::None),
        ("POST", "/v1/workspaces/{ws}/prompts/{name}/render") => {
            (Kind::Read, Body::Json(json!({ "variables": { "who": "x" } })))
        }
        ("GET", "/v1/workspaces/{ws}/budget") => (Kind::Read, Body::None),
        ("POST", "/v1/workspaces/{ws}/executions") => (
            Kind::Write,
            Body::Json(json!({ "card_id": f.card, "variables": { "who": "x" }, "provider": "echo" })),
        ),
        ("POST", "/v1/workspaces/{ws}/executions/{execution}/cancel") => (Kind::Write, Body::None),
        _ => return None,
    })
}

/// The table for GraphQL: each field's query on the victim's workspace. `Own` fields answer
/// about the caller (whose answer must not be the owner's); the others must refuse strangers.
fn graphql_case(root: &str, field: &str, f: &Fixture) -> Option<(Kind, String)> {
    let (ws, card, run, comparison, name) = (f.workspace, f.card, f.run, f.comparison, &f.name);
    let query = match (root, field) {
        ("query", "me") => return Some((Kind::Own, "{ me { id } }".into())),
        ("query", "workspace") => format!(r#"{{ workspace(id: "{ws}") {{ id }} }}"#),
        ("query", "promptCard") => format!(r#"{{ promptCard(id: "{card}") {{ id }} }}"#),
        ("query", "promptCards") => format!(r#"{{ promptCards(workspaceId: "{ws}") {{ __typename }} }}"#),
        ("query", "testRun") => format!(r#"{{ testRun(id: "{run}") {{ id }} }}"#),
        ("query", "testRuns") => format!(r#"{{ testRuns(workspaceId: "{ws}") {{ __typename }} }}"#),
        ("query", "analytics") => format!(r#"{{ analytics(workspaceId: "{ws}") {{ __typename }} }}"#),
        ("query", "auditLog") => format!(r#"{{ auditLog(workspaceId: "{ws}") {{ __typename }} }}"#),
        ("query", "webhooks") => format!(r#"{{ webhooks(workspaceId: "{ws}") {{ id }} }}"#),
        ("query", "webhookDeliveries") => {
            let webhook = f.webhook;
            format!(r#"{{ webhookDeliveries(webhookId: "{webhook}") {{ __typename }} }}"#)
        }
        ("query", "alerts") => format!(r#"{{ alerts(workspaceId: "{ws}") {{ __typename }} }}"#),
        ("query", "alertRules") => format!(r#"{{ alertRules(workspaceId: "{ws}") {{ __typename }} }}"#),
        ("query", "comparison") => format!(r#"{{ comparison(id: "{comparison}") {{ id }} }}"#),
        ("query", "compareRuns") => {
            format!(r#"{{ compareRuns(baselineRunId: "{run}", candidateRunId: "{run}") {{ flipCount }} }}"#)
        }
        ("query", "prompt") => format!(r#"{{ prompt(workspaceId: "{ws}", name: "{name}") {{ name }} }}"#),
        ("query", "renderPrompt") => {
            format!(r#"{{ renderPrompt(workspaceId: "{ws}", name: "{name}", variables: {{who: "x"}}) {{ version }} }}"#)
        }
        ("subscription", "comparisonProgress") => {
            format!(r#"subscription {{ comparisonProgress(id: "{comparison}") {{ status }} }}"#)
        }
        ("subscription", "testRunProgress") => {
            format!(r#"subscription {{ testRunProgress(runId: "{run}") {{ runId }} }}"#)
        }
        ("subscription", "execution") => {
            let execution = f.execution;
            format!(r#"subscription {{ execution(id: "{execution}") {{ kind }} }}"#)
        }
        ("subscription", "workspaceEvents") => {
            format!(r#"subscription {{ workspaceEvents(workspaceId: "{ws}") {{ position }} }}"#)
        }
        _ => return None,
    };
    Some((Kind::Read, query))
}

/// The victim's workspace and what is in it, and the callers.
struct Fixture {
    workspace: Uuid,
    card: Uuid,
    case: Uuid,
    run: Uuid,
    comparison: Uuid,
    execution: Uuid,
    webhook: Uuid,
    /// An alert rule's id.
    rule: Uuid,
    /// The card's name, as served prompts are fetched.
    name: String,
    key_id: Uuid,
    owner: String,
    owner_id: Uuid,
    viewer: String,
    viewer_id: Uuid,
    viewer_key: String,
    revoked_key: String,
    stranger: String,
    stranger_email: String,
}

impl Fixture {
    fn path(&self, template: &str) -> String {
        let values = BTreeMap::from([
            ("{ws}", self.workspace.to_string()),
            ("{card}", self.card.to_string()),
            ("{case}", self.case.to_string()),
            ("{run}", self.run.to_string()),
            ("{comparison}", self.comparison.to_string()),
            ("{execution}", self.execution.to_string()),
            ("{webhook}", self.webhook.to_string()),
            ("{rule}", self.rule.to_string()),
            // Refused before anything is looked up, so any delivery id will do.
            ("{delivery}", Uuid::now_v7().to_string()),
            ("{name}", self.name.clone()),
            ("{user_id}", self.viewer_id.to_string()),
            ("{key}", self.key_id.to_string()),
            ("{provider}", "openai".to_owned()),
        ]);
        let path = values
            .iter()
            .fold(template.to_owned(), |path, (name, value)| path.replace(name, value));
        assert!(
            !path.contains('{'),
            "{template}: a path parameter the isolation test has no value for; add it to Fixture::path"
        );
        path
    }
}

struct Api {
    http: reqwest::Client,
    command: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, token: &str, body: &Body) -> (StatusCode, Value) {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.command));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(value),
            Body::Yaml(text) => request.header("content-type", "application/yaml").body(*text),
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, method: &str, path: &str, token: &str, body: Value) -> Value {
        let (status, answer) = self.call(method, path, token, &Body::Json(body)).await;
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
        answer
    }

    async fn signup(&self, email: &str) -> (String, Uuid, Uuid) {
        let answer = self
            .ok(
                "POST",
                "/v1/auth/signup",
                "",
                json!({ "email": email, "password": PASSWORD, "workspace_name": "Isolation" }),
            )
            .await;
        let id = |field: &str| answer[field].as_str().unwrap().parse().unwrap();
        (
            answer["access_token"].as_str().unwrap().to_owned(),
            id("user_id"),
            id("workspace_id"),
        )
    }
}

fn id(value: &Value, field: &str) -> Uuid {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {value}"))
        .parse()
        .unwrap()
}

async fn fixture(api: &Api) -> Fixture {
    let tag = Uuid::new_v4().simple().to_string();
    let (owner, owner_id, workspace) = api.signup(&format!("owner-{tag}@iso.test")).await;
    let viewer_email = format!("viewer-{tag}@iso.test");
    let (viewer, viewer_id, _) = api.signup(&viewer_email).await;
    let stranger_email = format!("stranger-{tag}@iso.test");
    let (stranger, _, _) = api.signup(&stranger_email).await;
    let ws = format!("/v1/workspaces/{workspace}");
    api.ok(
        "POST",
        &format!("{ws}/members"),
        &owner,
        json!({ "email": viewer_email, "role": "viewer" }),
    )
    .await;
    let card = api
        .ok(
            "POST",
            &format!("{ws}/prompt-cards"),
            &owner,
            json!({ "title": "Victim", "template": "Hi {{ who }}", "variables": [{ "name": "who", "type": "string" }] }),
        )
        .await;
    let card = id(&card, "id");
    let case = api
        .ok(
            "POST",
            &format!("{ws}/prompt-cards/{card}/test-cases"),
            &owner,
            json!({ "name": "one", "vars": { "who": "you" }, "assertions": [] }),
        )
        .await;
    let run = api
        .ok(
            "POST",
            &format!("{ws}/runs"),
            &owner,
            json!({ "card_id": card, "providers": ["echo"] }),
        )
        .await;
    api.ok(
        "PUT",
        &format!("{ws}/prompt-cards/{card}"),
        &owner,
        json!({ "title": "Victim", "template": "Hello {{ who }}", "variables": [{ "name": "who", "type": "string" }],
            "expected_version": 1 }),
    )
    .await;
    let comparison = api
        .ok(
            "POST",
            &format!("{ws}/prompt-cards/{card}/comparisons"),
            &owner,
            json!({ "baseline": { "version": 1 }, "candidate": { "version": 2 }, "providers": ["echo"] }),
        )
        .await;
    let execution = api
        .ok(
            "POST",
            &format!("{ws}/executions"),
            &owner,
            json!({ "card_id": card, "variables": { "who": "you" }, "provider": "echo" }),
        )
        .await;
    let webhook = api
        .ok(
            "POST",
            &format!("{ws}/webhooks"),
            &owner,
            json!({ "url": "https://93.184.216.34/victim", "events": ["*"] }),
        )
        .await;
    let rule = api
        .ok(
            "POST",
            &format!("{ws}/alert-rules"),
            &owner,
            json!({ "kind": "pass_rate_below", "card_id": card, "threshold": 0.5 }),
        )
        .await;
    api.ok(
        "PUT",
        &format!("{ws}/provider-credentials/openai"),
        &owner,
        json!({ "api_key": "sk-victim" }),
    )
    .await;
    let viewer_key = api
        .ok(
            "POST",
            &format!("{ws}/api-keys"),
            &owner,
            json!({ "name": "viewer", "role": "viewer" }),
        )
        .await;
    let revoked = api
        .ok(
            "POST",
            &format!("{ws}/api-keys"),
            &owner,
            json!({ "name": "gone", "role": "admin" }),
        )
        .await;
    let revoked_id = id(&revoked, "id");
    let (status, body) = api
        .call("DELETE", &format!("{ws}/api-keys/{revoked_id}"), &owner, &Body::None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    Fixture {
        workspace,
        card,
        case: id(&case, "id"),
        run: id(&run, "run_id"),
        comparison: id(&comparison, "comparison_id"),
        execution: id(&execution, "execution_id"),
        webhook: id(&webhook, "id"),
        rule: id(&rule, "id"),
        name: "victim".to_owned(),
        key_id: id(&viewer_key, "id"),
        owner,
        owner_id,
        viewer,
        viewer_id,
        viewer_key: viewer_key["key"].as_str().unwrap().to_owned(),
        revoked_key: revoked["key"].as_str().unwrap().to_owned(),
        stranger,
        stranger_email,
    }
}

async fn events(stack: &Stack) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), COALESCE(max(position), 0) FROM events")
        .fetch_one(&stack.pool)
        .await
        .unwrap()
}

async fn graphql(http: &reqwest::Client, url: &str, token: &str, query: &str) -> Value {
    http.post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn codes(answer: &Value) -> Vec<String> {
    answer["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["extensions"]["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_and_field_refuses_strangers_viewers_and_revoked_keys_and_appends_nothing() {
    let stack = Stack::start().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let api = Api {
        http: http.clone(),
        command: stack.url("command-api"),
    };
    let query_api = stack.url("query-api");
    let f = fixture(&api).await;
    // The run is finished and the owner sees everything, so a refusal below is tenancy, not
    // an empty read model, and nothing appends in the background any more.
    let finished = format!(r#"{{ testRun(id: "{}") {{ status }} }}"#, f.run);
    eventually(
        Duration::from_secs(60),
        "the victim's run completes and is projected",
        || async {
            let answer = graphql(&http, &query_api, &f.owner, &finished).await;
            (answer["data"]["testRun"]["status"] == "COMPLETED").then_some(())
        },
    )
    .await;
    eventually(Duration::from_secs(60), "the victim's execution finishes", || async {
        let ended: Option<(String,)> =
            sqlx::query_as("SELECT event_type FROM events WHERE stream_id = $1 AND event_type = 'ExecutionFinished'")
                .bind(f.execution)
                .fetch_optional(&stack.pool)
                .await
                .unwrap();
        ended.map(|_| ())
    })
    .await;
    let before = events(&stack).await;

    let openapi: Value = http
        .get(format!("{}/openapi.json", api.command))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut missing = vec![];
    let mut checked = 0;
    for (template, operations) in openapi["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let Some((kind, body)) = route_case(&method, template, &f) else {
                missing.push(format!("{method} {template}"));
                continue;
            };
            let path = f.path(template);
            let at_start = events(&stack).await;
            let mut expect = |who: &str, token: &str, allowed: &[StatusCode]| {
                let (method, path, body, api) = (method.clone(), path.clone(), body.clone(), &api);
                let (who, token, allowed) = (who.to_owned(), token.to_owned(), allowed.to_vec());
                checked += 1;
                async move {
                    let (status, answer) = api.call(&method, &path, &token, &body).await;
                    assert!(
                        allowed.contains(&status),
                        "{method} {path} as {who}: expected one of {allowed:?}, got {status} {answer}"
                    );
                }
            };
            if kind == Kind::Public {
                continue;
            }
            expect("a revoked API key", &f.revoked_key, &[StatusCode::UNAUTHORIZED]).await;
            match kind {
                Kind::Public => unreachable!(),
                Kind::Own => expect("a viewer's API key", &f.viewer_key, &[StatusCode::FORBIDDEN]).await,
                Kind::Read => expect("a stranger", &f.stranger, &[StatusCode::NOT_FOUND]).await,
                Kind::AdminRead | Kind::Write => {
                    expect("a stranger", &f.stranger, &[StatusCode::NOT_FOUND]).await;
                    expect("a viewer", &f.viewer, &[StatusCode::FORBIDDEN]).await;
                    expect("a viewer's API key", &f.viewer_key, &[StatusCode::FORBIDDEN]).await;
                }
            }
            assert_eq!(
                events(&stack).await,
                at_start,
                "{method} {template}: a refused call appended"
            );
        }
    }

    // GraphQL: every root field the schema has.
    let schema = graphql(
        &http,
        &query_api,
        &f.owner,
        "{ __schema { queryType { fields { name } } mutationType { fields { name } } subscriptionType { fields { name } } } }",
    )
    .await;
    for (root, key) in [
        ("query", "queryType"),
        ("mutation", "mutationType"),
        ("subscription", "subscriptionType"),
    ] {
        let fields = schema["data"]["__schema"][key]["fields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for field in fields {
            let name = field["name"].as_str().unwrap();
            let Some((kind, query)) = graphql_case(root, name, &f) else {
                missing.push(format!("GraphQL {root} field {name}"));
                continue;
            };
            checked += 1;
            if root == "subscription" {
                assert!(
                    open_socket(&query_api, &f.revoked_key).await.is_none(),
                    "{name}: a revoked key connected"
                );
                let mut socket = open_socket(&query_api, &f.stranger)
                    .await
                    .expect("a stranger may connect");
                let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": query } });
                socket.send(Message::Text(subscribe.to_string().into())).await.unwrap();
                let answer = next_message(&mut socket).await.expect("an answer to the subscription");
                let payload = &answer["payload"];
                let errors = if payload.is_array() {
                    payload.clone()
                } else {
                    payload["errors"].clone()
                };
                assert_eq!(
                    codes(&json!({ "errors": errors })),
                    vec!["NOT_FOUND"],
                    "subscription {name} as a stranger: {answer}"
                );
                continue;
            }
            let revoked = graphql(&http, &query_api, &f.revoked_key, &query).await;
            assert_eq!(
                codes(&revoked),
                vec!["UNAUTHENTICATED"],
                "{root} {name} with a revoked key: {revoked}"
            );
            let owner = graphql(&http, &query_api, &f.owner, &query).await;
            assert!(
                owner.get("errors").is_none() && !owner["data"][name].is_null(),
                "{name}: the owner sees it: {owner}"
            );
            let stranger = graphql(&http, &query_api, &f.stranger, &query).await;
            match kind {
                Kind::Own => assert_ne!(stranger["data"][name], owner["data"][name], "{name}: {stranger}"),
                _ => {
                    let refused = codes(&stranger)
                        .iter()
                        .all(|c| ["NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"].contains(&c.as_str()));
                    assert!(
                        refused && stranger["data"][name].is_null(),
                        "{root} {name} as a stranger must be refused or null: {stranger}"
                    );
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "no isolation case for: {}. Add each to route_case or graphql_case in tests/stack/isolation.rs",
        missing.join(", ")
    );
    assert_eq!(events(&stack).await, before, "refused calls appended events");
    assert_eq!(owner_still(&api, &f).await, f.owner_id);
    eprintln!("isolation: {checked} refusals checked, nothing appended");
}

/// The owner's token still works after all that (no refusal locked the victim out).
async fn owner_still(api: &Api, f: &Fixture) -> Uuid {
    let (status, _) = api
        .call(
            "GET",
            &format!("/v1/workspaces/{}/api-keys", f.workspace),
            &f.owner,
            &Body::None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    f.owner_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_key_is_refused_by_every_process_within_a_second() {
    let mut stack = Stack::start().await;
    stack.start_instance("command-api-2", "command-api").await;
    stack.start_instance("query-api-2", "query-api").await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let api = Api {
        http: http.clone(),
        command: stack.url("command-api"),
    };
    let (owner, _, workspace) = api.signup(&format!("{}@iso.test", Uuid::new_v4().simple())).await;
    let ws = format!("/v1/workspaces/{workspace}");
    let key = api
        .ok(
            "POST",
            &format!("{ws}/api-keys"),
            &owner,
            json!({ "name": "ci", "role": "member" }),
        )
        .await;
    let (key_id, key) = (id(&key, "id"), key["key"].as_str().unwrap().to_owned());
    let other = Api {
        http: http.clone(),
        command: stack.url("command-api-2"),
    };
    let list = format!("{ws}/provider-credentials");
    let query = format!(r#"{{ workspace(id: "{workspace}") {{ id }} }}"#);
    let query_api_2 = stack.url("query-api-2");
    // The key works everywhere first (the query API once the projector has its membership).
    assert_eq!(other.call("GET", &list, &key, &Body::None).await.0, StatusCode::OK);
    eventually(
        Duration::from_secs(30),
        "the key reads through the second query API",
        || async {
            let answer = graphql(&http, &query_api_2, &key, &query).await;
            answer.get("errors").is_none().then_some(())
        },
    )
    .await;
    let mut socket = open_socket(&query_api_2, &key).await.expect("the key connects");
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": format!(r#"subscription {{ workspaceEvents(workspaceId: "{workspace}") {{ position }} }}"#) } });
    socket.send(Message::Text(subscribe.to_string().into())).await.unwrap();

    let revoked_at = Instant::now();
    let (status, body) = api
        .call("DELETE", &format!("{ws}/api-keys/{key_id}"), &owner, &Body::None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (command_refused, query_refused, socket_closed) = tokio::join!(
        async {
            while other.call("GET", &list, &key, &Body::None).await.0 != StatusCode::UNAUTHORIZED {}
            revoked_at.elapsed()
        },
        async {
            while codes(&graphql(&http, &query_api_2, &key, &query).await) != ["UNAUTHENTICATED"] {}
            revoked_at.elapsed()
        },
        async {
            let code = loop {
                match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
                    Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
                    Ok(Some(Ok(_))) => continue,
                    other => panic!("the WebSocket was not closed with a frame: {other:?}"),
                }
            };
            assert_eq!(code, Some(4403), "closed for the revocation");
            revoked_at.elapsed()
        },
    );
    eprintln!(
        "revoke -> refused by another command API {command_refused:?}, by another query API {query_refused:?}, its WebSocket there closed {socket_closed:?}"
    );
    for (what, took) in [
        ("another command API", command_refused),
        ("another query API", query_refused),
        ("a WebSocket on another query API", socket_closed),
    ] {
        assert!(
            took < Duration::from_secs(1),
            "{what} accepted the revoked key for {took:?}"
        );
    }
}
