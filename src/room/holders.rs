//! Which node holds which participant, for a room whose log is shared by several nodes:
//! so that the participants of a node that dies leave.
//!
//! A node expires only the participants whose connections it saw close
//! ([`Room::expire_detached`]); a node that is killed expires nothing, and its participants
//! would stay present forever. So a node tells the log which actors it holds (joined or
//! bound to a connection here) **before** their join is committed
//! ([`RoomLog::hold`](crate::storage::RoomLog::hold)), and lets go of them after their
//! leave here; the cluster backend keeps that beside the room's log, with a heartbeat per
//! node. A present participant that no live node holds then belongs to nobody: any node
//! following the room commits its `leave`, an ordinary operation through the ordinary
//! commit path ([`Room::expire_unheld`]). The decision is taken under the commit lock
//! against the log's head and asks the log again there, so two nodes sweeping at once
//! commit one `leave` (the second finds the participant gone after its catch-up), and a
//! participant that came back on a live node meanwhile is held again and stays.

use std::borrow::Cow;

use crate::model::{Model, Rejection};

use super::{Origin, Room, storage_rejection};

impl<M: Model> Room<M> {
    /// The participants the state holds as present.
    pub fn present_actors(&self) -> Vec<String> {
        self.committed.lock().model.present_actors()
    }

    /// Tells the shared log that this node holds `actor`, if it did not already: before a
    /// join is committed, so that the join is never in the log without a live holder.
    /// The caller holds the attachments lock. A failure is logged and left to the next
    /// [`Room::reconcile_holds`] (the engine is down: a join that commits is refused
    /// anyway; a resume, which commits nothing, goes on).
    pub(super) fn hold_new(&self, known: bool, actor: &str) {
        let Some(log) = self.log.as_ref().filter(|log| log.is_shared()) else {
            return;
        };
        if known {
            return;
        }
        if let Err(e) = log.hold(actor) {
            tracing::debug!(room = %self.name, actor, error = %e, "cannot record that this node holds a participant");
        }
    }

    /// This node no longer holds `actor` (it left here): tells the shared log. A failure
    /// is logged and left to the next [`Room::reconcile_holds`].
    pub(super) fn let_go_of(&self, actor: &str) {
        let Some(log) = self.log.as_ref().filter(|log| log.is_shared()) else {
            return;
        };
        if let Err(e) = log.let_go(actor) {
            tracing::debug!(room = %self.name, actor, error = %e, "cannot record that this node let go of a participant");
        }
    }

    /// Makes what the shared log says this node holds (`held`) match the room: holds the
    /// attached actors it lacks, lets go of those neither attached nor present (a let-go
    /// that failed). Under the attachments lock, which every join holds from its hold to
    /// its commit, so no join's hold is let go of halfway.
    pub fn reconcile_holds(&self, held: &[String]) {
        let Some(log) = self.log.as_ref().filter(|log| log.is_shared()) else {
            return;
        };
        let attachments = self.attachments.lock();
        // Lock order: attachments, then committed.
        let present = self.committed.lock().model.present_actors();
        let result = attachments
            .actors()
            .filter(|actor| !held.iter().any(|h| h == actor))
            .try_for_each(|actor| log.hold(actor))
            .and_then(|()| {
                held.iter()
                    .filter(|actor| !attachments.contains(actor) && !present.contains(actor))
                    .try_for_each(|actor| log.let_go(actor))
            });
        if let Err(e) = result {
            tracing::debug!(room = %self.name, error = %e, "cannot record which participants this node holds");
        }
    }

    /// Commits the `leave` of each of `actors` that has no connection here, is present,
    /// and that no live node holds (asked again against the log's head, under the commit
    /// lock). Returns the revisions committed.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the log cannot be read or written; the actors before have left.
    pub fn expire_unheld(&self, actors: &[String]) -> Result<Vec<u64>, Rejection> {
        let Some(log) = self.log.as_ref().filter(|log| log.is_shared()) else {
            return Ok(Vec::new());
        };
        // Held across the leaves, so that no connection attaches to an actor between the
        // check and its `participant.left` (lock order: attachments, then committed).
        let attachments = self.attachments.lock();
        let mut revs = Vec::new();
        for actor in actors.iter().filter(|actor| !attachments.contains(actor)) {
            let decided = self.decide_and_commit(Origin::SERVER, |model| {
                if !model.present_actors().iter().any(|a| a == actor) {
                    return Ok(None);
                }
                match log.held_by_a_live_node(actor) {
                    Ok(true) => Ok(None),
                    Ok(false) => Ok(model.leave(actor, self.clock.now_ms()).map(Cow::Owned)),
                    Err(e) => Err(storage_rejection(&e)),
                }
            })?;
            if let Some(rev) = decided.rev() {
                tracing::info!(room = %self.name, actor, rev, "a participant no live node holds left");
                revs.push(rev);
            }
        }
        Ok(revs)
    }
}
