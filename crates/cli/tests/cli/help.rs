//! Every command explains itself.

use std::process::Command;

#[test]
fn every_command_has_help() {
    for command in [
        &[][..],
        &["events"],
        &["stream"],
        &["stream", "show"],
        &["diff"],
        &["replay"],
        &["verify"],
        &["audit"],
        &["audit", "export"],
        &["regrade"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_promptcards"))
            .args(command)
            .arg("--help")
            .output()
            .expect("run promptcards");
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(
            output.status.success(),
            "promptcards {command:?} --help failed: {stdout}"
        );
        assert!(
            stdout.contains("Usage: promptcards"),
            "promptcards {command:?} --help: {stdout}"
        );
        assert!(
            stdout.contains("--database-url"),
            "connections are documented for {command:?}"
        );
    }
}

#[test]
fn bad_usage_exits_with_two_and_names_the_problem() {
    let output = Command::new(env!("CARGO_BIN_EXE_promptcards"))
        .args(["replay"])
        .output()
        .expect("run promptcards");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("<PROJECTION|--all>"), "{stderr}");
}
