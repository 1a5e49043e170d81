//! Every metric the deliverer emits, described and registered at zero at start-up, so the
//! first scrape lists them. (Its two consumer groups also report the projector's per-sink
//! metrics, `projector_*{sink="webhooks"}` and `{sink="alerts"}`: they are consumed the same way.)

use crate::sender::Sent;
use metrics::{describe_counter, describe_histogram, Unit};
use webhook::outbox::{Delivery, Next};

/// The `outcome` label of `deliverer_attempts_total`.
pub const OUTCOMES: [&str; 3] = ["delivered", "retry", "failed"];

pub fn describe() {
    describe_counter!(
        "deliverer_deliveries_enqueued_total",
        Unit::Count,
        "Deliveries recorded in the outbox (one per endpoint and event)."
    );
    describe_counter!(
        "deliverer_attempts_total",
        Unit::Count,
        "Delivery attempts by outcome: delivered, retry (to be tried again) or failed (given up)."
    );
    describe_histogram!(
        "deliverer_attempt_seconds",
        Unit::Seconds,
        "Time from sending a delivery to the receiver's answer (or the failure)."
    );
    describe_histogram!(
        "deliverer_commit_to_delivery_seconds",
        Unit::Seconds,
        "Time from an event's commit to its delivery's first successful attempt."
    );
    describe_counter!(
        "deliverer_endpoints_disabled_total",
        Unit::Count,
        "Endpoints disabled after failing for too long."
    );
    describe_counter!(
        "alerts_evaluations_total",
        Unit::Count,
        "Alert rule evaluations, by what they did: fired, resolved or unchanged."
    );

    for outcome in OUTCOMES {
        metrics::counter!("deliverer_attempts_total", "outcome" => outcome).increment(0);
    }
    for outcome in ["fired", "resolved", "unchanged"] {
        metrics::counter!("alerts_evaluations_total", "outcome" => outcome).increment(0);
    }
    metrics::counter!("deliverer_deliveries_enqueued_total").increment(0);
    metrics::counter!("deliverer_endpoints_disabled_total").increment(0);
}

/// Records one attempt.
pub fn attempted(delivery: &Delivery, sent: &Sent, next: &Next) {
    let outcome = match next {
        Next::Delivered => "delivered",
        Next::RetryAt(_) => "retry",
        Next::Failed(_) => "failed",
    };
    metrics::counter!("deliverer_attempts_total", "outcome" => outcome).increment(1);
    metrics::histogram!("deliverer_attempt_seconds").record(f64::from(sent.attempt.latency_ms) / 1000.0);
    // A redelivery's age says nothing about how fast deliveries go out.
    if *next == Next::Delivered && delivery.redelivery_id.is_none() {
        let age = (sent.attempt.at - delivery.event_recorded_at).num_milliseconds().max(0);
        metrics::histogram!("deliverer_commit_to_delivery_seconds").record(age as f64 / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_unlabelled_metric_is_exported_before_anything_happened() {
        let handle = service::metrics_handle();
        super::describe();
        let text = handle.render();
        for line in [
            "deliverer_deliveries_enqueued_total 0",
            "deliverer_attempts_total{outcome=\"retry\"} 0",
            "alerts_evaluations_total{outcome=\"fired\"} 0",
        ] {
            assert!(text.contains(line), "{line} is missing from:\n{text}");
        }
    }
}
