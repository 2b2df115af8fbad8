//! The game scenario's figures, as a table or one JSON object: the game loop's ticks,
//! the frames each client got, commit-to-receipt latency, CPU, and the checks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::super::cpu::{self, Machine, Sample};
use super::super::driver::RunResult;
use super::super::metrics::Percentiles;
use super::super::report::{AckView, count, ms};
use super::super::scenario::{GameSpec, Load};
use super::ticker::GAME_THREAD;
use super::ticks::Counters;

/// Above this share of the window the busiest generator thread wanted a CPU, the
/// generator, not the server, is the limit.
const GENERATOR_SATURATED: f64 = 0.9;

/// Everything a game run prints.
#[derive(Debug, Serialize)]
pub(crate) struct GameReport {
    pub(crate) command: String,
    pub(crate) machine: Machine,
    pub(crate) scenario: GameScenario,
    pub(crate) result: GameFigures,
    /// A non-zero count fails the command.
    pub(crate) violations: u64,
}

/// The scenario, as reported.
#[derive(Debug, Serialize)]
pub(crate) struct GameScenario {
    pub(crate) mode: &'static str,
    pub(crate) clients: usize,
    pub(crate) room: String,
    pub(crate) tick_hz: f64,
    pub(crate) bots: usize,
    /// Every client moves every this many ticks; 0: spectators only.
    pub(crate) players_move: u64,
    pub(crate) ring_capacity: usize,
    pub(crate) duration_s: f64,
    pub(crate) warmup_s: f64,
    pub(crate) generator_threads: usize,
    pub(crate) latency_every: usize,
}

impl GameScenario {
    pub(crate) fn of(load: &Load, spec: GameSpec, room: &str, ring_capacity: usize) -> Self {
        Self {
            mode: "game",
            clients: load.clients,
            room: format!("/rooms/{room}"),
            tick_hz: spec.tick_hz,
            bots: spec.bots,
            players_move: spec.players_move,
            ring_capacity,
            duration_s: load.duration.as_secs_f64(),
            warmup_s: load.warmup.as_secs_f64(),
            generator_threads: load.threads,
            latency_every: load.latency_every,
        }
    }
}

/// Mean, lowest and highest over the clients.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Spread {
    pub(crate) mean: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Spread {
    /// Each count divided by `window`.
    fn per_second(counts: &[u64], window: Duration) -> Self {
        let secs = window.as_secs_f64();
        if counts.is_empty() || secs <= 0.0 {
            return Self::default();
        }
        let sum: u64 = counts.iter().sum();
        let (min, max) = counts
            .iter()
            .fold((u64::MAX, 0), |(lo, hi), &n| (lo.min(n), hi.max(n)));
        Self {
            mean: sum as f64 / counts.len() as f64 / secs,
            min: min as f64 / secs,
            max: max as f64 / secs,
        }
    }
}

/// CPU time of one group of threads over the window, as a share of one core, and per
/// frame received by the clients.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct CpuUse {
    pub(crate) seconds: f64,
    /// Percent of one core (the machine has `machine.cpus` of them).
    pub(crate) percent: f64,
    /// Percent of one core the threads spent runnable, waiting for a CPU (the machine
    /// is shared): running plus waiting is what they wanted.
    pub(crate) waited_percent: f64,
    /// CPU time per `SYNC.DELTAS` frame the clients received in the window, µs.
    pub(crate) us_per_frame: f64,
}

impl CpuUse {
    fn of(
        cpu: Option<&(Sample, Sample)>,
        window: Duration,
        frames: u64,
        pick: impl Fn(&str) -> bool + Copy,
    ) -> Self {
        let Some((before, after)) = cpu else {
            return Self::default();
        };
        let seconds = cpu::spent(before, after, pick).as_secs_f64();
        let waited = cpu::waited(before, after, pick).as_secs_f64();
        let secs = window.as_secs_f64();
        Self {
            seconds,
            percent: ratio(seconds, secs) * 100.0,
            waited_percent: ratio(waited, secs) * 100.0,
            us_per_frame: ratio(seconds * 1e6, frames as f64),
        }
    }
}

fn ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 { num / den } else { 0.0 }
}

