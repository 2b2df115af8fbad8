//! Tests of the client replica: one per rule (`replica`), and a property test against a
//! real room as the reference server (`random`).

mod random;
mod replica;

use bytes::Bytes;
use serde_json::Value;

use crate::epoch::Epoch;
use crate::model::presence::{
    Participant, ParticipantChange, Patch, Presence, PresenceInput, PresenceLimits, PresenceOp,
    Status,
};
use crate::protocol::encode::{self, ErrorMessage};
use crate::protocol::{Dialect, ErrorCode};

use super::Replica;

fn participant(id: &str, name: &str, status: Status) -> Participant {
    Participant {
        id: id.into(),
        name: name.into(),
        status,
        last_active: 1000,
    }
}

fn alice(status: Status) -> Participant {
    participant("user-1", "Alice", status)
}

fn presence(participants: impl IntoIterator<Item = Participant>) -> Presence {
    Presence::from_participants(participants, PresenceLimits::default())
}

/// A replica acting as `user-1`, restored at `rev` with Alice online.
fn replica_at(rev: u64) -> Replica<Presence> {
    let mut replica = Replica::with_id_suffix("user-1", "t");
    replica.restore(presence([alice(Status::Online)]), rev, None);
    replica
}

fn status(status: Status) -> PresenceInput {
    PresenceInput {
        patch: Patch {
            status: Some(status),
            ..Patch::default()
        },
    }
}

fn rename(name: &str) -> PresenceInput {
    PresenceInput {
        patch: Patch {
            name: Some(name.into()),
            ..Patch::default()
        },
    }
}

fn updated(id: &str, name: Option<&str>, status: Option<Status>) -> PresenceOp {
    PresenceOp::Updated(ParticipantChange {
        id: id.into(),
        name: name.map(str::to_owned),
        status,
        last_active: None,
    })
}

/// `SYNC.DELTAS` as our server encodes it.
fn deltas(from: u64, to: u64, ops: &[(u64, PresenceOp, Option<&str>)]) -> Bytes {
    let encoded: Vec<Bytes> = ops
        .iter()
        .map(|(rev, op, id)| encode::operation(*rev, op, *id).unwrap())
        .collect();
    encode::deltas(from, to, &encoded)
}

fn snapshot(dialect: Dialect, rev: u64, state: &Presence) -> Bytes {
    encode::snapshot(dialect, rev, "e1", &serde_json::to_vec(state).unwrap())
}

fn error(code: ErrorCode, message: &str, details: Value) -> Bytes {
    let details = details.as_object().cloned();
    encode::error(&ErrorMessage {
        code,
        message,
        details: details.as_ref(),
        retry_after_ms: None,
        correlation_id: None,
    })
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn epoch(value: &str) -> Epoch {
    Epoch::new(value).unwrap()
}

/// Alice's status in `state`.
fn status_in(state: Option<&Presence>) -> Option<Status> {
    Some(state?.participant("user-1")?.status)
}
