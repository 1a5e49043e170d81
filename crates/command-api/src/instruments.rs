//! Every metric the command API emits, described at start-up and, where no label depends on
//! the request, registered at zero, so the first scrape lists them.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub fn describe() {
    describe_histogram!(
        "command_append_seconds",
        Unit::Seconds,
        "Time to append a command's events to the store."
    );
    describe_counter!(
        "command_append_conflicts_total",
        Unit::Count,
        "Appends refused because the stream moved on (wrong expected version)."
    );
    describe_counter!(
        "command_reads_total",
        Unit::Count,
        "Commands by where their reads came from: decided on this process's memory and appended (memory), or decided again on the streams as stored (postgres)."
    );
    describe_gauge!(
        "postgres_oldest_transaction_age_seconds",
        Unit::Seconds,
        "Age of the oldest open transaction in the database, measured at each scrape."
    );
    // Labelled by the matched route and the status, so it appears with the first request.
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP requests by method, route and status."
    );

    // Registered without changing a value a test process may already have recorded.
    let _ = metrics::histogram!("command_append_seconds");
    metrics::counter!("command_append_conflicts_total").increment(0);
    for from in ["memory", "postgres"] {
        metrics::counter!("command_reads_total", "from" => from).increment(0);
    }
    metrics::gauge!("postgres_oldest_transaction_age_seconds").increment(0.0);
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_unlabelled_metric_is_exported_before_anything_happened() {
        let handle = service::metrics_handle();
        super::describe();
        let text = handle.render();
        for line in [
            "command_append_seconds_count 0",
            "command_append_conflicts_total 0",
            "postgres_oldest_transaction_age_seconds 0",
            "# HELP command_append_conflicts_total Appends refused",
        ] {
            assert!(text.contains(line), "{line} is missing from:\n{text}");
        }
    }
}