/// The figures of one game run.
#[derive(Debug, Serialize)]
pub(crate) struct GameFigures {
    pub(crate) server: String,
    pub(crate) clients_connected: usize,
    pub(crate) connect_s: Option<f64>,
    pub(crate) window_s: f64,
    /// Ticks the game loop ran in the window, and per second.
    pub(crate) ticks: u64,
    pub(crate) tick_hz_achieved: f64,
    /// Ticks that began more than one period after their scheduled time.
    pub(crate) ticks_late: u64,
    /// `Game::tick` (moves, bots, flush) in the window, µs.
    pub(crate) tick_work_us: Percentiles,
    /// Operations the game committed in the window, and per tick.
    pub(crate) ops_committed: u64,
    pub(crate) ops_per_tick: f64,
    /// `SYNC.DELTAS` frames, operations and bytes received per second by all clients.
    pub(crate) frames_per_s: f64,
    pub(crate) ops_per_s: f64,
    pub(crate) bytes_per_s: f64,
    pub(crate) ops_per_frame: f64,
    /// Ticks per frame: 1.0 when no client fell behind.
    pub(crate) ticks_per_frame: f64,
    /// Frames that carried more than one tick (a client behind: not an error).
    pub(crate) coalesced_frames: u64,
    pub(crate) frames_per_client_per_s: Spread,
    /// From the instant after the flush that published a frame's `toRev` to its
    /// receipt, µs.
    pub(crate) commit_to_receipt_us: Percentiles,
    /// From the instant after the flush of a frame's oldest operation to its receipt, µs
    /// (above `commit_to_receipt_us` only for coalesced frames).
    pub(crate) oldest_op_us: Percentiles,
    /// Frames that arrived before the game loop had recorded their flush.
    pub(crate) frames_deferred: u64,
    /// Frames that arrived before the instant recorded just after their flush.
    pub(crate) frames_before_flush_instant: u64,
    /// Players' moves scheduled in the window and what became of them.
    pub(crate) moves: AckView,
    /// Moves the game applied and rejected in the window.
    pub(crate) moves_applied: u64,
    pub(crate) moves_rejected: u64,
    /// From a move's scheduled send to its operation's receipt by each client, µs.
    pub(crate) move_to_receipt_us: Percentiles,
    /// Operations of measured moves received (once per client) and expected.
    pub(crate) move_ops_delivered: u64,
    pub(crate) move_ops_expected: u64,
    pub(crate) snapshots: u64,
    pub(crate) revision_gaps: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) connections_lost: u64,
    pub(crate) connect_failures: BTreeMap<String, u64>,
    /// The server's threads (acceptor and shards).
    pub(crate) server_cpu: CpuUse,
    /// The game loop's thread.
    pub(crate) game_loop_cpu: CpuUse,
    pub(crate) generator_cpu: CpuUse,
    /// The share of the window the busiest generator thread wanted a CPU (running, or
    /// runnable and waiting for a core).
    pub(crate) generator_load: f64,
    pub(crate) generator_saturated: bool,
    /// CPU time of every process but this one in the window, percent of one core (the
    /// machine is shared: what the others took, this run could not have).
    pub(crate) others_cpu_percent: Option<f64>,
    /// Flushes the game loop recorded, and whether its log ran out of room.
    pub(crate) flushes_recorded: usize,
    pub(crate) tick_log_full: bool,
    pub(crate) violations: u64,
    pub(crate) violations_by_kind: BTreeMap<&'static str, u64>,
    pub(crate) violation_examples: Vec<String>,
    pub(crate) aborted: Option<String>,
}

/// What the game side hands to the report besides the run.
pub(crate) struct GameSide {
    pub(crate) work: Histogram<u64>,
    pub(crate) flushes: (usize, bool),
}

