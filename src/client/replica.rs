//! The client replica: server state, pending operations, visible state.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::acks::{IdMemory, REMEMBERED_ACKS};
use super::outgoing;
use super::req_id::{ReqIds, random_suffix};
use crate::epoch::Epoch;
use crate::model::Model;
use crate::protocol::Dialect;
use crate::protocol::decode::{
    CLIENT_REQ_ID_TRUNCATED, DecodeError, OperationRecord, ServerMessage, decode_server,
};
use crate::protocol::encode::GapInfo;

/// An `UPDATE` sent and not yet acknowledged or rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending<I> {
    /// The request's id, echoed by its ack or its rejection.
    pub client_req_id: String,
    /// What the update asks for.
    pub input: I,
    /// The replica's `serverRev` when the update was made (sent as `baseRev` unless the
    /// caller chose to send none).
    pub base_rev: u64,
    /// When the update was made: the time its prediction is replayed with.
    pub issued_at_ms: u64,
    /// The revision the server said it was already committed at, when that revision has
    /// not reached the replica yet (see [`Replica::handle`]).
    applied_rev: Option<u64>,
    /// The encoded `UPDATE`, sent again as is after a reconnect.
    message: Bytes,
}

/// What a server message did to the replica, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicaEvent {
    /// A `SYNC.SNAPSHOT` replaced the server state.
    Snapshot {
        /// Its revision.
        rev: u64,
        /// Whether it answered a `REVISION_GAP`.
        after_gap: bool,
    },
    /// `SYNC.DELTAS` moved the server state from `from` to `to`.
    Applied {
        /// The revision before.
        from: u64,
        /// The revision after.
        to: u64,
    },
    /// A pending update was acknowledged and left the pending list.
    Acked {
        /// Its id.
        client_req_id: String,
        /// The revision it was committed at; for an update found already contained in a
        /// snapshot, that snapshot's revision (it was committed at or before it).
        rev: u64,
    },
    /// The server rejected a pending update; it left the pending list.
    Rejected {
        /// Its id.
        client_req_id: String,
        /// The wire code of the `ERROR`.
        code: String,
        /// The server's reason.
        message: String,
    },
    /// The server did not process a pending update for now (a retryable `ERROR` naming
    /// it: a rate limit, a full disk); it stays pending and visible, to be sent again
    /// ([`Replica::message_of`]) after `retry_after_ms`, or with the resends of the next
    /// connection.
    Deferred {
        /// Its id.
        client_req_id: String,
        /// The wire code of the `ERROR` (`RESOURCE_EXHAUSTED`, `UNAVAILABLE`, ...).
        code: String,
        /// The server's reason.
        message: String,
        /// How long the server asked to wait before sending it again, when it said.
        retry_after_ms: Option<u64>,
    },
    /// `REVISION_GAP`: a snapshot must come next.
    Gap(GapInfo),
    /// An `ERROR` about no pending update (a refused `JOIN`, a message that named none).
    Error {
        /// The wire code.
        code: String,
        /// The server's reason.
        message: String,
        /// How long the server asked to wait before trying again, for a retryable error
        /// that said (a rate-limited `JOIN`).
        retry_after_ms: Option<u64>,
    },
}

