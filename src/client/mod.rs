//! The client side: a replica of one room, with no I/O of its own, and a blocking
//! [`Connector`] that keeps one current over WebSocket.
//!
//! A [`Replica`] holds what the server last said (the server state and its revision
//! `serverRev`, the epoch) and the updates this client sent that the server has not
//! answered yet (the pending list). What the user sees, [`Replica::visible`], is always
//! the server state with the pending updates predicted on top, in order
//! ([`Model::predict`](crate::model::Model::predict)); so an update shows at once, and
//! disappears only if the server rejects it.
//!
//! The replica never touches a socket or a clock. Its caller (a connector, a test, the
//! fixture runner) drives it:
//!
//! 1. on connect, sends [`Replica::join_message`] and then every message of
//!    [`Replica::resend_messages`];
//! 2. sends the `UPDATE` that [`Replica::update`] returns for each local change;
//! 3. passes each text frame received to [`Replica::handle_text`] and acts on the
//!    [`ReplicaEvent`]s it returns; after a [`ReplicaEvent::Snapshot`], sends
//!    [`Replica::resend_messages`] (see [Gaps and snapshots](#gaps-and-snapshots));
//! 4. after an error, or whenever [`Replica::needs_resume`] is true, sends
//!    [`Replica::join_message`] again (or reconnects), which resumes from `serverRev`;
//! 5. calls [`Replica::disconnected`] when the connection drops.
//!
//! ```
//! use deltasync::client::{Replica, ReplicaEvent};
//! use deltasync::model::presence::{
//!     Participant, ParticipantChange, Patch, Presence, PresenceInput, PresenceLimits,
//!     PresenceOp, Status,
//! };
//! use deltasync::protocol::encode;
//!
//! let alice = Participant {
//!     id: "user-1".into(),
//!     name: "Alice".into(),
//!     status: Status::Online,
//!     last_active: 1000,
//! };
//! let mut replica = Replica::<Presence>::new("user-1");
//! replica.restore(Presence::from_participants([alice], PresenceLimits::default()), 5, None);
//!
//! let away = PresenceInput { patch: Patch { status: Some(Status::Away), ..Patch::default() } };
//! let _update = replica.update_with_id(away, "req-123".into(), Some(5), 1000);
//! // ... sent; the user sees it at once, the server state has not moved.
//! let status = |state: Option<&Presence>| state.unwrap().participant("user-1").unwrap().status;
//! assert_eq!(status(replica.visible()), Status::Away);
//! assert_eq!(status(replica.server_state()), Status::Online);
//! assert_eq!(replica.pending().len(), 1);
//!
//! // The server commits it at revision 6 and sends it back with its id: the ack.
//! let op = PresenceOp::Updated(ParticipantChange {
//!     id: "user-1".into(),
//!     status: Some(Status::Away),
//!     ..ParticipantChange::default()
//! });
//! let deltas = encode::deltas(5, 6, &[encode::operation(6, &op, Some("req-123")).unwrap()]);
//! let events = replica.handle_text(&deltas, 1010).unwrap();
//! assert_eq!(
//!     events,
//!     [
//!         ReplicaEvent::Applied { from: 5, to: 6 },
//!         ReplicaEvent::Acked { client_req_id: "req-123".into(), rev: 6 },
//!     ]
//! );
//! assert_eq!((replica.server_rev(), replica.pending().len()), (6, 0));
//! assert_eq!(status(replica.server_state()), Status::Away);
//! assert!(replica.was_acked("req-123"));
//! ```
//!
//! # Pending updates and acks
//!
//! An update leaves the pending list in exactly one of these ways (invariant 3):
//! an operation carrying its `clientReqId` arrives in `SYNC.DELTAS` (acked); a snapshot
//! arrives that already contains it, meaning the model accepts it on the snapshot and
//! predicting it there changes nothing (acked); an `ERROR` names it in `details.clientReqId` (rejected), unless the
//! same error carries `details.appliedRev`, the server's notice that a resent update was
//! already committed at that revision (acked once the replica has that revision). A
//! `retryable` `ERROR` naming it (`RESOURCE_EXHAUSTED` with `retryAfterMs` for a rate
//! limit, `UNAVAILABLE` for a full disk) settles nothing: the server did not process it,
//! so it stays pending and visible ([`ReplicaEvent::Deferred`]), and its caller sends it
//! again ([`Replica::message_of`]) after `retryAfterMs`, as the TypeScript client does;
//! a new connection resends it anyway. The
//! replica remembers the last [`REMEMBERED_ACKS`] acknowledged ids
//! ([`Replica::was_acked`]).
//!
//! A snapshot cannot say whether the server had processed an update yet: one whose
//! effect the snapshot already shows is acknowledged, and should the server reject it
//! afterwards (the state changed in between), that rejection comes as
//! [`ReplicaEvent::Error`], since nothing is pending under its id any more. The visible
//! state is right either way: the update changed nothing.
//!
//! Ids from [`Replica::update`] are `<actor>-<counter>-<random suffix>`: unique across
//! replicas and restarts, so the server's deduplication never mistakes a new update for a
//! resent one. Ids given to [`Replica::update_with_id`] must be as unique: an operation
//! of another participant that carries the same id would acknowledge the pending one.
//!
//! # Gaps and snapshots
//!
//! After `REVISION_GAP` the next message must be `SYNC.SNAPSHOT` (invariant 5): deltas in
//! between are refused with [`ReplicaError::DeltasWhileAwaitingSnapshot`]. (An `ERROR` in
//! between is handled; a second gap replaces the first.) [`Replica::detected_gap`] turns
//! true at the gap and stays so. A snapshot replaces the server state whatever its
//! revision (a server that restarted without persistence starts again lower, with a new
//! epoch); pending updates it does not contain stay pending and visible.
//!
//! Those must then be sent again, even on the same connection. A snapshot stands for the
//! deltas it skipped, and the acks they carried are lost with them: an update that was
//! committed and then overwritten (by a later update of the same client) is not
//! "contained" in the snapshot, and nothing else would ever settle it. The server's
//! answer to the resend settles it: "already applied at r" (an ack), the rejection, or
//! the commit if it had never arrived. Answers to resends that find nothing pending any
//! more are dropped quietly.
//!
//! # Refused messages
//!
//! Deltas that do not start at `serverRev` or do not carry exactly the revisions
//! `fromRev + 1 ..= toRev`, in order (invariant 1), are refused whole with a
//! [`ReplicaError`]; nothing of them is applied, and [`Replica::needs_resume`] becomes
//! true, as it does for a message that does not decode (it may have carried operations).
//! The replica never panics on what a server sends.
//!
//! # Reconnecting
//!
//! [`Replica::join_message`] resumes from `serverRev` (with the epoch in the native
//! dialect); the server answers with the missing deltas, or a gap and a snapshot. The
//! pending updates are then sent again as they were ([`Replica::resend_messages`]); the
//! server applies each `clientReqId` at most once (invariant 4) and answers a duplicate
//! with its `appliedRev`.

mod acks;
mod backoff;
#[cfg(feature = "blocking-client")]
mod connector;
mod outgoing;
mod replica;
#[cfg(feature = "blocking-client")]
mod report;
mod req_id;
#[cfg(feature = "blocking-client")]
mod retry;
#[cfg(feature = "blocking-client")]
mod transport;

pub use acks::REMEMBERED_ACKS;
pub use backoff::{Backoff, Jitter};
#[cfg(feature = "blocking-client")]
pub use connector::{Connector, ConnectorError, ConnectorOptions};
pub use replica::{Pending, Replica, ReplicaError, ReplicaEvent};
#[cfg(feature = "blocking-client")]
pub use report::{ConnectorEvent, ConnectorStatus, ResumeReport};

#[cfg(all(test, not(loom)))]
mod tests;
