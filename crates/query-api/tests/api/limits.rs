//! Abusive queries are refused before they run: too deep, too complex, too long.

use crate::support::*;
use serde_json::Value;
use sqlx::PgPool;

/// An introspection query whose deepest field is at depth `depth` (`__type` is depth 1).
fn nested(depth: usize) -> String {
    assert!(depth >= 3);
    let inner = depth - 3; // __type, fields, and the innermost `name`
    format!(
        r#"{{ __type(name: "Query") {{ fields {{ {}name{} }} }} }}"#,
        "ofType { ".repeat(inner).replacen("ofType", "type", 1),
        " }".repeat(inner)
    )
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_query_deeper_than_the_limit_is_refused(pool: PgPool) {
    let app = TestApp::new(pool).await; // max_depth: 10
    let ada = app.tenant("ada").await;
    app.project().await;

    let at_limit = app.graphql(&ada.token, &nested(10), Value::Null).await;
    assert!(at_limit.get("errors").is_none(), "depth 10 is allowed: {at_limit}");
    assert!(at_limit["data"]["__type"]["fields"].is_array());

    let too_deep = app.graphql(&ada.token, &nested(11), Value::Null).await;
    assert!(!error_codes(&too_deep).is_empty(), "depth 11 is refused: {too_deep}");
    assert!(too_deep["data"].is_null(), "a refused query runs nothing: {too_deep}");
    assert!(
        too_deep.to_string().to_lowercase().contains("nested too deep"),
        "{too_deep}"
    );

    let absurd = app.graphql(&ada.token, &nested(500), Value::Null).await;
    assert!(absurd["data"].is_null() && absurd["errors"].is_array(), "{absurd}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_query_more_complex_than_the_limit_is_refused(pool: PgPool) {
    let app = TestApp::new(pool).await; // max_complexity: 1000
    let ada = app.tenant("ada").await;
    app.project().await;
    let aliases = |n: usize| {
        format!(
            "{{ {} }}",
            (0..n)
                .map(|i| format!("a{i}: me {{ id }}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };

    let fine = app.graphql(&ada.token, &aliases(100), Value::Null).await;
    assert!(fine.get("errors").is_none(), "{fine}");
    assert_eq!(fine["data"]["a99"]["id"], ada.user_id.to_string());

    let too_complex = app.graphql(&ada.token, &aliases(600), Value::Null).await;
    assert!(too_complex["data"].is_null(), "{too_complex}");
    assert!(
        too_complex.to_string().to_lowercase().contains("complex"),
        "{too_complex}"
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_query_longer_than_the_limit_is_a_bad_request(pool: PgPool) {
    let app = TestApp::new(pool).await; // max_query_bytes: 16 KiB
    let ada = app.tenant("ada").await;
    app.project().await;
    let padded = |len: usize| {
        let query = "{ me { id } }\n#";
        format!("{query}{}", "x".repeat(len - query.len()))
    };

    let at_limit = app.graphql(&ada.token, &padded(16 * 1024), Value::Null).await;
    assert!(at_limit.get("errors").is_none(), "{at_limit}");
    assert_eq!(at_limit["data"]["me"]["id"], ada.user_id.to_string());

    let too_long = app.graphql(&ada.token, &padded(16 * 1024 + 1), Value::Null).await;
    assert_refused(&too_long, "BAD_REQUEST", "a query one byte over the limit");

    // Checked before the credential: an anonymous flood is refused just as cheaply.
    let anonymous = app.graphql("", &padded(100_000), Value::Null).await;
    assert_refused(&anonymous, "BAD_REQUEST", "a long anonymous query");
}
