//! deploy/k8s: the kustomize base for users' clusters.

use crate::support::{
    addr_host, addr_port, at, env_defaults_in_code, files_below, keys, read, scalar, settings_a_container_must_set,
    str_at, yaml, yaml_documents, PROCESSES,
};
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};

const DIR: &str = "deploy/k8s";
const KUSTOMIZATION: &str = "deploy/k8s/kustomization.yaml";
/// Partitions of the events topic that compose's topic job and the docs use.
const DEFAULT_PARTITIONS: u64 = 6;

fn is_manifest(file: &str) -> bool {
    (file.ends_with(".yaml") || file.ends_with(".yml")) && !file.ends_with("/kustomization.yaml")
}

fn resources() -> Vec<String> {
    let kustomization = yaml(KUSTOMIZATION);
    at(&kustomization, &["resources"])
        .as_sequence()
        .unwrap_or_else(|| panic!("{KUSTOMIZATION} lists no resources"))
        .iter()
        .filter_map(scalar)
        .collect()
}

/// Every object of every manifest kustomization.yaml lists.
fn objects() -> Vec<Value> {
    resources()
        .iter()
        .flat_map(|resource| yaml_documents(&format!("{DIR}/{resource}")))
        .collect()
}

fn of_kind(objects: &[Value], kind: &str) -> BTreeMap<String, Value> {
    objects
        .iter()
        .filter(|o| str_at(o, &["kind"]) == Some(kind))
        .map(|o| {
            (
                str_at(o, &["metadata", "name"]).unwrap_or_default().to_owned(),
                o.clone(),
            )
        })
        .collect()
}

fn container(deployment: &Value) -> &Value {
    let containers = at(deployment, &["spec", "template", "spec", "containers"]);
    containers
        .as_sequence()
        .and_then(|c| c.first())
        .expect("a Deployment without containers")
}

/// A probe's or Service's port: a number, or the name of one of the container's ports.
fn resolve_port(container: &Value, port: &Value) -> Option<u64> {
    if let Some(number) = port.as_u64() {
        return Some(number);
    }
    let name = port.as_str()?;
    at(container, &["ports"])
        .as_sequence()?
        .iter()
        .find(|p| str_at(p, &["name"]) == Some(name))
        .and_then(|p| at(p, &["containerPort"]).as_u64())
}

fn config_map(objects: &[Value]) -> BTreeMap<String, String> {
    let maps = of_kind(objects, "ConfigMap");
    maps.values()
        .flat_map(|m| {
            let data = at(m, &["data"]);
            keys(data).into_iter().map(move |k| {
                let v = scalar(at(data, &[&k])).unwrap_or_default();
                (k, v)
            })
        })
        .collect()
}

#[test]
fn the_kustomization_lists_every_manifest_and_nothing_else() {
    let listed: BTreeSet<String> = resources().into_iter().collect();
    let present: BTreeSet<String> = files_below(DIR)
        .into_iter()
        .filter(|f| is_manifest(f))
        .map(|f| f.strip_prefix(&format!("{DIR}/")).unwrap_or(&f).to_owned())
        .collect();
    let missing: Vec<_> = present.difference(&listed).collect();
    let absent: Vec<_> = listed.difference(&present).collect();
    assert!(missing.is_empty(), "{KUSTOMIZATION} does not list {missing:?}");
    assert!(
        absent.is_empty(),
        "{KUSTOMIZATION} lists files that do not exist: {absent:?}"
    );
    for object in objects() {
        assert!(
            str_at(&object, &["apiVersion"]).is_some() && str_at(&object, &["kind"]).is_some(),
            "a manifest object lacks apiVersion or kind: {object:?}"
        );
    }
}

