//! What sessions count about sync: resumes, snapshots, updates, the rate limit, and how
//! far behind connections are when they are flushed.
//!
//! One [`SessionCounters`] belongs to one thread (a server shard) and is shared by every
//! session on it (see [`crate::counters`] for why one writer). A session without
//! counters (an embedder's, a test's) counts nothing.

use crate::counters::{Counter, Histogram, HistogramCounts, POWERS_OF_TWO};
use crate::protocol::ErrorCode;

/// Why a snapshot was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapshotCause {
    /// A `JOIN` without `rev`.
    Join,
    /// A resume the ring could not serve (`REVISION_GAP` first).
    ResumeGap,
    /// A connected client fell behind the ring (`REVISION_GAP` first).
    Lagged,
}

/// The counts of the sessions of one thread; aligned to 128 bytes, as
/// `crossbeam_utils::CachePadded` is, so that no other data shares its cache lines.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct SessionCounters {
    /// `JOIN`s with `rev` answered with `SYNC.DELTAS` (empty when the client was current).
    pub(crate) resumes_deltas: Counter,
    /// `JOIN`s with `rev` answered with `REVISION_GAP` and a snapshot.
    pub(crate) resumes_gap: Counter,
    /// Snapshots sent, by [`SnapshotCause`] (in its order).
    pub(crate) snapshots: [Counter; 3],
    /// `UPDATE`s committed (duplicates excluded).
    pub(crate) updates_committed: Counter,
    /// `UPDATE`s whose `clientReqId` was already applied: nothing new was committed.
    pub(crate) updates_duplicate: Counter,
    /// `UPDATE`s refused with an `ERROR`, by code (in [`ErrorCode::ALL`]'s order): by the
    /// decoder (one that names its `clientReqId`), before `JOIN`, or by the model; the rate
    /// limit's refusals are in `rate_limited` instead.
    pub(crate) updates_rejected: [Counter; ErrorCode::ALL.len()],
    /// Messages refused for the message rate (`RESOURCE_EXHAUSTED` with `retryAfterMs`).
    pub(crate) rate_limited: Counter,
    /// Revisions between a connection's last sent revision and the head, at each flush
    /// that found it behind.
    pub(crate) lag: Histogram,
    /// Operations in each `SYNC.DELTAS` a flush sent.
    pub(crate) ops_per_frame: Histogram,
}

impl Default for SessionCounters {
    fn default() -> Self {
        Self {
            resumes_deltas: Counter::default(),
            resumes_gap: Counter::default(),
            snapshots: Default::default(),
            updates_committed: Counter::default(),
            updates_duplicate: Counter::default(),
            updates_rejected: Default::default(),
            rate_limited: Counter::default(),
            lag: Histogram::new(&POWERS_OF_TWO),
            ops_per_frame: Histogram::new(&POWERS_OF_TWO),
        }
    }
}

impl SessionCounters {
    /// Counts a snapshot sent for `cause`.
    pub(crate) fn snapshot(&self, cause: SnapshotCause) {
        self.snapshots[cause as usize].incr();
    }

    /// Counts an `UPDATE` refused with `code`.
    pub(crate) fn rejected(&self, code: ErrorCode) {
        if let Some(index) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.updates_rejected[index].incr();
        }
    }

    /// The counts now.
    pub(crate) fn read(&self) -> SessionCounts {
        SessionCounts {
            resumes_deltas: self.resumes_deltas.get(),
            resumes_gap: self.resumes_gap.get(),
            snapshots: self.snapshots.each_ref().map(Counter::get),
            updates_committed: self.updates_committed.get(),
            updates_duplicate: self.updates_duplicate.get(),
            updates_rejected: self.updates_rejected.each_ref().map(Counter::get),
            rate_limited: self.rate_limited.get(),
            lag: self.lag.read(),
            ops_per_frame: self.ops_per_frame.read(),
        }
    }
}

/// [`SessionCounters`] read at one instant, summable across threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionCounts {
    pub(crate) resumes_deltas: u64,
    pub(crate) resumes_gap: u64,
    pub(crate) snapshots: [u64; 3],
    pub(crate) updates_committed: u64,
    pub(crate) updates_duplicate: u64,
    pub(crate) updates_rejected: [u64; ErrorCode::ALL.len()],
    pub(crate) rate_limited: u64,
    pub(crate) lag: HistogramCounts,
    pub(crate) ops_per_frame: HistogramCounts,
}
