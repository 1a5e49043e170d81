//! API keys never reach a log line or an error message, even when a server sends them back.

use crate::common::{providers, serve, settings, spec, Reply, ANTHROPIC_KEY, OPENAI_KEY};
use serde_json::Value;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A server that quotes the credentials it received in every answer, failing in each way a
/// call can fail: a retried 500, then a final 401, then a 200 that is not JSON.
async fn tattletale() -> crate::common::Fake {
    serve(|n, seen| {
        let credentials = format!(
            "authorization={:?} x-api-key={:?}",
            seen.header("authorization"),
            seen.header("x-api-key")
        );
        match n % 3 {
            0 => Reply::text(500, &format!("oops, {credentials}")),
            1 => Reply::text(401, &format!("invalid key: {credentials}")),
            _ => Reply::text(200, &format!("not json {credentials}")),
        }
    })
    .await
}

/// Everything this test binary logs, from every test. The subscriber is the global one:
/// a thread-local subscriber misses events whose callsites another test thread registered first.
fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init();
        logs
    })
}

#[tokio::test]
async fn keys_stay_out_of_errors_and_logs() {
    let logs = logs();
    let fake = tattletale().await;
    let settings = settings(&fake);
    let settings_debug = format!("{settings:?}");
    let providers = providers(settings);
    let mut messages = vec![settings_debug];
    for provider in ["openai:gpt-test", "anthropic:messages:claude-test"] {
        // 500 (retried) then 401; then the 200 that is not JSON.
        let status = providers
            .complete(&spec(provider, Value::Null), "Hi")
            .await
            .unwrap_err();
        assert!(
            matches!(status, providers::ProviderError::Status { status: 401, .. }),
            "{status:?}"
        );
        let malformed = providers
            .complete(&spec(provider, Value::Null), "Hi")
            .await
            .unwrap_err();
        assert!(
            matches!(malformed, providers::ProviderError::Malformed(_)),
            "{malformed:?}"
        );
        messages.extend([
            status.to_string(),
            format!("{status:?}"),
            malformed.to_string(),
            format!("{malformed:?}"),
        ]);
    }
    assert_eq!(fake.requests(), 6);
    // The server did receive the keys, and they were scrubbed from what it sent back.
    assert!(messages.iter().any(|m| m.contains("[redacted]")), "{messages:#?}");
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("retried"), "the retry was logged: {logs}");
    messages.push(logs);
    for message in &messages {
        for key in [OPENAI_KEY, ANTHROPIC_KEY] {
            assert!(!message.contains(key), "a key leaked into: {message}");
        }
    }
}
