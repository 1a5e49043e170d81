//! Every metric the runner process emits, its providers' included, described at start-up and,
//! where no label depends on the run, registered at zero, so the first scrape lists them.

use metrics::{describe_counter, describe_histogram, Unit};

pub fn describe() {
    describe_counter!(
        "runner_results_recorded_total",
        Unit::Count,
        "Test results appended to runs' streams."
    );
    // Labelled by the provider a run names, so they appear with the first call.
    describe_counter!(
        "runner_provider_calls_total",
        Unit::Count,
        "Provider calls by provider and outcome (ok, error, timeout, retry)."
    );
    describe_histogram!(
        "runner_provider_call_seconds",
        Unit::Seconds,
        "Time of a provider call that was sent, by provider."
    );

    // Registered without changing a value a test process may already have recorded.
    metrics::counter!("runner_results_recorded_total").increment(0);
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_unlabelled_metric_is_exported_before_anything_happened() {
        let handle = service::metrics_handle();
        super::describe();
        let text = handle.render();
        for line in [
            "# HELP runner_results_recorded_total Test results appended",
            "runner_results_recorded_total 0",
        ] {
            assert!(text.contains(line), "{line} is missing from:\n{text}");
        }
    }
}
