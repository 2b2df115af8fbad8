//! An encoded snapshot of a room: the state at one revision, shared by every reader.

use std::sync::OnceLock;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::epoch::Epoch;
use crate::protocol::{Dialect, encode};

/// The state of a room at one revision, encoded once and shared.
///
/// The model's JSON is encoded when the snapshot is made; the `SYNC.SNAPSHOT` message of
/// each dialect is built from it the first time a reader of that dialect asks, and shared
/// from then on.
#[derive(Debug)]
pub struct Snapshot {
    rev: u64,
    epoch: Epoch,
    state: Bytes,
    messages: [OnceLock<Bytes>; 2],
    /// The bytes of the operations committed after it, counted so far: up to which
    /// revision, and how many. Joiners asking whether it is still worth serving go on
    /// counting where the last one stopped, so the count costs each operation once.
    tail: Mutex<Tail>,
}

/// What [`Snapshot::tail`] has counted.
#[derive(Debug)]
struct Tail {
    to: u64,
    bytes: usize,
}

impl Snapshot {
    pub(super) fn new(rev: u64, epoch: Epoch, state: Bytes) -> Self {
        Self {
            rev,
            epoch,
            state,
            messages: [OnceLock::new(), OnceLock::new()],
            tail: Mutex::new(Tail { to: rev, bytes: 0 }),
        }
    }

    /// Whether the operations committed after this snapshot up to `head` add up to at
    /// most `budget` bytes; `len_of(rev)` is the length of the operation at `rev`, `None`
    /// if it is no longer held (the answer is then no).
    pub(super) fn tail_within(
        &self,
        head: u64,
        budget: usize,
        len_of: impl Fn(u64) -> Option<usize>,
    ) -> bool {
        let mut tail = self.tail.lock();
        while tail.to < head {
            if tail.bytes > budget {
                return false;
            }
            let Some(len) = len_of(tail.to + 1) else {
                return false;
            };
            tail.to += 1;
            tail.bytes = tail.bytes.saturating_add(len);
        }
        tail.bytes <= budget
    }

    /// The revision this snapshot is the state at.
    pub fn rev(&self) -> u64 {
        self.rev
    }

    /// The history this snapshot belongs to.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// The model's state as a JSON object.
    pub fn state_json(&self) -> &Bytes {
        &self.state
    }

    /// The whole `SYNC.SNAPSHOT` message in `dialect`, built at most once per dialect.
    pub fn message(&self, dialect: Dialect) -> &Bytes {
        self.messages[dialect.index()]
            .get_or_init(|| encode::snapshot(dialect, self.rev, self.epoch.as_str(), &self.state))
    }
}
