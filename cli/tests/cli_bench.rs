//! `deltasync bench`, run as a user runs it: the real binary against its in-process
//! server (and the ceiling), briefly, with a small load; the JSON it prints is checked
//! for every figure and for exact delivery counts.

mod common;

use std::process::{Command, Output};

use serde_json::Value;

const CLIENTS: u64 = 50;

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deltasync"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap()
}

fn short_run(extra: &[&str]) -> (Output, Value) {
    let clients = CLIENTS.to_string();
    let mut args = vec![
        "--clients",
        &clients,
        "--rate",
        "200",
        "--warmup",
        "0.5",
        "--duration",
        "1.5",
        "--json",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    args.insert(0, "bench");
    common::run_json(&args)
}

/// Every figure is there, nothing was lost, and every acknowledged update reached every
/// client exactly once.
fn assert_sound(figures: &Value) {
    for key in [
        "clients_connected",
        "connect_s",
        "connect_server_cpu_s",
        "connect_generator_cpu_s",
        "ops_per_s",
        "frames_per_s",
        "bytes_per_s",
        "server_cpu_s",
        "generator_cpu_s",
        "snapshots",
        "revision_gaps",
        "errors",
        "violations",
    ] {
        assert!(!figures[key].is_null(), "{key} missing in {figures}");
    }
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(figures["latency_us"][p].as_u64().is_some(), "latency {p}");
    }
    assert_eq!(figures["clients_connected"], CLIENTS);
    assert_eq!(figures["violations"], 0, "{figures}");
    let updates = &figures["updates"];
    let acked = updates["acked"].as_u64().unwrap();
    assert!(acked > 200, "{updates}");
    assert_eq!(updates["lost"], 0);
    assert_eq!(figures["ops_delivered"].as_u64(), Some(acked * CLIENTS));
    assert_eq!(figures["ops_expected"].as_u64(), Some(acked * CLIENTS));
    assert!(figures["ops_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_short_run_against_the_in_process_server_checks_out() {
    let (output, json) = short_run(&[]);
    assert!(output.status.success(), "{json}");
    assert_eq!(json["scenario"]["clients"], CLIENTS);
    assert!(json["machine"]["cpus"].as_u64().unwrap() >= 1);
    assert_sound(&json["result"]);
    assert!(json["ceiling"].is_null());
    assert_eq!(json["violations"], 0);
}

#[test]
fn the_ceiling_runs_the_same_load_and_gives_the_ratio() {
    let (output, json) = short_run(&["--ceiling"]);
    assert!(output.status.success(), "{json}");
    assert_sound(&json["result"]);
    assert_sound(&json["ceiling"]);
    let ratio = json["vs_ceiling"]["ops_per_s"].as_f64().unwrap();
    assert!(ratio > 0.0, "{json}");
}

#[test]
fn bad_options_exit_2_with_one_clear_line() {
    let output = bench(&["--clients", "3", "--writers", "5"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: --writers 5 is more than --clients 3: writers are among the clients\n"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn a_baseline_runs_the_same_load_on_a_separate_server_and_gives_ratios() {
    let (output, json) = short_run(&[
        "--server-process",
        "separate",
        "--server-set",
        "server.flush_interval_us=5000",
        "--baseline-set",
        "server.flush_interval_us=0",
    ]);
    assert!(output.status.success(), "{json}");
    assert_sound(&json["result"]);
    assert_sound(&json["baseline"]);
    assert_eq!(json["result"]["server"], "deltasync (separate process)");
    assert_eq!(
        json["baseline"]["server"],
        "baseline: server.flush_interval_us=0"
    );
    for figures in [&json["result"], &json["baseline"]] {
        // The server process's own write system calls: at least one per frame it sent.
        let writes = figures["server_write_syscalls"].as_u64().unwrap();
        assert!(writes > 0, "{figures}");
        assert!(figures["server_writes_per_op"].as_f64().unwrap() > 0.0);
        assert!(figures["generator_cpu_ns_per_op"].as_f64().unwrap() > 0.0);
    }
    for ratio in ["writes_per_op", "cpu_per_op", "latency_p50", "latency_p99"] {
        assert!(
            json["vs_baseline"][ratio].as_f64().unwrap() > 0.0,
            "{ratio}"
        );
    }
}

mod faulty;

/// Runs a short load against a server that breaks the stream as `fault` says; returns
/// the run's violations by kind.
fn violations_against(fault: faulty::Fault) -> Value {
    let url = faulty::start(fault);
    let output = bench(&[
        "--url",
        &url,
        "--clients",
        "4",
        "--rate",
        "100",
        "--warmup",
        "0.2",
        "--duration",
        "0.5",
        "--drain-timeout",
        "1",
        "--json",
        "--quiet",
    ]);
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{json}");
    json["result"]["violations_by_kind"].clone()
}

// regression: the scanner's fast path for operations in the server's own layout must
// still see every revision (the checks run on what it reads).
#[test]
fn a_delivery_seen_twice_is_a_violation() {
    let by_kind = violations_against(faulty::Fault::Duplicate(3));
    // Every client sees the revision twice; the writer also sees its update acknowledged
    // twice.
    assert_eq!(by_kind["not_contiguous"], 4, "{by_kind}");
    assert_eq!(by_kind["duplicate_ack"], 1, "{by_kind}");
}

#[test]
fn a_skipped_revision_is_a_violation() {
    let by_kind = violations_against(faulty::Fault::Skip(3));
    assert_eq!(
        by_kind,
        serde_json::json!({"not_contiguous": 4}),
        "{by_kind}"
    );
}
