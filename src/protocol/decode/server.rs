//! Decoding of server messages: `SYNC.SNAPSHOT`, `SYNC.DELTAS`, `REVISION_GAP`, `ERROR`.

use serde_json::{Map, Value};

use super::fields::{Fields, model_value, shown};
use super::{DecodeError, parse_object};
use crate::epoch::{Epoch, MAX_EPOCH_LEN};
use crate::model::Model;
use crate::protocol::ErrorCode;
use crate::protocol::encode::GapInfo;

/// One operation of a `SYNC.DELTAS` message.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationRecord<Op> {
    /// The revision the operation was committed at.
    pub rev: u64,
    /// The operation (from its `type` and `payload`).
    pub op: Op,
    /// The `clientReqId` of the `UPDATE` it came from, if any: the ack of that update.
    pub client_req_id: Option<String>,
}

/// A server message, with the payloads the model `M` defines decoded as its types.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServerMessage<M: Model> {
    /// `SYNC.SNAPSHOT`: the whole state at `rev`.
    Snapshot {
        /// The revision the state is at.
        rev: u64,
        /// The history (native dialect only).
        epoch: Option<Epoch>,
        /// The state: the payload's fields beside `rev` and `epoch`.
        state: M,
    },
    /// `SYNC.DELTAS`: the operations `from + 1 ..= to` (not checked here: the replica
    /// checks them against its revision).
    Deltas {
        /// The revision the operations apply to (`fromRev`).
        from: u64,
        /// The revision they reach (`toRev`).
        to: u64,
        /// The operations, as sent.
        operations: Vec<OperationRecord<M::Op>>,
    },
    /// `REVISION_GAP`: the server cannot serve the client's revision by deltas; a
    /// snapshot follows.
    Gap {
        /// The revisions involved.
        info: GapInfo,
        /// The server's history (native dialect only).
        epoch: Option<Epoch>,
    },
    /// `ERROR`, or `RPC_ERROR` from ws-kit 0.10 servers.
    Error {
        /// The wire code, as sent (see [`ServerMessage::error_code`]).
        code: String,
        /// The reason (empty when the server sent none, as ws-kit may).
        message: String,
        /// Structured details (`clientReqId` of a rejected update, ...).
        details: Option<Map<String, Value>>,
        /// Whether trying again may succeed; when absent, what the code says (false for
        /// an unknown code).
        retryable: bool,
        /// How long to wait before retrying, when the server says.
        retry_after_ms: Option<u64>,
    },
}

impl<M: Model> ServerMessage<M> {
    /// The code of an `ERROR` as one of ours, or `None` (another message, or a code
    /// outside the table).
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            ServerMessage::Error { code, .. } => code.parse().ok(),
            _ => None,
        }
    }
}

/// The server message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Snapshot,
    Deltas,
    Gap,
    Error,
    RpcError,
}

impl Kind {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "SYNC.SNAPSHOT" => Kind::Snapshot,
            "SYNC.DELTAS" => Kind::Deltas,
            "REVISION_GAP" => Kind::Gap,
            "ERROR" => Kind::Error,
            "RPC_ERROR" => Kind::RpcError,
            _ => return None,
        })
    }

    const fn name(self) -> &'static str {
        match self {
            Kind::Snapshot => "SYNC.SNAPSHOT",
            Kind::Deltas => "SYNC.DELTAS",
            Kind::Gap => "REVISION_GAP",
            Kind::Error => "ERROR",
            Kind::RpcError => "RPC_ERROR",
        }
    }
}

/// Decodes one server message: strict on the envelope and the payload, lenient on `meta`
/// (an object whose keys are ignored).
///
/// # Errors
///
/// A [`DecodeError`] naming the first problem found.
pub fn decode_server<M: Model>(text: &[u8]) -> Result<ServerMessage<M>, DecodeError> {
    let mut root = Fields::new(parse_object(text)?, "", "");
    let name = root.string("type")?;
    let kind = Kind::parse(&name)
        .ok_or_else(|| DecodeError::new(format!("unknown message type {}", shown(&name))))?;
    root.set_kind(kind.name());
    root.opt_object("meta")?;
    let payload = root.object("payload")?;
    root.finish()?;
    match kind {
        Kind::Snapshot => decode_snapshot(payload),
        Kind::Deltas => decode_deltas(payload),
        Kind::Gap => decode_gap(payload),
        Kind::Error | Kind::RpcError => decode_error(payload),
    }
}

