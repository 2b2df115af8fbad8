//! Operations another node committed: how a room whose log is shared takes them in.
//!
//! With a log shared by several nodes (the cluster backend), a record the room did not
//! commit itself reaches it two ways: the node's tailer reads it from the log
//! ([`Room::follow`] registers the room with its log), or the room's own append is
//! refused because another node took that revision first, and the room catches up
//! before deciding again. Both go through [`Room::ingest`]'s path under the commit lock:
//! the operation is decoded and applied to the model, the **same bytes** the committing
//! node encoded go into the ring (encode once, across the cluster), the dedup window
//! learns the record's `(actor, clientReqId)`, and the revision is published like a
//! local commit, so shards fan it out from the ring exactly as they do their own.
//!
//! A record at or below the room's head is already there (the room's own commit coming
//! back through the tailer, or one read by both paths) and is skipped.

use std::sync::{Arc, Weak};

use crate::model::{Model, Rejection};
use crate::protocol::ErrorCode;
use crate::storage::{Follower, Record};

use super::{Committed, Room, decode_op, storage_rejection};

/// Why foreign records could not be taken in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The records skip revisions the log no longer holds (trimmed behind a snapshot).
    #[error("room {room:?} needs revision {expected} but the log holds only from {found} on")]
    Gap {
        /// The room.
        room: String,
        /// The revision the room needs next.
        expected: u64,
        /// The oldest revision the log could give.
        found: u64,
    },
    /// A record does not decode as an operation of this room's model.
    #[error("room {room:?}: the record at revision {rev} does not decode: {reason}")]
    Decode {
        /// The room.
        room: String,
        /// The record's revision.
        rev: u64,
        /// What failed.
        reason: String,
    },
    /// The log could not be read to fill a gap.
    #[error("room {room:?}: the log cannot be read: {reason}")]
    Unavailable {
        /// The room.
        room: String,
        /// The storage's error.
        reason: String,
    },
}

impl<M: Model> Room<M> {
    /// Takes in records another node committed to this room's shared log, oldest first:
    /// applies those above the head, fills a hole from the log, and publishes. Returns the
    /// room's head after them.
    ///
    /// # Errors
    ///
    /// [`IngestError`]; the records before the failing one are in.
    pub fn ingest(&self, records: Vec<Record>) -> Result<u64, IngestError> {
        let head_before = self.ring.head();
        let result = {
            let mut committed = self.committed.lock();
            self.ingest_all_locked(&mut committed, records)
        };
        let head = self.ring.head();
        if head > head_before {
            self.committed(head);
        }
        result.map(|()| head)
    }

    /// Registers this room with its log, when the log is shared with other nodes, so that
    /// the node's tailer brings in what they commit. The server does this for every room
    /// it opens; an embedder building a room on a shared log calls it once, after putting
    /// the room in an `Arc`.
    pub fn follow(self: &Arc<Self>) {
        if let Some(log) = self.log.as_ref().filter(|log| log.is_shared()) {
            log.follow(Arc::new(Tail(Arc::downgrade(self))));
        }
    }

    fn ingest_all_locked(
        &self,
        committed: &mut Committed<M>,
        records: Vec<Record>,
    ) -> Result<(), IngestError> {
        for record in records {
            if record.rev > self.ring.head() + 1 {
                // A hole: read what is missing before going on.
                self.fill_locked(committed)?;
            }
            self.ingest_locked(committed, record)?;
        }
        Ok(())
    }

    /// Reads every record after the head from the log and takes them in. The commit path
    /// calls this when its append found that another node got there first.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the log cannot be read or skips revisions; nothing was applied
    /// beyond the records that could be taken in.
    pub(super) fn catch_up_locked(&self, committed: &mut Committed<M>) -> Result<(), Rejection> {
        let before = self.ring.head();
        self.fill_locked(committed)
            .map_err(|e| Rejection::new(ErrorCode::Unavailable, format!("{e}; try again")))?;
        if self.ring.head() == before {
            return Err(Rejection::new(
                ErrorCode::Unavailable,
                format!(
                    "room {:?}: the log refused revision {} but holds nothing after {before}; try again",
                    &*self.name,
                    before + 1
                ),
            ));
        }
        Ok(())
    }

    fn fill_locked(&self, committed: &mut Committed<M>) -> Result<(), IngestError> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let records = log
            .read_after(self.ring.head())
            .map_err(|e| IngestError::Unavailable {
                room: self.name.to_string(),
                reason: storage_rejection(&e).message,
            })?;
        for record in records {
            self.ingest_locked(committed, record)?;
        }
        Ok(())
    }

    /// Applies one record if it is the next revision; skips it if the room has it.
    fn ingest_locked(&self, committed: &mut Committed<M>, record: Record) -> Result<(), IngestError> {
        let head = self.ring.head();
        if record.rev <= head {
            return Ok(());
        }
        if record.rev != head + 1 {
            return Err(IngestError::Gap {
                room: self.name.to_string(),
                expected: head + 1,
                found: record.rev,
            });
        }
        let op = decode_op::<M>(&record).map_err(|e| IngestError::Decode {
            room: self.name.to_string(),
            rev: record.rev,
            reason: e.to_string(),
        })?;
        committed.model.apply(&op);
        if let (Some(actor), Some(id)) = (&record.actor, &record.client_req_id) {
            committed.dedup.record(actor, id, record.rev);
        }
        self.ring.append(record.op);
        Ok(())
    }
}

/// The room as its log's tailer sees it; lets go once the room is dropped.
struct Tail<M: Model>(Weak<Room<M>>);

impl<M: Model> Follower for Tail<M> {
    fn head(&self) -> Option<u64> {
        self.0.upgrade().map(|room| room.rev())
    }

    fn ingest(&self, records: Vec<Record>) {
        let Some(room) = self.0.upgrade() else {
            return;
        };
        if let Err(e) = room.ingest(records) {
            tracing::error!(error = %e, "cannot take in another node's commits");
        }
    }
}
