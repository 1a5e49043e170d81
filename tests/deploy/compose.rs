//! deploy/compose/docker-compose.yml: the stack in containers.

use crate::support::{
    addr_host, addr_port, at, environment, first_http_url, keys, path, scalar, settings_a_container_must_set, str_at,
    yaml, EVENTS_TOPIC, PROCESSES,
};
use serde_norway::Value;

pub const COMPOSE: &str = "deploy/compose/docker-compose.yml";

const BACKING_SERVICES: [&str; 8] = [
    "postgres",
    "kafka",
    "redis",
    "clickhouse",
    "otel-collector",
    "jaeger",
    "prometheus",
    "grafana",
];

fn services() -> Value {
    let compose = yaml(COMPOSE);
    let services = at(&compose, &["services"]).clone();
    assert!(services.is_mapping(), "{COMPOSE} has no services mapping");
    services
}

fn service<'a>(services: &'a Value, name: &str) -> &'a Value {
    services
        .get(name)
        .unwrap_or_else(|| panic!("{COMPOSE} defines no service {name}"))
}

/// `[host_ip:]host_port:container_port[/proto]` or the long syntax, as (host port, container port).
fn published_ports(service: &Value) -> Vec<(Option<u16>, u16)> {
    let Some(ports) = at(service, &["ports"]).as_sequence() else {
        return Vec::new();
    };
    ports
        .iter()
        .filter_map(|entry| match entry {
            Value::Mapping(_) => {
                let target = scalar(at(entry, &["target"]))?.parse().ok()?;
                let published = scalar(at(entry, &["published"])).and_then(|p| p.parse().ok());
                Some((published, target))
            }
            other => {
                let text = scalar(other)?;
                let text = text.split('/').next()?.to_owned();
                let parts: Vec<&str> = text.split(':').collect();
                let container = parts.last()?.parse().ok()?;
                let host = parts.len().checked_sub(2).and_then(|i| parts[i].parse().ok());
                Some((host, container))
            }
        })
        .collect()
}

/// The kafka-compatible broker service's name: `kafka` or `redpanda`.
fn broker(services: &Value) -> &'static str {
    ["kafka", "redpanda"]
        .into_iter()
        .find(|name| services.get(*name).is_some())
        .unwrap_or_else(|| panic!("{COMPOSE} defines neither kafka nor redpanda"))
}

#[test]
fn compose_defines_the_backing_services_observability_and_every_process() {
    let services = services();
    let broker = broker(&services);
    for name in BACKING_SERVICES
        .iter()
        .filter(|name| **name != "kafka")
        .chain([&broker])
    {
        service(&services, name);
    }
    for process in &PROCESSES {
        service(&services, process.name);
    }
}

#[test]
fn compose_pins_the_backing_service_major_versions() {
    let services = services();
    let image = |name: &str| {
        str_at(service(&services, name), &["image"])
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        image("postgres").starts_with("postgres:16"),
        "postgres image: {}",
        image("postgres")
    );
    assert!(image("redis").starts_with("redis:7"), "redis image: {}", image("redis"));
    assert!(
        image("clickhouse").contains("clickhouse-server:24"),
        "clickhouse image: {}",
        image("clickhouse")
    );
    for name in BACKING_SERVICES {
        if services.get(name).is_some() {
            let image = image(name);
            assert!(
                image.contains(':') && !image.ends_with(":latest"),
                "{name} image {image:?} is not pinned"
            );
        }
    }
}

#[test]
fn compose_processes_health_check_their_own_readyz_or_healthz() {
    let services = services();
    for process in &PROCESSES {
        let check = at(service(&services, process.name), &["healthcheck", "test"]);
        let text = match check {
            Value::Sequence(items) => items.iter().filter_map(scalar).collect::<Vec<_>>().join(" "),
            other => scalar(other).unwrap_or_default(),
        };
        let (host, port, path) = first_http_url(&text)
            .unwrap_or_else(|| panic!("{}: health check {text:?} requests no http:// URL", process.name));
        assert!(
            path == "/readyz" || path == "/healthz",
            "{}: health check requests {path}, not /readyz or /healthz",
            process.name
        );
        assert!(
            ["127.0.0.1", "localhost"].contains(&host.as_str()),
            "{}: health check host {host}",
            process.name
        );
        assert_eq!(port, process.port, "{}: health check port", process.name);
        let interval = str_at(service(&services, process.name), &["healthcheck", "interval"]);
        assert!(interval.is_some(), "{}: health check has no interval", process.name);
    }
}

#[test]
fn compose_processes_listen_on_their_default_port_on_every_interface_and_publish_it() {
    let services = services();
    for process in &PROCESSES {
        let service = service(&services, process.name);
        let env = environment(at(service, &["environment"]));
        let addr = env
            .get(process.addr_var)
            .unwrap_or_else(|| panic!("{}: {} is not set", process.name, process.addr_var));
        assert!(
            matches!(addr_host(addr), Some("0.0.0.0") | Some("[::]")),
            "{}: {}={addr} is not reachable from outside the container",
            process.name,
            process.addr_var
        );
        assert_eq!(
            addr_port(addr),
            Some(process.port),
            "{}: {}={addr}",
            process.name,
            process.addr_var
        );
        let ports = published_ports(service);
        assert!(
            ports.contains(&(Some(process.port), process.port)),
            "{}: container port {} is not published on host port {} (ports: {ports:?})",
            process.name,
            process.port,
            process.port
        );
    }
}

