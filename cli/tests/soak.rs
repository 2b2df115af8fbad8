//! The soak's short run through the real binary: clients killed mid-frame, stalled and
//! reconnecting against a `deltasync serve` child with a tiny ring, and nothing lost.
//! (The long run is the same command with `--secs` or `DELTASYNC_SOAK_SECS`; see
//! `docs/reliability.md`.)

use std::process::Command;

#[test]
fn a_short_soak_with_faults_loses_nothing() {
    let output = Command::new(env!("CARGO_BIN_EXE_deltasync"))
        .args(["soak", "--secs", "2", "--clients", "60", "--rooms", "3"])
        .args(["--ring-capacity", "8", "--fault-rate", "0.5", "--seed", "7"])
        .env_remove("DELTASYNC_SOAK_SECS")
        .output()
        .expect("the binary runs");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{report}");
    assert_eq!(report.lines().last(), Some("violations: 0"), "{report}");
    let answers = report
        .lines()
        .find(|line| line.starts_with("answers: "))
        .expect("an answers line");
    assert!(
        answers.ends_with(" rejected (each update exactly once)"),
        "{answers}"
    );
}