#[test]
fn the_base_has_a_namespace_config_map_and_secret_template() {
    let kustomization = yaml(KUSTOMIZATION);
    let objects = objects();
    let namespace = str_at(&kustomization, &["namespace"]).expect("the kustomization sets no namespace");
    assert!(
        of_kind(&objects, "Namespace").contains_key(namespace),
        "no Namespace {namespace}"
    );
    assert!(!of_kind(&objects, "ConfigMap").is_empty(), "no ConfigMap");
    let secrets = of_kind(&objects, "Secret");
    let secret_keys: BTreeSet<String> = secrets
        .values()
        .flat_map(|s| [keys(at(s, &["stringData"])), keys(at(s, &["data"]))].concat())
        .collect();
    for name in ["JWT_SECRET", "DATABASE_URL"] {
        assert!(secret_keys.contains(name), "the Secret template lacks {name}");
        assert!(
            !config_map(&objects).contains_key(name),
            "{name} is a secret, but the ConfigMap carries it"
        );
    }
}

#[test]
fn every_process_has_a_deployment_running_its_binary() {
    let objects = objects();
    let deployments = of_kind(&objects, "Deployment");
    for process in &PROCESSES {
        let deployment = deployments
            .get(process.name)
            .unwrap_or_else(|| panic!("no Deployment {}", process.name));
        let container = container(deployment);
        let command: Vec<String> = at(container, &["command"])
            .as_sequence()
            .or_else(|| at(container, &["args"]).as_sequence())
            .into_iter()
            .flatten()
            .filter_map(scalar)
            .collect();
        let binary = command.first().map(|c| c.rsplit('/').next().unwrap_or(c).to_owned());
        assert_eq!(
            binary.as_deref(),
            Some(process.name),
            "{}: command {command:?}",
            process.name
        );
        let resources = at(container, &["resources"]);
        for key in [["requests", "cpu"], ["requests", "memory"], ["limits", "memory"]] {
            assert!(
                !at(resources, &key).is_null(),
                "{}: no resources.{}.{}",
                process.name,
                key[0],
                key[1]
            );
        }
    }
}

#[test]
fn deployments_probe_healthz_and_readyz_on_the_container_port_of_their_addr() {
    let objects = objects();
    let config = config_map(&objects);
    for process in &PROCESSES {
        let deployment = &of_kind(&objects, "Deployment")[process.name];
        let container = container(deployment);
        let ports: Vec<u64> = at(container, &["ports"])
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|p| at(p, &["containerPort"]).as_u64())
            .collect();
        assert_eq!(
            ports,
            vec![u64::from(process.port)],
            "{}: container ports",
            process.name
        );

        let addr = config
            .get(process.addr_var)
            .unwrap_or_else(|| panic!("the ConfigMap does not set {}", process.addr_var));
        assert_eq!(
            addr_port(addr),
            Some(process.port),
            "ConfigMap {}={addr}",
            process.addr_var
        );
        assert!(
            matches!(addr_host(addr), Some("0.0.0.0") | Some("[::]")),
            "ConfigMap {}={addr}",
            process.addr_var
        );

        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            let get = at(container, &[probe, "httpGet"]);
            assert_eq!(str_at(get, &["path"]), Some(path), "{}: {probe} path", process.name);
            let port = resolve_port(container, at(get, &["port"]));
            assert_eq!(port, Some(u64::from(process.port)), "{}: {probe} port", process.name);
        }
        // A startup probe, when there is one, must reach the same endpoints, or pods never start.
        let startup = at(container, &["startupProbe", "httpGet"]);
        if !startup.is_null() {
            let path = str_at(startup, &["path"]).unwrap_or_default();
            assert!(
                ["/healthz", "/readyz"].contains(&path),
                "{}: startupProbe path {path}",
                process.name
            );
            let port = resolve_port(container, at(startup, &["port"]));
            assert_eq!(
                port,
                Some(u64::from(process.port)),
                "{}: startupProbe port",
                process.name
            );
        }
    }
}