impl GameFigures {
    pub(crate) fn of(run: RunResult, game: &GameSide) -> Self {
        let m = &run.metrics;
        let t = &m.ticks;
        let window = run.window;
        let secs = window.as_secs_f64();
        let counters = run
            .game
            .map(|(before, after)| before.until(&after))
            .unwrap_or_default();
        let Counters {
            ticks, operations, ..
        } = counters;
        let generator_load = ratio(run.generator_busiest.as_secs_f64(), secs);
        let cpu = run.own_cpu.as_ref();
        let ours = cpu.map(|(before, after)| cpu::spent(before, after, |_| true));
        let others_cpu_percent = run
            .machine_busy
            .zip(ours)
            .map(|(all, ours)| ratio(all.saturating_sub(ours).as_secs_f64(), secs) * 100.0);
        Self {
            server: "deltasync arena (in-process)".into(),
            clients_connected: run.connected,
            connect_s: run.connect_time.map(|d| d.as_secs_f64()),
            window_s: secs,
            ticks,
            tick_hz_achieved: ratio(ticks as f64, secs),
            ticks_late: counters.late,
            tick_work_us: Percentiles::of(&game.work),
            ops_committed: operations,
            ops_per_tick: ratio(operations as f64, ticks as f64),
            frames_per_s: ratio(t.frames as f64, secs),
            ops_per_s: ratio(m.window_ops as f64, secs),
            bytes_per_s: ratio(m.window_bytes as f64, secs),
            ops_per_frame: ratio(m.window_ops as f64, t.frames as f64),
            ticks_per_frame: ratio(t.ticks_carried as f64, t.frames as f64),
            coalesced_frames: t.coalesced,
            frames_per_client_per_s: Spread::per_second(&t.client_frames, window),
            commit_to_receipt_us: Percentiles::of(&t.commit_to_receipt),
            oldest_op_us: Percentiles::of(&t.oldest_op),
            frames_deferred: t.deferred,
            frames_before_flush_instant: t.before_flush_instant,
            moves: run.measured.into(),
            moves_applied: counters.applied,
            moves_rejected: counters.rejected,
            move_to_receipt_us: Percentiles::of(&m.latency),
            move_ops_delivered: m.delivered,
            move_ops_expected: run.expected_ops,
            snapshots: m.snapshots,
            revision_gaps: m.gaps,
            errors: m.errors.clone(),
            connections_lost: m.closed,
            connect_failures: m.connect_failures.clone(),
            server_cpu: CpuUse::of(cpu, window, t.frames, |n| n.starts_with("deltasync-")),
            game_loop_cpu: CpuUse::of(cpu, window, t.frames, |n| n == GAME_THREAD),
            generator_cpu: CpuUse::of(cpu, window, t.frames, cpu::is_generator),
            generator_load,
            generator_saturated: generator_load > GENERATOR_SATURATED,
            others_cpu_percent,
            flushes_recorded: game.flushes.0,
            tick_log_full: game.flushes.1,
            violations: run.violations.total(),
            violations_by_kind: run.violations.by_kind,
            violation_examples: run.violations.examples,
            aborted: run.aborted,
        }
    }

    /// Whether the run passed: it ran to the end, lost no connection, broke nothing.
    pub(crate) fn passed(&self) -> bool {
        self.violations == 0 && self.aborted.is_none() && self.connections_lost == 0
    }
}

fn latencies(p: &Percentiles) -> String {
    let v = |us| ms(us, p.count);
    format!(
        "{} / {} / {} / {} / {}",
        v(p.p50),
        v(p.p90),
        v(p.p99),
        v(p.p999),
        v(p.max)
    )
}

fn cpu_cell(c: &CpuUse) -> String {
    format!(
        "{:.2} s ({:.0}% of a core, {:.1} µs per frame; waited for a CPU {:.0}%)",
        c.seconds, c.percent, c.us_per_frame, c.waited_percent
    )
}