/// A server message the replica refused. Nothing of it was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// `SYNC.DELTAS` does not start at the replica's revision (invariant 1).
    #[error("SYNC.DELTAS starts at revision {got_from}, but the replica is at {expected_from}")]
    NonContiguous {
        /// The replica's `serverRev`.
        expected_from: u64,
        /// The message's `fromRev`.
        got_from: u64,
    },
    /// `SYNC.DELTAS` has `toRev` before `fromRev`.
    #[error("SYNC.DELTAS goes backwards: fromRev {from} is after toRev {to}")]
    BadRange {
        /// `fromRev`.
        from: u64,
        /// `toRev`.
        to: u64,
    },
    /// `SYNC.DELTAS` carries a number of operations other than `toRev - fromRev`.
    #[error(
        "SYNC.DELTAS {from}->{to} carries {count} operations instead of {}",
        to.saturating_sub(*from)
    )]
    WrongOperationCount {
        /// `fromRev`.
        from: u64,
        /// `toRev`.
        to: u64,
        /// How many it carries.
        count: usize,
    },
    /// An operation of `SYNC.DELTAS` is not at the revision its place says.
    #[error("operation {index} of SYNC.DELTAS {from}->{to} has rev {rev}; expected {expected}")]
    BadOperationRevs {
        /// `fromRev`.
        from: u64,
        /// `toRev`.
        to: u64,
        /// The operation's place in the list, from 0.
        index: usize,
        /// Its `rev`.
        rev: u64,
        /// `fromRev + 1 + index`.
        expected: u64,
    },
    /// `SYNC.DELTAS` came after `REVISION_GAP`, whose next message must be a snapshot
    /// (invariant 5).
    #[error("SYNC.DELTAS {from}->{to} came after REVISION_GAP; a SYNC.SNAPSHOT must come first")]
    DeltasWhileAwaitingSnapshot {
        /// `fromRev`.
        from: u64,
        /// `toRev`.
        to: u64,
    },
    /// `SYNC.DELTAS` came before any state to apply them to.
    #[error("SYNC.DELTAS {from}->{to} came before any snapshot")]
    DeltasBeforeSnapshot {
        /// `fromRev`.
        from: u64,
        /// `toRev`.
        to: u64,
    },
    /// The message does not decode.
    #[error("undecodable server message: {0}")]
    Decode(#[from] DecodeError),
}

/// A client's copy of one room. See the [module documentation](super).
#[derive(Debug, Clone)]
pub struct Replica<M: Model> {
    actor: String,
    ids: ReqIds,
    server: Option<M>,
    visible: Option<M>,
    server_rev: u64,
    epoch: Option<Epoch>,
    pending: Vec<Pending<M::Input>>,
    acks: IdMemory,
    rejected: IdMemory,
    last_gap: Option<GapInfo>,
    awaiting_snapshot: bool,
    detected_gap: bool,
    needs_resume: bool,
    last_received_ms: Option<u64>,
}

impl<M: Model + PartialEq> Replica<M> {
    /// An empty replica for a client acting as participant `actor` (whose own updates it
    /// predicts), with request ids made unique by a random suffix.
    pub fn new(actor: &str) -> Self {
        Self::with_id_suffix(actor, &random_suffix())
    }

    /// Like [`Replica::new`], with a chosen suffix for the request ids
    /// (`<actor>-<counter>-<suffix>`): for deterministic tests and fixtures. The suffix
    /// must differ between replicas of the same participant.
    pub fn with_id_suffix(actor: &str, suffix: &str) -> Self {
        Self {
            actor: actor.to_owned(),
            ids: ReqIds::new(actor, suffix),
            server: None,
            visible: None,
            server_rev: 0,
            epoch: None,
            pending: Vec::new(),
            acks: IdMemory::new(REMEMBERED_ACKS),
            rejected: IdMemory::new(REMEMBERED_ACKS),
            last_gap: None,
            awaiting_snapshot: false,
            detected_gap: false,
            needs_resume: false,
            last_received_ms: None,
        }
    }

    /// The participant this replica acts as.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The revision of the server state (0 before any).
    pub fn server_rev(&self) -> u64 {
        self.server_rev
    }

    /// The server's history, when it said (native dialect).
    pub fn epoch(&self) -> Option<&Epoch> {
        self.epoch.as_ref()
    }

    /// The state at [`Replica::server_rev`], as the server committed it; `None` before
    /// the first snapshot.
    pub fn server_state(&self) -> Option<&M> {
        self.server.as_ref()
    }

    /// What the user sees: the server state with the pending updates predicted on top.
    pub fn visible(&self) -> Option<&M> {
        self.visible.as_ref()
    }

    /// The updates sent and not yet acknowledged or rejected, oldest first.
    pub fn pending(&self) -> &[Pending<M::Input>] {
        &self.pending
    }

    /// Whether this replica has ever been told of a `REVISION_GAP` (sticky until
    /// [`Replica::restore`]).
    pub fn detected_gap(&self) -> bool {
        self.detected_gap
    }

    /// The last `REVISION_GAP` received.
    pub fn last_gap(&self) -> Option<&GapInfo> {
        self.last_gap.as_ref()
    }