#[test]
fn deployments_get_every_setting_from_the_config_map_and_secret() {
    let objects = objects();
    let config_maps = of_kind(&objects, "ConfigMap");
    let secrets = of_kind(&objects, "Secret");
    let mut provided: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, object) in config_maps.iter().chain(secrets.iter()) {
        let names = [keys(at(object, &["data"])), keys(at(object, &["stringData"]))]
            .concat()
            .into_iter()
            .collect();
        provided.insert(name.clone(), names);
    }
    for process in &PROCESSES {
        let container = container(&of_kind(&objects, "Deployment")[process.name]).clone();
        let mut available: BTreeSet<String> = BTreeSet::new();
        for source in at(&container, &["envFrom"]).as_sequence().into_iter().flatten() {
            for kind in ["configMapRef", "secretRef"] {
                if let Some(name) = str_at(source, &[kind, "name"]) {
                    let names = provided
                        .get(name)
                        .unwrap_or_else(|| panic!("{}: envFrom {name} does not exist", process.name));
                    available.extend(names.iter().cloned());
                }
            }
        }
        for var in at(&container, &["env"]).as_sequence().into_iter().flatten() {
            if let Some(name) = str_at(var, &["name"]) {
                available.insert(name.to_owned());
            }
        }
        for name in settings_a_container_must_set()
            .iter()
            .chain([&process.addr_var.to_owned()])
        {
            assert!(available.contains(name), "{}: {name} is not set", process.name);
        }
    }
}

#[test]
fn services_select_their_deployments_and_target_the_container_port() {
    let objects = objects();
    let deployments = of_kind(&objects, "Deployment");
    let services = of_kind(&objects, "Service");
    for name in ["command-api", "query-api"] {
        assert!(services.contains_key(name), "no Service for the HTTP process {name}");
    }
    for (name, service) in services {
        let selector = at(&service, &["spec", "selector"]);
        assert!(!keys(selector).is_empty(), "Service {name} selects nothing");
        let deployment = deployments
            .values()
            .find(|d| {
                let labels = at(d, &["spec", "template", "metadata", "labels"]);
                keys(selector).iter().all(|k| at(labels, &[k]) == at(selector, &[k]))
            })
            .unwrap_or_else(|| panic!("Service {name} selects no Deployment's pods"));
        let container = container(deployment);
        let container_ports: Vec<u64> = at(container, &["ports"])
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|p| at(p, &["containerPort"]).as_u64())
            .collect();
        for port in at(&service, &["spec", "ports"]).as_sequence().into_iter().flatten() {
            let target = at(port, &["targetPort"]);
            let target = if target.is_null() { at(port, &["port"]) } else { target };
            let resolved = resolve_port(container, target);
            assert!(
                resolved.is_some_and(|p| container_ports.contains(&p)),
                "Service {name}: targetPort {target:?} is no container port of its pods"
            );
        }
        let selected = at(deployment, &["spec", "selector", "matchLabels"]);
        let labels = at(deployment, &["spec", "template", "metadata", "labels"]);
        for key in keys(selected) {
            assert_eq!(
                at(labels, &[&key]),
                at(selected, &[&key]),
                "Deployment {name}: selector {key} vs pod labels"
            );
        }
    }
}

#[test]
fn autoscalers_target_existing_deployments() {
    let objects = objects();
    let deployments = of_kind(&objects, "Deployment");
    let autoscalers = of_kind(&objects, "HorizontalPodAutoscaler");
    for name in ["command-api", "query-api"] {
        assert!(
            autoscalers
                .values()
                .any(|h| str_at(h, &["spec", "scaleTargetRef", "name"]) == Some(name)),
            "no HPA for {name}"
        );
    }
    for (name, hpa) in &autoscalers {
        let target = at(hpa, &["spec", "scaleTargetRef"]);
        assert_eq!(
            str_at(target, &["kind"]),
            Some("Deployment"),
            "HPA {name} scales a {:?}",
            at(target, &["kind"])
        );
        assert_eq!(
            str_at(target, &["apiVersion"]),
            Some("apps/v1"),
            "HPA {name}: scaleTargetRef.apiVersion"
        );
        let deployment = str_at(target, &["name"]).unwrap_or_default();
        assert!(
            deployments.contains_key(deployment),
            "HPA {name} targets missing Deployment {deployment}"
        );
        let (min, max) = (
            at(hpa, &["spec", "minReplicas"]).as_u64().unwrap_or(1),
            at(hpa, &["spec", "maxReplicas"]).as_u64(),
        );
        assert!(
            max.is_some_and(|max| max >= min),
            "HPA {name}: maxReplicas {max:?} < minReplicas {min}"
        );
        // CPU utilisation targets need CPU requests on the pods.
        let container = container(&deployments[deployment]);
        assert!(
            !at(container, &["resources", "requests", "cpu"]).is_null(),
            "HPA {name}: {deployment} requests no CPU"
        );
        assert_ne!(
            deployment, "relay",
            "the relay has one active publisher; autoscaling it only adds standbys"
        );
    }
}

