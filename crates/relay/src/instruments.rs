//! Every metric the relay emits, described and registered at zero at start-up, so the first
//! scrape lists them all.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub fn describe() {
    describe_gauge!(
        "relay_leader",
        "1 while this relay holds the leadership and publishes, else 0."
    );
    describe_gauge!(
        "relay_lag_events",
        Unit::Count,
        "Events committed to the store and not yet published."
    );
    describe_gauge!(
        "relay_lag_seconds",
        Unit::Seconds,
        "Age of the last event published when it was published."
    );
    describe_counter!(
        "relay_events_published_total",
        Unit::Count,
        "Events published to the topic and checkpointed."
    );
    describe_histogram!("relay_batch_size", Unit::Count, "Events per published batch.");
    describe_histogram!(
        "relay_batch_seconds",
        Unit::Seconds,
        "Time to read, publish and checkpoint one batch."
    );

    // Registered without changing a value a test process may already have recorded.
    metrics::gauge!("relay_leader").increment(0.0);
    metrics::gauge!("relay_lag_events").increment(0.0);
    metrics::gauge!("relay_lag_seconds").increment(0.0);
    metrics::counter!("relay_events_published_total").increment(0);
    let _ = metrics::histogram!("relay_batch_size");
    let _ = metrics::histogram!("relay_batch_seconds");
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_is_exported_before_anything_happened() {
        let handle = service::metrics_handle();
        super::describe();
        let text = handle.render();
        for name in [
            "relay_leader 0",
            "relay_lag_events 0",
            "relay_lag_seconds 0",
            "relay_events_published_total 0",
            "relay_batch_size_count 0",
            "relay_batch_seconds_count 0",
            "# HELP relay_leader 1 while",
        ] {
            assert!(text.contains(name), "{name} is missing from:\n{text}");
        }
    }
}
