//! Tenancy on every query: members and keys of a workspace read it; anyone else gets
//! NOT_FOUND or null, never its data; no or a bad credential is UNAUTHENTICATED.

use crate::support::*;
use domain::card::CardCommand;
use domain::workspace::{Workspace, WorkspaceCommand};
use domain::Role;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

const SECRET_TITLE: &str = "Ada's confidential roadmap";

/// Ada's workspace with one card in two versions, a label and a test case.
struct World {
    app: TestApp,
    ada: Tenant,
    card_id: Uuid,
    ada_key: String,
    bob: Tenant,
    bob_key: String,
    _clickhouse: ScratchDatabase,
}

async fn world(pool: PgPool) -> World {
    let clickhouse = ScratchDatabase::create().await;
    let app = TestApp::with_settings(pool, analytics_settings(&clickhouse)).await;
    let ada = app.tenant("ada").await;
    let (card_id, _) = app.create_card(&ada, titled("A first draft")).await;
    app.update_card(&ada, card_id, titled(SECRET_TITLE)).await;
    app.card_command(
        &ada,
        card_id,
        CardCommand::MoveLabel {
            label: "production".into(),
            version: 2,
        },
    )
    .await;
    app.create_test_case(
        &ada,
        card_id,
        domain::test_case::TestCaseContent {
            name: "secret case".into(),
            vars: json!({ "text": "secret" }).as_object().unwrap().clone(),
            expected_output: None,
            assertions: vec![],
        },
    )
    .await;
    let ada_key = app.api_key(&ada, Role::Viewer).await;
    let bob = app.tenant("bob").await;
    let bob_key = app.api_key(&bob, Role::Admin).await;
    app.project().await;
    World {
        app,
        ada,
        card_id,
        ada_key,
        bob,
        bob_key,
        _clickhouse: clickhouse,
    }
}