#[test]
fn compose_processes_get_every_setting_they_need() {
    let services = services();
    let required = settings_a_container_must_set();
    for process in &PROCESSES {
        let env = environment(at(service(&services, process.name), &["environment"]));
        for name in &required {
            let value = env.get(name).map(String::as_str).unwrap_or_default();
            assert!(!value.is_empty(), "{}: {name} is not set", process.name);
            assert!(
                !value.contains("127.0.0.1") && !value.contains("localhost"),
                "{}: {name}={value} points at the container itself",
                process.name
            );
        }
        assert_eq!(
            env.get("KAFKA_TOPIC").map(String::as_str),
            Some(EVENTS_TOPIC),
            "{}: KAFKA_TOPIC",
            process.name
        );
    }
}

#[test]
fn compose_settings_point_at_services_that_exist() {
    let services = services();
    let defined = keys(&services);
    for process in &PROCESSES {
        let env = environment(at(service(&services, process.name), &["environment"]));
        for name in [
            "DATABASE_URL",
            "REDIS_URL",
            "KAFKA_BROKERS",
            "CLICKHOUSE_URL",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ] {
            let value = env.get(name).cloned().unwrap_or_default();
            let authority = value.split("://").last().unwrap_or_default();
            let authority = authority.rsplit('@').next().unwrap_or_default();
            for broker in authority.split(',') {
                let host = broker.split([':', '/']).next().unwrap_or_default();
                assert!(
                    defined.iter().any(|s| s == host),
                    "{}: {name}={value}: no service {host}",
                    process.name
                );
            }
        }
    }
}

#[test]
fn compose_dependencies_exist_and_wait_for_a_condition() {
    let services = services();
    let defined = keys(&services);
    for name in &defined {
        let depends_on = at(service(&services, name), &["depends_on"]);
        for dependency in keys(depends_on) {
            assert!(
                defined.contains(&dependency),
                "{name} depends on undefined service {dependency}"
            );
            let condition = str_at(depends_on, &[&dependency, "condition"]).unwrap_or_default();
            assert!(
                ["service_started", "service_healthy", "service_completed_successfully"].contains(&condition),
                "{name} -> {dependency}: condition {condition:?}"
            );
            if condition == "service_healthy" {
                assert!(
                    !at(service(&services, &dependency), &["healthcheck"]).is_null(),
                    "{name} waits for {dependency} to be healthy, but it has no health check"
                );
            }
        }
    }
    for process in &PROCESSES {
        let depends_on = at(service(&services, process.name), &["depends_on"]);
        for needed in ["postgres", broker(&services), "redis", "clickhouse"] {
            // The broker is awaited directly or through the topic-creation job that waits for it.
            let awaited = keys(depends_on)
                .iter()
                .any(|d| d == needed || (needed == broker(&services) && d.ends_with("-init")));
            assert!(awaited, "{} does not wait for {needed}", process.name);
        }
    }
}

#[test]
fn compose_creates_the_events_topic_in_a_one_shot_job_the_processes_wait_for() {
    let services = services();
    let defined = keys(&services);
    let init = defined
        .iter()
        .find(|name| {
            let s = service(&services, name);
            let command = match at(s, &["command"]) {
                Value::Sequence(items) => items.iter().filter_map(scalar).collect::<Vec<_>>().join(" "),
                other => scalar(other).unwrap_or_default(),
            };
            command.contains(EVENTS_TOPIC) && (command.contains("create") || command.contains("topic"))
        })
        .unwrap_or_else(|| panic!("no service of {COMPOSE} creates the topic {EVENTS_TOPIC}"));
    let restart = str_at(service(&services, init), &["restart"]).unwrap_or("no");
    assert_eq!(restart, "no", "{init} must run once");
    for process in &PROCESSES {
        let condition = str_at(service(&services, process.name), &["depends_on", init, "condition"]);
        assert_eq!(
            condition,
            Some("service_completed_successfully"),
            "{} -> {init}",
            process.name
        );
    }
}

#[test]
fn compose_processes_run_the_repository_image_with_their_own_command() {
    let services = services();
    for process in &PROCESSES {
        let service = service(&services, process.name);
        let context = str_at(service, &["build", "context"])
            .unwrap_or_else(|| panic!("{} is not built from the repository", process.name));
        let dockerfile = str_at(service, &["build", "dockerfile"]).unwrap_or("Dockerfile");
        let dockerfile = path("deploy/compose").join(context).join(dockerfile);
        assert!(
            dockerfile.is_file(),
            "{}: {} does not exist",
            process.name,
            dockerfile.display()
        );
        let command = match at(service, &["command"]) {
            Value::Sequence(items) => items.iter().filter_map(scalar).collect::<Vec<_>>(),
            other => scalar(other)
                .map(|c| c.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
        };
        let binary = command.first().map(|c| c.rsplit('/').next().unwrap_or(c).to_owned());
        assert_eq!(
            binary.as_deref(),
            Some(process.name),
            "{}: command {command:?}",
            process.name
        );
    }
}

#[test]
fn compose_bind_mounts_name_files_that_exist() {
    let services = services();
    let mut mounts = 0;
    for name in keys(&services) {
        let Some(volumes) = at(service(&services, &name), &["volumes"]).as_sequence() else {
            continue;
        };
        for volume in volumes {
            let source = match volume {
                Value::Mapping(_) => str_at(volume, &["source"]).map(str::to_owned),
                other => scalar(other).and_then(|v| v.split(':').next().map(str::to_owned)),
            };
            let Some(source) = source.filter(|s| s.starts_with('.') || s.starts_with('/')) else {
                continue;
            };
            mounts += 1;
            let file = path("deploy/compose").join(&source);
            assert!(
                file.exists(),
                "{name} mounts {source}, which does not exist ({})",
                file.display()
            );
        }
    }
    assert!(
        mounts >= 3,
        "expected the collector, Prometheus and Grafana configuration to be mounted"
    );
}
