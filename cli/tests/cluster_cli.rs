//! `deltasync bench` and `deltasync soak` against several nodes, run as a user runs
//! them: `--cluster-nodes` (the binary starts a `redis-server` and the nodes itself),
//! `--url` repeated (nodes started here), and `soak --cluster` with node kills and an
//! engine restart. Short runs; the reports are checked for their whole structure: a row
//! per node, counts that add up, no violation.
//!
//! Needs `redis-server` (`apt-get install -y redis-server`).
// Child processes: real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::Command;

use common::cluster::{Engine, Node};
use serde_json::Value;

/// A short bench run's arguments, then `extra`.
fn bench_json(extra: &[&str]) -> (std::process::Output, Value) {
    let mut args = vec![
        "bench",
        "--clients",
        "12",
        "--rate",
        "100",
        "--warmup",
        "0.5",
        "--duration",
        "2",
        "--json",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    common::run_json(&args)
}

fn u(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

/// Every node has a row with its share of the clients and writers, and the rows add up
/// to the run's totals.
fn assert_rows_add_up(result: &Value, nodes: u64, clients: u64, writers: &[u64]) {
    let rows = result["cluster"]["nodes"].as_array().expect("node rows");
    assert_eq!(rows.len() as u64, nodes, "{result}");
    let per_node = |key: &str| rows.iter().map(|r| u(&r[key])).collect::<Vec<_>>();
    assert_eq!(per_node("node"), (0..nodes).collect::<Vec<_>>());
    assert_eq!(per_node("clients").iter().sum::<u64>(), clients);
    assert_eq!(per_node("writers"), writers);
    assert_eq!(
        per_node("ops_delivered").iter().sum::<u64>(),
        u(&result["ops_delivered"]),
        "{result}"
    );
    assert_eq!(result["ops_delivered"], result["ops_expected"], "{result}");
    for row in rows {
        assert!(u(&row["latency_us"]["count"]) > 0, "{row}");
        assert!(row["cpu_s"].as_f64().is_some(), "{row}");
        assert!(row["url"].as_str().unwrap().starts_with("ws://127.0.0.1:"));
    }
    assert_eq!(result["violations"], 0, "{result}");
}

#[test]
fn bench_over_three_started_nodes_reports_each_node_and_the_disk_baseline() {
    let (output, report) = bench_json(&["--cluster-nodes", "3", "--disk-baseline"]);
    assert!(output.status.success(), "{report}");
    let result = &report["result"];
    assert_eq!(
        result["server"],
        "3 nodes + engine (redis, appendfsync always)"
    );
    // 12 clients over 3 nodes: 4 each; the one writer (client 0) on node 0.
    assert_rows_add_up(result, 3, 12, &[1, 0, 0]);
    let cluster = &result["cluster"];
    assert_eq!(cluster["engine_fsync"], "always");
    assert!(cluster["engine_cpu_s"].as_f64().is_some(), "{cluster}");
    assert_eq!(cluster["commits"], result["updates"]["acked"]);
    assert!(cluster["cpu_us_per_commit"].as_f64().unwrap() > 0.0);
    // Every commit is an append: the updates and the 12 joins at least.
    let appends = u(&cluster["appends"]);
    assert!(
        appends >= u(&result["updates_all"]["acked"]) + 12,
        "{cluster}"
    );
    assert!(cluster["conflicts"].as_u64().is_some(), "{cluster}");
    let baseline = &report["baseline"];
    assert_eq!(baseline["server"], "single node, disk backend");
    assert_eq!(baseline["violations"], 0, "{baseline}");
    assert_eq!(baseline["ops_delivered"], baseline["ops_expected"]);
    assert!(baseline["cluster"].is_null());
    assert!(report["vs_baseline"]["cpu_per_commit"].as_f64().is_some());
    assert_eq!(report["violations"], 0);
}

#[test]
fn bench_with_writers_on_every_node_counts_the_commit_retries() {
    let (output, report) = bench_json(&[
        "--cluster-nodes",
        "2",
        "--writers",
        "5",
        "--engine-fsync",
        "everysec",
    ]);
    assert!(output.status.success(), "{report}");
    let result = &report["result"];
    // Writers 0..5 dealt like every client: 0, 2, 4 on node 0; 1, 3 on node 1.
    assert_rows_add_up(result, 2, 12, &[3, 2]);
    let cluster = &result["cluster"];
    assert_eq!(cluster["engine_fsync"], "everysec");
    let (appends, conflicts) = (u(&cluster["appends"]), u(&cluster["conflicts"]));
    let retries = cluster["retries_per_commit"].as_f64().unwrap();
    // conflicts / appends, read back through JSON: serde_json's parser may land one ULP
    // off the printed value, so the ratio is checked by the counts it comes from.
    assert_eq!(
        (retries * appends as f64).round() as u64,
        conflicts,
        "{cluster}"
    );
}

#[test]
fn bench_over_repeated_urls_deals_the_clients_over_them() {
    let engine = Engine::start();
    let nodes = [Node::start(&engine, &[]), Node::start(&engine, &[])];
    let urls: Vec<String> = nodes.iter().map(|n| format!("ws://{}/", n.addr)).collect();
    let pids: Vec<String> = nodes.iter().map(|n| n.child.id().to_string()).collect();
    let (output, report) = bench_json(&[
        "--url",
        &urls[0],
        "--url",
        &urls[1],
        "--server-pid",
        &pids[0],
        "--server-pid",
        &pids[1],
    ]);
    assert!(output.status.success(), "{report}");
    let result = &report["result"];
    assert_eq!(result["server"], "2 nodes");
    assert_rows_add_up(result, 2, 12, &[1, 0]);
    let rows = result["cluster"]["nodes"].as_array().unwrap();
    assert_eq!(rows[0]["url"], urls[0].as_str());
    assert_eq!(rows[1]["url"], urls[1].as_str());
    // Started elsewhere: no engine of the bench's.
    assert!(result["cluster"]["engine_fsync"].is_null());
    assert!(result["cluster"]["engine_cpu_s"].is_null());
}

#[test]
fn several_nodes_options_that_do_not_fit_are_one_clear_message() {
    let cases: [(&[&str], &str); 3] = [
        (
            &["--cluster-nodes", "0"],
            "error: --cluster-nodes 0 must be between 1 and 16 and at most --clients\n",
        ),
        (
            &[
                "--url",
                "ws://127.0.0.1:1/",
                "--url",
                "ws://127.0.0.1:2/",
                "--server-pid",
                "1",
            ],
            "error: --server-pid: give one per --url (2 URLs, 1 process ids), or none\n",
        ),
        (
            &["--url", "ws://127.0.0.1:1/", "--url", "wss://127.0.0.1:2/"],
            "error: several --url: only ws:// nodes are supported\n",
        ),
    ];
    for (args, message) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_deltasync"))
            .arg("bench")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&output.stderr), message, "{args:?}");
    }
}

