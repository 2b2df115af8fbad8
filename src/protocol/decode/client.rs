//! Decoding of client messages: `JOIN`, `UPDATE`, `LEAVE`, `HEARTBEAT`.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::fields::{Fields, model_value, shown};
use super::{DecodeError, DecodeLimits, parse_object};
use crate::epoch::MAX_EPOCH_LEN;

/// A decoded client message and its `meta`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientEnvelope<I> {
    /// The message.
    pub message: ClientMessage<I>,
    /// `meta.correlationId`, echoed in an answer to this message.
    pub correlation_id: Option<String>,
    /// `meta.timestamp`: the client's clock when it sent the message (ws-kit clients send
    /// milliseconds since the Unix epoch). Informational only; never trusted.
    pub timestamp: Option<f64>,
}

/// A client message. `I` is the model's input type (the `UPDATE` payload's own fields).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientMessage<I> {
    /// Bind the connection to a participant and ask for state (or resume from `rev`).
    Join {
        /// Who the connection acts as (non-empty).
        participant_id: String,
        /// The display name (the model checks it).
        name: String,
        /// The revision to resume from; `None` asks for a snapshot.
        rev: Option<u64>,
        /// The history `rev` belongs to (1 to 64 bytes), when the client knows it.
        epoch: Option<String>,
    },
    /// Change the state.
    Update {
        /// The model's input: the payload without `baseRev` and `clientReqId`.
        input: I,
        /// The revision the client saw when it made the input.
        base_rev: Option<u64>,
        /// The client's id for this request (non-empty): echoed in the committed
        /// operation, or in the `ERROR` that rejects it.
        client_req_id: String,
    },
    /// Leave the room.
    Leave,
    /// Keep the connection alive.
    Heartbeat,
}

/// The client message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Join,
    Update,
    Leave,
    Heartbeat,
}

impl Kind {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "JOIN" => Kind::Join,
            "UPDATE" => Kind::Update,
            "LEAVE" => Kind::Leave,
            "HEARTBEAT" => Kind::Heartbeat,
            _ => return None,
        })
    }

    const fn name(self) -> &'static str {
        match self {
            Kind::Join => "JOIN",
            Kind::Update => "UPDATE",
            Kind::Leave => "LEAVE",
            Kind::Heartbeat => "HEARTBEAT",
        }
    }
}

/// Decodes one client message strictly. `I` is the model's input type.
///
/// See the [module documentation](super) for the rules.
///
/// # Errors
///
/// A [`DecodeError`] naming the first problem found (answered with `INVALID_ARGUMENT`);
/// it carries the message's `clientReqId` and `correlationId` when they could be read.
pub fn decode_client<I: DeserializeOwned>(
    text: &[u8],
    limits: &DecodeLimits,
) -> Result<ClientEnvelope<I>, DecodeError> {
    let root = parse_object(text)?;
    let correlation_id = readable_correlation_id(&root, limits);
    let client_req_id = readable_client_req_id(&root, limits);
    decode_root(root, limits).map_err(|mut error| {
        error.correlation_id = correlation_id;
        if let Some((id, truncated)) = client_req_id {
            error.client_req_id = Some(id);
            error.client_req_id_truncated = truncated;
        }
        error
    })
}

/// `meta.correlationId`, if it is a string within bounds, whatever else is wrong.
fn readable_correlation_id(root: &Map<String, Value>, limits: &DecodeLimits) -> Option<String> {
    let id = root.get("meta")?.get("correlationId")?.as_str()?;
    (id.len() <= limits.max_correlation_id_bytes).then(|| id.to_owned())
}

/// The `clientReqId` of an `UPDATE`, if it is a non-empty string, whatever else is wrong;
/// with `true` when it is over the limit and cut to a prefix within it.
fn readable_client_req_id(
    root: &Map<String, Value>,
    limits: &DecodeLimits,
) -> Option<(String, bool)> {
    if root.get("type")?.as_str()? != Kind::Update.name() {
        return None;
    }
    let id = root.get("payload")?.get("clientReqId")?.as_str()?;
    if id.is_empty() {
        return None;
    }
    let limit = limits.max_client_req_id_bytes;
    if id.len() <= limit {
        return Some((id.to_owned(), false));
    }
    Some((prefix_within(id, limit).to_owned(), true))
}