/// Every query of API.md that takes a workspace or a card, as (name, query).
fn queries(world: &World) -> Vec<(&'static str, String)> {
    let (ws, card) = (world.ada.workspace_id, world.card_id);
    let as_of = chrono::Utc::now().to_rfc3339();
    vec![
        (
            "workspace",
            format!(r#"{{ workspace(id: "{ws}") {{ id name members {{ userId email }} }} }}"#),
        ),
        (
            "promptCard",
            format!(r#"{{ promptCard(id: "{card}") {{ id title testCases {{ name }} labelHistory {{ label }} }} }}"#),
        ),
        (
            "promptCard version",
            format!(r#"{{ promptCard(id: "{card}", version: 2) {{ id title }} }}"#),
        ),
        (
            "promptCard asOf",
            format!(r#"{{ promptCard(id: "{card}", asOf: "{as_of}") {{ id title }} }}"#),
        ),
        (
            "promptCards",
            format!(r#"{{ promptCards(workspaceId: "{ws}") {{ edges {{ node {{ id title }} }} }} }}"#),
        ),
        (
            "auditLog",
            format!(r#"{{ auditLog(workspaceId: "{ws}") {{ edges {{ node {{ eventType data }} }} }} }}"#),
        ),
        (
            "testRuns",
            format!(r#"{{ testRuns(workspaceId: "{ws}") {{ edges {{ node {{ id }} }} }} }}"#),
        ),
        (
            "analytics",
            format!(
                r#"{{ analytics(workspaceId: "{ws}") {{ passRate {{ total }} costByProvider {{ provider }} latency {{ count }} }} }}"#
            ),
        ),
    ]
}

fn query_of(world: &World, name: &str) -> String {
    queries(world)
        .into_iter()
        .find(|(n, _)| *n == name)
        .expect("a known query")
        .1
}

/// What an outsider gets: the query's field is null, any error is NOT_FOUND, and nothing of
/// Ada's workspace is anywhere in the answer.
#[track_caller]
fn assert_nothing_of_ada(world: &World, who: &str, name: &str, answer: &Value) {
    let text = answer.to_string();
    for leak in [SECRET_TITLE, "A first draft", "secret case", "production", "ada's team"] {
        assert!(!text.contains(leak), "{who} read {leak:?} through {name}: {answer}");
    }
    assert!(
        !text.contains(&world.ada.user_id.to_string()),
        "{who} read Ada's id through {name}: {answer}"
    );
    let data = &answer["data"];
    assert!(
        data.is_null() || data.as_object().unwrap().values().all(Value::is_null),
        "{who} got data through {name}: {answer}"
    );
    for code in error_codes(answer) {
        assert_eq!(code, "NOT_FOUND", "{who} through {name}: {answer}");
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn members_and_keys_of_the_workspace_read_it(pool: PgPool) {
    let world = world(pool).await;
    for (who, token) in [("Ada", &world.ada.token), ("Ada's API key", &world.ada_key)] {
        for (name, query) in queries(&world) {
            let answer = world.app.graphql(token, &query, Value::Null).await;
            assert!(answer.get("errors").is_none(), "{who} through {name}: {answer}");
            let field = answer["data"].as_object().unwrap().values().next().unwrap();
            assert!(!field.is_null(), "{who} through {name}: {answer}");
        }
        let data = world
            .app
            .data(token, &query_of(&world, "promptCard"), Value::Null)
            .await;
        assert_eq!(data["promptCard"]["title"], SECRET_TITLE, "{who}");
        assert_eq!(data["promptCard"]["testCases"][0]["name"], "secret case", "{who}");
        let data = world
            .app
            .data(token, &query_of(&world, "promptCards"), Value::Null)
            .await;
        assert_eq!(
            data["promptCards"]["edges"][0]["node"]["id"],
            world.card_id.to_string(),
            "{who}"
        );
        let data = world.app.data(token, &query_of(&world, "auditLog"), Value::Null).await;
        assert!(
            data["auditLog"]["edges"].as_array().unwrap().len() >= 5,
            "{who}: {data}"
        );
    }
    let me = world
        .app
        .data(&world.ada.token, "{ me { id workspaces { id role } } }", Value::Null)
        .await;
    assert_eq!(me["me"]["id"], world.ada.user_id.to_string());
    assert_eq!(
        me["me"]["workspaces"],
        json!([{ "id": world.ada.workspace_id.to_string(), "role": "owner" }])
    );
    let me = world.app.data(&world.ada_key, "{ me { id } }", Value::Null).await;
    assert!(me["me"].is_null(), "an API key is no user");
    let role = world
        .app
        .data(
            &world.ada_key,
            &format!(r#"{{ workspace(id: "{}") {{ role }} }}"#, world.ada.workspace_id),
            Value::Null,
        )
        .await;
    assert_eq!(role["workspace"]["role"], "viewer", "a key has its own role");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn another_workspace_sees_nothing_through_any_query(pool: PgPool) {
    let world = world(pool).await;
    // Ada reads first, so the card's document is in the Redis cache when the others ask.
    world
        .app
        .data(&world.ada.token, &query_of(&world, "promptCard"), Value::Null)
        .await;
    for (who, token) in [("Bob", &world.bob.token), ("Bob's API key", &world.bob_key)] {
        for (name, query) in queries(&world) {
            let answer = world.app.graphql(token, &query, Value::Null).await;
            assert_nothing_of_ada(&world, who, name, &answer);
        }
        // Bob's own workspace is readable with the same credential, so the refusals above are
        // about tenancy, not a broken credential.
        let own = world
            .app
            .data(
                token,
                &format!(r#"{{ workspace(id: "{}") {{ name }} }}"#, world.bob.workspace_id),
                Value::Null,
            )
            .await;
        assert_eq!(own["workspace"]["name"], "bob's team", "{who}");
    }
    // Queries of a workspace say it does not exist; card queries answer null (checked above).
    let workspace_queries = ["workspace", "promptCards", "auditLog", "testRuns", "analytics"];
    for (name, query) in queries(&world)
        .into_iter()
        .filter(|(n, _)| workspace_queries.contains(n))
    {
        let answer = world.app.graphql(&world.bob.token, &query, Value::Null).await;
        assert_refused(&answer, "NOT_FOUND", &format!("Bob through {name}"));
    }
    let cleanup = format!("promptcards:doc:card:{}", world.card_id);
    let _: () = redis::cmd("DEL")
        .arg(cleanup)
        .query_async(&mut redis().await)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_removed_member_loses_access(pool: PgPool) {
    let world = world(pool).await;
    let (carol, carol_token) = world.app.member(&world.ada, Role::Viewer).await;
    world.app.project().await;
    let card = &query_of(&world, "promptCard");
    let data = world.app.data(&carol_token, card, Value::Null).await;
    assert_eq!(data["promptCard"]["title"], SECRET_TITLE, "a viewer reads");

    let remove = WorkspaceCommand::RemoveMember {
        actor_role: Role::Owner,
        user_id: carol,
    };
    let ws = world.ada.workspace_id;
    world
        .app
        .execute::<Workspace>(ws, remove, Some(ws), Some(world.ada.user_id))
        .await;
    world.app.project().await;
    for (name, query) in queries(&world) {
        let answer = world.app.graphql(&carol_token, &query, Value::Null).await;
        assert_nothing_of_ada(&world, "Carol, removed", name, &answer);
    }
    let cleanup = format!("promptcards:doc:card:{}", world.card_id);
    let _: () = redis::cmd("DEL")
        .arg(cleanup)
        .query_async(&mut redis().await)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn no_or_a_bad_credential_is_unauthenticated(pool: PgPool) {
    let world = world(pool).await;
    let other_keys = auth::TokenKeys::new(
        "not-the-secret",
        std::time::Duration::from_secs(900),
        std::time::Duration::from_secs(900),
    );
    let forged = other_keys.issue(world.ada.user_id).unwrap();
    let ada_refresh = auth::TokenKeys::new(
        JWT_SECRET,
        std::time::Duration::from_secs(900),
        std::time::Duration::from_secs(900),
    )
    .issue(world.ada.user_id)
    .unwrap()
    .refresh_token;
    let (key_id, _) = world.ada_key.trim_start_matches("pc_").split_once('_').unwrap();
    let wrong_secret = format!("pc_{key_id}_guessed");
    let unknown_key = format!("pc_{}_secret", Uuid::new_v4().simple());
    let (signed, signature) = world.ada.token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{signed}.{flipped}{}", &signature[1..]);

    let credentials: [(&str, Option<String>); 8] = [
        ("no Authorization header", None),
        (
            "a token signed with another secret",
            Some(format!("Bearer {}", forged.access_token)),
        ),
        ("a token with a changed signature", Some(format!("Bearer {tampered}"))),
        ("a refresh token", Some(format!("Bearer {ada_refresh}"))),
        ("a key with a wrong secret", Some(format!("Bearer {wrong_secret}"))),
        ("a key that does not exist", Some(format!("Bearer {unknown_key}"))),
        ("garbage", Some("Bearer not.a.jwt".to_owned())),
        ("not a bearer", Some(format!("Basic {}", world.ada.token))),
    ];
    let mut all = queries(&world);
    all.push(("me", "{ me { id email } }".to_owned()));
    for (what, authorization) in &credentials {
        for (name, query) in &all {
            let headers: Vec<(&str, &str)> = authorization.iter().map(|a| ("authorization", a.as_str())).collect();
            let answer = world.app.graphql_with("", &headers, query, Value::Null).await;
            assert_refused(&answer, "UNAUTHENTICATED", &format!("{what} through {name}"));
            assert!(!answer.to_string().contains(SECRET_TITLE));
        }
    }
}
