//! What connections may see of a room: the published revision, the lower of what the
//! flush policy wants shown and what storage has made durable.
//!
//! Two inputs move it: the commit path (`want`: under `Immediate` each commit, under
//! `Tick` each flush) and the storage's syncer (`durable`, under `sync = "always"` only;
//! every other backend is durable as soon as the commit returns, so `durable` starts at
//! `u64::MAX`). Whoever moves an input recomputes the minimum and publishes it; the
//! listeners (the shards' wakers) are told once per move.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;
// The condition variable only serves snapshot encoders waiting for storage (never under
// the loom models, which run on memory storage), so it stays parking_lot's.
use parking_lot::{Condvar, Mutex};

use crate::storage::DurableListener;
use crate::sync::{ArcSwap, AtomicU64, Ordering};

use super::CommitListener;

/// The published revision and what it follows. Shared with the room's log, which
/// reports durability to it.
pub(super) struct Visibility {
    name: Arc<str>,
    published: CachePadded<AtomicU64>,
    wanted: AtomicU64,
    durable: AtomicU64,
    pub(super) listeners: ArcSwap<Vec<Arc<dyn CommitListener>>>,
    /// Wakes snapshot encoders waiting for a revision to be durable.
    durable_wait: (Mutex<()>, Condvar),
}

impl Visibility {
    /// Starts at `rev`; `waits_for_storage` when the log reports durability later.
    pub(super) fn new(name: Arc<str>, rev: u64, waits_for_storage: bool) -> Self {
        Self {
            name,
            published: CachePadded::new(AtomicU64::new(rev)),
            wanted: AtomicU64::new(rev),
            durable: AtomicU64::new(if waits_for_storage { rev } else { u64::MAX }),
            listeners: ArcSwap::from_pointee(Vec::new()),
            durable_wait: (Mutex::new(()), Condvar::new()),
        }
    }

    /// The published revision.
    pub(super) fn published(&self) -> u64 {
        // Acquire: pairs with the Release `fetch_max` in `advance`: a reader that sees `rev`
        // finds its operations in the ring (appended before `want` was called).
        self.published.load(Ordering::Acquire)
    }

    /// The flush policy wants `rev` shown.
    pub(super) fn want(&self, rev: u64) {
        // SeqCst (with `durable`): the two inputs are stored, then both read, in `advance`.
        // Whichever of two racing movers stores last sees both new values, so the
        // published revision never stays below what both allow.
        self.wanted.fetch_max(rev, Ordering::SeqCst);
        self.advance();
    }

    /// Whether `rev` is durable (always, without a log that reports durability).
    pub(super) fn is_durable(&self, rev: u64) -> bool {
        // SeqCst: see `want`.
        self.durable.load(Ordering::SeqCst) >= rev
    }

    /// Waits up to `timeout` for `rev` to be durable; whether it is.
    pub(super) fn wait_durable(&self, rev: u64, timeout: Duration) -> bool {
        let (lock, condvar) = &self.durable_wait;
        let mut guard = lock.lock();
        let mut left = timeout;
        let step = Duration::from_millis(10);
        while !self.is_durable(rev) {
            if left.is_zero() {
                return false;
            }
            let _ = condvar.wait_for(&mut guard, step.min(left));
            left = left.saturating_sub(step);
        }
        true
    }

    /// Publishes the lower of the two inputs if that moves the published revision.
    fn advance(&self) {
        // SeqCst: see `want`.
        let target = self
            .wanted
            .load(Ordering::SeqCst)
            .min(self.durable.load(Ordering::SeqCst));
        // Release: pairs with the Acquire in `published`; a reader that sees `target` (or a
        // later value: each `fetch_max` continues the release sequence) finds its
        // operations in the ring, appended before by this thread under the commit lock, or
        // by the committing thread before the flushing thread's Acquire of the head. No
        // Acquire: nothing after this depends on what other publishers wrote. Checked by
        // `src/tests/loom_room.rs` (it fails with Relaxed here).
        if self.published.fetch_max(target, Ordering::Release) < target {
            self.notify(target);
        }
    }

    /// Tells the listeners that the room moved (or has a new rejection) at `rev`.
    pub(super) fn notify(&self, rev: u64) {
        for listener in self.listeners.load().iter() {
            listener.committed(&self.name, rev);
        }
    }
}

impl DurableListener for Visibility {
    fn durable(&self, rev: u64) {
        // SeqCst: see `want`.
        self.durable.fetch_max(rev, Ordering::SeqCst);
        self.advance();
        let (lock, condvar) = &self.durable_wait;
        drop(lock.lock());
        condvar.notify_all();
    }
}
