//! An encoded snapshot of a room: the state at one revision, shared by every reader.

use std::sync::OnceLock;

use bytes::Bytes;

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
}

impl Snapshot {
    pub(super) fn new(rev: u64, epoch: Epoch, state: Bytes) -> Self {
        Self {
            rev,
            epoch,
            state,
            messages: [OnceLock::new(), OnceLock::new()],
        }
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
