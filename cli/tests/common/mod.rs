//! Helpers for the tests of the `deltasync` binary: the library's test helpers
//! (`tests/common` at the repository root, shared by path so there is one copy), plus
//! running the binary itself.
#![allow(dead_code, unreachable_pub)]

#[path = "../../../tests/common/mod.rs"]
mod library;

#[allow(unused_imports)]
pub use library::*;

pub mod cluster;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// Runs `deltasync soak` with `args` (its duration never taken from the environment),
/// shows what it printed, and returns its exit code and its report (standard output).
pub fn soak(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_deltasync"))
        .arg("soak")
        .args(args)
        .env_remove("DELTASYNC_SOAK_SECS")
        .output()
        .expect("the binary runs");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{report}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    (output.status.code(), report)
}

/// The value of a soak report's line `NAME: VALUE`.
///
/// # Panics
///
/// If the report has no such line (the report is in the message).
pub fn report_line<'r>(report: &'r str, name: &str) -> &'r str {
    report
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

/// `deltasync serve` with `args`: its standard streams piped, warnings only in its log, and
/// no `DELTASYNC_*` variable of the environment running the tests.
pub fn serve(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deltasync"));
    command.arg("serve").args(args);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("DELTASYNC_") {
            command.env_remove(var);
        }
    }
    command
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs the `deltasync` binary with `args` and parses what it prints as one JSON object;
/// a clear panic (with stdout and stderr) if it is not JSON.
pub fn run_json(args: &[&str]) -> (std::process::Output, Value) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_deltasync"))
        .args(args)
        .output()
        .expect("run deltasync");
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, json)
}

/// Reads the startup line of a spawned `deltasync serve` (`deltasync listening on
/// ws://ADDR/ with storage ...`) from its piped standard output; returns the address and
/// the line. Panics naming the line when it holds no address.
pub fn listening(child: &mut Child) -> (SocketAddr, String) {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .expect("the startup line");
    let addr = line
        .strip_prefix("deltasync listening on ws://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (addr, line)
}
