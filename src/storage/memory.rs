//! The memory backend: nothing is kept, and a new history's revisions start where no
//! earlier history of the same room could have reached.

use crate::clock::Clock;
use crate::epoch::Epoch;

use super::{History, MemoryRevisions, Opened, Storage, StorageError};

/// Keeps nothing: every room starts a new history (a new epoch) when it is opened.
///
/// # Restart-safe revisions
///
/// A client of the native dialect resumes with its epoch, so it can never be handed
/// another history's deltas. A ws-kit client resumes with its revision alone: if a room
/// restarted at 0 reached that revision again with a different history, the client would
/// get deltas that do not follow its state. With [`MemoryRevisions::RestartSafe`] (the
/// default), every history this storage starts begins at the server's start time in
/// microseconds since the Unix epoch (about 1.8 × 10^15 in 2026, below 2^53, so exact in
/// a JavaScript number until the year 2255). An earlier history of the same room started
/// at an earlier such time `t0` and committed, by the time it ended, fewer operations than
/// the microseconds that elapsed until this start `t1` (a room commits far fewer than a
/// million operations a second: the commit path alone costs more than a microsecond, see
/// `docs/benchmarks.md`), so every revision it handed out is below `t1`. A ws-kit client
/// of an earlier history therefore resumes from below this history's `bufferFirstRev`
/// and gets `REVISION_GAP` and a snapshot, never foreign deltas. This assumes the wall
/// clock does not go back between the two starts; a native-dialect client is safe
/// regardless, by its epoch.
#[derive(Debug, Clone)]
pub struct MemoryStorage {
    first_rev: u64,
}

impl MemoryStorage {
    /// A memory storage whose histories start as `revisions` says, dated by `clock`.
    pub fn new(revisions: MemoryRevisions, clock: &dyn Clock) -> Self {
        let first_rev = match revisions {
            MemoryRevisions::RestartSafe => clock.now_ms().saturating_mul(1000),
            MemoryRevisions::FromZero => 0,
        };
        Self { first_rev }
    }

    /// The revision every new history of this storage starts at.
    pub fn first_rev(&self) -> u64 {
        self.first_rev
    }
}

impl Storage for MemoryStorage {
    fn open(&self, name: &str, _ring_capacity: usize) -> Result<Opened, StorageError> {
        let epoch = Epoch::random().map_err(|e| StorageError::Failed {
            room: name.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Opened {
            history: History::New {
                epoch,
                first_rev: self.first_rev,
            },
            log: None,
        })
    }

    fn describe(&self) -> String {
        match self.first_rev {
            0 => "memory (nothing is kept across restarts; revisions start at 0)".into(),
            rev => format!(
                "memory (nothing is kept across restarts; new histories start at revision {rev})"
            ),
        }
    }
}
