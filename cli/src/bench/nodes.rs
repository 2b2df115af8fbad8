//! The figures of a load dealt over several nodes (several `--url`, or `--cluster-nodes`):
//! one row per node (its clients, what they received and how late), the CPU time of
//! every node and of the engine, the commit rate and its cost, and how often a commit
//! had to be decided again because another node took its revision first.
//!
//! Client `c` is on node `c mod N`, so writer `w` is on node
//! `w mod N`: with one writer the writer's node is node 0, and the other rows are the
//! nodes that only see the writer's commits through the engine. The rows add up: their
//! clients are every client, their delivered operations every delivered operation.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::driver::RunResult;
use super::metrics::Percentiles;
use super::report::{count, ms};
use super::scenario::Load;
use crate::cluster_harness::node_counter;

/// The counter of appends a node's cluster backend made (`/metrics`).
const APPENDS: &str = "deltasync_cluster_appends_total";
/// The counter of appends another node won: each one a catch-up and a new decision.
const CONFLICTS: &str = "deltasync_cluster_conflicts_total";

/// What the run knows of the nodes it loaded.
#[derive(Debug, Clone)]
pub(crate) struct NodesSpec {
    /// Each node's URL, in the order clients are dealt.
    pub(crate) urls: Vec<String>,
    /// Each node's address, for its `/metrics`.
    pub(crate) addrs: Vec<SocketAddr>,
    /// How many of the watched processes are the nodes (in order; the engine comes
    /// after them when it is watched too).
    pub(crate) node_pids: usize,
    /// The engine's `appendfsync`, when this run started the engine.
    pub(crate) engine_fsync: Option<&'static str>,
}

/// The per-node part of a report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClusterView {
    /// The engine's `appendfsync`, when the bench started it.
    pub(crate) engine_fsync: Option<&'static str>,
    pub(crate) nodes: Vec<NodeRow>,
    /// The engine's CPU time in the window, when the bench started it.
    pub(crate) engine_cpu_s: Option<f64>,
    /// Updates scheduled in the window and acknowledged: the commits measured.
    pub(crate) commits: u64,
    pub(crate) commits_per_s: f64,
    /// CPU time of every node and of the engine per measured commit, µs.
    pub(crate) cpu_us_per_commit: Option<f64>,
    /// Appends the engine accepted from all nodes over the whole run (warmup and drain
    /// included), from their `/metrics`.
    pub(crate) appends: Option<u64>,
    /// Appends refused because another node had taken the revision (each one a commit
    /// decided again), over the whole run.
    pub(crate) conflicts: Option<u64>,
    /// `conflicts / appends`: how often a commit had to retry.
    pub(crate) retries_per_commit: Option<f64>,
}

/// One node's row.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NodeRow {
    pub(crate) node: usize,
    pub(crate) url: String,
    pub(crate) clients: usize,
    pub(crate) writers: usize,
    /// Operations of measured updates received by this node's clients.
    pub(crate) ops_delivered: u64,
    /// Operations this node's clients received per second in the window.
    pub(crate) ops_per_s: f64,
    /// Commit-to-receive latency at this node's clients, µs.
    pub(crate) latency_us: Percentiles,
    /// The node's CPU time in the window, when its process id is known.
    pub(crate) cpu_s: Option<f64>,
}

/// The appends and conflicts of every node, summed; `None` when a node's page cannot be
/// read or has no such counter (not a cluster node, or an older one).
pub(crate) fn read_counters(addrs: &[SocketAddr]) -> Option<(u64, u64)> {
    addrs.iter().try_fold((0, 0), |(appends, conflicts), addr| {
        let a = node_counter(*addr, APPENDS).ok()?;
        let c = node_counter(*addr, CONFLICTS).ok()?;
        Some((appends + a, conflicts + c))
    })
}