impl GameReport {
    /// The table printed at the end of a run.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let (s, f) = (&self.scenario, &self.result);
        let moving = match s.players_move {
            0 => "spectators only".to_owned(),
            n => format!("every player moves every {n} tick(s)"),
        };
        let _ = writeln!(out, "command: {}", self.command);
        let _ = writeln!(
            out,
            "machine: {} CPUs, {}, Linux {}",
            self.machine.cpus, self.machine.cpu_model, self.machine.kernel
        );
        let _ = writeln!(
            out,
            "scenario: game | {} clients in {}, {} Hz, {} bots, {moving}, ring {}, {} s after {} s warmup, {} generator thread(s)",
            s.clients,
            s.room,
            s.tick_hz,
            s.bots,
            s.ring_capacity,
            s.duration_s,
            s.warmup_s,
            s.generator_threads
        );
        let rows = self.rows();
        let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        let _ = writeln!(out, "{:<width$}  {}", "", f.server);
        for (name, value) in rows {
            let _ = writeln!(out, "{name:<width$}  {value}");
        }
        self.notes(&mut out);
        out
    }

    fn rows(&self) -> Vec<(&'static str, String)> {
        let f = &self.result;
        let c = &f.frames_per_client_per_s;
        let mut rows = vec![
            ("clients connected", f.clients_connected.to_string()),
            (
                "connect time",
                f.connect_s.map_or("-".into(), |s| format!("{s:.2} s")),
            ),
            (
                "ticks (achieved rate)",
                format!(
                    "{} ({:.2}/s, {} late)",
                    f.ticks, f.tick_hz_achieved, f.ticks_late
                ),
            ),
            (
                "tick work p50/p90/p99/p99.9/max",
                latencies(&f.tick_work_us),
            ),
            (
                "operations committed",
                format!(
                    "{} ({:.1} per tick)",
                    count(f.ops_committed as f64),
                    f.ops_per_tick
                ),
            ),
            ("frames/s (all clients)", count(f.frames_per_s)),
            ("ops/s received", count(f.ops_per_s)),
            ("MB/s received", format!("{:.1}", f.bytes_per_s / 1e6)),
            (
                "frames per client per s",
                format!("{:.2} mean, {:.2} min, {:.2} max", c.mean, c.min, c.max),
            ),
            (
                "ops per frame",
                format!(
                    "{:.1} ({:.3} ticks per frame, {} coalesced)",
                    f.ops_per_frame, f.ticks_per_frame, f.coalesced_frames
                ),
            ),
            (
                "commit-to-receipt p50/p90/p99/p99.9/max",
                latencies(&f.commit_to_receipt_us),
            ),
            (
                "oldest op p50/p90/p99/p99.9/max",
                latencies(&f.oldest_op_us),
            ),
        ];
        if self.scenario.players_move > 0 {
            rows.push((
                "moves (measured)",
                format!(
                    "{} sent / {} acked / {} rejected / {} lost",
                    f.moves.sent, f.moves.acked, f.moves.rejected, f.moves.lost
                ),
            ));
            rows.push((
                "move ops delivered / expected",
                format!("{} / {}", f.move_ops_delivered, f.move_ops_expected),
            ));
            rows.push((
                "move-to-receipt p50/p90/p99/p99.9/max",
                latencies(&f.move_to_receipt_us),
            ));
        }
        rows.extend([
            ("server CPU (shards, acceptor)", cpu_cell(&f.server_cpu)),
            ("game loop CPU", cpu_cell(&f.game_loop_cpu)),
            (
                "generator CPU",
                format!(
                    "{} (its busiest thread wanted one {:.0}%{})",
                    cpu_cell(&f.generator_cpu),
                    f.generator_load * 100.0,
                    if f.generator_saturated {
                        ", SATURATED"
                    } else {
                        ""
                    }
                ),
            ),
            (
                "other processes' CPU",
                f.others_cpu_percent
                    .map_or("-".into(), |p| format!("{p:.0}% of a core")),
            ),
            (
                "snapshots / gaps",
                format!("{} / {}", f.snapshots, f.revision_gaps),
            ),
            ("errors", f.errors.values().sum::<u64>().to_string()),
            ("VIOLATIONS", f.violations.to_string()),
        ]);
        rows
    }

    fn notes(&self, out: &mut String) {
        let f = &self.result;
        for example in &f.violation_examples {
            let _ = writeln!(out, "violation: {example}");
        }
        if let Some(why) = &f.aborted {
            let _ = writeln!(out, "aborted: {why}");
        }
        for (what, n) in &f.connect_failures {
            let _ = writeln!(out, "connect failure: {what} ×{n}");
        }
        for (what, n) in &f.errors {
            let _ = writeln!(out, "error: {what} ×{n}");
        }
        if f.tick_log_full {
            let _ = writeln!(
                out,
                "note: the tick log ran out of room after {} flushes; later frames could not be timed",
                f.flushes_recorded
            );
        }
        if f.generator_saturated {
            let _ = writeln!(
                out,
                "note: a generator thread wanted a CPU over 90% of the time (running or waiting for one): these figures say more about the generator and the machine than about the server"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_per_client_spread_over_the_window() {
        let s = Spread::per_second(&[120, 60, 90], Duration::from_secs(2));
        assert_eq!((s.mean, s.min, s.max), (45.0, 30.0, 60.0));
        let none = Spread::per_second(&[], Duration::from_secs(2));
        assert_eq!((none.mean, none.min, none.max), (0.0, 0.0, 0.0));
        assert_eq!(ratio(1.0, 0.0), 0.0);
    }
}