    /// Whether the replica refused server data and must resume: send
    /// [`Replica::join_message`] (it resumes from [`Replica::server_rev`]), on this
    /// connection or a new one. Cleared by the next snapshot or accepted deltas.
    pub fn needs_resume(&self) -> bool {
        self.needs_resume
    }

    /// Whether the update `client_req_id` was acknowledged (among the last
    /// [`REMEMBERED_ACKS`]).
    pub fn was_acked(&self, client_req_id: &str) -> bool {
        self.acks.contains(client_req_id)
    }

    /// When the last server message arrived (the `now_ms` given with it).
    pub fn last_received_ms(&self) -> Option<u64> {
        self.last_received_ms
    }

    /// Puts the replica in a known state: `state` at `rev` of history `epoch`, nothing
    /// pending, no gap seen. Acknowledged ids and the id counter are kept.
    pub fn restore(&mut self, state: M, rev: u64, epoch: Option<Epoch>) {
        self.visible = Some(state.clone());
        self.server = Some(state);
        self.server_rev = rev;
        self.epoch = epoch;
        self.pending.clear();
        self.last_gap = None;
        self.awaiting_snapshot = false;
        self.detected_gap = false;
        self.needs_resume = false;
    }

    /// The connection is gone: forgets what was expected of it (a snapshot after a gap).
    /// Pending updates stay, to be sent again with [`Replica::resend_messages`].
    pub fn disconnected(&mut self) {
        self.awaiting_snapshot = false;
    }

    /// Makes an update with a fresh id, predicts it on the visible state and returns the
    /// id and the `UPDATE` to send (with `baseRev` once the replica has a server state).
    pub fn update(&mut self, input: M::Input, now_ms: u64) -> (String, Bytes) {
        let client_req_id = self.ids.next_id();
        let base_rev = self.server.is_some().then_some(self.server_rev);
        let message = self.push_pending(input, client_req_id.clone(), base_rev, now_ms);
        (client_req_id, message)
    }

    /// Like [`Replica::update`] with a chosen id (unique among this participant's
    /// updates) and `baseRev` (`None` sends none).
    pub fn update_with_id(
        &mut self,
        input: M::Input,
        client_req_id: String,
        base_rev: Option<u64>,
        now_ms: u64,
    ) -> Bytes {
        self.push_pending(input, client_req_id, base_rev, now_ms)
    }

    fn push_pending(
        &mut self,
        input: M::Input,
        client_req_id: String,
        base_rev: Option<u64>,
        now_ms: u64,
    ) -> Bytes {
        let message = outgoing::update(&input, &client_req_id, base_rev);
        if let Some(visible) = self.visible.as_mut() {
            visible.predict(&self.actor, &input, now_ms);
        }
        self.pending.push(Pending {
            client_req_id,
            input,
            base_rev: base_rev.unwrap_or(self.server_rev),
            issued_at_ms: now_ms,
            applied_rev: None,
            message: message.clone(),
        });
        message
    }

    /// The `JOIN` for this connection. Once the replica has a server state it resumes:
    /// `rev` is its revision and, in the native dialect, `epoch` its history (a ws-kit
    /// server cannot check the history: after a restart it may answer with deltas of
    /// another one).
    pub fn join_message(&self, participant_id: &str, name: &str, dialect: Dialect) -> Bytes {
        let rev = self.server.is_some().then_some(self.server_rev);
        let epoch = match dialect {
            Dialect::Native => rev.and(self.epoch.as_ref()).map(Epoch::as_str),
            Dialect::WsKit => None,
        };
        outgoing::join(participant_id, name, rev, epoch)
    }

    /// The `UPDATE` of the pending update `client_req_id`, as first sent (to send a
    /// [deferred](ReplicaEvent::Deferred) update again); `None` once it is settled.
    pub fn message_of(&self, client_req_id: &str) -> Option<Bytes> {
        let index = self.pending_index(client_req_id)?;
        Some(self.pending[index].message.clone())
    }

