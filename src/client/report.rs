//! What a [`Connector`](super::Connector) tells its user about its connection: where it
//! is ([`ConnectorStatus`]) and what happened ([`ConnectorEvent`], [`ResumeReport`]). The
//! names follow the TypeScript client's `status`, `reconnect` and `resume` events.

use std::time::Duration;

use crate::protocol::encode::GapInfo;

/// Where a connector is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectorStatus {
    /// Connected, its `JOIN` answered.
    Live,
    /// Connected, waiting for the answer to its `JOIN`.
    Joining,
    /// Not connected; a reconnect is scheduled.
    Reconnecting,
    /// Not connected and not reconnecting: closed by its user, refused by the server, or
    /// told the server is gone for good.
    Stopped,
}

/// How a `JOIN` was answered: with the first state, by deltas (a resume), or by a
/// snapshot that replaced the state (Centrifugo's `recovered: false`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResumeReport {
    /// The first state of a replica that had none: a snapshot at `rev`.
    Joined {
        /// Its revision.
        rev: u64,
    },
    /// The replica resumed by deltas from `from_rev` to `to_rev`: nothing was lost.
    Resumed {
        /// The revision the replica had.
        from_rev: u64,
        /// The revision it has now.
        to_rev: u64,
        /// How many operations it received (`to_rev - from_rev`).
        operations: u64,
    },
    /// The replica had a state, and the server answered with a snapshot: it was too far
    /// behind (`gap` says by how much), or the room's history changed (`epoch_changed`:
    /// a server without durable storage restarted).
    Reset {
        /// The revision of the snapshot.
        rev: u64,
        /// The `REVISION_GAP` that came before it, if one did.
        gap: Option<GapInfo>,
        /// Whether the snapshot belongs to another history than the replica's.
        epoch_changed: bool,
    },
}

/// Something that happened to a connector's connection, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectorEvent {
    /// The connection was lost or refused, and another is scheduled after `delay`.
    Reconnect {
        /// The attempt this will be, from 1 (reset once a `JOIN` is answered).
        attempt: u32,
        /// How long the connector waits before it: the backoff delay, or longer when
        /// the server asked for longer (`Retry-After`, `retryAfterMs`).
        delay: Duration,
        /// Why the connection ended (the close code and reason, the error).
        cause: String,
    },
    /// A `JOIN` was answered.
    Resume(ResumeReport),
    /// The connector stopped and will not reconnect.
    Stopped {
        /// Why.
        cause: String,
    },
}