/// An optional `epoch`: 1 to [`MAX_EPOCH_LEN`] bytes.
fn opt_epoch(payload: &mut Fields) -> Result<Option<Epoch>, DecodeError> {
    let Some(epoch) = payload.opt_string("epoch")? else {
        return Ok(None);
    };
    Epoch::new(&epoch).map(Some).map_err(|_| {
        DecodeError::new(format!(
            "{} must be 1 to {MAX_EPOCH_LEN} bytes long",
            payload.path_of("epoch")
        ))
    })
}

fn decode_snapshot<M: Model>(mut payload: Fields) -> Result<ServerMessage<M>, DecodeError> {
    let rev = payload.u64("rev")?;
    let epoch = opt_epoch(&mut payload)?;
    let state = model_value(payload.into_rest(), "payload of SYNC.SNAPSHOT")?;
    Ok(ServerMessage::Snapshot { rev, epoch, state })
}

fn decode_deltas<M: Model>(mut payload: Fields) -> Result<ServerMessage<M>, DecodeError> {
    let from = payload.u64("fromRev")?;
    let to = payload.u64("toRev")?;
    let Value::Array(items) = payload.required("operations")? else {
        return Err(DecodeError::new("payload.operations must be an array"));
    };
    payload.finish()?;
    let operations = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| decode_operation(index, item))
        .collect::<Result<_, _>>()?;
    Ok(ServerMessage::Deltas {
        from,
        to,
        operations,
    })
}

/// One operation: `{rev, type, payload, clientReqId?}`; `type` and `payload` are the
/// model's (`payload` may be absent for an operation without one).
fn decode_operation<Op: serde::de::DeserializeOwned>(
    index: usize,
    item: Value,
) -> Result<OperationRecord<Op>, DecodeError> {
    let path = format!("payload.operations[{index}]");
    let Value::Object(map) = item else {
        return Err(DecodeError::new(format!("{path} must be an object")));
    };
    let mut fields = Fields::new(map, path.clone(), Kind::Deltas.name());
    let rev = fields.u64("rev")?;
    let client_req_id = fields.opt_string("clientReqId")?;
    let mut op = Map::new();
    for key in ["type", "payload"] {
        if let Some(value) = fields.take(key) {
            op.insert(key.to_owned(), value);
        }
    }
    fields.finish()?;
    let op = model_value(op, &format!("{path} of SYNC.DELTAS"))?;
    Ok(OperationRecord {
        rev,
        op,
        client_req_id,
    })
}

fn decode_gap<M: Model>(mut payload: Fields) -> Result<ServerMessage<M>, DecodeError> {
    let info = GapInfo {
        expected_rev: payload.u64("expectedRev")?,
        server_rev: payload.u64("serverRev")?,
        buffer_first_rev: payload.u64("bufferFirstRev")?,
        resume_from: payload.u64("resumeFrom")?,
    };
    let epoch = opt_epoch(&mut payload)?;
    payload.finish()?;
    Ok(ServerMessage::Gap { info, epoch })
}

fn decode_error<M: Model>(mut payload: Fields) -> Result<ServerMessage<M>, DecodeError> {
    let code = payload.string("code")?;
    let message = payload.opt_string("message")?.unwrap_or_default();
    let details = payload.opt_object("details")?;
    let known_retryable = code.parse::<ErrorCode>().is_ok_and(ErrorCode::retryable);
    let retryable = payload.opt_bool("retryable")?.unwrap_or(known_retryable);
    let retry_after_ms = payload.opt_u64("retryAfterMs")?;
    payload.finish()?;
    Ok(ServerMessage::Error {
        code,
        message,
        details,
        retryable,
        retry_after_ms,
    })
}

#[cfg(test)]
mod tests;
