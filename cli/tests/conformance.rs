//! The conformance fixtures, run in process and through the `deltasync conformance`
//! command.

use std::path::{Path, PathBuf};
use std::process::Command;

use deltasync::conformance::{self, Fixture};
use deltasync::model::presence::Presence;
use serde_json::{Value, json};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn deltasync(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_deltasync"))
        .args(args)
        .output()
        .expect("run deltasync");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("deltasync-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read(fixtures_dir().join(name)).unwrap();
    serde_json::from_slice(&text).unwrap()
}

#[test]
fn every_fixture_passes_in_process() {
    let files = conformance::fixture_files(&fixtures_dir()).unwrap();
    assert!(files.len() >= 14, "the fixtures are all there");
    for file in files {
        let report = conformance::run_file_in_process(&file);
        assert_eq!(
            report.outcome,
            conformance::Outcome::Passed,
            "{}",
            report.file
        );
    }
}

#[test]
fn the_command_prints_a_line_per_fixture_and_the_summary() {
    let (code, stdout, stderr) = deltasync(&["conformance", fixtures_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let files = conformance::fixture_files(&fixtures_dir()).unwrap();
    assert_eq!(lines.len(), files.len() + 1);
    for (line, file) in lines.iter().zip(&files) {
        let name = file.file_name().unwrap().to_string_lossy();
        assert_eq!(*line, format!("pass {name}"));
    }
    assert_eq!(
        lines.last(),
        Some(&format!("{} passed, 0 failed", files.len()).as_str())
    );
}

#[test]
fn json_results_match_the_committed_expected_file() {
    let (code, stdout, _) = deltasync(&["conformance", "--json", fixtures_dir().to_str().unwrap()]);
    assert_eq!(code, 0);
    let actual: Value = serde_json::from_str(&stdout).unwrap();
    let expected: Value = serde_json::from_slice(
        &std::fs::read(fixtures_dir().join("expected/conformance.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(actual, expected);
}

#[test]
fn a_mismatch_fails_the_run_and_names_step_expected_and_actual() {
    let dir = temp_dir("mismatch");
    let mut broken = fixture("001-happy-path.json");
    broken["steps"][1]["msg"]["rev"] = json!(7);
    std::fs::write(dir.join("001-broken.json"), broken.to_string()).unwrap();
    std::fs::copy(
        fixtures_dir().join("003-optimistic-update.json"),
        dir.join("003-optimistic-update.json"),
    )
    .unwrap();
    let (code, stdout, _) = deltasync(&["conformance", dir.to_str().unwrap()]);
    assert_eq!(code, 1);
    let alice = r#"{"id":"user-1","lastActive":1000,"name":"Alice","status":"online"}"#;
    assert_eq!(
        stdout,
        format!(
            "FAIL 001-broken.json: step 2: expected {{\"payload\":{{\"participants\":{{\"user-1\":{alice}}},\"rev\":7}},\"type\":\"SYNC.SNAPSHOT\"}}, got {{\"payload\":{{\"participants\":{{\"user-1\":{alice}}},\"rev\":1}},\"type\":\"SYNC.SNAPSHOT\"}}\n\
             pass 003-optimistic-update.json\n\
             1 passed, 1 failed\n"
        )
    );
}

#[test]
fn a_step_or_assertion_the_runner_does_not_understand_is_a_failure() {
    for (change, message) in [
        (
            json!({"actor": "client", "action": "TELEPORT"}),
            "step 5: unknown step \"client TELEPORT\"",
        ),
        (
            json!({"actor": "server", "action": "SEND", "msg": {"type": "SYNC.DELTAS"}, "delay": 5}),
            "step 5: unknown key \"delay\" in server SEND",
        ),
    ] {
        let mut fixture = fixture("001-happy-path.json");
        fixture["steps"].as_array_mut().unwrap().push(change);
        let parsed = Fixture::parse(fixture.to_string().as_bytes());
        assert_eq!(parsed.unwrap_err().to_string(), message);
    }
    let mut fixture = fixture("001-happy-path.json");
    fixture["assertions"] = json!([{"client.happiness": 1}]);
    assert_eq!(
        Fixture::parse(fixture.to_string().as_bytes())
            .unwrap_err()
            .to_string(),
        "unknown assertion path \"client.happiness\""
    );
}

#[test]
fn a_message_no_step_expects_is_a_failure() {
    let mut fixture = fixture("001-happy-path.json");
    // Drop the last step: the server's SYNC.DELTAS is then unexpected.
    fixture["steps"].as_array_mut().unwrap().pop();
    fixture["assertions"] = json!([]);
    let parsed = Fixture::parse(fixture.to_string().as_bytes()).unwrap();
    let failure = conformance::run_in_process(&parsed, Presence::default()).unwrap_err();
    assert_eq!(failure.step, None);
    assert!(
        failure
            .message
            .starts_with("the server sent {\"payload\":{\"fromRev\":1,"),
        "{}",
        failure.message
    );
    assert!(
        failure
            .message
            .ends_with("to \"default\", which no step expected")
    );
}

#[test]
fn a_failed_assertion_names_path_expected_and_actual() {
    let mut fixture = fixture("001-happy-path.json");
    fixture["assertions"] = json!([{"server.rev": 2}, {"client.state.user-1.status": "online"}]);
    let parsed = Fixture::parse(fixture.to_string().as_bytes()).unwrap();
    let failure = conformance::run_in_process(&parsed, Presence::default()).unwrap_err();
    assert_eq!(
        failure.message,
        "assertion client.state.user-1.status: expected \"online\", got \"away\""
    );
}

#[test]
fn an_unreadable_directory_is_a_clear_error() {
    let (code, _, stderr) = deltasync(&["conformance", "/nonexistent/fixtures"]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("error: cannot read /nonexistent/fixtures: "),
        "{stderr}"
    );
    let empty = temp_dir("empty");
    let (code, _, stderr) = deltasync(&["conformance", empty.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        format!("error: no fixture files (*.json) in {}\n", empty.display())
    );
}
