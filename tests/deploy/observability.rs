//! Prometheus, the OpenTelemetry collector and Grafana of deploy/compose.

use crate::compose::COMPOSE;
use crate::support::{
    at, crate_sources, environment, first_http_url, keys, read, scalar, str_at, yaml, DASHBOARD_METRICS, PROCESSES,
};
use serde_json::Value as Json;
use serde_norway::Value;
use std::collections::BTreeSet;

const PROMETHEUS: &str = "deploy/compose/prometheus.yml";
const COLLECTOR: &str = "deploy/compose/otel-collector.yaml";
const DASHBOARD: &str = "deploy/compose/grafana/dashboards/promptcards.json";
const DATASOURCES: &str = "deploy/compose/grafana/provisioning/datasources/datasources.yaml";
const DASHBOARD_PROVIDERS: &str = "deploy/compose/grafana/provisioning/dashboards/dashboards.yaml";

/// Every `host:port` target Prometheus scrapes, with the job's metrics path.
fn scrape_targets() -> Vec<(String, String)> {
    let config = yaml(PROMETHEUS);
    let jobs = at(&config, &["scrape_configs"])
        .as_sequence()
        .expect("prometheus.yml has no scrape_configs");
    let mut targets = Vec::new();
    for job in jobs {
        let metrics_path = str_at(job, &["metrics_path"]).unwrap_or("/metrics").to_owned();
        for static_config in at(job, &["static_configs"]).as_sequence().into_iter().flatten() {
            for target in at(static_config, &["targets"]).as_sequence().into_iter().flatten() {
                targets.push((scalar(target).unwrap_or_default(), metrics_path.clone()));
            }
        }
    }
    targets
}

#[test]
fn prometheus_scrapes_every_process_on_its_port() {
    let targets = scrape_targets();
    for process in &PROCESSES {
        let expected = format!("{}:{}", process.name, process.port);
        let found = targets.iter().find(|(target, _)| *target == expected);
        let (_, metrics_path) =
            found.unwrap_or_else(|| panic!("{PROMETHEUS} does not scrape {expected} (targets: {targets:?})"));
        assert_eq!(metrics_path, "/metrics", "{expected} is scraped at {metrics_path}");
    }
}

#[test]
fn prometheus_scrape_targets_are_compose_services() {
    let compose = yaml(COMPOSE);
    let services = keys(at(&compose, &["services"]));
    for (target, _) in scrape_targets() {
        let host = target.split(':').next().unwrap_or_default();
        assert!(
            host == "localhost" || services.iter().any(|s| s == host),
            "{PROMETHEUS}: no service {host}"
        );
    }
}

#[test]
fn the_collector_pipelines_use_defined_components_and_send_traces_to_jaeger() {
    let config = yaml(COLLECTOR);
    let pipelines = at(&config, &["service", "pipelines"]);
    assert!(pipelines.get("traces").is_some(), "{COLLECTOR} has no traces pipeline");
    for pipeline in keys(pipelines) {
        for kind in ["receivers", "processors", "exporters"] {
            for component in at(pipelines, &[&pipeline, kind]).as_sequence().into_iter().flatten() {
                let component = component.as_str().unwrap_or_default();
                assert!(
                    at(&config, &[kind, component]).is_mapping() || at(&config, &[kind]).get(component).is_some(),
                    "{COLLECTOR}: pipeline {pipeline} uses undefined {kind} {component}"
                );
            }
        }
    }
    let exporters = at(pipelines, &["traces", "exporters"])
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    let to_jaeger = exporters.iter().filter_map(Value::as_str).any(|exporter| {
        str_at(&config, &["exporters", exporter, "endpoint"]).is_some_and(|endpoint| endpoint.contains("jaeger:"))
    });
    assert!(
        to_jaeger,
        "{COLLECTOR}: the traces pipeline exports nowhere near jaeger"
    );
}

#[test]
fn processes_send_otlp_to_the_collectors_receiver() {
    let config = yaml(COLLECTOR);
    let grpc = str_at(&config, &["receivers", "otlp", "protocols", "grpc", "endpoint"]).unwrap_or("0.0.0.0:4317");
    let http = str_at(&config, &["receivers", "otlp", "protocols", "http", "endpoint"]).unwrap_or("0.0.0.0:4318");
    let ports: Vec<&str> = [grpc, http].iter().filter_map(|e| e.rsplit(':').next()).collect();
    let compose = yaml(COMPOSE);
    for process in &PROCESSES {
        let env = environment(at(&compose, &["services", process.name, "environment"]));
        let endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT").cloned().unwrap_or_default();
        let (host, port, _) = first_http_url(&endpoint)
            .unwrap_or_else(|| panic!("{}: OTEL_EXPORTER_OTLP_ENDPOINT={endpoint:?}", process.name));
        assert_eq!(host, "otel-collector", "{}: OTLP goes to {host}", process.name);
        assert!(
            ports.contains(&port.to_string().as_str()),
            "{}: OTLP port {port} is not a receiver",
            process.name
        );
    }
}

