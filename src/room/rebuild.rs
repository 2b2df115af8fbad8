//! A room's state rebuilt from a stored history (snapshot + tail): when the room is built
//! from storage, and in place when a room that follows a shared log fell behind the log's
//! retention.
//!
//! # Rebuilt in place
//!
//! A node whose replica of a room lagged (paused, overloaded, cut off from the engine)
//! while other nodes committed a snapshot interval's worth of operations may find that the
//! log no longer holds the next revision it needs: it was trimmed behind a newer stored
//! snapshot. Reopening the room would rebuild it, but a followed room has clients and is
//! never reopened while it does. So the room rebuilds itself under its commit lock, from
//! what [`RoomLog::reload`](crate::storage::RoomLog::reload) finds (the history as a node
//! opening the room now would, under the **same epoch**, since it is the same log): the
//! model and the dedup window from the snapshot, the tail applied on top, the ring
//! restarted just below the tail ([`Ring::restart_at`](crate::ring::Ring::restart_at)).
//! Connections are then exactly like clients behind the ring: a connection at a revision
//! the ring no longer holds gets `REVISION_GAP` and a snapshot, one within the tail gets
//! deltas, and commits go on from the new head without the room being reopened.

use bytes::Bytes;

use crate::model::Model;
use crate::storage::Recovered;

use super::dedup::Dedup;
use super::follow::IngestError;
use super::{Committed, Room, decode_op, storage_rejection};

/// A stored history decoded: the state and dedup window at its head, and the ring's
/// contents (the tail's bytes, from `base + 1` on).
pub(super) struct Restored<M> {
    pub(super) model: M,
    pub(super) dedup: Dedup,
    /// The revision just before the tail's first (the snapshot's if there is no tail).
    pub(super) base: u64,
    pub(super) ops: Vec<Bytes>,
}

/// Why a stored history does not decode: the revision of the snapshot or record, and
/// what failed.
pub(super) type Undecodable = (u64, String);

/// Decodes `recovered` on top of `model` (the state at revision 0 when there is no
/// snapshot): the snapshot's state and dedup window, then every tail record after the
/// snapshot applied in order.
pub(super) fn restore<M: Model>(
    mut model: M,
    dedup_window: usize,
    recovered: Recovered,
) -> Result<Restored<M>, Undecodable> {
    let mut dedup = Dedup::new(dedup_window);
    let snap_rev = recovered.snapshot.as_ref().map_or(0, |s| s.rev);
    if let Some(snapshot) = &recovered.snapshot {
        model =
            serde_json::from_slice(&snapshot.state).map_err(|e| (snapshot.rev, e.to_string()))?;
        for entry in &snapshot.dedup {
            dedup.record(&entry.actor, &entry.client_req_id, entry.rev);
        }
    }
    let base = recovered.tail.first().map_or(snap_rev, |r| r.rev - 1);
    let mut ops = Vec::with_capacity(recovered.tail.len());
    for record in recovered.tail {
        if record.rev > snap_rev {
            let op = decode_op::<M>(&record).map_err(|e| (record.rev, e.to_string()))?;
            model.apply(&op);
            if let (Some(actor), Some(id)) = (&record.actor, &record.client_req_id) {
                dedup.record(actor, id, record.rev);
            }
        }
        ops.push(record.op);
    }
    Ok(Restored {
        model,
        dedup,
        base,
        ops,
    })
}

impl<M: Model> Room<M> {
    /// The log no longer holds the revision after the head: rebuilds the room in place
    /// from the log's snapshot and tail (see the [module documentation](self)). Nothing
    /// changes unless the stored history decodes whole and reaches past the head.
    ///
    /// # Errors
    ///
    /// `gap` again when the log cannot rebuild the room (it keeps no snapshot past the
    /// head, or its history is another epoch's); [`IngestError::Unavailable`] when it
    /// cannot be read; [`IngestError::Decode`] when it does not decode.
    pub(super) fn rebuild_locked(
        &self,
        committed: &mut Committed<M>,
        gap: IngestError,
    ) -> Result<(), IngestError> {
        let Some(log) = &self.log else {
            return Err(gap);
        };
        let unavailable = |reason: String| IngestError::Unavailable {
            room: self.name.to_string(),
            reason,
        };
        let recovered = match log.reload() {
            Ok(Some(recovered)) => recovered,
            Ok(None) => return Err(gap),
            Err(e) => return Err(unavailable(storage_rejection(&e).message)),
        };
        if recovered.epoch != self.epoch {
            tracing::error!(room = %self.name, stored = %recovered.epoch, ours = %self.epoch,
                "the log holds another history than the room's: the room must be reopened");
            return Err(gap);
        }
        let head = self.ring.head();
        let snap_rev = recovered.snapshot.as_ref().map_or(0, |s| s.rev);
        if recovered.tail.first().map_or(snap_rev, |r| r.rev - 1) <= head {
            // The log holds what follows the head after all (it was read mid-trim).
            for record in recovered.tail {
                self.ingest_locked(committed, record)?;
            }
            return Ok(());
        }
        // Decoded on a copy first: a history that does not decode changes nothing.
        let restored = restore(committed.model.clone(), self.config.dedup_window, recovered)
            .map_err(|(rev, reason)| IngestError::Decode {
                room: self.name.to_string(),
                rev,
                reason,
            })?;
        committed.model = restored.model;
        committed.dedup = restored.dedup;
        self.ring.restart_at(restored.base);
        for op in restored.ops {
            self.ring.append(op);
        }
        tracing::warn!(room = %self.name, from = head, to = self.ring.head(), snapshot = snap_rev,
            "the room fell behind the log's retention: rebuilt from the stored snapshot and tail");
        Ok(())
    }
}
