//! The figures of a run as a table (for people) or one JSON object (for scripts), the
//! way ripgrep reports its benchmarks: the command, the machine, the numbers, a
//! correctness column, and the ratio to the ceiling.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::check::AckCounts;
use super::cpu::Machine;
use super::driver::RunResult;
use super::metrics::Percentiles;
use super::nodes::ClusterView;
use super::scenario::{Load, Mode, Rate};

/// Above this share of its threads' time the generator, not the server, is the limit.
const GENERATOR_SATURATED: f64 = 0.9;

/// Everything a run prints.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) command: String,
    pub(crate) machine: Machine,
    pub(crate) scenario: ScenarioView,
    /// The server under test.
    pub(crate) result: Figures,
    /// The same load against the in-process server with `--baseline-set`, when asked.
    pub(crate) baseline: Option<Figures>,
    /// The server under test against the baseline (below 1.0: cheaper or faster).
    pub(crate) vs_baseline: Option<BaselineRatios>,
    /// The same load against the ceiling, when asked.
    pub(crate) ceiling: Option<Figures>,
    /// The server as a fraction of the ceiling (1.0: as good as the ceiling).
    pub(crate) vs_ceiling: Option<Ratios>,
    /// Violations of both runs: a non-zero count fails the command.
    pub(crate) violations: u64,
}

/// The scenario, as reported.
#[derive(Debug, Serialize)]
pub(crate) struct ScenarioView {
    pub(crate) mode: &'static str,
    pub(crate) clients: usize,
    pub(crate) rooms: usize,
    pub(crate) writers: usize,
    /// Updates per second in all, or `null` for unlimited.
    pub(crate) rate: Option<f64>,
    pub(crate) in_flight: usize,
    pub(crate) payload_bytes: usize,
    pub(crate) duration_s: f64,
    pub(crate) warmup_s: f64,
    pub(crate) dialect: &'static str,
    pub(crate) generator_threads: usize,
    pub(crate) latency_every: usize,
    pub(crate) missed: u64,
}

impl ScenarioView {
    pub(crate) fn of(load: &Load) -> Self {
        Self {
            mode: match load.mode {
                Mode::Load => "load",
                Mode::Idle => "idle",
                Mode::Reconnect { .. } => "reconnect",
            },
            clients: load.clients,
            rooms: load.rooms,
            writers: load.writers,
            rate: match load.rate {
                Rate::PerSecond(r) => Some(r),
                Rate::Unlimited => None,
            },
            in_flight: load.in_flight,
            payload_bytes: load.payload_bytes,
            duration_s: load.duration.as_secs_f64(),
            warmup_s: load.warmup.as_secs_f64(),
            dialect: if load.native { "native" } else { "ws-kit" },
            generator_threads: load.threads,
            latency_every: load.latency_every,
            missed: match load.mode {
                Mode::Reconnect { missed } => missed,
                _ => 0,
            },
        }
    }
}

