//! The query API's own metrics, named once: request latency per operation, document-cache
//! lookups, and open subscriptions.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use std::time::Duration;

/// Describes every metric the query API emits and registers at zero those whose labels are
/// known, so the first scrape lists them.
pub fn describe() {
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

/// Records how long one GraphQL request took, labelled with its operation name.
pub fn request_served(operation: String, took: Duration) {
    metrics::histogram!("graphql_request_duration_seconds", "operation" => operation).record(took.as_secs_f64());
}

/// Counts one document-cache lookup: `hit`, `stale` or `miss`.
pub fn cache_lookup(result: &'static str) {
    metrics::counter!("query_cache_requests_total", "result" => result).increment(1);
}

/// Decrements the subscriber gauge when a subscription stream is dropped.
pub struct SubscriberGuard;

impl SubscriberGuard {
    /// Counts one more subscriber until the guard is dropped.
    pub fn count() -> Self {
        metrics::gauge!("query_subscribers").increment(1.0);
        SubscriberGuard
    }
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        metrics::gauge!("query_subscribers").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_with_known_labels_is_exported_before_anything_happened() {
        let handle = service::metrics_handle();
        super::describe();
        let text = handle.render();
        for line in [
            "query_cache_requests_total{result=\"miss\"} 0",
            "query_subscribers 0",
            "# HELP query_cache_requests_total Read-model cache lookups",
        ] {
            assert!(text.contains(line), "{line} is missing from:\n{text}");
        }
    }
}
