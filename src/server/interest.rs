//! Which shards hold connections of a room, so that a commit wakes only those, and tells
//! each which room moved (a shard then looks at that room only, not at all of its rooms).
//!
//! Each room gets a [`RoomInterest`] as its commit listener: one `interested` flag and one
//! `queued` flag per shard. A commit wakes every interested shard whose flag was not
//! already queued, after putting the room's key on that shard's [`MovedRooms`]; a burst of
//! commits queues the room once per shard until the shard takes it.
//!
//! ## No lost wake-up
//!
//! - A shard that takes a room's key clears its `queued` flag (`swap`, AcqRel) before it
//!   reads the room: a commit after that queues it again; a commit before it is seen by
//!   the read (its `swap(true)` is earlier in the flag's modification order, and the
//!   shard's `swap(false)` reads it, so it synchronizes with it).
//! - A shard that files its first connection of a room sets `interested`, then looks at
//!   the room once itself; with a `SeqCst` fence on both sides (after the flag is set here,
//!   before the flags are read by the commit) either the commit sees the flag and wakes
//!   the shard, or the shard's look sees the commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};

use parking_lot::Mutex;

use super::shared::Wakers;
use crate::room::CommitListener;

/// One shard's list of rooms (by key) that moved since it last looked.
#[derive(Debug, Default)]
pub(super) struct MovedRooms {
    keys: Mutex<Vec<usize>>,
}

impl MovedRooms {
    /// Moves the queued keys to `out` (swapping buffers: no allocation in steady state).
    pub(super) fn take(&self, out: &mut Vec<usize>) {
        std::mem::swap(&mut *self.keys.lock(), out);
    }

    fn push(&self, key: usize) {
        self.keys.lock().push(key);
    }
}

/// One room's commit listener: wakes the shards that hold its connections.
pub(super) struct RoomInterest {
    /// The shards' key for the room.
    key: usize,
    wakers: Arc<Wakers>,
    /// Per shard: whether it holds connections of the room.
    interested: Box<[AtomicBool]>,
    /// Per shard: whether the room's key waits in its `MovedRooms`.
    queued: Box<[AtomicBool]>,
}

impl RoomInterest {
    /// The listener of the room the shards know as `key`.
    pub(super) fn new(key: usize, wakers: Arc<Wakers>) -> Self {
        let shards = wakers.shards.len();
        let flags = || (0..shards).map(|_| AtomicBool::new(false)).collect();
        Self {
            key,
            wakers,
            interested: flags(),
            queued: flags(),
        }
    }

    /// Shard `shard` holds connections of the room from now on (or, `false`, no more).
    /// After setting it, the shard must look at the room once itself (see the module doc).
    pub(super) fn set_interested(&self, shard: usize, interested: bool) {
        // A key the shard dropped unread (the room had left it) must not keep the room
        // from being queued again. Relaxed: ordered by the fence below.
        self.queued[shard].store(false, Ordering::Relaxed);
        // Relaxed, then the fence: pairs with the fence in `committed`.
        self.interested[shard].store(interested, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Shard `shard` took the room's key from its queue: the next commit queues it again.
    pub(super) fn taken(&self, shard: usize) {
        // AcqRel: the Acquire pairs with the Release of the `swap(true)` in `committed`, so
        // the shard sees every commit that found the key already queued.
        self.queued[shard].swap(false, Ordering::AcqRel);
    }
}

impl CommitListener for RoomInterest {
    fn committed(&self, _room: &str, _rev: u64) {
        // SeqCst fence: pairs with the one in `set_interested` (see the module doc).
        fence(Ordering::SeqCst);
        for (shard, interested) in self.interested.iter().enumerate() {
            // Relaxed: ordered by the fence above.
            if !interested.load(Ordering::Relaxed) {
                continue;
            }
            // AcqRel: the Release pairs with the Acquire in `taken`; it publishes the
            // commit (published before this listener runs) to the shard that takes the key.
            if !self.queued[shard].swap(true, Ordering::AcqRel) {
                self.wakers.moved[shard].push(self.key);
                self.wakers.shards[shard].wake();
            }
        }
    }
}
