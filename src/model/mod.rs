//! The application's state machine, as the engine sees it.
//!
//! A [`Model`] is the state of one room plus the rules that change it. The engine never
//! looks inside: it asks the model to turn a client's input into an operation (or reject
//! it), to check an operation the server commits itself, to apply an operation, and to
//! serialize itself as the snapshot. The same trait runs on the client, where the replica
//! applies committed operations and predicts its own pending inputs.
//!
//! [`presence`] is the built-in model of the protocol (participants with a name, a status
//! and a `lastActive` time); a game server implements `Model` for its own state, as
//! [`arena`] (entities moving on a grid) shows.
//!
//! # Wire shapes
//!
//! - The model's `Serialize` form is a JSON object: its fields become the fields of the
//!   `SYNC.SNAPSHOT` payload next to `rev` (presence: `participants`).
//! - An operation serializes as `{"type": ..., "payload": ...}` (serde's adjacently tagged
//!   enum, `#[serde(tag = "type", content = "payload")]`); the engine stores it as
//!   `{"rev", "type", "payload", "clientReqId"?}`.
//! - An input is the `UPDATE` payload without `baseRev` and `clientReqId` (presence:
//!   `{"patch": {...}}`); it should reject unknown fields (`deny_unknown_fields`).

pub mod arena;
pub mod presence;

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::ErrorCode;

/// The state machine of a room. See the [module documentation](self).
pub trait Model: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static {
    /// A committed operation: what the ring stores and every client applies.
    type Op: Serialize + DeserializeOwned + Clone + fmt::Debug + PartialEq + Send + Sync + 'static;
    /// A client's request to change the state (the `UPDATE` payload's own fields).
    type Input: Serialize
        + DeserializeOwned
        + Clone
        + fmt::Debug
        + PartialEq
        + Send
        + Sync
        + 'static;

    /// Decides what `actor`'s `input` does: the operation to commit, or why not.
    ///
    /// `now_ms` is the server's wall clock (the room's injected clock).
    ///
    /// # Errors
    ///
    /// A [`Rejection`] with the wire code and a reason; nothing is committed.
    fn decide(&self, actor: &str, input: &Self::Input, now_ms: u64) -> Result<Self::Op, Rejection>;

    /// Checks an operation the server commits on its own authority (a game tick, a
    /// background job) against the current state.
    ///
    /// # Errors
    ///
    /// A [`Rejection`] if the operation does not apply to this state.
    fn check(&self, op: &Self::Op) -> Result<(), Rejection>;

    /// Applies an operation that was decided or checked against this very state. It must
    /// not fail: the client applies the same operation to the same state.
    fn apply(&mut self, op: &Self::Op);

    /// A connection binds to `actor` (the `JOIN` message). Returns the operation to commit
    /// when something visible changes, or `None` (a reconnect that changes nothing must not
    /// move the revision).
    ///
    /// # Errors
    ///
    /// A [`Rejection`] if `actor` may not join (a bad name, a full room).
    fn join(&self, actor: &str, name: &str, now_ms: u64) -> Result<Option<Self::Op>, Rejection> {
        let _ = (actor, name, now_ms);
        Ok(None)
    }

    /// `actor` leaves (the `LEAVE` message, or its time-to-live ran out with no
    /// connection). Returns the operation to commit, if any.
    fn leave(&self, actor: &str, now_ms: u64) -> Option<Self::Op> {
        let _ = (actor, now_ms);
        None
    }

    /// The actors the state holds as present (participants). A room recovered from
    /// storage after a restart has no connection for them; it counts each as detached from
    /// the moment it was loaded, so those that do not come back within the time-to-live
    /// leave (see [`Room::expire_detached`](crate::room::Room::expire_detached)). The
    /// default: none.
    fn present_actors(&self) -> Vec<String> {
        Vec::new()
    }

    /// Client side: applies the expected effect of `actor`'s own pending `input` to the
    /// visible state. The default decides and applies it as the server would; a model
    /// whose server adds facts the client cannot know (a server time) may override it.
    fn predict(&mut self, actor: &str, input: &Self::Input, now_ms: u64) {
        if let Ok(op) = self.decide(actor, input, now_ms) {
            self.apply(&op);
        }
    }
}

/// Why a model refused an input or an operation: a wire code and a reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    /// The wire code of the `ERROR` this becomes.
    pub code: ErrorCode,
    /// The reason, for the client and the logs.
    pub message: String,
}

impl Rejection {
    /// A rejection with any code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `INVALID_ARGUMENT`: the input is malformed or out of bounds.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    /// `FAILED_PRECONDITION`: the input is fine but the state does not allow it.
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::FailedPrecondition, message)
    }

    /// `NOT_FOUND`: what the input names does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// `PERMISSION_DENIED`: the actor may not do this.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }
}
