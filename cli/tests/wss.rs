//! `wss://` from the binary: `deltasync serve --tls-cert --tls-key`, a SIGHUP that reloads
//! the certificate without dropping anyone, certificate files that cannot be used refused
//! at start with the file named; `deltasync bench` against TLS servers, every delivery
//! checked.
// The reload is waited for on real time.
#![allow(clippy::disallowed_methods)]
mod common;

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::Instant;

use common::tls::Certificates;
use common::{TestServer, WAIT, run_json, serve};
use deltasync::client::{Connector, ConnectorOptions};
use deltasync::model::presence::{Patch, Presence, PresenceInput, Status};

fn signal(child: &std::process::Child, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[test]
fn the_binary_serves_wss_and_reloads_its_certificate_on_sighup() {
    let mut certificates = Certificates::new();
    let (cert, key) = (certificates.cert.clone(), certificates.key.clone());
    let mut child = serve(&[
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "1",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .spawn()
    .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let port = line
        .strip_prefix("deltasync listening on wss://127.0.0.1:")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let url = format!("wss://localhost:{port}/rooms/tls");
    let old_ca = certificates.dir().join("old-ca.pem");
    std::fs::copy(&certificates.ca, &old_ca).unwrap();
    let trusting = |ca: &std::path::Path| ConnectorOptions::default().with_ca_file(ca);
    let mut alice =
        Connector::<Presence>::connect_with(&url, "alice", "Alice", trusting(&old_ca)).unwrap();

    certificates.renew();
    signal(&child, "-HUP");
    // New connections get the new certificate once the signal is handled.
    let deadline = Instant::now() + WAIT;
    let mut bob = loop {
        match Connector::<Presence>::connect_with(&url, "bob", "Bob", trusting(&certificates.ca)) {
            Ok(bob) => break bob,
            Err(e) => assert!(Instant::now() < deadline, "not reloaded: {e}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // Alice, connected before, was not dropped.
    let away = PresenceInput {
        patch: Patch {
            status: Some(Status::Away),
            ..Patch::default()
        },
    };
    let id = alice.update(away).unwrap();
    alice
        .poll_until(WAIT, |replica| replica.was_acked(&id))
        .unwrap();
    let head = alice.replica().server_rev();
    bob.poll_until(WAIT, |replica| replica.server_rev() == head)
        .unwrap();

    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// `deltasync serve` with these TLS flags: its exit code and standard error.
fn refused(cert: &std::path::Path, key: &std::path::Path) -> (Option<i32>, String) {
    let output = serve(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_binary_refuses_missing_unreadable_or_mismatched_tls_files() {
    let certificates = Certificates::new();
    let dir = certificates.dir().display();
    let missing = certificates.dir().join("missing.pem");
    assert_eq!(
        refused(&missing, &certificates.key),
        (
            Some(1),
            format!(
                "error: cannot serve on 127.0.0.1:0: cannot read the TLS certificate file \
                 {dir}/missing.pem: No such file or directory (os error 2)\n"
            )
        )
    );
    // A directory cannot be read as a file.
    assert_eq!(
        refused(&certificates.cert, certificates.dir()),
        (
            Some(1),
            format!(
                "error: cannot serve on 127.0.0.1:0: cannot read the TLS private key file \
                 {dir}: Is a directory (os error 21)\n"
            )
        )
    );
    assert_eq!(
        refused(&certificates.cert, &certificates.other_key),
        (
            Some(1),
            format!(
                "error: cannot serve on 127.0.0.1:0: the TLS private key {dir}/other-key.pem \
                 does not match the certificate {dir}/cert.pem\n"
            )
        )
    );
}

/// A short bench run's figures hold every delivery, exactly.
fn assert_delivered(json: &serde_json::Value, clients: u64) {
    let figures = &json["result"];
    assert_eq!(figures["clients_connected"], clients, "{json}");
    assert_eq!(json["violations"], 0, "{json}");
    let acked = figures["updates"]["acked"].as_u64().unwrap();
    assert!(acked > 50, "{json}");
    assert_eq!(figures["updates"]["lost"], 0);
    assert_eq!(figures["ops_delivered"].as_u64(), Some(acked * clients));
}

const BENCH: [&str; 11] = [
    "bench",
    "--clients",
    "20",
    "--rate",
    "100",
    "--warmup",
    "0.3",
    "--duration",
    "1",
    "--json",
    "--quiet",
];

#[test]
fn bench_loads_its_in_process_server_over_tls() {
    let certificates = Certificates::new();
    let cert = format!("server.tls_cert={}", certificates.cert.display());
    let key = format!("server.tls_key={}", certificates.key.display());
    let mut args = BENCH.to_vec();
    let ca = certificates.ca.to_str().unwrap();
    args.extend(["--server-set", &cert, "--server-set", &key, "--ca", ca]);
    let (output, json) = run_json(&args);
    assert!(output.status.success(), "{json}");
    assert_delivered(&json, 20);
}

#[test]
fn bench_loads_a_wss_url_trusting_the_given_ca() {
    let certificates = Certificates::new();
    let server = TestServer::with(|config| {
        config.server.tls_cert = Some(certificates.cert.clone());
        config.server.tls_key = Some(certificates.key.clone());
    });
    let url = format!("wss://localhost:{}/rooms/bench", server.addr().port());
    let mut args = BENCH.to_vec();
    args.extend(["--url", &url, "--ca", certificates.ca.to_str().unwrap()]);
    let (output, json) = run_json(&args);
    assert!(output.status.success(), "{json}");
    assert_delivered(&json, 20);
    // Without the CA, the system's roots do not trust the test certificate: no client
    // gets in, and the bench says so.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_deltasync"))
        .args(&BENCH[..9])
        .args(["--url", &url, "--connect-timeout", "2", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
}
