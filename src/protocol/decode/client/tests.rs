use serde_json::{Value, json};

use super::*;
use crate::model::presence::{Patch, PresenceInput, Status};

fn decode(text: &str) -> Result<ClientEnvelope<PresenceInput>, DecodeError> {
    decode_client(text.as_bytes(), &DecodeLimits::default())
}

fn message(text: &str) -> String {
    match decode(text) {
        Ok(ok) => panic!("{text} decoded as {ok:?}"),
        Err(err) => err.message,
    }
}

fn away() -> PresenceInput {
    PresenceInput {
        patch: Patch {
            status: Some(Status::Away),
            ..Patch::default()
        },
    }
}

#[test]
fn a_join_decodes_with_and_without_resume() {
    let plain = decode(r#"{"type":"JOIN","payload":{"participantId":"u1","name":"Alice"}}"#);
    assert_eq!(
        plain,
        Ok(ClientEnvelope {
            message: ClientMessage::Join {
                participant_id: "u1".into(),
                name: "Alice".into(),
                rev: None,
                epoch: None,
            },
            correlation_id: None,
            timestamp: None,
        })
    );
    let resume = decode(
        r#"{"type":"JOIN","meta":{"timestamp":1700000000000,"correlationId":"c"},
            "payload":{"participantId":"u1","name":"Alice","rev":0,"epoch":"e1"}}"#,
    );
    assert_eq!(
        resume,
        Ok(ClientEnvelope {
            message: ClientMessage::Join {
                participant_id: "u1".into(),
                name: "Alice".into(),
                rev: Some(0),
                epoch: Some("e1".into()),
            },
            correlation_id: Some("c".into()),
            timestamp: Some(1_700_000_000_000.0),
        })
    );
}

