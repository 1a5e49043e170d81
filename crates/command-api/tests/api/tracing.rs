//! One trace from the caller to the stored event: the `traceparent` recorded with an appended
//! event continues the trace the request arrived with, with span export off (the header is
//! passed on) and on (the request span, a child of the caller's, is recorded).

use crate::helpers::*;
use axum::http::{Method, StatusCode};
use service::telemetry::testing::capture_spans;
use sqlx::PgPool;
use uuid::Uuid;

const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// A `traceparent` with a fresh trace id, and that id.
fn incoming_traceparent() -> (String, String) {
    let trace_id = Uuid::new_v4().simple().to_string();
    (format!("00-{trace_id}-{CALLER_SPAN_ID}-01"), trace_id)
}

async fn stored_trace_context(app: &TestApp, event_type: &str) -> (Option<String>, Option<String>) {
    sqlx::query_as("SELECT traceparent, tracestate FROM events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(&app.pool)
        .await
        .expect("the event was stored")
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn without_span_export_the_callers_trace_context_is_stored_as_sent(pool: PgPool) {
    let app = TestApp::new(pool);
    let (token, _, ws) = app.signup("ada@example.com").await;
    let (traceparent, _) = incoming_traceparent();

    let headers = [("traceparent", traceparent.as_str()), ("tracestate", "vendor=opaque")];
    let (status, _, body) = app
        .json(Method::POST, &cards_path(ws), &token, card_body("Traced"), &headers)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let stored = stored_trace_context(&app, "PromptCardCreated").await;
    assert_eq!(stored, (Some(traceparent), Some("vendor=opaque".into())));
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn with_span_export_the_stored_context_is_the_request_span_in_the_callers_trace(pool: PgPool) {
    // This test's thread (the runtime is current-thread) exports into memory; the other tests
    // are unaffected.
    let (_guard, spans) = capture_spans();
    let app = TestApp::new(pool);
    let (token, _, ws) = app.signup("ada@example.com").await;
    let (traceparent, trace_id) = incoming_traceparent();

    let headers = [("traceparent", traceparent.as_str())];
    let (status, _, body) = app
        .json(Method::POST, &cards_path(ws), &token, card_body("Traced"), &headers)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (stored, _) = stored_trace_context(&app, "PromptCardCreated").await;
    let stored = stored.expect("a traceparent was stored");
    assert_eq!(
        service::trace_id_of(&stored).as_deref(),
        Some(trace_id.as_str()),
        "stored {stored}"
    );
    assert_ne!(
        stored, traceparent,
        "the stored context names our span, not the caller's"
    );

    let requests: Vec<_> = spans
        .finished()
        .into_iter()
        .filter(|span| span.name == "request" && span.trace_id == trace_id)
        .collect();
    assert_eq!(
        requests.len(),
        1,
        "exactly the traced request joins the caller's trace: {requests:?}"
    );
    let request = &requests[0];
    assert_eq!(request.parent_span_id, CALLER_SPAN_ID);
    assert!(request.parent_is_remote);
    assert!(
        stored.contains(&request.span_id),
        "the stored traceparent {stored} names the request span {}",
        request.span_id
    );
}