/// The longest prefix of `text` of at most `limit` bytes that ends on a character boundary.
fn prefix_within(text: &str, limit: usize) -> &str {
    let mut end = limit.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn decode_root<I: DeserializeOwned>(
    root: Map<String, Value>,
    limits: &DecodeLimits,
) -> Result<ClientEnvelope<I>, DecodeError> {
    let mut root = Fields::new(root, "", "");
    let kind = message_kind(&mut root)?;
    root.set_kind(kind.name());
    let meta = root.opt_object("meta")?;
    let payload = root.take("payload");
    root.finish()?;
    let (correlation_id, timestamp) = decode_meta(meta, kind, limits)?;
    let message = decode_payload(kind, payload, limits)?;
    Ok(ClientEnvelope {
        message,
        correlation_id,
        timestamp,
    })
}

fn message_kind(root: &mut Fields) -> Result<Kind, DecodeError> {
    let name = root.string("type")?;
    Kind::parse(&name)
        .ok_or_else(|| DecodeError::new(format!("unknown message type {}", shown(&name))))
}

/// Reads `meta`: `correlationId` and `timestamp`; drops the server-owned keys.
fn decode_meta(
    meta: Option<Map<String, Value>>,
    kind: Kind,
    limits: &DecodeLimits,
) -> Result<(Option<String>, Option<f64>), DecodeError> {
    let Some(meta) = meta else {
        return Ok((None, None));
    };
    let mut meta = Fields::new(meta, "meta", kind.name());
    // Server-owned: a client must not be able to set them, and sending them is no error.
    meta.take("clientId");
    meta.take("receivedAt");
    let correlation_id =
        meta.opt_bounded("correlationId", limits.max_correlation_id_bytes, false)?;
    let timestamp = meta.opt_f64("timestamp")?;
    meta.finish()?;
    Ok((correlation_id, timestamp))
}

fn decode_payload<I: DeserializeOwned>(
    kind: Kind,
    payload: Option<Value>,
    limits: &DecodeLimits,
) -> Result<ClientMessage<I>, DecodeError> {
    match kind {
        Kind::Join => decode_join(payload_fields(kind, payload)?, limits),
        Kind::Update => decode_update(payload_fields(kind, payload)?, limits),
        Kind::Leave => no_payload(kind, payload).map(|()| ClientMessage::Leave),
        Kind::Heartbeat => no_payload(kind, payload).map(|()| ClientMessage::Heartbeat),
    }
}

/// The payload of a type that defines one: present, and an object.
fn payload_fields(kind: Kind, payload: Option<Value>) -> Result<Fields, DecodeError> {
    match payload {
        Some(Value::Object(map)) => Ok(Fields::new(map, "payload", kind.name())),
        Some(_) => Err(DecodeError::new("payload must be an object")),
        None => Err(DecodeError::new("payload is missing")),
    }
}

/// A type that defines no payload has none: not `{}`, not `null`.
fn no_payload(kind: Kind, payload: Option<Value>) -> Result<(), DecodeError> {
    match payload {
        None => Ok(()),
        Some(_) => Err(DecodeError::new(format!(
            "{} takes no payload",
            kind.name()
        ))),
    }
}

fn decode_join<I>(
    mut payload: Fields,
    limits: &DecodeLimits,
) -> Result<ClientMessage<I>, DecodeError> {
    let participant_id = payload.bounded("participantId", limits.max_participant_id_bytes, true)?;
    let name = payload.bounded("name", limits.max_name_bytes, false)?;
    let rev = payload.opt_u64("rev")?;
    let epoch = payload.opt_bounded("epoch", MAX_EPOCH_LEN, true)?;
    payload.finish()?;
    Ok(ClientMessage::Join {
        participant_id,
        name,
        rev,
        epoch,
    })
}

fn decode_update<I: DeserializeOwned>(
    mut payload: Fields,
    limits: &DecodeLimits,
) -> Result<ClientMessage<I>, DecodeError> {
    let client_req_id = payload.bounded("clientReqId", limits.max_client_req_id_bytes, true)?;
    let base_rev = payload.opt_u64("baseRev")?;
    let input = model_value(payload.into_rest(), "payload of UPDATE")?;
    Ok(ClientMessage::Update {
        input,
        base_rev,
        client_req_id,
    })
}

#[cfg(test)]
mod tests;
