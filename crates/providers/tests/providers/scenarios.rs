//! Behaviour every HTTP protocol shares (retries, timeouts, malformed answers, concurrency),
//! written once and run by each protocol's module against its own wire format.

use crate::common::{providers, serve, settings, spec, Reply};
use providers::{Completion, ProviderError};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One wire protocol as the fake server speaks it.
pub struct Wire {
    pub provider: &'static str,
    /// Where the request must arrive.
    pub path: &'static str,
    /// A successful answer carrying this output and these token counts.
    pub ok: fn(output: &str, prompt_tokens: u32, completion_tokens: u32) -> Value,
    /// JSON that is valid but lacks the output field.
    pub incomplete: fn() -> Value,
}

fn expected(output: &str) -> (String, u32, u32) {
    (output.to_owned(), 7, 3)
}

fn got(completion: &Completion) -> (String, u32, u32) {
    (
        completion.output.clone(),
        completion.prompt_tokens,
        completion.completion_tokens,
    )
}

pub async fn a_429_is_retried_after_its_retry_after(wire: &Wire) {
    let ok = wire.ok;
    let fake = serve(move |n, _| match n {
        0 => Reply::json(429, json!({"error": {"message": "slow down"}})).header("retry-after", "1"),
        _ => Reply::json(200, ok("second time lucky", 7, 3)),
    })
    .await;
    let mut settings = settings(&fake);
    // Were Retry-After ignored, the retry would come after ~10 ms instead of a second.
    settings.retry_base_delay = Duration::from_millis(10);
    let started = Instant::now();
    let completion = providers(settings)
        .complete(&spec(wire.provider, Value::Null), "Hi")
        .await
        .unwrap();
    assert_eq!(got(&completion), expected("second time lucky"));
    assert_eq!(fake.requests(), 2);
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
    assert!(
        completion.latency < Duration::from_secs(1),
        "latency is the answering attempt's: {:?}",
        completion.latency
    );
}

pub async fn server_errors_are_retried_until_success(wire: &Wire) {
    let ok = wire.ok;
    let fake = serve(move |n, _| match n {
        0 | 1 => Reply::text(500, "internal error"),
        _ => Reply::json(200, ok("third time", 7, 3)),
    })
    .await;
    let completion = providers(settings(&fake))
        .complete(&spec(wire.provider, Value::Null), "Hi")
        .await
        .unwrap();
    assert_eq!(got(&completion), expected("third time"));
    assert_eq!(fake.requests(), 3);
}

pub async fn retries_stop_at_max_retries(wire: &Wire) {
    let fake = serve(|_, _| Reply::text(503, "overloaded")).await;
    let mut settings = settings(&fake);
    settings.max_retries = 2;
    let err = providers(settings)
        .complete(&spec(wire.provider, Value::Null), "Hi")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Status {
            status: 503,
            body: "overloaded".into()
        }
    );
    assert_eq!(fake.requests(), 3, "the first attempt and two retries");
}

pub async fn a_long_retry_after_is_not_waited_for(wire: &Wire) {
    let fake = serve(|_, _| Reply::text(429, "come back tomorrow").header("retry-after", "86400")).await;
    let err = providers(settings(&fake))
        .complete(&spec(wire.provider, Value::Null), "Hi")
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Status { status: 429, .. }), "{err:?}");
    assert_eq!(fake.requests(), 1);
}

pub async fn a_silent_server_times_out_without_retries(wire: &Wire) {
    let fake = serve(|_, _| Reply::Hang).await;
    let mut settings = settings(&fake);
    settings.timeout = Duration::from_millis(200);
    settings.max_retries = 3;
    let started = Instant::now();
    let err = providers(settings)
        .complete(&spec(wire.provider, Value::Null), "Hi")
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::Timeout(Duration::from_millis(200)));
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(fake.requests(), 1, "a timed-out attempt is not retried");
}

pub async fn malformed_answers_are_errors_not_retries(wire: &Wire) {
    let incomplete = wire.incomplete;
    let fake = serve(move |n, _| match n {
        0 => Reply::text(200, "<html>definitely not JSON</html>"),
        _ => Reply::json(200, incomplete()),
    })
    .await;
    let providers = providers(settings(&fake));
    for _ in 0..2 {
        let err = providers
            .complete(&spec(wire.provider, Value::Null), "Hi")
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Malformed(_)), "{err:?}");
    }
    assert_eq!(fake.requests(), 2);
}

pub async fn a_client_error_is_not_retried(wire: &Wire) {
    let fake = serve(|_, _| Reply::json(400, json!({"error": {"message": "bad model"}}))).await;
    let err = providers(settings(&fake))
        .complete(&spec(wire.provider, Value::Null), "Hi")
        .await
        .unwrap_err();
    let ProviderError::Status { status: 400, body } = &err else {
        panic!("{err:?}")
    };
    assert!(body.contains("bad model"), "{body}");
    assert_eq!(fake.requests(), 1);
}

pub async fn concurrency_is_bounded_per_provider(wire: &Wire) {
    let ok = wire.ok;
    // Each answer takes a while, so calls beyond the bound would overlap with the held ones.
    let fake = serve(move |_, _| Reply::json(200, ok("done", 7, 3)).after(Duration::from_millis(100))).await;
    let mut settings = settings(&fake);
    settings.max_concurrency_per_provider = 2;
    let providers = Arc::new(providers(settings));
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..6 {
        let (providers, spec) = (providers.clone(), spec(wire.provider, Value::Null));
        calls.spawn(async move { providers.complete(&spec, &format!("call {i}")).await });
    }
    while let Some(result) = calls.join_next().await {
        assert_eq!(result.unwrap().unwrap().output, "done");
    }
    assert_eq!(fake.requests(), 6);
    assert_eq!(fake.max_in_flight(), 2);
}

/// Runs every shared scenario as its own test in the calling module.
#[macro_export]
macro_rules! shared_scenarios {
    ($wire:expr) => {
        #[tokio::test]
        async fn a_429_is_retried_after_its_retry_after() {
            $crate::scenarios::a_429_is_retried_after_its_retry_after(&$wire).await
        }
        #[tokio::test]
        async fn server_errors_are_retried_until_success() {
            $crate::scenarios::server_errors_are_retried_until_success(&$wire).await
        }
        #[tokio::test]
        async fn retries_stop_at_max_retries() {
            $crate::scenarios::retries_stop_at_max_retries(&$wire).await
        }
        #[tokio::test]
        async fn a_long_retry_after_is_not_waited_for() {
            $crate::scenarios::a_long_retry_after_is_not_waited_for(&$wire).await
        }
        #[tokio::test]
        async fn a_silent_server_times_out_without_retries() {
            $crate::scenarios::a_silent_server_times_out_without_retries(&$wire).await
        }
        #[tokio::test]
        async fn malformed_answers_are_errors_not_retries() {
            $crate::scenarios::malformed_answers_are_errors_not_retries(&$wire).await
        }
        #[tokio::test]
        async fn a_client_error_is_not_retried() {
            $crate::scenarios::a_client_error_is_not_retried(&$wire).await
        }
        #[tokio::test]
        async fn concurrency_is_bounded_per_provider() {
            $crate::scenarios::concurrency_is_bounded_per_provider(&$wire).await
        }
    };
}