#[test]
fn projector_autoscaling_stays_within_the_topic_partitions() {
    let objects = objects();
    for hpa in of_kind(&objects, "HorizontalPodAutoscaler").values() {
        if str_at(hpa, &["spec", "scaleTargetRef", "name"]) == Some("projector") {
            let max = at(hpa, &["spec", "maxReplicas"]).as_u64().unwrap_or(u64::MAX);
            assert!(
                max <= DEFAULT_PARTITIONS,
                "projector maxReplicas {max} > {DEFAULT_PARTITIONS} partitions: extra replicas idle"
            );
        }
    }
    // The same partition count as the topic compose creates (and deploy/local creates).
    let compose = yaml("deploy/compose/docker-compose.yml");
    let partitions: Vec<String> = keys(at(&compose, &["services"]))
        .iter()
        .flat_map(|name| {
            let command: Vec<String> = at(&compose, &["services", name, "command"])
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(scalar)
                .collect();
            command
                .windows(2)
                .filter(|pair| pair[0] == "--partitions" || pair[0] == "-p")
                .map(|pair| pair[1].clone())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        partitions,
        vec![DEFAULT_PARTITIONS.to_string()],
        "compose's topic job no longer creates {DEFAULT_PARTITIONS} partitions; update the projector HPA and deploy/k8s/README.md"
    );
}

#[test]
fn the_relay_runs_one_replica() {
    let objects = objects();
    let relay = &of_kind(&objects, "Deployment")["relay"];
    assert_eq!(at(relay, &["spec", "replicas"]).as_u64(), Some(1), "relay replicas");
}

#[test]
fn pods_run_as_non_root() {
    let objects = objects();
    for (name, deployment) in of_kind(&objects, "Deployment") {
        let pod = at(&deployment, &["spec", "template", "spec", "securityContext"]);
        let container = container(&deployment);
        let non_root = at(pod, &["runAsNonRoot"]).as_bool() == Some(true)
            || at(container, &["securityContext", "runAsNonRoot"]).as_bool() == Some(true);
        assert!(non_root, "Deployment {name} does not set runAsNonRoot");
    }
}

#[test]
fn the_readme_explains_consumer_groups_partitions_and_the_relay_lock() {
    let readme = read("deploy/k8s/README.md");
    let prefix = env_defaults_in_code()
        .get("PROJECTOR_GROUP_PREFIX")
        .cloned()
        .unwrap_or_else(|| "promptcards-projector".to_owned());
    assert!(
        readme.contains(&format!("`{prefix}.<sink>`")),
        "deploy/k8s/README.md does not name the consumer groups {prefix}.<sink>"
    );
    assert!(
        readme.contains(&format!("{DEFAULT_PARTITIONS} partitions")),
        "deploy/k8s/README.md does not state the default partition count {DEFAULT_PARTITIONS}"
    );
    for topic in ["advisory lock", "Migrations run at start", "Backing services are yours"] {
        assert!(
            readme.contains(topic),
            "deploy/k8s/README.md says nothing about: {topic}"
        );
    }
}
