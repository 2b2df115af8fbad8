//! The game loop's record of its flushes, shared with the receiving threads: for every
//! flush that moved the room, the revision it published and the instant just after it.
//!
//! One writer (the game loop) appends; any number of readers look a revision up without
//! a lock. The entries live in arrays allocated once, for the longest the run can last,
//! and are published by a length: the writer stores an entry's fields, then the length
//! (`Release`); a reader loads the length (`Acquire`) and reads only entries below it.
//!
//! A receiver may read a frame before the game loop has recorded the flush that published
//! it (the loop takes the clock after `room.flush()` returns, and a shard can be faster):
//! such a frame is [`Locate::After`] every recorded revision, and the receiver looks
//! again later.
//!
//! The log also holds the counters the driver samples at the edges of the measured
//! window (ticks run, operations committed, late ticks, players' moves applied and
//! rejected) and two flags: `measuring` (the window is open) and `ticking` (the driver
//! starts the loop once every client has joined, and stops it when every move is
//! answered, so that the room's head stays put and the drain can end).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where a revision falls among the published ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locate {
    /// Flush `i` published exactly this revision: it is a tick boundary.
    Published(usize),
    /// Between flushes: flush `i` is the first that published a higher revision.
    Between(usize),
    /// Above every revision recorded so far.
    After,
}

/// Locates `rev` among `len` strictly increasing revisions, `rev_at(i)` being the i-th.
/// The newest entry is tried first: a receiver that keeps up asks about it.
pub(crate) fn locate(len: usize, rev_at: impl Fn(usize) -> u64, rev: u64) -> Locate {
    if len == 0 || rev > rev_at(len - 1) {
        return Locate::After;
    }
    if rev == rev_at(len - 1) {
        return Locate::Published(len - 1);
    }
    // The first entry whose revision is at least `rev`.
    let (mut lo, mut hi) = (0, len - 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if rev_at(mid) < rev {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if rev_at(lo) == rev {
        Locate::Published(lo)
    } else {
        Locate::Between(lo)
    }
}

/// What a frame `from -> to` says about the ticks, once both ends are located.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Span {
    /// It ends at the boundary of flush `last` and carries the operations of flushes
    /// `first..=last` (more than one: the client was behind and its frames coalesced).
    Ticks { first: usize, last: usize },
    /// Its `toRev` was never published by a flush.
    NotAtBoundary,
    /// Its `toRev` is not recorded yet: look again later.
    Unknown,
}

/// Locates a frame `from -> to` among `len` published revisions.
pub(crate) fn span(len: usize, rev_at: impl Fn(usize) -> u64 + Copy, from: u64, to: u64) -> Span {
    let last = match locate(len, rev_at, to) {
        Locate::Published(i) => i,
        Locate::Between(_) => return Span::NotAtBoundary,
        Locate::After => return Span::Unknown,
    };
    // The first flush that published an operation above `from`.
    let first = match locate(len, rev_at, from) {
        Locate::Published(i) => (i + 1).min(last),
        Locate::Between(i) => i.min(last),
        Locate::After => last,
    };
    Span::Ticks { first, last }
}

/// The game loop's counters, as the driver samples them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) ticks: u64,
    pub(crate) operations: u64,
    /// Ticks that began more than one period after their scheduled time.
    pub(crate) late: u64,
    pub(crate) applied: u64,
    pub(crate) rejected: u64,
}

impl Counters {
    /// What happened between `self` (earlier) and `later`.
    pub(crate) fn until(&self, later: &Counters) -> Counters {
        Counters {
            ticks: later.ticks - self.ticks,
            operations: later.operations - self.operations,
            late: later.late - self.late,
            applied: later.applied - self.applied,
            rejected: later.rejected - self.rejected,
        }
    }
}

/// The flushes of one game loop and its counters.
#[derive(Debug)]
pub(crate) struct TickLog {
    origin: Instant,
    revs: Box<[AtomicU64]>,
    /// Nanoseconds from `origin` to the instant just after the flush.
    at_ns: Box<[AtomicU64]>,
    len: AtomicUsize,
    full: AtomicBool,
    ticks: AtomicU64,
    operations: AtomicU64,
    late: AtomicU64,
    applied: AtomicU64,
    rejected: AtomicU64,
    measuring: AtomicBool,
    ticking: AtomicBool,
}

impl TickLog {
    /// A log of at most `capacity` flushes, its instants counted from `origin`.
    pub(crate) fn new(origin: Instant, capacity: usize) -> Self {
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        Self {
            origin,
            revs: zeros(capacity),
            at_ns: zeros(capacity),
            len: AtomicUsize::new(0),
            full: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            operations: AtomicU64::new(0),
            late: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            measuring: AtomicBool::new(false),
            ticking: AtomicBool::new(false),
        }
    }

    /// Records a flush that published `rev` at `at` (the game loop only: one writer). A
    /// flush that did not move the room is not an entry.
    pub(crate) fn published(&self, rev: u64, at: Instant) {
        // Relaxed: only this thread writes the length.
        let len = self.len.load(Ordering::Relaxed);
        if len > 0 && self.revs[len - 1].load(Ordering::Relaxed) >= rev {
            return;
        }
        if len == self.revs.len() {
            self.full.store(true, Ordering::Relaxed);
            return;
        }
        let ns = u64::try_from(at.saturating_duration_since(self.origin).as_nanos());
        // Relaxed: published to readers by the Release store of the length below.
        self.revs[len].store(rev, Ordering::Relaxed);
        self.at_ns[len].store(ns.unwrap_or(u64::MAX), Ordering::Relaxed);
        // Release: pairs with the Acquire in `span`; the entry is written before.
        self.len.store(len + 1, Ordering::Release);
    }

