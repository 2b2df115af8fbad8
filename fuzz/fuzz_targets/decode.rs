//! The envelope decoders on arbitrary bytes.
//!
//! `decode_client` and `decode_server` must never panic. What decodes must survive a
//! round trip: a client message written back as its envelope (the way the project's
//! client writes one) decodes to the same message; a server message written back with the
//! server's own encoders (`protocol::encode`) decodes to the same message, up to what the
//! encoders decide themselves (`retryable` follows the code, `retryAfterMs` is at least 1).
//!
//! The fuzz crate turns on serde_json's `float_roundtrip`: without it serde_json parses
//! floats fast rather than correctly rounded, so a number written back (a client's
//! `meta.timestamp`, a float in `details`) may come back an ulp away. The server never
//! relies on those values (the timestamp is informational; `details` are the server's).
#![no_main]

use deltasync::model::presence::{Presence, PresenceInput};
use deltasync::protocol::decode::{
    ClientEnvelope, ClientMessage, DecodeLimits, ServerMessage, decode_client, decode_server,
};
use deltasync::protocol::encode::{self, ErrorMessage};
use deltasync::protocol::{Dialect, ErrorCode};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, json};

fuzz_target!(|data: &[u8]| {
    client_round_trip(data, &DecodeLimits::default());
    // Tight bounds take the length checks' other branch on short inputs.
    let tight = DecodeLimits {
        max_participant_id_bytes: 4,
        max_name_bytes: 4,
        max_client_req_id_bytes: 4,
        max_correlation_id_bytes: 4,
    };
    client_round_trip(data, &tight);
    server_round_trip(data);
});

fn client_round_trip(data: &[u8], limits: &DecodeLimits) {
    let decoded = match decode_client::<PresenceInput>(data, limits) {
        Ok(decoded) => decoded,
        Err(error) => {
            // What an error carries back is bounded as the limits say.
            if let Some(id) = &error.client_req_id {
                assert!(!id.is_empty() && id.len() <= limits.max_client_req_id_bytes);
            }
            if let Some(id) = &error.correlation_id {
                assert!(id.len() <= limits.max_correlation_id_bytes);
            }
            return;
        }
    };
    let again = reencode_client(&decoded);
    let redecoded = decode_client(&again, limits).unwrap_or_else(|e| {
        panic!(
            "re-encoded {decoded:?} as {} which does not decode: {e}",
            String::from_utf8_lossy(&again)
        )
    });
    assert_eq!(decoded, redecoded, "{}", String::from_utf8_lossy(&again));
}

/// A client envelope written back as JSON.
fn reencode_client(envelope: &ClientEnvelope<PresenceInput>) -> Vec<u8> {
    let mut meta = Map::new();
    if let Some(id) = &envelope.correlation_id {
        meta.insert("correlationId".into(), json!(id));
    }
    if let Some(timestamp) = envelope.timestamp {
        meta.insert("timestamp".into(), json!(timestamp));
    }
    let (kind, payload) = match &envelope.message {
        ClientMessage::Join {
            participant_id,
            name,
            rev,
            epoch,
        } => {
            let mut payload = json!({"participantId": participant_id, "name": name});
            if let Some(rev) = rev {
                payload["rev"] = json!(rev);
            }
            if let Some(epoch) = epoch {
                payload["epoch"] = json!(epoch);
            }
            ("JOIN", Some(payload))
        }
        ClientMessage::Update {
            input,
            base_rev,
            client_req_id,
        } => {
            let mut payload = serde_json::to_value(input).expect("an input serializes");
            if let Some(base_rev) = base_rev {
                payload["baseRev"] = json!(base_rev);
            }
            payload["clientReqId"] = json!(client_req_id);
            ("UPDATE", Some(payload))
        }
        ClientMessage::Leave => ("LEAVE", None),
        ClientMessage::Heartbeat => ("HEARTBEAT", None),
        other => panic!("a client message the target does not know: {other:?}"),
    };
    let mut root = json!({"type": kind, "meta": meta});
    if let Some(payload) = payload {
        root["payload"] = payload;
    }
    serde_json::to_vec(&root).expect("JSON serializes")
}

fn server_round_trip(data: &[u8]) {
    let Ok(decoded) = decode_server::<Presence>(data) else {
        return;
    };
    let Some((again, expected)) = reencode_server(&decoded) else {
        return;
    };
    let redecoded = decode_server::<Presence>(&again).unwrap_or_else(|e| {
        panic!(
            "re-encoded {decoded:?} as {} which does not decode: {e}",
            String::from_utf8_lossy(&again)
        )
    });
    assert_eq!(expected, redecoded, "{}", String::from_utf8_lossy(&again));
}

/// A server message written back with the server's encoders, and what it must decode to.
/// `None` for what those encoders cannot write (an error code outside the table).
fn reencode_server(
    message: &ServerMessage<Presence>,
) -> Option<(Vec<u8>, ServerMessage<Presence>)> {
    let dialect = |epoch: bool| {
        if epoch {
            Dialect::Native
        } else {
            Dialect::WsKit
        }
    };
    let bytes = match message {
        ServerMessage::Snapshot { rev, epoch, state } => {
            let json = serde_json::to_vec(state).expect("presence serializes");
            let epoch_text = epoch.as_ref().map_or("", |e| e.as_str());
            encode::snapshot(dialect(epoch.is_some()), *rev, epoch_text, &json).to_vec()
        }
        ServerMessage::Deltas {
            from,
            to,
            operations,
        } => {
            let ops: Vec<bytes::Bytes> = operations
                .iter()
                .map(|record| {
                    encode::operation(record.rev, &record.op, record.client_req_id.as_deref())
                        .expect("a presence operation encodes")
                })
                .collect();
            encode::deltas(*from, *to, &ops).to_vec()
        }
        ServerMessage::Gap { info, epoch } => {
            let epoch_text = epoch.as_ref().map_or("", |e| e.as_str());
            encode::gap(dialect(epoch.is_some()), info, epoch_text).to_vec()
        }
        ServerMessage::Error {
            code,
            message,
            details,
            retry_after_ms,
            ..
        } => {
            let code: ErrorCode = code.parse().ok()?;
            let bytes = encode::error(&ErrorMessage {
                code,
                message,
                details: details.as_ref(),
                retry_after_ms: *retry_after_ms,
                correlation_id: None,
            })
            .to_vec();
            let expected = ServerMessage::Error {
                code: code.as_str().to_owned(),
                message: message.clone(),
                details: details.clone(),
                retryable: code.retryable(),
                retry_after_ms: retry_after_ms.map(|ms| ms.max(1)),
            };
            return Some((bytes, expected));
        }
        other => panic!("a server message the target does not know: {other:?}"),
    };
    Some((bytes, message.clone()))
}