#[test]
fn a_missing_engine_binary_says_how_to_install_it() {
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_deltasync"))
        .args(["bench", "--cluster-nodes", "2", "--clients", "4", "--quiet"])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: redis-server is not installed (the cluster's engine): apt-get install -y redis-server\n"
    );
}

/// Ten seconds of `soak --cluster`: a node killed every two seconds at most (down for
/// 300 ms), the engine down for 1.5 s once, two rooms, a fixed seed.
const SHORT_CLUSTER_SOAK: [&str; 13] = [
    "--cluster",
    "--secs",
    "10",
    "--kill-interval-ms",
    "2000",
    "--node-down-ms",
    "300",
    "--engine-down-ms",
    "1500",
    "--rooms",
    "2",
    "--seed",
    "5",
];

#[test]
fn a_short_cluster_soak_with_node_kills_and_an_engine_restart_loses_nothing() {
    let (code, report) = common::soak(&SHORT_CLUSTER_SOAK);
    assert_eq!(code, Some(0), "{report}");
    let value = |name: &str| common::report_line(&report, name);
    for counter in [
        "lost",
        "duplicated",
        "non-contiguous",
        "inconsistent",
        "unanswered",
        "nodes whose history differs from node 0's",
    ] {
        assert_eq!(value(counter), "0", "{counter}: {report}");
    }
    assert_eq!(
        value("engine kills and restarts"),
        "1 (1500 ms down)",
        "{report}"
    );
    let count = |name: &str| value(name).parse::<u64>().unwrap();
    assert!(count("node kills (SIGKILL) and restarts") >= 1, "{report}");
    assert!(count("acknowledged updates") > 0, "{report}");
    // Every node has clients: a killed node's come back elsewhere and resume.
    assert!(
        count("resumes with deltas") + count("resumes with a gap or snapshot") >= 1,
        "{report}"
    );
    assert!(
        report.starts_with("soak --cluster: 3 nodes on a redis-server engine (appendfsync always)"),
        "{report}"
    );
    assert_eq!(report.lines().last(), Some("result: ok"));
}

#[test]
fn the_cluster_soak_counts_what_an_engine_that_forgets_loses() {
    // The same run with an engine that keeps nothing across its restart: the checker
    // must see the losses (a checker that cannot fail proves nothing).
    let (code, report) =
        common::soak(&[&SHORT_CLUSTER_SOAK[..], &["--engine-fsync", "off"]].concat());
    assert_eq!(code, Some(1), "{report}");
    let lost: u64 = common::report_line(&report, "lost").parse().unwrap();
    assert!(lost > 0, "{report}");
    assert!(
        report.contains("acknowledged at ") && report.contains(", not in the history"),
        "{report}"
    );
    assert_eq!(report.lines().last(), Some("result: VIOLATIONS"));
}
