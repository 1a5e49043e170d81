//! Every metric the projector emits, described and registered at zero for each sink at
//! start-up, so the first scrape lists them all.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// The `sink` label's values: the names of the projector's sinks.
pub const SINKS: [&str; 3] = ["postgres", "redis", "clickhouse"];

pub fn describe() {
    describe_counter!(
        "projector_events_applied_total",
        Unit::Count,
        "Events applied to a sink, by sink."
    );
    describe_counter!(
        "projector_apply_failures_total",
        Unit::Count,
        "Batches a sink failed to apply (retried), by sink."
    );
    describe_counter!(
        "projector_redeliveries_skipped_total",
        Unit::Count,
        "Redelivered events the Postgres sink had already applied."
    );
    describe_counter!(
        "projector_undecodable_messages_total",
        Unit::Count,
        "Messages on the topic that are not events; skipped."
    );
    describe_histogram!(
        "projector_apply_seconds",
        Unit::Seconds,
        "Time to apply one batch and commit its offsets, by sink."
    );
    describe_histogram!(
        "projector_batch_size",
        Unit::Count,
        "Events per applied batch, by sink."
    );
    describe_gauge!(
        "projector_lag_seconds",
        Unit::Seconds,
        "Age of the newest event of the last applied batch, by sink."
    );
    describe_gauge!(
        "projector_lag_events",
        Unit::Count,
        "Events in the store after the last applied batch, by sink."
    );

    // Registered without changing a value a test process may already have recorded.
    metrics::counter!("projector_undecodable_messages_total").increment(0);
    metrics::counter!("projector_redeliveries_skipped_total", "sink" => "postgres").increment(0);
    for sink in SINKS {
        metrics::counter!("projector_events_applied_total", "sink" => sink).increment(0);
        metrics::counter!("projector_apply_failures_total", "sink" => sink).increment(0);
        let _ = metrics::histogram!("projector_apply_seconds", "sink" => sink);
        let _ = metrics::histogram!("projector_batch_size", "sink" => sink);
        metrics::gauge!("projector_lag_seconds", "sink" => sink).increment(0.0);
        metrics::gauge!("projector_lag_events", "sink" => sink).increment(0.0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_of_every_sink_is_exported_before_anything_happened() {
        let handle = service::metrics_handle();
        super::describe();
        let text = handle.render();
        assert!(text.contains("projector_undecodable_messages_total 0"), "{text}");
        assert!(
            text.contains(r#"projector_redeliveries_skipped_total{sink="postgres"} 0"#),
            "{text}"
        );
        for sink in super::SINKS {
            for metric in [
                "projector_events_applied_total",
                "projector_apply_failures_total",
                "projector_apply_seconds_count",
                "projector_batch_size_count",
                "projector_lag_seconds",
                "projector_lag_events",
            ] {
                let line = format!(r#"{metric}{{sink="{sink}"}} 0"#);
                assert!(text.contains(&line), "{line} is missing from:\n{text}");
            }
        }
    }
}