/// The figures of one run against one server.
#[derive(Debug, Serialize)]
pub(crate) struct Figures {
    pub(crate) server: String,
    pub(crate) clients_connected: usize,
    pub(crate) connect_s: Option<f64>,
    /// The server's CPU time until every client joined, s (a join storm's cost).
    pub(crate) connect_server_cpu_s: Option<f64>,
    /// The generator's CPU time over the same span, s.
    pub(crate) connect_generator_cpu_s: Option<f64>,
    pub(crate) window_s: f64,
    /// Updates scheduled inside the measured window and what became of them.
    pub(crate) updates: AckView,
    /// Every update, warmup included.
    pub(crate) updates_all: AckView,
    /// Operations of measured updates received, once per receiving client.
    pub(crate) ops_delivered: u64,
    /// Measured acknowledged updates × the clients of their room.
    pub(crate) ops_expected: u64,
    pub(crate) ops_per_s: f64,
    pub(crate) frames_per_s: f64,
    pub(crate) bytes_per_s: f64,
    pub(crate) ops_per_frame: f64,
    /// Commit-to-receive latency from each update's scheduled send time, µs.
    pub(crate) latency_us: Percentiles,
    /// Reconnect runs: from the reconnect order to each client being current, µs.
    pub(crate) catchup_us: Percentiles,
    pub(crate) reconnect_s: Option<f64>,
    pub(crate) snapshots: u64,
    pub(crate) revision_gaps: u64,
    pub(crate) revs_skipped_by_snapshots: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) connections_lost: u64,
    pub(crate) connect_failures: BTreeMap<String, u64>,
    pub(crate) server_cpu_s: Option<f64>,
    /// Server CPU time per operation delivered in the window, ns.
    pub(crate) server_cpu_ns_per_op: Option<f64>,
    /// Server CPU time per update committed (scheduled in the window and acknowledged),
    /// µs; with several nodes, every node's and the engine's.
    pub(crate) server_cpu_us_per_commit: Option<f64>,
    /// Write system calls of the server's threads in the window (`syscw` of `/proc`).
    pub(crate) server_write_syscalls: Option<u64>,
    /// Server write system calls per operation delivered in the window.
    pub(crate) server_writes_per_op: Option<f64>,
    pub(crate) generator_cpu_s: f64,
    /// The generator's CPU time per operation received in the window, ns.
    pub(crate) generator_cpu_ns_per_op: Option<f64>,
    /// The share of the window the busiest generator thread wanted a CPU (running, or
    /// runnable and waiting for a core); near 1.0 the generator is the bottleneck.
    pub(crate) generator_load: f64,
    pub(crate) generator_saturated: bool,
    pub(crate) server_rss_before: Option<u64>,
    pub(crate) server_rss_after: Option<u64>,
    pub(crate) rss_per_client: Option<f64>,
    pub(crate) violations: u64,
    pub(crate) violations_by_kind: BTreeMap<&'static str, u64>,
    pub(crate) violation_examples: Vec<String>,
    pub(crate) aborted: Option<String>,
    /// Several nodes: the figures of each, the engine's, commits and their retries.
    pub(crate) cluster: Option<ClusterView>,
}

/// An [`AckCounts`] as reported.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct AckView {
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    pub(crate) rejected: u64,
    pub(crate) covered_by_snapshot: u64,
    pub(crate) lost: u64,
}