#[test]
fn an_update_splits_the_input_from_base_rev_and_client_req_id() {
    let update = decode(
        r#"{"type":"UPDATE","payload":{"patch":{"status":"away"},"baseRev":5,"clientReqId":"req-123"}}"#,
    );
    assert_eq!(
        update.map(|e| e.message),
        Ok(ClientMessage::Update {
            input: away(),
            base_rev: Some(5),
            client_req_id: "req-123".into(),
        })
    );
    let without_base = decode(r#"{"type":"UPDATE","payload":{"patch":{},"clientReqId":"r"}}"#);
    assert_eq!(
        without_base.map(|e| e.message),
        Ok(ClientMessage::Update {
            input: PresenceInput {
                patch: Patch::default()
            },
            base_rev: None,
            client_req_id: "r".into(),
        })
    );
}

#[test]
fn leave_and_heartbeat_have_no_payload() {
    assert_eq!(
        decode(r#"{"type":"LEAVE"}"#).map(|e| e.message),
        Ok(ClientMessage::Leave)
    );
    assert_eq!(
        decode(r#"{"type":"HEARTBEAT","meta":{}}"#).map(|e| e.message),
        Ok(ClientMessage::Heartbeat)
    );
    assert_eq!(
        message(r#"{"type":"LEAVE","payload":{}}"#),
        "LEAVE takes no payload"
    );
    assert_eq!(
        message(r#"{"type":"HEARTBEAT","payload":null}"#),
        "HEARTBEAT takes no payload"
    );
}

#[test]
fn server_owned_meta_keys_are_dropped_silently() {
    let envelope = decode(
        r#"{"type":"HEARTBEAT","meta":{"clientId":"spoof","receivedAt":1,"timestamp":2.5}}"#,
    );
    assert_eq!(
        envelope,
        Ok(ClientEnvelope {
            message: ClientMessage::Heartbeat,
            correlation_id: None,
            timestamp: Some(2.5),
        })
    );
}

#[test]
fn envelope_errors_are_exact() {
    let cases = [
        (
            "",
            "malformed JSON: EOF while parsing a value at line 1 column 0",
        ),
        (
            "{\"type\":",
            "malformed JSON: EOF while parsing a value at line 1 column 8",
        ),
        (
            "{} x",
            "malformed JSON: trailing characters at line 1 column 4",
        ),
        ("[1]", "a message must be a JSON object"),
        ("\"JOIN\"", "a message must be a JSON object"),
        ("{}", "type is missing"),
        (r#"{"type":7}"#, "type must be a string"),
        (r#"{"type":"FOO"}"#, "unknown message type \"FOO\""),
        (r#"{"type":"join"}"#, "unknown message type \"join\""),
        (
            r#"{"type":"LEAVE","foo":1}"#,
            "unknown key \"foo\" at the root of LEAVE",
        ),
        (r#"{"type":"LEAVE","meta":[]}"#, "meta must be an object"),
        (r#"{"type":"LEAVE","meta":null}"#, "meta must be an object"),
        (
            r#"{"type":"LEAVE","meta":{"foo":1}}"#,
            "unknown key \"foo\" in meta of LEAVE",
        ),
        (
            r#"{"type":"LEAVE","meta":{"correlationId":1}}"#,
            "meta.correlationId must be a string",
        ),
        (
            r#"{"type":"LEAVE","meta":{"timestamp":"now"}}"#,
            "meta.timestamp must be a number",
        ),
        (r#"{"type":"JOIN"}"#, "payload is missing"),
        (
            r#"{"type":"UPDATE","payload":[]}"#,
            "payload must be an object",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(message(text), expected, "for {text}");
    }
}

#[test]
fn long_unknown_names_are_cut_in_messages() {
    let text = format!(r#"{{"type":"{}"}}"#, "X".repeat(1000));
    assert_eq!(
        message(&text),
        format!("unknown message type \"{}\"...", "X".repeat(64))
    );
}

#[test]
fn join_payload_errors_are_exact() {
    let id300 = "x".repeat(300);
    let epoch65 = "e".repeat(65);
    let cases = [
        (
            json!({"name": "A"}),
            "payload.participantId is missing".to_owned(),
        ),
        (
            json!({"participantId": 1, "name": "A"}),
            "payload.participantId must be a string".into(),
        ),
        (
            json!({"participantId": "", "name": "A"}),
            "payload.participantId must not be empty".into(),
        ),
        (
            json!({"participantId": id300, "name": "A"}),
            "payload.participantId is 300 bytes long; the limit is 128".into(),
        ),
        (
            json!({"participantId": "u"}),
            "payload.name is missing".into(),
        ),
        (
            json!({"participantId": "u", "name": null}),
            "payload.name must be a string".into(),
        ),
        (
            json!({"participantId": "u", "name": "n".repeat(1025)}),
            "payload.name is 1025 bytes long; the limit is 1024".into(),
        ),
        (
            json!({"participantId": "u", "name": "A", "rev": -1}),
            "payload.rev must be a non-negative integer".into(),
        ),
        (
            json!({"participantId": "u", "name": "A", "rev": 1.5}),
            "payload.rev must be a non-negative integer".into(),
        ),
        (
            json!({"participantId": "u", "name": "A", "rev": 1.0}),
            "payload.rev must be a non-negative integer".into(),
        ),
        (
            json!({"participantId": "u", "name": "A", "rev": "1"}),
            "payload.rev must be a non-negative integer".into(),
        ),
        (
            json!({"participantId": "u", "name": "A", "rev": null}),
            "payload.rev must be a non-negative integer".into(),
        ),
        (
            json!({"participantId": "u", "name": "A", "epoch": 1}),
            "payload.epoch must be a string".into(),
        ),
        (
            json!({"participantId": "u", "name": "A", "epoch": ""}),
            "payload.epoch must not be empty".into(),
        ),
        (
            json!({"participantId": "u", "name": "A", "epoch": epoch65}),
            "payload.epoch is 65 bytes long; the limit is 64".into(),
        ),
        (
            json!({"participantId": "u", "name": "A", "foo": 1}),
            "unknown key \"foo\" in payload of JOIN".into(),
        ),
    ];
    for (payload, expected) in cases {
        let text = json!({"type": "JOIN", "payload": payload}).to_string();
        assert_eq!(message(&text), expected, "for {text}");
    }
}

#[test]
fn huge_revisions_are_not_integers_we_accept() {
    // Above u64::MAX serde_json reads a float: still "not a non-negative integer".
    let text =
        r#"{"type":"JOIN","payload":{"participantId":"u","name":"A","rev":18446744073709551616}}"#;
    assert_eq!(message(text), "payload.rev must be a non-negative integer");
    let max =
        r#"{"type":"JOIN","payload":{"participantId":"u","name":"A","rev":18446744073709551615}}"#;
    assert!(matches!(
        decode(max).map(|e| e.message),
        Ok(ClientMessage::Join {
            rev: Some(u64::MAX),
            ..
        })
    ));
}

#[test]
fn update_payload_errors_are_exact() {
    let id129 = "r".repeat(129);
    let cases = [
        (json!({"patch": {}}), "payload.clientReqId is missing".to_owned()),
        (json!({"patch": {}, "clientReqId": 5}), "payload.clientReqId must be a string".into()),
        (json!({"patch": {}, "clientReqId": ""}), "payload.clientReqId must not be empty".into()),
        (
            json!({"patch": {}, "clientReqId": id129}),
            "payload.clientReqId is 129 bytes long; the limit is 128".into(),
        ),
        (
            json!({"patch": {}, "clientReqId": "r", "baseRev": -3}),
            "payload.baseRev must be a non-negative integer".into(),
        ),
        (
            json!({"patch": {}, "clientReqId": "r", "baseRev": 2.5}),
            "payload.baseRev must be a non-negative integer".into(),
        ),
        (
            json!({"patch": {}, "clientReqId": "r", "foo": 1}),
            "invalid payload of UPDATE: unknown field `foo`, expected `patch`".into(),
        ),
        (json!({"clientReqId": "r"}), "invalid payload of UPDATE: missing field `patch`".into()),
        (
            json!({"patch": {"status": "busy"}, "clientReqId": "r"}),
            "invalid payload of UPDATE: unknown variant `busy`, expected one of `online`, `away`, `offline`".into(),
        ),
        (
            json!({"patch": {"lastActive": 5}, "clientReqId": "r"}),
            "invalid payload of UPDATE: unknown field `lastActive`, expected one of `id`, `name`, `status`".into(),
        ),
    ];
    for (payload, expected) in cases {
        let text = json!({"type": "UPDATE", "payload": payload}).to_string();
        assert_eq!(message(&text), expected, "for {text}");
    }
}

#[test]
fn a_rejected_update_names_its_client_req_id_and_correlation_id() {
    let err = decode(
        r#"{"type":"UPDATE","meta":{"correlationId":"c-9","bad":1},"payload":{"patch":{},"clientReqId":"req-7"}}"#,
    )
    .unwrap_err();
    assert_eq!(err.message, "unknown key \"bad\" in meta of UPDATE");
    assert_eq!(err.client_req_id.as_deref(), Some("req-7"));
    assert_eq!(err.correlation_id.as_deref(), Some("c-9"));
    assert_eq!(err.code(), crate::protocol::ErrorCode::InvalidArgument);
    let mut details = serde_json::Map::new();
    details.insert("clientReqId".into(), json!("req-7"));
    assert_eq!(err.details(), Some(details));

    let err = decode(
        r#"{"type":"UPDATE","payload":{"patch":{"x":1},"clientReqId":"req-8","baseRev":-1}}"#,
    )
    .unwrap_err();
    assert_eq!(
        err.message,
        "payload.baseRev must be a non-negative integer"
    );
    assert_eq!(err.client_req_id.as_deref(), Some("req-8"));
    assert_eq!(err.correlation_id, None);
}

/// An over-long `clientReqId` is named by its prefix: the first `max_client_req_id_bytes`
/// bytes, cut back to a character boundary, marked truncated.
#[test]
fn an_over_long_client_req_id_is_named_by_a_marked_prefix() {
    // 127 ASCII bytes then "é" (2 bytes): the cut at 128 falls inside "é".
    let id = format!("{}é", "r".repeat(127));
    let text = json!({"type": "UPDATE", "payload": {"patch": {}, "clientReqId": id}});
    let err = decode(&text.to_string()).unwrap_err();
    assert_eq!(
        err.message,
        "payload.clientReqId is 129 bytes long; the limit is 128"
    );
    assert_eq!(err.client_req_id, Some("r".repeat(127)));
    assert!(err.client_req_id_truncated);
    let details = json!({"clientReqId": "r".repeat(127), "clientReqIdTruncated": true});
    assert_eq!(err.details().map(Value::Object), Some(details));

    // A limit smaller than the first character: the prefix is empty, still marked.
    let limits = DecodeLimits {
        max_client_req_id_bytes: 1,
        ..DecodeLimits::default()
    };
    let text = json!({"type": "UPDATE", "payload": {"patch": {}, "clientReqId": "éa"}});
    let err = decode_client::<PresenceInput>(text.to_string().as_bytes(), &limits).unwrap_err();
    assert_eq!(
        (err.client_req_id.as_deref(), err.client_req_id_truncated),
        (Some(""), true)
    );
    // A whole id is not marked.
    let text =
        json!({"type": "UPDATE", "payload": {"patch": {}, "clientReqId": "r".repeat(128), "x": 1}});
    let err = decode(&text.to_string()).unwrap_err();
    assert_eq!(
        (err.client_req_id, err.client_req_id_truncated),
        (Some("r".repeat(128)), false)
    );
}

#[test]
fn an_unreadable_client_req_id_is_not_carried() {
    for id in [json!(""), json!(5)] {
        let text = json!({"type": "UPDATE", "payload": {"clientReqId": id}}).to_string();
        let err = decode(&text).unwrap_err();
        assert_eq!(err.client_req_id, None, "for {text}");
        assert_eq!(err.details(), None);
    }
    // Only an UPDATE's clientReqId counts.
    let err = decode(r#"{"type":"JOIN","payload":{"clientReqId":"r"}}"#).unwrap_err();
    assert_eq!(err.client_req_id, None);
    let err = decode(r#"{"type":"JOIN","meta":{"correlationId":7}}"#).unwrap_err();
    assert_eq!(err.correlation_id, None);
}

#[test]
fn the_correlation_id_is_carried_by_any_error_after_the_root() {
    let err = decode(r#"{"type":"NOPE","meta":{"correlationId":"c1"}}"#).unwrap_err();
    assert_eq!(err.message, "unknown message type \"NOPE\"");
    assert_eq!(err.correlation_id.as_deref(), Some("c1"));
    let long = json!({"type": "LEAVE", "meta": {"correlationId": "c".repeat(129)}}).to_string();
    let err = decode(&long).unwrap_err();
    assert_eq!(
        err.message,
        "meta.correlationId is 129 bytes long; the limit is 128"
    );
    assert_eq!(err.correlation_id, None);
}

#[test]
fn limits_are_configurable() {
    let limits = DecodeLimits {
        max_participant_id_bytes: 2,
        max_name_bytes: 3,
        max_client_req_id_bytes: 4,
        max_correlation_id_bytes: 5,
    };
    let decode = |text: &str| {
        decode_client::<PresenceInput>(text.as_bytes(), &limits)
            .map(drop)
            .map_err(|e| e.message)
    };
    assert_eq!(
        decode(r#"{"type":"JOIN","payload":{"participantId":"abc","name":"A"}}"#),
        Err("payload.participantId is 3 bytes long; the limit is 2".into())
    );
    assert_eq!(
        decode(r#"{"type":"JOIN","payload":{"participantId":"ab","name":"Anna"}}"#),
        Err("payload.name is 4 bytes long; the limit is 3".into())
    );
    assert_eq!(
        decode(r#"{"type":"UPDATE","payload":{"patch":{},"clientReqId":"12345"}}"#),
        Err("payload.clientReqId is 5 bytes long; the limit is 4".into())
    );
    assert_eq!(
        decode(r#"{"type":"LEAVE","meta":{"correlationId":"123456"}}"#),
        Err("meta.correlationId is 6 bytes long; the limit is 5".into())
    );
    assert_eq!(
        decode(r#"{"type":"LEAVE","meta":{"correlationId":""}}"#),
        Ok(())
    );
}

#[test]
fn invalid_utf8_is_malformed_json() {
    let err = decode_client::<PresenceInput>(b"{\"type\":\"\xff\"}", &DecodeLimits::default())
        .unwrap_err();
    assert!(
        err.message.starts_with("malformed JSON: invalid unicode"),
        "{}",
        err.message
    );
}