    /// The `UPDATE`s of every pending update, oldest first, as first sent: to send after
    /// the `JOIN` of a new connection (the server applies each id at most once).
    pub fn resend_messages(&self) -> Vec<Bytes> {
        self.pending.iter().map(|p| p.message.clone()).collect()
    }

    /// Decodes and handles one server message.
    ///
    /// # Errors
    ///
    /// As [`Replica::handle`]; an undecodable message is [`ReplicaError::Decode`] and
    /// also sets [`Replica::needs_resume`] (it may have carried operations).
    pub fn handle_text(
        &mut self,
        text: &[u8],
        now_ms: u64,
    ) -> Result<Vec<ReplicaEvent>, ReplicaError> {
        self.last_received_ms = Some(now_ms);
        match decode_server::<M>(text) {
            Ok(message) => self.handle(message, now_ms),
            Err(error) => {
                self.needs_resume = true;
                Err(ReplicaError::Decode(error))
            }
        }
    }

    /// Handles one server message that arrived at `now_ms`; returns what it did.
    ///
    /// - `SYNC.SNAPSHOT` replaces the server state, its revision (and the epoch when
    ///   given). Pending updates it already contains (the model accepts them there, and
    ///   predicting them changes nothing) are acknowledged; the others stay, and must be
    ///   sent again ([`Replica::resend_messages`]).
    /// - `SYNC.DELTAS` must start at [`Replica::server_rev`] and carry exactly the
    ///   operations `fromRev + 1 ..= toRev` in order; each is applied, and one carrying
    ///   the id of a pending update acknowledges it.
    /// - `REVISION_GAP` is remembered; the next message must be the snapshot.
    /// - `ERROR` (or `RPC_ERROR`) whose `details.clientReqId` names a pending update
    ///   (or, marked `details.clientReqIdTruncated`, is the prefix of the over-long id of
    ///   one: the oldest such) rejects it, unless `details.appliedRev` says the server had already committed it
    ///   (a resent duplicate): then it is acknowledged once the replica has that revision;
    ///   or unless the error is `retryable` (a rate limit, a full disk): the server did not
    ///   process it, and it stays pending ([`ReplicaEvent::Deferred`]).
    ///   Other errors become [`ReplicaEvent::Error`], except the expected answers to a
    ///   resend: "already applied" about an acknowledged update, or a rejection about an
    ///   update already rejected.
    ///
    /// # Errors
    ///
    /// [`ReplicaError`] for deltas that break invariant 1 or 5 or come before any
    /// snapshot. Nothing is applied and [`Replica::needs_resume`] becomes true.
    pub fn handle(
        &mut self,
        message: ServerMessage<M>,
        now_ms: u64,
    ) -> Result<Vec<ReplicaEvent>, ReplicaError> {
        self.last_received_ms = Some(now_ms);
        match message {
            ServerMessage::Snapshot { rev, epoch, state } => {
                Ok(self.on_snapshot(rev, epoch, state))
            }
            ServerMessage::Deltas {
                from,
                to,
                operations,
            } => self.on_deltas(from, to, operations).inspect_err(|_| {
                self.needs_resume = true;
            }),
            ServerMessage::Gap { info, .. } => Ok(self.on_gap(info)),
            ServerMessage::Error {
                code,
                message,
                details,
                retryable,
                retry_after_ms,
            } => {
                let retry = retryable.then_some(retry_after_ms);
                Ok(self.on_error(code, message, details.as_ref(), retry))
            }
        }
    }

    fn on_snapshot(&mut self, rev: u64, epoch: Option<Epoch>, state: M) -> Vec<ReplicaEvent> {
        let after_gap = std::mem::take(&mut self.awaiting_snapshot);
        if epoch.is_some() && self.epoch.is_some() && epoch != self.epoch {
            // "Already applied at r" spoke of the old history.
            self.pending.iter_mut().for_each(|p| p.applied_rev = None);
        }
        if epoch.is_some() {
            self.epoch = epoch;
        }
        self.server_rev = rev;
        self.needs_resume = false;
        let mut events = vec![ReplicaEvent::Snapshot { rev, after_gap }];
        for pending in std::mem::take(&mut self.pending) {
            let applied = pending.applied_rev.filter(|&applied| applied <= rev);
            if applied.is_some() || self.contains(&state, &pending) {
                self.acks.record(&pending.client_req_id);
                events.push(ReplicaEvent::Acked {
                    client_req_id: pending.client_req_id,
                    rev: applied.unwrap_or(rev),
                });
            } else {
                self.pending.push(pending);
            }
        }
        self.server = Some(state);
        self.rebuild_visible();
        events
    }

