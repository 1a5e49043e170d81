//! Reading the repository's files, and what the deployment artefacts are checked against.

use serde::Deserialize;
use serde_norway::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A process of the stack: its binary name, the setting of its listen address and the port of
/// its development default (`127.0.0.1:<port>`, README.md and shared/API.md).
pub struct Process {
    pub name: &'static str,
    pub addr_var: &'static str,
    pub port: u16,
}

pub const PROCESSES: [Process; 6] = [
    Process {
        name: "command-api",
        addr_var: "COMMAND_API_ADDR",
        port: 8080,
    },
    Process {
        name: "query-api",
        addr_var: "QUERY_API_ADDR",
        port: 8081,
    },
    Process {
        name: "projector",
        addr_var: "PROJECTOR_ADDR",
        port: 8082,
    },
    Process {
        name: "runner",
        addr_var: "RUNNER_ADDR",
        port: 8083,
    },
    Process {
        name: "relay",
        addr_var: "RELAY_ADDR",
        port: 8084,
    },
    Process {
        name: "deliverer",
        addr_var: "DELIVERER_ADDR",
        port: 8085,
    },
];

/// The backing-service settings every process is given (shared/API.md, README.md).
pub const REQUIRED_SETTINGS: [&str; 8] = [
    "DATABASE_URL",
    "REDIS_URL",
    "KAFKA_BROKERS",
    "KAFKA_TOPIC",
    "CLICKHOUSE_URL",
    "CLICKHOUSE_DATABASE",
    "JWT_SECRET",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// The metrics the Grafana dashboard must chart.
pub const DASHBOARD_METRICS: [&str; 9] = [
    "http_request_duration_seconds",
    "command_append_seconds",
    "command_append_conflicts_total",
    "relay_lag_events",
    "relay_lag_seconds",
    "projector_lag_events",
    "projector_lag_seconds",
    "projector_apply_seconds",
    "postgres_oldest_transaction_age_seconds",
];

pub const EVENTS_TOPIC: &str = "promptcards.events";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one level below the repository root")
        .to_path_buf()
}

pub fn path(relative: &str) -> PathBuf {
    repo_root().join(relative)
}

pub fn read(relative: &str) -> String {
    let file = path(relative);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()))
}

/// One YAML document, with `<<` merge keys applied (compose uses them for shared settings).
pub fn yaml(relative: &str) -> Value {
    let text = read(relative);
    let mut value: Value =
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"));
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{relative}: bad merge key: {e}"));
    value
}

/// Every document of a multi-document YAML file (`---` separated), skipping empty ones.
pub fn yaml_documents(relative: &str) -> Vec<Value> {
    let text = read(relative);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            let mut value =
                Value::deserialize(document).unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"));
            value
                .apply_merge()
                .unwrap_or_else(|e| panic!("{relative}: bad merge key: {e}"));
            value
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// `value[key]` for a chain of mapping keys; `Value::Null` when any is missing.
pub fn at<'a>(value: &'a Value, keys: &[&str]) -> &'a Value {
    static NULL: Value = Value::Null;
    keys.iter().try_fold(value, |v, k| v.get(*k)).unwrap_or(&NULL)
}

pub fn str_at<'a>(value: &'a Value, keys: &[&str]) -> Option<&'a str> {
    at(value, keys).as_str()
}

/// A YAML scalar as text (numbers and booleans too, as compose and Kubernetes accept them).
pub fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A mapping's string keys, in order.
pub fn keys(value: &Value) -> Vec<String> {
    value
        .as_mapping()
        .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// An environment block: a mapping (`KEY: value`) or a list (`- KEY=value`).
pub fn environment(value: &Value) -> BTreeMap<String, String> {
    match value {
        Value::Mapping(mapping) => mapping
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), scalar(v).unwrap_or_default())))
            .collect(),
        Value::Sequence(items) => items
            .iter()
            .filter_map(|item| {
                let (k, v) = item.as_str()?.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The port of a `host:port` listen address (`0.0.0.0:8080`, `[::]:8080`).
pub fn addr_port(addr: &str) -> Option<u16> {
    addr.rsplit_once(':')?.1.parse().ok()
}

pub fn addr_host(addr: &str) -> Option<&str> {
    Some(addr.rsplit_once(':')?.0)
}

/// The `(host, port, path)` of the first `http://` URL in a text.
pub fn first_http_url(text: &str) -> Option<(String, u16, String)> {
    let rest = &text[text.find("http://")? + "http://".len()..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .unwrap_or(rest.len());
    let url = &rest[..end];
    let (authority, path) = match url.find('/') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, "/"),
    };
    let (host, port) = authority.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?, path.to_owned()))
}

/// Every file below a directory of the repository, recursively, as repository-relative paths.
pub fn files_below(relative: &str) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if let Ok(relative) = path.strip_prefix(root) {
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let root = repo_root();
    let mut out = Vec::new();
    walk(&root.join(relative), &root, &mut out);
    out.sort();
    out
}

/// The Rust sources of every crate's `src/`.
pub fn crate_sources() -> Vec<(String, String)> {
    files_below("crates")
        .into_iter()
        .filter(|file| file.ends_with(".rs") && file.contains("/src/"))
        .map(|file| {
            let text = read(&file);
            (file, text)
        })
        .collect()
}

/// Every `env_or("NAME", "default")` call with two string literals in the crates' sources:
/// the settings the code reads and their development defaults.
pub fn env_defaults_in_code() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for (_, text) in crate_sources() {
        let mut rest = text.as_str();
        while let Some(i) = rest.find("env_or(") {
            rest = &rest[i + "env_or(".len()..];
            let Some((name, after)) = string_literal(rest) else {
                continue;
            };
            let after = after.trim_start();
            let Some(after) = after.strip_prefix(',') else {
                continue;
            };
            let Some((default, _)) = string_literal(after) else {
                continue;
            };
            found.insert(name, default);
        }
    }
    found
}

/// A leading `"..."` literal (after whitespace) without escapes, and the text after it.
fn string_literal(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start().strip_prefix('"')?;
    let end = text.find('"')?;
    Some((text[..end].to_owned(), &text[end + 1..]))
}

/// The settings whose development default only works on a developer's machine (a loopback
/// address) or is insecure: a container or pod must set them. Listen addresses (`*_ADDR`) are
/// per process and checked separately.
pub fn settings_a_container_must_set() -> Vec<String> {
    let mut names: Vec<String> = REQUIRED_SETTINGS.iter().map(|s| (*s).to_owned()).collect();
    for (name, default) in env_defaults_in_code() {
        let local = default.contains("127.0.0.1") || default.contains("localhost");
        if local && !name.ends_with("_ADDR") && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}
