//! The repository's Dockerfile (one image for every process) and .dockerignore.

use crate::support::{read, PROCESSES};
use std::collections::BTreeMap;

/// One instruction: its keyword (upper case) and its arguments, continuation lines joined.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

fn instructions() -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if trimmed.starts_with('#') {
            continue; // a comment inside a continued instruction
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.split_once(char::is_whitespace).unwrap_or((&current, ""));
                out.push(Instruction {
                    keyword: keyword.to_uppercase(),
                    args: args.trim().to_owned(),
                });
                current.clear();
            }
        }
    }
    out
}

/// The build stages: (name or index, base image with global ARGs substituted, instructions).
fn stages() -> Vec<(String, String, Vec<Instruction>)> {
    let all = instructions();
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<(String, String, Vec<Instruction>)> = Vec::new();
    for instruction in all {
        if instruction.keyword == "FROM" {
            let words: Vec<&str> = instruction
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let mut base = words.first().copied().unwrap_or_default().to_owned();
            for (name, value) in &args {
                base = base
                    .replace(&format!("${{{name}}}"), value)
                    .replace(&format!("${name}"), value);
            }
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => (*name).to_owned(),
                _ => stages.len().to_string(),
            };
            stages.push((name, base, Vec::new()));
        } else if let Some(stage) = stages.last_mut() {
            stage.2.push(instruction);
        } else if instruction.keyword == "ARG" {
            if let Some((name, value)) = instruction.args.split_once('=') {
                args.insert(name.trim().to_owned(), value.trim().trim_matches('"').to_owned());
            }
        }
    }
    stages
}

#[test]
fn the_dockerfile_builds_in_a_rust_stage_and_runs_in_a_slim_one() {
    let stages = stages();
    assert!(
        stages.len() >= 2,
        "the Dockerfile has {} FROM stage(s); expected a builder and a runtime",
        stages.len()
    );
    let (_, first, _) = &stages[0];
    assert!(
        first.starts_with("rust:") && first.contains("bookworm"),
        "the first stage builds on {first}"
    );
    let (_, runtime, _) = stages.last().unwrap();
    assert_eq!(runtime, "debian:bookworm-slim", "the runtime stage's base");
}

#[test]
fn the_dockerfile_builds_every_binary_with_the_locked_dependencies() {
    let stages = stages();
    let builds: Vec<&Instruction> = stages
        .iter()
        .flat_map(|(_, _, instructions)| instructions)
        .filter(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .collect();
    assert!(!builds.is_empty(), "no RUN cargo build in the Dockerfile");
    for build in builds {
        for flag in ["--release", "--locked", "--bins"] {
            assert!(build.args.contains(flag), "`{}` lacks {flag}", build.args);
        }
    }
}

#[test]
fn the_build_stage_installs_what_rdkafka_cmake_build_needs() {
    let stages = stages();
    let installs: String = stages[..stages.len() - 1]
        .iter()
        .flat_map(|(_, _, instructions)| instructions)
        .filter(|i| i.keyword == "RUN" && i.args.contains("apt-get install"))
        .map(|i| i.args.clone())
        .collect::<Vec<_>>()
        .join(" ");
    for package in ["cmake", "libcurl4-openssl-dev", "libssl-dev", "pkg-config", "g++"] {
        assert!(
            installs.split_whitespace().any(|w| w == package),
            "the build stages do not install {package}"
        );
    }
}

#[test]
fn the_runtime_stage_does_not_run_as_root() {
    let stages = stages();
    let (_, _, runtime) = stages.last().unwrap();
    let user = runtime
        .iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .expect("the runtime stage has no USER line, so it runs as root");
    let name = user.args.split(':').next().unwrap_or_default();
    assert!(
        !["root", "0", ""].contains(&name),
        "the runtime stage runs as {}",
        user.args
    );
}

#[test]
fn the_runtime_image_carries_every_process_binary_and_their_libraries() {
    let stages = stages();
    let (_, _, runtime) = stages.last().unwrap();
    let copies: Vec<&Instruction> = runtime
        .iter()
        .filter(|i| i.keyword == "COPY" && i.args.contains("--from=") && i.args.trim_end().ends_with("/usr/local/bin/"))
        .collect();
    assert!(
        !copies.is_empty(),
        "the runtime stage copies no binaries into /usr/local/bin/"
    );
    let installs: String = runtime
        .iter()
        .filter(|i| i.keyword == "RUN" && i.args.contains("apt-get install"))
        .map(|i| i.args.clone())
        .collect();
    for package in ["ca-certificates", "libssl3", "libcurl4", "curl"] {
        assert!(
            installs.split_whitespace().any(|w| w == package),
            "the runtime stage does not install {package}"
        );
    }
    // No ENTRYPOINT: compose and Kubernetes name the process as the command.
    assert!(
        !runtime.iter().any(|i| i.keyword == "ENTRYPOINT"),
        "an ENTRYPOINT would swallow the process name"
    );
    let env: String = runtime
        .iter()
        .filter(|i| i.keyword == "ENV")
        .map(|i| i.args.clone())
        .collect::<Vec<_>>()
        .join(" ");
    for process in &PROCESSES {
        let expected = format!("{}=0.0.0.0:{}", process.addr_var, process.port);
        assert!(env.contains(&expected), "the image does not default {expected}");
    }
}

#[test]
fn the_build_context_leaves_out_build_output_and_local_state() {
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(|l| l.trim().trim_start_matches('/').trim_end_matches('/').to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for entry in ["target", ".local", ".git"] {
        assert!(
            ignored.iter().any(|i| i == entry),
            ".dockerignore does not exclude {entry}/"
        );
    }
    // What the build needs must stay in the context.
    for needed in ["crates", "migrations", "Cargo.lock", "Cargo.toml", "tests"] {
        assert!(
            !ignored.iter().any(|i| i == needed),
            ".dockerignore excludes {needed}, which the build needs"
        );
    }
}