    /// Whether `state` already holds what `pending` asks: the model accepts it there and
    /// predicting it changes nothing. Only a "yes" must be certain: a "no" keeps the update
    /// pending, and the resend that follows settles it. So an input the model refuses (which
    /// predicts to nothing on any state) is never taken as contained: the server will
    /// reject it, and the replica must report that.
    fn contains(&self, state: &M, pending: &Pending<M::Input>) -> bool {
        let (actor, input, at) = (&self.actor, &pending.input, pending.issued_at_ms);
        if state.decide(actor, input, at).is_err() {
            return false;
        }
        let mut probe = state.clone();
        probe.predict(actor, input, at);
        probe == *state
    }

    fn on_deltas(
        &mut self,
        from: u64,
        to: u64,
        operations: Vec<OperationRecord<M::Op>>,
    ) -> Result<Vec<ReplicaEvent>, ReplicaError> {
        if self.awaiting_snapshot {
            return Err(ReplicaError::DeltasWhileAwaitingSnapshot { from, to });
        }
        if self.server.is_none() {
            return Err(ReplicaError::DeltasBeforeSnapshot { from, to });
        }
        if from != self.server_rev {
            return Err(ReplicaError::NonContiguous {
                expected_from: self.server_rev,
                got_from: from,
            });
        }
        check_revs(from, to, &operations)?;
        let rebase = !self.pending.is_empty();
        self.apply(&operations, rebase);
        self.server_rev = to;
        self.needs_resume = false;
        let mut events = vec![ReplicaEvent::Applied { from, to }];
        for record in operations {
            if let Some(id) = record.client_req_id {
                events.extend(self.ack(&id, record.rev));
            }
        }
        self.ack_applied(&mut events);
        if rebase {
            self.rebuild_visible();
        }
        Ok(events)
    }

    /// Applies checked operations to the server state, and to the visible state too when
    /// no update is pending (both are then the same state, and no rebuild is needed).
    fn apply(&mut self, operations: &[OperationRecord<M::Op>], rebase: bool) {
        let apply_all = |state: &mut M| operations.iter().for_each(|r| state.apply(&r.op));
        if let Some(server) = self.server.as_mut() {
            apply_all(server);
        }
        if let Some(visible) = self.visible.as_mut().filter(|_| !rebase) {
            apply_all(visible);
        }
    }

    /// Acknowledges the pending update `id`, if there is one.
    fn ack(&mut self, id: &str, rev: u64) -> Option<ReplicaEvent> {
        let index = self.pending_index(id)?;
        let pending = self.pending.remove(index);
        self.acks.record(&pending.client_req_id);
        Some(ReplicaEvent::Acked {
            client_req_id: pending.client_req_id,
            rev,
        })
    }

    /// Acknowledges the pending updates the server said were applied at a revision the
    /// replica has now reached.
    fn ack_applied(&mut self, events: &mut Vec<ReplicaEvent>) {
        let reached = |p: &Pending<M::Input>| p.applied_rev.is_some_and(|r| r <= self.server_rev);
        let (done, open): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(reached);
        self.pending = open;
        for pending in done {
            self.acks.record(&pending.client_req_id);
            events.push(ReplicaEvent::Acked {
                rev: pending.applied_rev.unwrap_or(self.server_rev),
                client_req_id: pending.client_req_id,
            });
        }
    }

    fn pending_index(&self, id: &str) -> Option<usize> {
        self.pending.iter().position(|p| p.client_req_id == id)
    }

    /// The oldest pending update whose id is longer than `prefix` and starts with it: the
    /// one an error naming the marked prefix of an over-long id is about (the server
    /// answers in the order the updates were sent).
    fn pending_index_by_prefix(&self, prefix: &str) -> Option<usize> {
        self.pending.iter().position(|p| {
            p.client_req_id.len() > prefix.len() && p.client_req_id.starts_with(prefix)
        })
    }