fn dashboard() -> Json {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

/// Every panel, including those nested in collapsed rows.
fn panels(dashboard: &Json) -> Vec<&Json> {
    fn collect<'a>(panels: &'a Json, out: &mut Vec<&'a Json>) {
        for panel in panels.as_array().into_iter().flatten() {
            out.push(panel);
            collect(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    collect(&dashboard["panels"], &mut out);
    out
}

fn expressions(dashboard: &Json) -> Vec<String> {
    panels(dashboard)
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect()
}

/// Whether `expr` names `metric` (or one of its histogram series) as a whole identifier.
fn names_metric(expr: &str, metric: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    expr.split(|c: char| !is_ident(c)).any(|token| {
        token == metric
            || ["_bucket", "_count", "_sum"]
                .iter()
                .any(|s| token.strip_suffix(s) == Some(metric))
    })
}

#[test]
fn the_dashboard_charts_every_key_metric() {
    let dashboard = dashboard();
    assert!(
        dashboard["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{DASHBOARD} has no title"
    );
    let expressions = expressions(&dashboard);
    for metric in DASHBOARD_METRICS {
        assert!(
            expressions.iter().any(|e| names_metric(e, metric)),
            "{DASHBOARD} charts no {metric}"
        );
    }
    for metric in [
        "projector_lag_events",
        "projector_lag_seconds",
        "projector_apply_seconds",
    ] {
        assert!(
            expressions
                .iter()
                .any(|e| names_metric(e, metric) && e.contains("sink")),
            "{DASHBOARD}: {metric} is not broken down by sink"
        );
    }
    assert!(
        expressions
            .iter()
            .any(|e| names_metric(e, "http_request_duration_seconds") && e.contains("path")),
        "{DASHBOARD}: request durations are not broken down by route (path)"
    );
}

#[test]
fn the_dashboards_metrics_are_emitted_by_the_code() {
    let sources = crate_sources();
    for metric in DASHBOARD_METRICS {
        let quoted = format!("\"{metric}\"");
        assert!(
            sources.iter().any(|(_, text)| text.contains(&quoted)),
            "the dashboard charts {metric}, but no crate emits it (renamed?)"
        );
    }
}

#[test]
fn the_dashboard_uses_provisioned_data_sources_and_is_provisioned_from_its_mount() {
    let datasources = yaml(DATASOURCES);
    let uids: BTreeSet<String> = at(&datasources, &["datasources"])
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|d| str_at(d, &["uid"]).map(str::to_owned))
        .collect();
    assert!(
        uids.contains("prometheus"),
        "{DATASOURCES} provisions no data source with uid prometheus"
    );
    let dashboard = dashboard();
    for panel in panels(&dashboard) {
        for datasource in std::iter::once(&panel["datasource"]).chain(
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| &t["datasource"]),
        ) {
            if let Some(uid) = datasource["uid"].as_str() {
                assert!(
                    uids.contains(uid),
                    "panel {:?} uses unprovisioned data source {uid}",
                    panel["title"]
                );
            }
        }
    }

    let providers = yaml(DASHBOARD_PROVIDERS);
    let provider_paths: Vec<String> = at(&providers, &["providers"])
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|p| str_at(p, &["options", "path"]).map(str::to_owned))
        .collect();
    let compose = yaml(COMPOSE);
    let mounts: Vec<String> = at(&compose, &["services", "grafana", "volumes"])
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(scalar)
        .collect();
    let dashboards_mount = mounts
        .iter()
        .find(|m| m.starts_with("./grafana/dashboards:"))
        .unwrap_or_else(|| panic!("grafana does not mount ./grafana/dashboards ({mounts:?})"));
    let target = dashboards_mount.split(':').nth(1).unwrap_or_default();
    assert!(
        provider_paths.iter().any(|p| p == target),
        "dashboards are mounted at {target}, provisioned from {provider_paths:?}"
    );
    assert!(
        mounts
            .iter()
            .any(|m| m.starts_with("./grafana/provisioning:/etc/grafana/provisioning")),
        "grafana does not mount its provisioning directory"
    );
}
