//! The conformance fixtures over real WebSocket connections to a server on loopback.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use deltasync::clock::ManualClock;
use deltasync::config::Config;
use deltasync::conformance::{self, Outcome};
use deltasync::server::Server;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// Our server with the fixtures' frozen clock.
fn server() -> Server<deltasync::model::presence::Presence> {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.shards = 2;
    Server::presence(config)
        .clock(Arc::new(ManualClock::new(conformance::START_MS)))
        .start()
        .unwrap()
}

/// The fixtures that need control of the server, and why they cannot run over the wire.
const NOT_DRIVABLE: [(&str, &str); 5] = [
    (
        "002-revision-gap.json",
        "step 4 (server CLOCK) needs control of the server",
    ),
    (
        "003-optimistic-update.json",
        "step 1 (client STATE) needs control of the server",
    ),
    (
        "006-resume-within-ring.json",
        "step 4 (server CLOCK) needs control of the server",
    ),
    (
        "012-capacity-one.json",
        "needs a ring of 1 (config.ringCapacity)",
    ),
    (
        "013-slow-client.json",
        "needs a ring of 4 (config.ringCapacity)",
    ),
];

#[test]
fn every_drivable_fixture_passes_over_the_wire() {
    let server = server();
    let url = format!("ws://{}", server.local_addr());
    for file in conformance::fixture_files(&fixtures_dir()).unwrap() {
        let report = conformance::run_file_over_wire(&file, &url);
        let expected = NOT_DRIVABLE
            .iter()
            .find(|(name, _)| *name == report.file)
            .map_or(Outcome::Passed, |(_, reason)| {
                Outcome::NotRun((*reason).into())
            });
        assert_eq!(report.outcome, expected, "{}", report.file);
    }
    server.shutdown();
}

#[test]
fn the_command_runs_over_the_wire_and_lists_what_it_cannot_drive() {
    let server = server();
    let url = format!("ws://{}", server.local_addr());
    let output = Command::new(env!("CARGO_BIN_EXE_deltasync"))
        .args([
            "conformance",
            "--url",
            &url,
            fixtures_dir().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    for (file, reason) in NOT_DRIVABLE {
        assert!(
            stdout.contains(&format!("not run {file}: {reason}\n")),
            "{stdout}"
        );
    }
    let total = conformance::fixture_files(&fixtures_dir()).unwrap().len();
    assert!(stdout.ends_with(&format!(
        "{} passed, 0 failed, {} skipped\n",
        total - NOT_DRIVABLE.len(),
        NOT_DRIVABLE.len()
    )));
    server.shutdown();
}
