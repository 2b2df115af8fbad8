//! Encoding of server messages straight into byte buffers.
//!
//! The functions write into any [`BufMut`] so the I/O shell can reserve room for a
//! WebSocket header in front of the message and send header and message as one buffer.
//! All of them produce compact JSON in the ws-kit envelope; `meta` is `{}` except on
//! errors answering a request that carried a `correlationId`.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use super::{Dialect, ErrorCode};

/// The payload of a `REVISION_GAP` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GapInfo {
    /// The revision the client asked to resume from.
    pub expected_rev: u64,
    /// The server's revision when the gap was found.
    pub server_rev: u64,
    /// The oldest revision the server could have served by deltas.
    pub buffer_first_rev: u64,
    /// The revision of the snapshot that follows (at least this).
    pub resume_from: u64,
}

fn put_u64(out: &mut impl BufMut, value: u64) {
    out.put_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Writes a JSON string literal (with escapes) for `value`.
pub(crate) fn put_json_str(out: &mut impl BufMut, value: &str) {
    // Writing a `&str` to JSON cannot fail: it has no map keys or non-finite floats.
    let mut writer = out.writer();
    let _ = serde_json::to_writer(&mut writer, value);
}

/// An operation did not serialize as `{"type": ..., "payload": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operation does not serialize as a {{\"type\", \"payload\"}} object: {0}")]
pub struct OperationShapeError(String);

/// Encodes a committed operation once, as `{"rev":R,"type":T,"payload":P,"clientReqId":C}`
/// (`clientReqId` only when given). `op` must serialize as `{"type":T,"payload":P}`.
///
/// # Errors
///
/// [`OperationShapeError`] if `op` fails to serialize or is not an object starting with
/// its `type`.
pub fn operation(
    rev: u64,
    op: &impl Serialize,
    client_req_id: Option<&str>,
) -> Result<Bytes, OperationShapeError> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(br#"{"rev":"#);
    put_u64(&mut out, rev);
    out.push(b',');
    let body = out.len();
    serde_json::to_writer(&mut out, op).map_err(|e| OperationShapeError(e.to_string()))?;
    if !out[body..].starts_with(br#"{"type":"#) || out.last() != Some(&b'}') {
        let shown = String::from_utf8_lossy(&out[body..]).into_owned();
        return Err(OperationShapeError(shown));
    }
    // Drop the operation's own braces: its fields continue ours.
    out.copy_within(body + 1.., body);
    out.truncate(out.len() - 2);
    if let Some(id) = client_req_id {
        out.extend_from_slice(br#","clientReqId":"#);
        put_json_str(&mut out, id);
    }
    out.push(b'}');
    // The ring keeps this buffer for as long as it holds the operation: no spare capacity.
    out.shrink_to_fit();
    // `from_owner` keeps one reference count for the buffer, so every later clone (one per
    // delta that carries the operation) is an atomic increment and never an allocation.
    Ok(Bytes::from_owner(out))
}

/// The encoded length of a `SYNC.DELTAS` message for `operations` (to size buffers and
/// frame headers before writing).
pub(crate) fn deltas_len(from: u64, to: u64, operations: &[Bytes]) -> usize {
    let digits = |v: u64| itoa::Buffer::new().format(v).len();
    let ops: usize = operations.iter().map(Bytes::len).sum();
    DELTAS_PREFIX.len()
        + digits(from)
        + DELTAS_TO.len()
        + digits(to)
        + DELTAS_OPS.len()
        + ops
        + operations.len().saturating_sub(1)
        + DELTAS_SUFFIX.len()
}

const DELTAS_PREFIX: &[u8] = br#"{"type":"SYNC.DELTAS","meta":{},"payload":{"fromRev":"#;
const DELTAS_TO: &[u8] = br#","toRev":"#;
const DELTAS_OPS: &[u8] = br#","operations":["#;
const DELTAS_SUFFIX: &[u8] = b"]}}";

/// Writes `SYNC.DELTAS {fromRev, toRev, operations}` around already-encoded operations.
/// The same bytes serve both dialects.
pub(crate) fn write_deltas(out: &mut impl BufMut, from: u64, to: u64, operations: &[Bytes]) {
    out.put_slice(DELTAS_PREFIX);
    put_u64(out, from);
    out.put_slice(DELTAS_TO);
    put_u64(out, to);
    out.put_slice(DELTAS_OPS);
    for (i, op) in operations.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(op);
    }
    out.put_slice(DELTAS_SUFFIX);
}

/// `SYNC.DELTAS` as one buffer.
pub fn deltas(from: u64, to: u64, operations: &[Bytes]) -> Bytes {
    let mut out = BytesMut::with_capacity(deltas_len(from, to, operations));
    write_deltas(&mut out, from, to, operations);
    out.freeze()
}

/// Writes `SYNC.SNAPSHOT {rev, [epoch,] ...state}`: `state` is the model's JSON object,
/// whose fields become the payload's fields beside `rev`.
pub(crate) fn write_snapshot(
    out: &mut impl BufMut,
    dialect: Dialect,
    rev: u64,
    epoch: &str,
    state: &[u8],
) {
    out.put_slice(br#"{"type":"SYNC.SNAPSHOT","meta":{},"payload":{"rev":"#);
    put_u64(out, rev);
    if dialect == Dialect::Native {
        out.put_slice(br#","epoch":"#);
        put_json_str(out, epoch);
    }
    // `state` is a JSON object: splice its fields in after ours.
    let fields = state
        .strip_prefix(b"{")
        .and_then(|s| s.strip_suffix(b"}"))
        .unwrap_or(b"");
    if !fields.iter().all(u8::is_ascii_whitespace) {
        out.put_u8(b',');
        out.put_slice(fields);
    }
    out.put_slice(b"}}");
}

/// `SYNC.SNAPSHOT` as one buffer.
pub fn snapshot(dialect: Dialect, rev: u64, epoch: &str, state: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(state.len() + 128);
    write_snapshot(&mut out, dialect, rev, epoch, state);
    out.freeze()
}

/// `REVISION_GAP {expectedRev, serverRev, bufferFirstRev, resumeFrom, [epoch]}`.
pub fn gap(dialect: Dialect, gap: &GapInfo, epoch: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(192);
    out.put_slice(br#"{"type":"REVISION_GAP","meta":{},"payload":{"expectedRev":"#);
    put_u64(&mut out, gap.expected_rev);
    out.put_slice(br#","serverRev":"#);
    put_u64(&mut out, gap.server_rev);
    out.put_slice(br#","bufferFirstRev":"#);
    put_u64(&mut out, gap.buffer_first_rev);
    out.put_slice(br#","resumeFrom":"#);
    put_u64(&mut out, gap.resume_from);
    if dialect == Dialect::Native {
        out.put_slice(br#","epoch":"#);
        put_json_str(&mut out, epoch);
    }
    out.put_slice(b"}}");
    out.freeze()
}

/// The parts of an `ERROR` message.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorMessage<'a> {
    /// The wire code.
    pub code: ErrorCode,
    /// A human-readable message naming the problem.
    pub message: &'a str,
    /// Structured details (`clientReqId` of a rejected update, ...).
    pub details: Option<&'a serde_json::Map<String, serde_json::Value>>,
    /// How long to wait before retrying, when known (positive).
    pub retry_after_ms: Option<u64>,
    /// The `meta.correlationId` of the request this answers, echoed back.
    pub correlation_id: Option<&'a str>,
}

impl<'a> ErrorMessage<'a> {
    /// An error with a code and a message and nothing else.
    pub fn new(code: ErrorCode, message: &'a str) -> Self {
        Self {
            code,
            message,
            details: None,
            retry_after_ms: None,
            correlation_id: None,
        }
    }
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    meta: ErrorMeta<'a>,
    payload: ErrorPayload<'a>,
}

#[derive(Serialize)]
struct ErrorMeta<'a> {
    #[serde(rename = "correlationId", skip_serializing_if = "Option::is_none")]
    correlation_id: Option<&'a str>,
}

#[derive(Serialize)]
struct ErrorPayload<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a serde_json::Map<String, serde_json::Value>>,
    retryable: bool,
    #[serde(rename = "retryAfterMs", skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
}

/// `ERROR {code, message, [details], retryable, [retryAfterMs]}`.
pub fn error(error: &ErrorMessage<'_>) -> Bytes {
    let envelope = ErrorEnvelope {
        kind: "ERROR",
        meta: ErrorMeta {
            correlation_id: error.correlation_id,
        },
        payload: ErrorPayload {
            code: error.code.as_str(),
            message: error.message,
            details: error.details,
            retryable: error.code.retryable(),
            // ws-kit requires a positive integer when present.
            retry_after_ms: error.retry_after_ms.map(|ms| ms.max(1)),
        },
    };
    // Serializing plain strings, integers and a `Map<String, Value>` cannot fail.
    Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("valid JSON")
    }

    #[test]
    fn operations_are_encoded_once_with_rev_first() {
        #[derive(Serialize)]
        #[serde(tag = "type", content = "payload")]
        enum Op {
            #[serde(rename = "x.set")]
            Set { v: u8 },
        }
        let bytes = operation(7, &Op::Set { v: 1 }, Some("req-1")).unwrap();
        assert_eq!(
            &bytes[..],
            br#"{"rev":7,"type":"x.set","payload":{"v":1},"clientReqId":"req-1"}"#
        );
        let bytes = operation(8, &Op::Set { v: 2 }, None).unwrap();
        assert_eq!(&bytes[..], br#"{"rev":8,"type":"x.set","payload":{"v":2}}"#);
        assert!(operation(9, &json!([1]), None).is_err());
        assert!(operation(9, &json!({"payload": 1}), None).is_err());
    }

    #[test]
    fn deltas_frame_operations_without_reencoding() {
        let ops = [
            Bytes::from_static(br#"{"rev":2,"type":"a","payload":{}}"#),
            Bytes::from_static(br#"{"rev":3,"type":"b","payload":{"x":1},"clientReqId":"r"}"#),
        ];
        let msg = deltas(1, 3, &ops);
        assert_eq!(msg.len(), deltas_len(1, 3, &ops));
        assert_eq!(
            parse(&msg),
            json!({"type": "SYNC.DELTAS", "meta": {}, "payload": {
            "fromRev": 1, "toRev": 3, "operations": [
                {"rev": 2, "type": "a", "payload": {}},
                {"rev": 3, "type": "b", "payload": {"x": 1}, "clientReqId": "r"},
            ]}})
        );
        let empty = deltas(7, 7, &[]);
        assert_eq!(empty.len(), deltas_len(7, 7, &[]));
        assert_eq!(parse(&empty)["payload"]["operations"], json!([]));
    }

    #[test]
    fn snapshot_has_epoch_only_in_the_native_dialect() {
        let state = br#"{"participants":{"u":{"id":"u"}}}"#;
        assert_eq!(
            parse(&snapshot(Dialect::WsKit, 4, "e1", state)),
            json!({"type": "SYNC.SNAPSHOT", "meta": {}, "payload": {
                "rev": 4, "participants": {"u": {"id": "u"}}}})
        );
        assert_eq!(
            parse(&snapshot(Dialect::Native, 4, "e1", state)),
            json!({"type": "SYNC.SNAPSHOT", "meta": {}, "payload": {
                "rev": 4, "epoch": "e1", "participants": {"u": {"id": "u"}}}})
        );
        assert_eq!(
            parse(&snapshot(Dialect::WsKit, 0, "e1", b"{}")),
            json!({"type": "SYNC.SNAPSHOT", "meta": {}, "payload": {"rev": 0}})
        );
    }

    #[test]
    fn gap_payload_is_exact() {
        let info = GapInfo {
            expected_rev: 1,
            server_rev: 1051,
            buffer_first_rev: 27,
            resume_from: 1051,
        };
        assert_eq!(
            parse(&gap(Dialect::WsKit, &info, "e")),
            json!({"type": "REVISION_GAP", "meta": {}, "payload": {
                "expectedRev": 1, "serverRev": 1051, "bufferFirstRev": 27, "resumeFrom": 1051}})
        );
        assert_eq!(
            parse(&gap(Dialect::Native, &info, "e"))["payload"]["epoch"],
            "e"
        );
    }

    #[test]
    fn errors_carry_details_retry_and_correlation() {
        let mut details = serde_json::Map::new();
        details.insert("clientReqId".into(), json!("r\"1"));
        let msg = error(&ErrorMessage {
            code: ErrorCode::ResourceExhausted,
            message: "slow down",
            details: Some(&details),
            retry_after_ms: Some(0),
            correlation_id: Some("c-1"),
        });
        assert_eq!(
            parse(&msg),
            json!({"type": "ERROR", "meta": {"correlationId": "c-1"}, "payload": {
                "code": "RESOURCE_EXHAUSTED", "message": "slow down",
                "details": {"clientReqId": "r\"1"}, "retryable": true, "retryAfterMs": 1}})
        );
        let plain = error(&ErrorMessage::new(ErrorCode::Unauthenticated, "join first"));
        assert_eq!(
            parse(&plain),
            json!({"type": "ERROR", "meta": {}, "payload": {
                "code": "UNAUTHENTICATED", "message": "join first", "retryable": false}})
        );
    }
}
