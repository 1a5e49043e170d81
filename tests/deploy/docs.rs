//! The process table the artefacts are checked against agrees with the documentation and the code.

use crate::support::{addr_port, env_defaults_in_code, path, read, PROCESSES};

/// `| name | `VAR`, 127.0.0.1:PORT | ...` rows of a Markdown table, as (name, var, port).
fn process_rows(markdown: &str) -> Vec<(String, String, u16)> {
    markdown
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
            let [name, addr, ..] = cells.as_slice() else {
                return None;
            };
            let var = addr.split('`').nth(1)?;
            let port = addr_port(addr.rsplit(' ').next()?)?;
            var.ends_with("_ADDR")
                .then(|| ((*name).to_owned(), var.to_owned(), port))
        })
        .collect()
}

fn assert_rows_match(source: &str, rows: &[(String, String, u16)]) {
    assert!(!rows.is_empty(), "{source}: found no process table rows");
    for (name, var, port) in rows {
        let process = PROCESSES
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{source} documents a process {name} the deployment artefacts do not know"));
        assert_eq!(
            (process.addr_var, process.port),
            (var.as_str(), *port),
            "{source}: {name} is documented with {var} port {port}"
        );
    }
}

#[test]
fn the_readme_documents_every_process_at_the_same_address() {
    let rows = process_rows(&read("README.md"));
    assert_rows_match("README.md", &rows);
    for process in &PROCESSES {
        assert!(
            rows.iter().any(|(name, _, _)| name == process.name),
            "README.md's process table lacks {}",
            process.name
        );
    }
}

#[test]
fn the_shared_api_description_agrees_when_present() {
    // shared/ sits beside the repository (in CI and on developers' machines).
    let api = path("../shared/API.md");
    let Ok(text) = std::fs::read_to_string(&api) else {
        eprintln!("{} not found; nothing to compare", api.display());
        return;
    };
    // API.md names processes ahead of the issues that build them (the webhook deliverer, say):
    // those the repository has must agree with it, the others are only reported.
    let (built, ahead): (Vec<_>, Vec<_>) = process_rows(&text)
        .into_iter()
        .partition(|(name, _, _)| PROCESSES.iter().any(|p| p.name == name));
    for (name, _, _) in &ahead {
        eprintln!("shared/API.md documents {name}, which this repository does not build yet");
    }
    assert_rows_match("shared/API.md", &built);
}

#[test]
fn the_code_defaults_listen_addresses_to_the_same_ports() {
    let defaults = env_defaults_in_code();
    let mut seen = 0;
    for process in &PROCESSES {
        if let Some(default) = defaults.get(process.addr_var) {
            seen += 1;
            assert_eq!(
                addr_port(default),
                Some(process.port),
                "the code defaults {} to {default}, the deployment artefacts expect port {}",
                process.addr_var,
                process.port
            );
        }
    }
    assert!(seen >= 1, "found no env_or(\"*_ADDR\", ...) default in crates/*/src");
}