impl ClusterView {
    /// The view of `run` over the nodes of `spec`, with the nodes' counters (`appends`,
    /// `conflicts`) when they could be read.
    pub(crate) fn of(
        load: &Load,
        run: &RunResult,
        spec: &NodesSpec,
        counters: Option<(u64, u64)>,
    ) -> Self {
        let secs = |d: &Duration| d.as_secs_f64();
        let nodes = (0..spec.urls.len())
            .map(|node| {
                let m = run.metrics.by_node.get(node).cloned().unwrap_or_default();
                NodeRow {
                    node,
                    url: spec.urls[node].clone(),
                    clients: load.clients_on(node),
                    writers: load.writers_on(node),
                    ops_delivered: m.delivered,
                    ops_per_s: per_second(m.window_ops, run.window),
                    latency_us: Percentiles::of(&m.latency),
                    cpu_s: (node < spec.node_pids)
                        .then(|| run.watched_cpu.get(node).map(secs))
                        .flatten(),
                }
            })
            .collect();
        let engine_cpu = spec
            .engine_fsync
            .and_then(|_| run.watched_cpu.get(spec.node_pids));
        let commits = run.measured.acked;
        let total_cpu: Duration = run.watched_cpu.iter().sum();
        Self {
            engine_fsync: spec.engine_fsync,
            nodes,
            engine_cpu_s: engine_cpu.map(secs),
            commits,
            commits_per_s: per_second(commits, run.window),
            cpu_us_per_commit: (commits > 0 && !run.watched_cpu.is_empty())
                .then(|| total_cpu.as_secs_f64() * 1e6 / commits as f64),
            appends: counters.map(|c| c.0),
            conflicts: counters.map(|c| c.1),
            retries_per_commit: counters
                .filter(|c| c.0 > 0)
                .map(|(appends, conflicts)| conflicts as f64 / appends as f64),
        }
    }

    /// The lines the table prints under the main figures.
    pub(crate) fn table(&self, out: &mut String) {
        let engine = self.engine_fsync.map_or_else(String::new, |f| {
            format!("; engine: redis-server, appendfsync {f}")
        });
        let _ = writeln!(
            out,
            "nodes (client c on node c mod {}{engine}):",
            self.nodes.len()
        );
        let _ = writeln!(
            out,
            "  {:<4} {:<28} {:>7} {:>7} {:>13} {:>10} {:>10} {:>10} {:>8}",
            "node", "url", "clients", "writers", "ops delivered", "ops/s", "p50", "p99", "CPU"
        );
        for row in &self.nodes {
            let l = &row.latency_us;
            let _ = writeln!(
                out,
                "  {:<4} {:<28} {:>7} {:>7} {:>13} {:>10} {:>10} {:>10} {:>8}",
                row.node,
                row.url,
                row.clients,
                row.writers,
                row.ops_delivered,
                count(row.ops_per_s),
                ms(l.p50, l.count),
                ms(l.p99, l.count),
                row.cpu_s
                    .map_or_else(|| "-".into(), |s| format!("{s:.2} s"))
            );
        }
        if let Some(cpu) = self.engine_cpu_s {
            let _ = writeln!(out, "engine CPU: {cpu:.2} s");
        }
        let per_commit = self
            .cpu_us_per_commit
            .map_or_else(|| "-".into(), |us| format!("{us:.0} µs"));
        let _ = writeln!(
            out,
            "commits (measured): {} ({}/s); CPU per commit, every node and the engine: {per_commit}",
            self.commits,
            count(self.commits_per_s)
        );
        match (self.appends, self.conflicts, self.retries_per_commit) {
            (Some(appends), Some(conflicts), retries) => {
                let retries = retries.map_or_else(|| "-".into(), |r| format!("{r:.3}"));
                let _ = writeln!(
                    out,
                    "commit retries (whole run): {conflicts} appends lost to another node, {appends} accepted: {retries} per commit"
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "commit retries: - (the nodes' /metrics had no cluster counters)"
                );
            }
        }
    }
}

fn per_second(n: u64, window: Duration) -> f64 {
    if window.is_zero() {
        0.0
    } else {
        n as f64 / window.as_secs_f64()
    }
}