    /// Counts one tick of the loop.
    pub(crate) fn tick(&self, operations: usize, applied: usize, rejected: usize, late: bool) {
        // Relaxed: statistics, sampled by the driver.
        let add = |c: &AtomicU64, n: usize| c.fetch_add(n as u64, Ordering::Relaxed);
        add(&self.ticks, 1);
        add(&self.operations, operations);
        add(&self.applied, applied);
        add(&self.rejected, rejected);
        add(&self.late, usize::from(late));
    }

    /// Locates a frame `from -> to` among the flushes recorded so far.
    pub(crate) fn span(&self, from: u64, to: u64) -> Span {
        // Acquire: pairs with the Release in `published`: entries below `len` are written.
        let len = self.len.load(Ordering::Acquire);
        span(len, |i| self.revs[i].load(Ordering::Relaxed), from, to)
    }

    /// The instant just after flush `i` (one `span` returned).
    pub(crate) fn flushed_at(&self, i: usize) -> Instant {
        // Relaxed: `i` came from `span`, which read the length with Acquire.
        self.origin + Duration::from_nanos(self.at_ns[i].load(Ordering::Relaxed))
    }

    /// Flushes recorded, and whether the log ran out of room for more.
    pub(crate) fn recorded(&self) -> (usize, bool) {
        // Acquire: as in `span`; Relaxed for the flag, a figure for the report.
        (
            self.len.load(Ordering::Acquire),
            self.full.load(Ordering::Relaxed),
        )
    }

    /// The counters now.
    pub(crate) fn counters(&self) -> Counters {
        // Relaxed: statistics; the driver takes two samples a window apart.
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            ticks: get(&self.ticks),
            operations: get(&self.operations),
            late: get(&self.late),
            applied: get(&self.applied),
            rejected: get(&self.rejected),
        }
    }

    /// Opens or closes the measured window (the loop times its ticks inside it).
    pub(crate) fn set_measuring(&self, on: bool) {
        // Relaxed: a flag polled once per tick; a tick more or less is immaterial.
        self.measuring.store(on, Ordering::Relaxed);
    }

    pub(crate) fn measuring(&self) -> bool {
        // Relaxed: see `set_measuring`.
        self.measuring.load(Ordering::Relaxed)
    }

    /// Starts or stops the loop's ticks (stopped, the room's head stays where it is).
    pub(crate) fn set_ticking(&self, on: bool) {
        // Relaxed: a flag polled once per tick, or every millisecond while stopped.
        self.ticking.store(on, Ordering::Relaxed);
    }

    pub(crate) fn is_ticking(&self) -> bool {
        // Relaxed: see `set_ticking`.
        self.ticking.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::control::now;

    const REVS: [u64; 4] = [100, 201, 305, 410];

    fn at(i: usize) -> u64 {
        REVS[i]
    }

    #[test]
    fn revisions_are_located_among_the_flushes() {
        assert_eq!(locate(0, at, 1), Locate::After);
        assert_eq!(locate(4, at, 410), Locate::Published(3));
        assert_eq!(locate(4, at, 100), Locate::Published(0));
        assert_eq!(locate(4, at, 201), Locate::Published(1));
        assert_eq!(locate(4, at, 99), Locate::Between(0));
        assert_eq!(locate(4, at, 250), Locate::Between(2));
        assert_eq!(locate(4, at, 411), Locate::After);
        // Only the recorded prefix counts.
        assert_eq!(locate(2, at, 305), Locate::After);
    }

    #[test]
    fn a_frame_ends_at_a_boundary_and_spans_the_ticks_it_carries() {
        // One tick: 201 -> 305.
        assert_eq!(span(4, at, 201, 305), Span::Ticks { first: 2, last: 2 });
        // A snapshot mid-tick at 250, then the rest of that tick.
        assert_eq!(span(4, at, 250, 305), Span::Ticks { first: 2, last: 2 });
        // Coalesced: three ticks in one frame.
        assert_eq!(span(4, at, 100, 410), Span::Ticks { first: 1, last: 3 });
        assert_eq!(span(4, at, 120, 410), Span::Ticks { first: 1, last: 3 });
        // Ends between two flushes: never published as a tick.
        assert_eq!(span(4, at, 201, 300), Span::NotAtBoundary);
        // Not recorded yet.
        assert_eq!(span(3, at, 305, 410), Span::Unknown);
        // An empty frame at a boundary.
        assert_eq!(span(4, at, 305, 305), Span::Ticks { first: 2, last: 2 });
    }

    #[test]
    fn the_log_records_moving_flushes_and_reports_their_instants() {
        let origin = now();
        let log = TickLog::new(origin, 3);
        assert_eq!(log.span(0, 10), Span::Unknown);
        log.published(10, origin + Duration::from_millis(1));
        log.published(10, origin + Duration::from_millis(2));
        log.published(20, origin + Duration::from_millis(3));
        assert_eq!(log.span(10, 20), Span::Ticks { first: 1, last: 1 });
        assert_eq!(log.flushed_at(1), origin + Duration::from_millis(3));
        log.published(30, origin);
        log.published(40, origin);
        assert_eq!(log.recorded(), (3, true));
        log.tick(5, 1, 1, true);
        log.tick(5, 0, 0, false);
        let c = log.counters();
        assert_eq!(
            Counters::default().until(&c),
            Counters {
                ticks: 2,
                operations: 10,
                late: 1,
                applied: 1,
                rejected: 1
            }
        );
    }
}
