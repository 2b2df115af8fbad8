//! Where the CPU went during a bad-actor phase: the server's shards and acceptor, the
//! attackers (threads named `actor-…` in this process, or the whole child process when
//! they run apart), the probe, and the machine as a whole (other work included).
//!
//! On a machine of two cores the attackers, the probe and the server compete for the same
//! CPU, so a bystander's latency can grow because the *generator* takes the cores, not the
//! server: these figures tell the two apart. Times come from `/proc` (see `bench::cpu`):
//! time on a CPU, and time runnable but waiting for one.

use std::time::{Duration, Instant};

use crate::bench::cpu::{self, Sample};

/// The name every attacker thread's name starts with.
pub(crate) const ACTOR_THREAD: &str = "actor-";
/// The name every probe thread's name starts with.
pub(crate) const PROBE_THREAD: &str = "probe-";

/// The CPU clocks at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Mark {
    at: Instant,
    own: Sample,
    actors_apart: Option<Sample>,
    machine: Option<Duration>,
}

impl Mark {
    /// Reads this process's threads, the attackers' process `apart` if any, and the
    /// machine.
    pub(crate) fn take(apart: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            own: cpu::sample("self"),
            actors_apart: apart.map(|pid| cpu::sample(&pid.to_string())),
            machine: cpu::machine_busy(),
        }
    }

    /// When it was taken.
    pub(crate) fn at(&self) -> Instant {
        self.at
    }
}

/// CPU time spent between two marks, each as a share of one core.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PhaseCpu {
    /// The server's shard threads: ran, waited for a core.
    pub(crate) shards: (f64, f64),
    /// The acceptor thread.
    pub(crate) acceptor: f64,
    /// The attackers: ran, waited.
    pub(crate) actors: (f64, f64),
    /// The probes: ran, waited.
    pub(crate) probe: (f64, f64),
    /// Every core of the machine, busy (other processes included), when known.
    pub(crate) machine: Option<f64>,
}

fn is_shard(name: &str) -> bool {
    name.starts_with("deltasync-shard")
}

fn is_acceptor(name: &str) -> bool {
    name.starts_with("deltasync-accep")
}

fn is_actor(name: &str) -> bool {
    name.starts_with(ACTOR_THREAD)
}

fn is_probe(name: &str) -> bool {
    name.starts_with(PROBE_THREAD)
}

/// What was spent from `from` to `to`.
pub(crate) fn between(from: &Mark, to: &Mark) -> PhaseCpu {
    let secs = to.at.duration_since(from.at).as_secs_f64().max(1e-9);
    let share = |d: Duration| d.as_secs_f64() / secs;
    let pair = |select: fn(&str) -> bool| {
        (
            share(cpu::spent(&from.own, &to.own, select)),
            share(cpu::waited(&from.own, &to.own, select)),
        )
    };
    let mut actors = pair(is_actor);
    if let (Some(a), Some(b)) = (&from.actors_apart, &to.actors_apart) {
        actors.0 += share(cpu::spent(a, b, |_| true));
        actors.1 += share(cpu::waited(a, b, |_| true));
    }
    PhaseCpu {
        shards: pair(is_shard),
        acceptor: share(cpu::spent(&from.own, &to.own, is_acceptor)),
        actors,
        probe: pair(is_probe),
        machine: match (from.machine, to.machine) {
            (Some(a), Some(b)) => Some(share(b.saturating_sub(a))),
            _ => None,
        },
    }
}

impl PhaseCpu {
    /// One line: percentages of one core, `ran/waited`.
    pub(crate) fn summary(&self) -> String {
        let pct = |x: f64| (x * 100.0).round();
        let machine = self
            .machine
            .map_or_else(|| "?".to_owned(), |m| format!("{}", pct(m)));
        format!(
            "cpu % of a core (ran/waited): shards {}/{}, acceptor {}, actors {}/{}, probes {}/{}; machine busy {machine} of {}",
            pct(self.shards.0),
            pct(self.shards.1),
            pct(self.acceptor),
            pct(self.actors.0),
            pct(self.actors.1),
            pct(self.probe.0),
            pct(self.probe.1),
            std::thread::available_parallelism().map_or(1, |n| n.get()) * 100,
        )
    }
}
