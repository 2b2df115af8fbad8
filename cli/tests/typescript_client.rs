//! The TypeScript client (`clients/typescript/`): its whole test suite, run against the
//! `deltasync` binary this build produced. The suite has Node unit tests (every
//! conformance fixture, property tests of ack and rebase) and end-to-end tests in headless
//! Chromium; see `clients/typescript/README.md`.
//!
//! It needs Node 20+ with npm and the Debian package `chromium`. When one is missing the
//! test fails and says how to install it: it never skips silently.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The package directory.
fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/typescript")
}

/// Fails with `how` unless `program --version` runs.
fn require(program: &str, how: &str) {
    let found = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{program}` is needed by the TypeScript client's tests: {how}"
    );
}

/// Runs `npm args` in the package with the server binary of this build; fails on a
/// non-zero exit.
fn npm(args: &[&str]) {
    let status = Command::new("npm")
        .args(args)
        .current_dir(package_dir())
        .env("DELTASYNC_BIN", env!("CARGO_BIN_EXE_deltasync"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run npm {args:?}: {e}"));
    assert!(
        status.success(),
        "npm {args:?} in clients/typescript failed ({status}); its output is above"
    );
}

#[test]
fn the_typescript_client_passes_its_unit_and_browser_tests() {
    let node = "install Node.js 20 or later with npm (Debian: apt-get install -y nodejs npm)";
    require("node", node);
    require("npm", node);
    let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium} for the browser tests: apt-get install -y chromium \
         (or set CHROMIUM_BIN); nothing downloads a browser"
    );
    if !package_dir().join("node_modules").exists() {
        npm(&["ci", "--no-audit", "--no-fund"]);
    }
    npm(&["test"]);
}
