//! What the driver and the generator threads share: the phase of the run, its clock
//! origin, and the few counters the driver watches (all atomics; nothing on the hot path
//! takes a lock).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::game::TickLog;

/// The phase of a run, set by the driver and read by the threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Connect, upgrade, join, wait for each client's first snapshot.
    Connect = 0,
    /// Writers send (load runs); everyone receives and checks.
    Load = 1,
    /// No new updates; wait until every update is settled and every client is current.
    Drain = 2,
    /// Reconnect runs: the non-writers are away; the writers send the missed updates.
    Away = 3,
    /// Reconnect runs: everyone who was away reconnects and resumes.
    Back = 4,
    /// Done: the threads stop and report.
    Stop = 5,
}

impl Phase {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Connect,
            1 => Self::Load,
            2 => Self::Drain,
            3 => Self::Away,
            4 => Self::Back,
            _ => Self::Stop,
        }
    }
}

/// The `current_at` of a thread that does not exist (the writers' when there are none).
pub(crate) const UNUSED: u64 = u64::MAX - 1;

/// Running totals the driver prints once a second.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub(crate) ops: AtomicU64,
    pub(crate) frames: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) updates: AtomicU64,
    /// Bytes received at any time (the drain watches it move).
    pub(crate) received: AtomicU64,
}

/// Shared by the driver and every generator thread.
#[derive(Debug)]
pub(crate) struct Control {
    phase: AtomicU8,
    /// The origin of the load's clock (ids carry µs since it); set before `Load`/`Away`.
    pub(crate) start: OnceLock<Instant>,
    /// When `Back` began (reconnect runs).
    pub(crate) back: OnceLock<Instant>,
    /// Clients that have their first snapshot.
    pub(crate) ready: AtomicUsize,
    /// Clients given up on (could not connect).
    pub(crate) failed: AtomicUsize,
    /// The highest revision any client has seen, per room.
    pub(crate) room_max: Vec<AtomicU64>,
    /// Per thread and room: the lowest revision of the thread's clients there
    /// (`u64::MAX` without any), for `--rate unlimited`.
    pub(crate) room_min: Vec<Vec<AtomicU64>>,
    /// Writers with nothing more to send and nothing pending.
    pub(crate) writers_settled: AtomicUsize,
    /// Per thread: the sum of `room_max` its clients were all current at, or `u64::MAX`
    /// (one entry per receiving thread and one for the writers' thread, unused without).
    pub(crate) current_at: Vec<AtomicU64>,
    /// Reconnect runs: clients current again since `Back`.
    pub(crate) caught_up: AtomicUsize,
    /// A thread stopped on an error of its own (its poller failed).
    pub(crate) broken: AtomicBool,
    pub(crate) progress: Progress,
    /// The game scenario's record of its ticks (`--game`), which receivers time frames by.
    pub(crate) game: Option<Arc<TickLog>>,
}

impl Control {
    pub(crate) fn new(rooms: usize, threads: usize) -> Self {
        Self {
            phase: AtomicU8::new(Phase::Connect as u8),
            start: OnceLock::new(),
            back: OnceLock::new(),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            room_max: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
            room_min: (0..threads)
                .map(|_| (0..rooms).map(|_| AtomicU64::new(u64::MAX)).collect())
                .collect(),
            writers_settled: AtomicUsize::new(0),
            current_at: (0..threads).map(|_| AtomicU64::new(u64::MAX)).collect(),
            caught_up: AtomicUsize::new(0),
            broken: AtomicBool::new(false),
            progress: Progress::default(),
            game: None,
        }
    }

    /// The same, for the game scenario whose ticks `log` records.
    pub(crate) fn with_game(mut self, log: Option<Arc<TickLog>>) -> Self {
        self.game = log;
        self
    }

    pub(crate) fn phase(&self) -> Phase {
        // Acquire: pairs with the Release in `set_phase`, so `start` and `back` are seen.
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        // Release: pairs with the Acquire in `phase`.
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// The sum of every room's highest revision (what "current" is checked against).
    pub(crate) fn room_max_sum(&self) -> u64 {
        // Relaxed: a monotonic figure compared again until it is stable.
        self.room_max
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .sum()
    }

    /// The lowest revision any client of `room` has reached, as last published.
    pub(crate) fn room_min(&self, room: usize) -> u64 {
        // Relaxed: a figure refreshed every few milliseconds; a stale one only slows the
        // writer down.
        self.room_min
            .iter()
            .map(|t| t[room].load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Whether every thread found all its clients current at the present `room_max`.
    pub(crate) fn all_current(&self) -> bool {
        let sum = self.room_max_sum();
        // Relaxed: see `room_max_sum`.
        self.current_at
            .iter()
            .all(|c| matches!(c.load(Ordering::Relaxed), v if v == sum || v == UNUSED))
    }
}

/// The generator's clock. The bench is part of the I/O shell: it times real sockets, so it
/// reads the real clock, here and nowhere else.
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> Instant {
    Instant::now()
}
