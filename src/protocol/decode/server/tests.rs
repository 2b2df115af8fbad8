use bytes::Bytes;
use serde_json::json;

use super::*;
use crate::model::presence::{
    Participant, ParticipantChange, ParticipantRef, Presence, PresenceLimits, PresenceOp, Status,
};
use crate::protocol::Dialect;
use crate::protocol::encode::{self, ErrorMessage};

fn decode(text: &[u8]) -> Result<ServerMessage<Presence>, DecodeError> {
    decode_server(text)
}

fn message(text: &str) -> String {
    match decode(text.as_bytes()) {
        Ok(ok) => panic!("{text} decoded as {ok:?}"),
        Err(err) => err.message,
    }
}

fn alice() -> Participant {
    Participant {
        id: "user-1".into(),
        name: "Alice".into(),
        status: Status::Online,
        last_active: 1000,
    }
}

fn epoch() -> Epoch {
    Epoch::new("e1").unwrap()
}

#[test]
fn snapshots_round_trip_in_both_dialects() {
    let state = Presence::from_participants([alice()], PresenceLimits::default());
    let json = serde_json::to_vec(&state).unwrap();
    for dialect in Dialect::ALL {
        let bytes = encode::snapshot(dialect, 4, "e1", &json);
        let expected_epoch = (dialect == Dialect::Native).then(epoch);
        assert_eq!(
            decode(&bytes),
            Ok(ServerMessage::Snapshot {
                rev: 4,
                epoch: expected_epoch,
                state: state.clone(),
            }),
            "{dialect:?}"
        );
        let empty = encode::snapshot(dialect, 0, "e1", b"{}");
        let decoded = decode_server::<Presence>(&empty);
        // An empty state object: presence needs `participants`.
        assert_eq!(
            decoded.unwrap_err().message,
            "invalid payload of SYNC.SNAPSHOT: missing field `participants`"
        );
    }
    let empty_room = encode::snapshot(Dialect::WsKit, 0, "e1", br#"{"participants":{}}"#);
    assert_eq!(
        decode(&empty_room),
        Ok(ServerMessage::Snapshot {
            rev: 0,
            epoch: None,
            state: Presence::default(),
        })
    );
}

fn presence_ops() -> Vec<(u64, PresenceOp, Option<&'static str>)> {
    vec![
        (2, PresenceOp::Joined(alice()), None),
        (
            3,
            PresenceOp::Updated(ParticipantChange {
                id: "user-1".into(),
                status: Some(Status::Away),
                ..ParticipantChange::default()
            }),
            Some("req-\"1\""),
        ),
        (
            4,
            PresenceOp::Left(ParticipantRef {
                id: "user-1".into(),
            }),
            None,
        ),
    ]
}

#[test]
fn deltas_round_trip() {
    let ops = presence_ops();
    let encoded: Vec<Bytes> = ops
        .iter()
        .map(|(rev, op, id)| encode::operation(*rev, op, *id).unwrap())
        .collect();
    let expected: Vec<OperationRecord<PresenceOp>> = ops
        .into_iter()
        .map(|(rev, op, id)| OperationRecord {
            rev,
            op,
            client_req_id: id.map(str::to_owned),
        })
        .collect();
    assert_eq!(
        decode(&encode::deltas(1, 4, &encoded)),
        Ok(ServerMessage::Deltas {
            from: 1,
            to: 4,
            operations: expected,
        })
    );
    assert_eq!(
        decode(&encode::deltas(7, 7, &[])),
        Ok(ServerMessage::Deltas {
            from: 7,
            to: 7,
            operations: vec![],
        })
    );
}

#[test]
fn gaps_round_trip_in_both_dialects() {
    let info = GapInfo {
        expected_rev: 1,
        server_rev: 1051,
        buffer_first_rev: 27,
        resume_from: 1051,
    };
    for dialect in Dialect::ALL {
        let expected_epoch = (dialect == Dialect::Native).then(epoch);
        assert_eq!(
            decode(&encode::gap(dialect, &info, "e1")),
            Ok(ServerMessage::Gap {
                info,
                epoch: expected_epoch,
            })
        );
    }
}

#[test]
fn errors_round_trip_with_and_without_details() {
    let mut details = serde_json::Map::new();
    details.insert("clientReqId".into(), json!("r1"));
    details.insert("appliedRev".into(), json!(7));
    let bytes = encode::error(&ErrorMessage {
        code: ErrorCode::ResourceExhausted,
        message: "slow down",
        details: Some(&details),
        retry_after_ms: Some(250),
        correlation_id: Some("c-1"),
    });
    let decoded = decode(&bytes).unwrap();
    assert_eq!(decoded.error_code(), Some(ErrorCode::ResourceExhausted));
    assert_eq!(
        decoded,
        ServerMessage::Error {
            code: "RESOURCE_EXHAUSTED".into(),
            message: "slow down".into(),
            details: Some(details),
            retryable: true,
            retry_after_ms: Some(250),
        }
    );
    for code in ErrorCode::ALL {
        let bytes = encode::error(&ErrorMessage::new(code, "m"));
        assert_eq!(
            decode(&bytes),
            Ok(ServerMessage::Error {
                code: code.as_str().into(),
                message: "m".into(),
                details: None,
                retryable: code.retryable(),
                retry_after_ms: None,
            })
        );
    }
}

#[test]
fn ws_kit_errors_may_omit_message_and_retryable() {
    let rpc = decode(
        br#"{"type":"RPC_ERROR","meta":{"correlationId":"x"},"payload":{"code":"UNAVAILABLE"}}"#,
    )
    .unwrap();
    assert_eq!(
        rpc,
        ServerMessage::Error {
            code: "UNAVAILABLE".into(),
            message: String::new(),
            details: None,
            retryable: true,
            retry_after_ms: None,
        }
    );
    let custom = decode(br#"{"type":"ERROR","payload":{"code":"TEAPOT","message":"no"}}"#).unwrap();
    assert_eq!(custom.error_code(), None);
    assert!(matches!(
        custom,
        ServerMessage::Error {
            retryable: false,
            ..
        }
    ));
    let snapshot = decode(br#"{"type":"SYNC.SNAPSHOT","payload":{"rev":0,"participants":{}}}"#);
    assert_eq!(snapshot.unwrap().error_code(), None);
}

#[test]
fn meta_contents_are_ignored() {
    let text = br#"{"type":"REVISION_GAP","meta":{"timestamp":5,"anything":[1]},"payload":{
        "expectedRev":1,"serverRev":2,"bufferFirstRev":0,"resumeFrom":2}}"#;
    assert!(matches!(
        decode(text),
        Ok(ServerMessage::Gap { epoch: None, .. })
    ));
}

#[test]
fn malformed_server_messages_are_errors() {
    let cases = [
        ("nope", "malformed JSON: expected ident at line 1 column 2"),
        ("[]", "a message must be a JSON object"),
        (r#"{"payload":{}}"#, "type is missing"),
        (
            r#"{"type":"UPDATE","payload":{}}"#,
            "unknown message type \"UPDATE\"",
        ),
        (r#"{"type":"SYNC.DELTAS"}"#, "payload is missing"),
        (
            r#"{"type":"SYNC.DELTAS","payload":1}"#,
            "payload must be an object",
        ),
        (
            r#"{"type":"SYNC.DELTAS","meta":1,"payload":{}}"#,
            "meta must be an object",
        ),
        (
            r#"{"type":"ERROR","x":1,"payload":{"code":"A"}}"#,
            "unknown key \"x\" at the root of ERROR",
        ),
        (
            r#"{"type":"SYNC.SNAPSHOT","payload":{"participants":{}}}"#,
            "payload.rev is missing",
        ),
        (
            r#"{"type":"SYNC.SNAPSHOT","payload":{"rev":-1,"participants":{}}}"#,
            "payload.rev must be a non-negative integer",
        ),
        (
            r#"{"type":"SYNC.SNAPSHOT","payload":{"rev":1,"epoch":"","participants":{}}}"#,
            "payload.epoch must be 1 to 64 bytes long",
        ),
        (
            r#"{"type":"SYNC.SNAPSHOT","payload":{"rev":1,"participants":{},"extra":1}}"#,
            "invalid payload of SYNC.SNAPSHOT: unknown field `extra`, expected `participants`",
        ),
        (
            r#"{"type":"SYNC.DELTAS","payload":{"fromRev":1,"toRev":2}}"#,
            "payload.operations is missing",
        ),
        (
            r#"{"type":"SYNC.DELTAS","payload":{"fromRev":1,"toRev":2,"operations":{}}}"#,
            "payload.operations must be an array",
        ),
        (
            r#"{"type":"SYNC.DELTAS","payload":{"fromRev":1,"toRev":2.5,"operations":[]}}"#,
            "payload.toRev must be a non-negative integer",
        ),
        (
            r#"{"type":"SYNC.DELTAS","payload":{"fromRev":1,"toRev":1,"operations":[],"x":0}}"#,
            "unknown key \"x\" in payload of SYNC.DELTAS",
        ),
        (
            r#"{"type":"SYNC.DELTAS","payload":{"fromRev":1,"toRev":2,"operations":[5]}}"#,
            "payload.operations[0] must be an object",
        ),
        (
            r#"{"type":"SYNC.DELTAS","payload":{"fromRev":1,"toRev":2,"operations":[{"type":"participant.left","payload":{"id":"u"}}]}}"#,
            "payload.operations[0].rev is missing",
        ),
        (
            r#"{"type":"SYNC.DELTAS","payload":{"fromRev":1,"toRev":2,"operations":[{"rev":2,"type":"participant.left","payload":{"id":"u"},"clientReqId":3}]}}"#,
            "payload.operations[0].clientReqId must be a string",
        ),
        (
            r#"{"type":"SYNC.DELTAS","payload":{"fromRev":1,"toRev":2,"operations":[{"rev":2,"type":"participant.left","payload":{"id":"u"},"extra":3}]}}"#,
            "unknown key \"extra\" in payload.operations[0] of SYNC.DELTAS",
        ),
        (
            r#"{"type":"SYNC.DELTAS","payload":{"fromRev":1,"toRev":2,"operations":[{"rev":2,"type":"participant.exploded","payload":{}}]}}"#,
            "invalid payload.operations[0] of SYNC.DELTAS: unknown variant `participant.exploded`, expected one of `participant.joined`, `participant.updated`, `participant.left`",
        ),
        (
            r#"{"type":"SYNC.DELTAS","payload":{"fromRev":1,"toRev":2,"operations":[{"rev":2,"payload":{"id":"u"}}]}}"#,
            "invalid payload.operations[0] of SYNC.DELTAS: missing field `type`",
        ),
        (
            r#"{"type":"REVISION_GAP","payload":{"expectedRev":1,"serverRev":2,"bufferFirstRev":0}}"#,
            "payload.resumeFrom is missing",
        ),
        (
            r#"{"type":"REVISION_GAP","payload":{"expectedRev":1,"serverRev":2,"bufferFirstRev":0,"resumeFrom":2,"epoch":7}}"#,
            "payload.epoch must be a string",
        ),
        (
            r#"{"type":"ERROR","payload":{"message":"m"}}"#,
            "payload.code is missing",
        ),
        (
            r#"{"type":"ERROR","payload":{"code":"A","retryable":"yes"}}"#,
            "payload.retryable must be a boolean",
        ),
        (
            r#"{"type":"ERROR","payload":{"code":"A","details":[]}}"#,
            "payload.details must be an object",
        ),
        (
            r#"{"type":"ERROR","payload":{"code":"A","retryAfterMs":-5}}"#,
            "payload.retryAfterMs must be a non-negative integer",
        ),
        (
            r#"{"type":"ERROR","payload":{"code":"A","stack":"..."}}"#,
            "unknown key \"stack\" in payload of ERROR",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(message(text), expected, "for {text}");
    }
}
