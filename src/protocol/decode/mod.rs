//! Strict decoding of wire messages.
//!
//! [`decode_client`] reads what a client sends (`JOIN`, `UPDATE`, `LEAVE`, `HEARTBEAT`) for
//! the server's sessions; [`decode_server`] reads what a server sends (`SYNC.SNAPSHOT`,
//! `SYNC.DELTAS`, `REVISION_GAP`, `ERROR`) for the client replica. Both check the whole
//! envelope `{"type", "meta", "payload"}` and every payload field; a bad message becomes a
//! [`DecodeError`] whose `message` names the key and the place, never a panic.
//!
//! # Strictness
//!
//! - Unknown keys at the root, in `meta` (client messages) or in a payload are errors.
//!   A client's `UPDATE` payload, past `baseRev` and `clientReqId`, belongs to the model:
//!   its `Input` type catches unknown keys with `#[serde(deny_unknown_fields)]` (presence
//!   does); a model that omits it accepts them.
//! - `payload` is present exactly when the type defines one: `LEAVE` and `HEARTBEAT` with
//!   any `payload` (even `{}` or `null`) are rejected.
//! - Revisions are JSON integers from 0 to 2^64 - 1: `-1`, `1.5`, `1.0`, `1e3` and `"1"`
//!   are rejected. An optional field is either absent or of its type: `null` is rejected.
//! - The server-owned `meta` keys `clientId` and `receivedAt` are dropped from client
//!   messages without an error, so that a client cannot set them.
//! - Server messages are read leniently in `meta` (which must be an object; its keys are
//!   ignored) and strictly in payloads.
//!
//! Duplicate keys in one JSON object are not detected: the last one wins (serde_json's
//! behaviour).
//!
//! # Errors on the wire
//!
//! Every [`DecodeError`] is answered with `ERROR INVALID_ARGUMENT` ([`DecodeError::code`]).
//! When the bad message was an `UPDATE` whose `clientReqId` could be read, or carried a
//! readable `meta.correlationId`, the error carries them, so that the answer names the
//! rejected update ([`DecodeError::details`]) and echoes the correlation id.
//!
//! An `UPDATE` whose `clientReqId` is over the limit is named too, so that every rejected
//! update is attributable: the answer echoes a bounded prefix, the id's first
//! `max_client_req_id_bytes` bytes cut back to a character boundary, and marks it with
//! `"clientReqIdTruncated": true` ([`CLIENT_REQ_ID_TRUNCATED`]). A client matches it to its oldest
//! pending update whose longer id starts with that prefix (errors come in the order the
//! updates were sent). An empty or non-string `clientReqId` names nothing.
//!
//! ```
//! use deltasync::model::presence::PresenceInput;
//! use deltasync::protocol::decode::{decode_client, ClientMessage, DecodeLimits};
//!
//! let text = br#"{"type":"UPDATE","payload":{"patch":{"status":"away"},"clientReqId":"r1","bogus":1}}"#;
//! let err = decode_client::<PresenceInput>(text, &DecodeLimits::default()).unwrap_err();
//! assert_eq!(err.message, "invalid payload of UPDATE: unknown field `bogus`, expected `patch`");
//! assert_eq!(err.client_req_id.as_deref(), Some("r1"));
//!
//! let text = br#"{"type":"JOIN","meta":{"correlationId":"c1"},"payload":{"participantId":"u1","name":"Ann"}}"#;
//! let envelope = decode_client::<PresenceInput>(text, &DecodeLimits::default()).unwrap();
//! assert_eq!(envelope.correlation_id.as_deref(), Some("c1"));
//! assert!(matches!(envelope.message, ClientMessage::Join { rev: None, .. }));
//! ```

mod client;
mod fields;
mod server;

use serde_json::{Map, Value};

use super::ErrorCode;

pub use client::{ClientEnvelope, ClientMessage, decode_client};
pub use server::{OperationRecord, ServerMessage, decode_server};

/// The `details` key that marks `clientReqId` as the prefix of an over-long id.
pub const CLIENT_REQ_ID_TRUNCATED: &str = "clientReqIdTruncated";

/// Bounds on the strings a client may send, in bytes.
///
/// A server derives them from its configuration with
/// [`Config::decode_limits`](crate::config::Config::decode_limits), so that they follow
/// the model's limits (a name the model accepts is never refused here); the `Default` is
/// for a decoder used on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Longest `JOIN` `participantId` (default 128).
    pub max_participant_id_bytes: usize,
    /// Longest `JOIN` `name` (default 1024; the model may set a lower limit of its own).
    pub max_name_bytes: usize,
    /// Longest `UPDATE` `clientReqId` (default 128).
    pub max_client_req_id_bytes: usize,
    /// Longest `meta.correlationId` (default 128).
    pub max_correlation_id_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_participant_id_bytes: 128,
            max_name_bytes: 1024,
            max_client_req_id_bytes: 128,
            max_correlation_id_bytes: 128,
        }
    }
}

/// A message that does not decode, and what could still be read from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct DecodeError {
    /// What is wrong, naming the key and where it is.
    pub message: String,
    /// The `clientReqId` of a bad `UPDATE`, when it is a non-empty string: the whole id, or,
    /// when it is over `max_client_req_id_bytes`, its first `max_client_req_id_bytes`
    /// bytes cut back to a character boundary (see `client_req_id_truncated`).
    pub client_req_id: Option<String>,
    /// `client_req_id` is the prefix of an over-long id, not the whole id.
    pub client_req_id_truncated: bool,
    /// The message's `meta.correlationId`, when it could be read.
    pub correlation_id: Option<String>,
}

impl DecodeError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            client_req_id: None,
            client_req_id_truncated: false,
            correlation_id: None,
        }
    }

    /// The wire code of the `ERROR` that answers this: always `INVALID_ARGUMENT`.
    pub const fn code(&self) -> ErrorCode {
        ErrorCode::InvalidArgument
    }

    /// The `details` of that `ERROR`: `{"clientReqId": ...}` when the bad message was an
    /// `UPDATE` whose id could be read, plus `"clientReqIdTruncated": true` when that is
    /// the prefix of an over-long id; else `None`.
    pub fn details(&self) -> Option<Map<String, Value>> {
        let id = self.client_req_id.as_ref()?;
        let mut details = Map::new();
        details.insert("clientReqId".to_owned(), Value::String(id.clone()));
        if self.client_req_id_truncated {
            details.insert(CLIENT_REQ_ID_TRUNCATED.to_owned(), Value::Bool(true));
        }
        Some(details)
    }
}

/// Reads `text` as one JSON object.
fn parse_object(text: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(DecodeError::new("a message must be a JSON object")),
        Err(e) => Err(DecodeError::new(format!("malformed JSON: {e}"))),
    }
}
