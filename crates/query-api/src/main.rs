use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use query_api::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    service::Process::new("query-api")
        .metrics(describe_metrics)
        .run_draining(|_| async move { Application::build(settings).await?.run_until_stopped().await })
        .await
}

/// Every metric the query API emits, described and, where the labels are known, registered at
/// zero. It belongs in the library's metrics module once the query API has one; it is here
/// while that module is being laid out.
fn describe_metrics() {
    describe_counter!(
        "query_cache_requests_total",
        Unit::Count,
        "Read-model cache lookups by result (hit, stale, miss)."
    );
    describe_gauge!("query_subscribers", Unit::Count, "GraphQL subscriptions open now.");
    // Labelled by the operation name a client sends, so it appears with the first query.
    describe_histogram!(
        "graphql_request_duration_seconds",
        Unit::Seconds,
        "GraphQL requests by operation name."
    );

    for result in ["hit", "stale", "miss"] {
        metrics::counter!("query_cache_requests_total", "result" => result).increment(0);
    }
    metrics::gauge!("query_subscribers").increment(0.0);
}