    fn on_gap(&mut self, info: GapInfo) -> Vec<ReplicaEvent> {
        self.awaiting_snapshot = true;
        self.detected_gap = true;
        self.last_gap = Some(info);
        vec![ReplicaEvent::Gap(info)]
    }

    /// `retry` is `Some(retryAfterMs)` for a retryable error.
    fn on_error(
        &mut self,
        code: String,
        message: String,
        details: Option<&Map<String, Value>>,
        retry: Option<Option<u64>>,
    ) -> Vec<ReplicaEvent> {
        let detail = |key: &str| details.and_then(|d| d.get(key));
        let applied_rev = detail("appliedRev").and_then(Value::as_u64);
        let retry_after_ms = retry.flatten();
        let Some(id) = detail("clientReqId").and_then(Value::as_str) else {
            return vec![ReplicaEvent::Error {
                code,
                message,
                retry_after_ms,
            }];
        };
        let truncated = detail(CLIENT_REQ_ID_TRUNCATED) == Some(&Value::Bool(true));
        let found = match truncated {
            true => self.pending_index_by_prefix(id),
            false => self.pending_index(id),
        };
        let Some(index) = found else {
            if self.is_answer_to_a_resend(id, truncated, applied_rev) {
                return Vec::new();
            }
            return vec![ReplicaEvent::Error {
                code,
                message,
                retry_after_ms,
            }];
        };
        match applied_rev {
            Some(rev) if rev <= self.server_rev => {
                let id = self.pending[index].client_req_id.clone();
                let acked = self.ack(&id, rev);
                self.rebuild_visible();
                acked.into_iter().collect()
            }
            Some(rev) => {
                // The operation is on its way in deltas (which will ack it by its id)
                // or a snapshot; keep predicting it until then.
                self.pending[index].applied_rev = Some(rev);
                Vec::new()
            }
            None if retry.is_some() => vec![ReplicaEvent::Deferred {
                client_req_id: self.pending[index].client_req_id.clone(),
                code,
                message,
                retry_after_ms,
            }],
            None => {
                let rejected = self.pending.remove(index);
                self.rejected.record(&rejected.client_req_id);
                self.rebuild_visible();
                vec![ReplicaEvent::Rejected {
                    client_req_id: rejected.client_req_id,
                    code,
                    message,
                }]
            }
        }
    }

    /// Whether an error about an update no longer pending is the expected answer to a
    /// resend: "already applied" for an acknowledged update, or the same rejection again
    /// (of an over-long id, when `id` is its marked prefix).
    fn is_answer_to_a_resend(&self, id: &str, truncated: bool, applied_rev: Option<u64>) -> bool {
        match (applied_rev, truncated) {
            (Some(_), _) => self.acks.contains(id),
            (None, false) => self.rejected.contains(id),
            (None, true) => self.rejected.contains_longer_with_prefix(id),
        }
    }

    /// visible = server state + pending predictions, in order.
    fn rebuild_visible(&mut self) {
        self.visible = self.server.as_ref().map(|server| {
            let mut visible = server.clone();
            for pending in &self.pending {
                visible.predict(&self.actor, &pending.input, pending.issued_at_ms);
            }
            visible
        });
    }
}

/// Checks that `operations` are exactly the revisions `from + 1 ..= to`, in order.
fn check_revs<Op>(
    from: u64,
    to: u64,
    operations: &[OperationRecord<Op>],
) -> Result<(), ReplicaError> {
    if to < from {
        return Err(ReplicaError::BadRange { from, to });
    }
    if u64::try_from(operations.len()).ok() != Some(to - from) {
        return Err(ReplicaError::WrongOperationCount {
            from,
            to,
            count: operations.len(),
        });
    }
    if operations.is_empty() {
        return Ok(());
    }
    // `from < to` here, so `from + 1` cannot overflow.
    for (index, (record, expected)) in operations.iter().zip(from + 1..=to).enumerate() {
        if record.rev != expected {
            return Err(ReplicaError::BadOperationRevs {
                from,
                to,
                index,
                rev: record.rev,
                expected,
            });
        }
    }
    Ok(())
}
