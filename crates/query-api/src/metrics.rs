//! The query API's own metrics, named once: request latency per operation, document-cache
//! lookups, and open subscriptions.

use std::time::Duration;

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