impl From<AckCounts> for AckView {
    fn from(c: AckCounts) -> Self {
        Self {
            sent: c.sent,
            acked: c.acked,
            rejected: c.rejected,
            covered_by_snapshot: c.covered,
            lost: c.lost,
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

impl Figures {
    pub(crate) fn of(server: String, load: &Load, run: RunResult) -> Self {
        let m = &run.metrics;
        let window = run.window;
        let generator_load = if window.is_zero() {
            0.0
        } else {
            run.generator_busiest.as_secs_f64() / window.as_secs_f64()
        };
        let rss_per_client = run
            .rss
            .map(|(before, after)| (after as f64 - before as f64) / load.clients as f64);
        Self {
            server,
            clients_connected: run.connected,
            connect_s: run.connect_time.map(|d| d.as_secs_f64()),
            connect_server_cpu_s: run.connect_server_cpu.map(|d| d.as_secs_f64()),
            connect_generator_cpu_s: run.connect_generator_cpu.map(|d| d.as_secs_f64()),
            window_s: window.as_secs_f64(),
            updates: run.measured.into(),
            updates_all: run.updates.into(),
            ops_delivered: m.delivered,
            ops_expected: run.expected_ops,
            ops_per_s: per_second(m.window_ops, window),
            frames_per_s: per_second(m.window_frames, window),
            bytes_per_s: per_second(m.window_bytes, window),
            ops_per_frame: if m.window_frames == 0 {
                0.0
            } else {
                m.window_ops as f64 / m.window_frames as f64
            },
            latency_us: Percentiles::of(&m.latency),
            catchup_us: Percentiles::of(&m.catchup),
            reconnect_s: run.reconnect_time.map(|d| d.as_secs_f64()),
            snapshots: m.snapshots,
            revision_gaps: m.gaps,
            revs_skipped_by_snapshots: m.skipped_revs,
            errors: m.errors.clone(),
            connections_lost: m.closed,
            connect_failures: m.connect_failures.clone(),
            server_cpu_s: run.server_cpu.map(|d| d.as_secs_f64()),
            server_cpu_ns_per_op: run
                .server_cpu
                .filter(|_| m.window_ops > 0)
                .map(|d| d.as_nanos() as f64 / m.window_ops as f64),
            server_cpu_us_per_commit: run
                .server_cpu
                .filter(|_| run.measured.acked > 0)
                .map(|d| d.as_secs_f64() * 1e6 / run.measured.acked as f64),
            server_write_syscalls: run.server_writes,
            server_writes_per_op: run
                .server_writes
                .filter(|_| m.window_ops > 0)
                .map(|w| w as f64 / m.window_ops as f64),
            generator_cpu_s: run.generator_cpu.as_secs_f64(),
            generator_cpu_ns_per_op: (m.window_ops > 0)
                .then(|| run.generator_cpu.as_nanos() as f64 / m.window_ops as f64),
            generator_load,
            generator_saturated: generator_load > GENERATOR_SATURATED,
            server_rss_before: run.rss.map(|r| r.0),
            server_rss_after: run.rss.map(|r| r.1),
            rss_per_client,
            violations: run.violations.total(),
            violations_by_kind: run.violations.by_kind,
            violation_examples: run.violations.examples,
            aborted: run.aborted,
            cluster: None,
        }
    }

    /// The same figures with the per-node view of a load over several nodes.
    pub(crate) fn with_cluster(mut self, view: ClusterView) -> Self {
        self.cluster = Some(view);
        self
    }

    /// The same figures under another server name.
    pub(crate) fn named(mut self, server: &str) -> Self {
        self.server = server.to_owned();
        self
    }

    /// Whether the run passed: it ran to the end, lost no connection, broke nothing.
    pub(crate) fn passed(&self) -> bool {
        self.violations == 0 && self.aborted.is_none() && self.connections_lost == 0
    }
}

/// The server's figures as fractions of the ceiling's.
#[derive(Debug, Serialize)]
pub(crate) struct Ratios {
    /// Operations delivered per second: server / ceiling.
    pub(crate) ops_per_s: Option<f64>,
    /// CPU time per delivered operation: ceiling / server.
    pub(crate) cpu_per_op: Option<f64>,
    /// p99 latency: ceiling / server.
    pub(crate) latency_p99: Option<f64>,
}

/// The server under test against the baseline run: ours / baseline (below 1.0 is better).
#[derive(Debug, Serialize)]
pub(crate) struct BaselineRatios {
    /// Write system calls per delivered operation.
    pub(crate) writes_per_op: Option<f64>,
    /// Server CPU time per delivered operation.
    pub(crate) cpu_per_op: Option<f64>,
    /// Server CPU time per commit.
    pub(crate) cpu_per_commit: Option<f64>,
    /// p50 latency.
    pub(crate) latency_p50: Option<f64>,
    /// p99 latency.
    pub(crate) latency_p99: Option<f64>,
}

impl BaselineRatios {
    pub(crate) fn of(ours: &Figures, baseline: &Figures) -> Self {
        let both = |o: Option<f64>, b: Option<f64>| o.zip(b).and_then(|(o, b)| ratio(o, b));
        Self {
            writes_per_op: both(ours.server_writes_per_op, baseline.server_writes_per_op),
            cpu_per_op: both(ours.server_cpu_ns_per_op, baseline.server_cpu_ns_per_op),
            cpu_per_commit: both(
                ours.server_cpu_us_per_commit,
                baseline.server_cpu_us_per_commit,
            ),
            latency_p50: ratio(ours.latency_us.p50 as f64, baseline.latency_us.p50 as f64),
            latency_p99: ratio(ours.latency_us.p99 as f64, baseline.latency_us.p99 as f64),
        }
    }
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (num > 0.0 && den > 0.0).then(|| num / den)
}

impl Ratios {
    pub(crate) fn of(ours: &Figures, ceiling: &Figures) -> Self {
        Self {
            ops_per_s: ratio(ours.ops_per_s, ceiling.ops_per_s),
            cpu_per_op: ours
                .server_cpu_ns_per_op
                .zip(ceiling.server_cpu_ns_per_op)
                .and_then(|(o, c)| ratio(c, o)),
            latency_p99: ratio(ceiling.latency_us.p99 as f64, ours.latency_us.p99 as f64),
        }
    }
}

fn opt(value: Option<f64>, unit: &str, decimals: usize) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}{unit}"))
}

pub(crate) fn ms(us: u64, count: u64) -> String {
    if count == 0 {
        "-".into()
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

pub(crate) fn count(n: f64) -> String {
    let n = n.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Report {
    /// The table printed at the end of a run.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let s = &self.scenario;
        let rate = s.rate.map_or_else(
            || format!("unlimited ({} in flight)", s.in_flight),
            |r| format!("{r} updates/s"),
        );
        let _ = writeln!(out, "command: {}", self.command);
        let _ = writeln!(
            out,
            "machine: {} CPUs, {}, Linux {}",
            self.machine.cpus, self.machine.cpu_model, self.machine.kernel
        );
        let _ = writeln!(
            out,
            "scenario: {} | {} clients, {} room(s), {} writer(s) at {rate}, {}-byte names, {} dialect, {} s after {} s warmup, {} generator thread(s)",
            s.mode,
            s.clients,
            s.rooms,
            s.writers,
            s.payload_bytes,
            s.dialect,
            s.duration_s,
            s.warmup_s,
            s.generator_threads
        );
        self.saturation_warning(&mut out);
        let columns: Vec<&Figures> = std::iter::once(&self.result)
            .chain(self.baseline.as_ref())
            .chain(self.ceiling.as_ref())
            .collect();
        let mut rows: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
        let r = self.vs_ceiling.as_ref();
        let b = self.vs_baseline.as_ref();
        let (with_baseline, with_ceiling) = (self.baseline.is_some(), self.ceiling.is_some());
        let mut row_vs = |name: &str, f: &dyn Fn(&Figures) -> String, vs: [Option<f64>; 2]| {
            let mut ratios = Vec::new();
            if with_baseline {
                ratios.push(opt(vs[0], "", 2));
            }
            if with_ceiling {
                ratios.push(opt(vs[1], "", 2));
            }
            rows.push((
                name.to_owned(),
                columns.iter().map(|c| f(c)).collect(),
                ratios,
            ));
        };
        row_vs(
            "clients connected",
            &|f| f.clients_connected.to_string(),
            [None, None],
        );
        row_vs("connect time", &|f| opt(f.connect_s, " s", 2), [None, None]);
        row_vs(
            "CPU while connecting",
            &|f| match (f.connect_server_cpu_s, f.connect_generator_cpu_s) {
                (Some(server), Some(generator)) => {
                    format!("server {server:.2} s, generator {generator:.2} s")
                }
                (None, Some(generator)) => format!("generator {generator:.2} s"),
                _ => "-".into(),
            },
            [None, None],
        );
        row_vs(
            "updates (measured)",
            &|f| format!("{} sent / {} acked", f.updates.sent, f.updates.acked),
            [None, None],
        );
        row_vs(
            "ops delivered / expected",
            &|f| format!("{} / {}", f.ops_delivered, f.ops_expected),
            [None, None],
        );
        row_vs(
            "ops/s",
            &|f| count(f.ops_per_s),
            [None, r.and_then(|r| r.ops_per_s)],
        );
        row_vs("frames/s", &|f| count(f.frames_per_s), [None, None]);
        row_vs(
            "MB/s received",
            &|f| format!("{:.1}", f.bytes_per_s / 1e6),
            [None, None],
        );
        let p = |f: &Figures, v: u64| ms(v, f.latency_us.count);
        row_vs(
            "latency p50",
            &|f| p(f, f.latency_us.p50),
            [b.and_then(|b| b.latency_p50), None],
        );
        row_vs("latency p90", &|f| p(f, f.latency_us.p90), [None, None]);
        row_vs(
            "latency p99",
            &|f| p(f, f.latency_us.p99),
            [b.and_then(|b| b.latency_p99), r.and_then(|r| r.latency_p99)],
        );
        row_vs("latency p99.9", &|f| p(f, f.latency_us.p999), [None, None]);
        row_vs("latency max", &|f| p(f, f.latency_us.max), [None, None]);
        if s.mode == "reconnect" {
            row_vs(
                "all current again",
                &|f| opt(f.reconnect_s, " s", 3),
                [None, None],
            );
            row_vs(
                "catch-up p99",
                &|f| ms(f.catchup_us.p99, f.catchup_us.count),
                [None, None],
            );
        }
        row_vs(
            "server CPU",
            &|f| opt(f.server_cpu_s, " s", 2),
            [None, None],
        );
        row_vs(
            "server CPU per op",
            &|f| opt(f.server_cpu_ns_per_op, " ns", 0),
            [b.and_then(|b| b.cpu_per_op), r.and_then(|r| r.cpu_per_op)],
        );
        row_vs(
            "server CPU per commit",
            &|f| opt(f.server_cpu_us_per_commit, " µs", 1),
            [b.and_then(|b| b.cpu_per_commit), None],
        );
        row_vs(
            "server writes per op",
            &|f| opt(f.server_writes_per_op, "", 3),
            [b.and_then(|b| b.writes_per_op), None],
        );
        row_vs(
            "generator CPU",
            &|f| {
                format!(
                    "{:.2} s ({:.0}%{})",
                    f.generator_cpu_s,
                    f.generator_load * 100.0,
                    if f.generator_saturated {
                        ", SATURATED"
                    } else {
                        ""
                    }
                )
            },
            [None, None],
        );
        row_vs(
            "generator CPU per op",
            &|f| opt(f.generator_cpu_ns_per_op, " ns", 0),
            [None, None],
        );
        if s.mode == "idle" {
            row_vs(
                "server RSS per client",
                &|f| opt(f.rss_per_client, " B", 0),
                [None, None],
            );
        }
        row_vs(
            "snapshots / gaps",
            &|f| format!("{} / {}", f.snapshots, f.revision_gaps),
            [None, None],
        );
        row_vs(
            "errors",
            &|f| f.errors.values().sum::<u64>().to_string(),
            [None, None],
        );
        row_vs("VIOLATIONS", &|f| f.violations.to_string(), [None, None]);
        let mut header = vec!["".to_owned(), self.result.server.clone()];
        if let Some(baseline) = &self.baseline {
            header.push(baseline.server.clone());
        }
        if let Some(c) = &self.ceiling {
            header.push(c.server.clone());
        }
        if with_baseline {
            header.push("vs baseline".into());
        }
        if with_ceiling {
            header.push("ratio".into());
        }
        let width = |i: usize| {
            rows.iter()
                .map(|r| {
                    if i == 0 {
                        r.0.len()
                    } else {
                        r.1.get(i - 1)
                            .or_else(|| r.2.get(i - 1 - r.1.len()))
                            .map_or(0, String::len)
                    }
                })
                .chain(std::iter::once(header.get(i).map_or(0, String::len)))
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..header.len()).map(width).collect();
        let line = |cells: &[String]| {
            let mut l = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i == 0 {
                    let _ = write!(l, "{cell:<w$}", w = widths[0]);
                } else {
                    let _ = write!(l, "  {cell:>w$}", w = widths[i]);
                }
            }
            l.trim_end().to_owned()
        };
        let _ = writeln!(out, "{}", line(&header));
        for (name, cells, ratios) in &rows {
            let mut all = vec![name.clone()];
            all.extend(cells.iter().cloned());
            all.extend(ratios.iter().cloned());
            let _ = writeln!(out, "{}", line(&all));
        }
        if let Some(cluster) = &self.result.cluster {
            cluster.table(&mut out);
        }
        for f in &columns {
            for example in &f.violation_examples {
                let _ = writeln!(out, "violation ({}): {example}", f.server);
            }
            if let Some(why) = &f.aborted {
                let _ = writeln!(out, "aborted ({}): {why}", f.server);
            }
            for (what, n) in f.connect_failures.iter().chain(f.errors.iter()) {
                let _ = writeln!(
                    out,
                    "{} ({}): {what} ×{n}",
                    if f.errors.contains_key(what) {
                        "error"
                    } else {
                        "connect failure"
                    },
                    f.server
                );
            }
        }
        out
    }

    /// Leads the table with a warning for every run whose generator was the bottleneck:
    /// its figures measure the generator and the machine, not the server.
    fn saturation_warning(&self, out: &mut String) {
        let runs = std::iter::once(&self.result)
            .chain(self.baseline.as_ref())
            .chain(self.ceiling.as_ref());
        for f in runs.filter(|f| f.generator_saturated) {
            let _ = writeln!(
                out,
                "WARNING ({}): the generator was saturated (its busiest thread wanted a CPU {:.0}% of the window, running or waiting for one): the figures below measure the generator and the machine more than the server; run fewer clients or a lower --rate, more --threads where there are cores, or the server on another machine (--url with --server-pid)",
                f.server,
                f.generator_load * 100.0
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(999.4), "999");
        assert_eq!(count(1_234_567.0), "1,234,567");
        assert_eq!(opt(None, " s", 2), "-");
        assert_eq!(ratio(1.0, 0.0), None);
    }
}
