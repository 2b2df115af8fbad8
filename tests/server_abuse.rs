//! Nothing a client sends can panic a shard or stall other connections: after each abuse
//! the abuser gets its exact answer (an `ERROR` it survives, or a close frame), and a
//! well-behaved client on the same server still joins and gets its update acknowledged,
//! on every shard.
mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::raw::{self, RawWs, frame, upgrade_request};
use common::{TestServer, Ws, assert_serves, eventually};
use serde_json::{Value, json};

fn error(code: &str, message: &str, client_req_id: Option<&str>) -> Value {
    let mut payload = json!({"code": code, "message": message, "retryable": false});
    if let Some(id) = client_req_id {
        payload["details"] = json!({"clientReqId": id});
    }
    json!({"type": "ERROR", "meta": {}, "payload": payload})
}

/// Two new connections in a row land on both shards of a two-shard server.
fn assert_every_shard_serves(server: &TestServer) {
    assert_serves(&server.url(""));
    assert_serves(&server.url(""));
}

const INVALID: &str = "INVALID_ARGUMENT";

#[test]
fn malformed_messages_get_an_error_and_the_connection_survives() {
    let server = TestServer::start();
    let deep = "[".repeat(60_000);
    let long_id = "r".repeat(129);
    let long_id_update = format!(
        r#"{{"type":"UPDATE","payload":{{"patch":{{"status":"away"}},"clientReqId":"{long_id}"}}}}"#
    );
    let cases: [(&str, &str, &str); 17] = [
        (
            "not json",
            INVALID,
            "malformed JSON: expected ident at line 1 column 2",
        ),
        ("[]", INVALID, "a message must be a JSON object"),
        ("null", INVALID, "a message must be a JSON object"),
        (r#""JOIN""#, INVALID, "a message must be a JSON object"),
        ("{}", INVALID, "type is missing"),
        (
            &deep,
            INVALID,
            "malformed JSON: recursion limit exceeded at line 1 column 128",
        ),
        (
            r#"{"type":"NOPE"}"#,
            INVALID,
            "unknown message type \"NOPE\"",
        ),
        (r#"{"type":"JOIN"}"#, INVALID, "payload is missing"),
        (
            r#"{"type":"JOIN","payload":{"participantId":"","name":"x"}}"#,
            INVALID,
            "payload.participantId must not be empty",
        ),
        (
            r#"{"type":"JOIN","payload":{"participantId":"u","name":"x","rev":-1}}"#,
            INVALID,
            "payload.rev must be a non-negative integer",
        ),
        (
            r#"{"type":"JOIN","payload":{"participantId":"u","name":"x","rev":18446744073709551616}}"#,
            INVALID,
            "payload.rev must be a non-negative integer",
        ),
        (
            r#"{"type":"JOIN","payload":{"participantId":"u","name":"x","rev":1e400}}"#,
            INVALID,
            "malformed JSON: number out of range at line 1 column 68",
        ),
        (
            r#"{"type":"JOIN","payload":{"participantId":"u","name":"x","epoch":""}}"#,
            INVALID,
            "payload.epoch must not be empty",
        ),
        (
            r#"{"type":"JOIN","meta":{"correlationId":5},"payload":{"participantId":"u","name":"x"}}"#,
            INVALID,
            "meta.correlationId must be a string",
        ),
        (
            r#"{"type":"JOIN","payload":{"participantId":"u","name":"x","extra":1}}"#,
            INVALID,
            "unknown key \"extra\" in payload of JOIN",
        ),
        (
            r#"{"type":"JOIN","payload":{"participantId":"u-1","name":"\u0000 nul"}}"#,
            INVALID,
            "name must not contain control characters",
        ),
        (
            r#"{"type":"LEAVE"}"#,
            "UNAUTHENTICATED",
            "LEAVE before JOIN: join the room first",
        ),
    ];
    let mut ws = Ws::connect(&server.url("/"));
    for (text, code, message) in cases {
        ws.send_text(text);
        assert_eq!(ws.recv(), error(code, message, None), "{:.80}", text);
    }
    // An over-long clientReqId is named by its first 128 bytes, marked truncated.
    ws.send_text(&long_id_update);
    let mut refused = error(
        INVALID,
        "payload.clientReqId is 129 bytes long; the limit is 128",
        None,
    );
    refused["payload"]["details"] =
        json!({"clientReqId": "r".repeat(128), "clientReqIdTruncated": true});
    assert_eq!(ws.recv(), refused);
    // Joined, the updates it may not make are refused by name.
    assert_eq!(ws.join("u-2", "x")["payload"]["rev"], 1);
    let updates = [
        (
            r#"{"type":"UPDATE","payload":{"patch":{"id":"someone-else","status":"away"},"clientReqId":"r2"}}"#,
            "PERMISSION_DENIED",
            "participant \"u-2\" may not update participant \"someone-else\"",
            "r2",
        ),
        (
            r#"{"type":"UPDATE","payload":{"patch":{"status":"asleep"},"clientReqId":"r3"}}"#,
            INVALID,
            "invalid payload of UPDATE: unknown variant `asleep`, expected one of `online`, `away`, `offline`",
            "r3",
        ),
        (
            r#"{"type":"UPDATE","payload":{"patch":{},"clientReqId":"r4"}}"#,
            INVALID,
            "patch must set name or status",
            "r4",
        ),
        (
            r#"{"type":"UPDATE","payload":{"patch":{"status":"away"},"baseRev":-3,"clientReqId":"r5"}}"#,
            INVALID,
            "payload.baseRev must be a non-negative integer",
            "r5",
        ),
    ];
    for (text, code, message, id) in updates {
        ws.send_text(text);
        assert_eq!(ws.recv(), error(code, message, Some(id)), "{text}");
    }
    ws.send(json!({"type": "JOIN", "payload": {"participantId": "u-1", "name": "x"}}));
    assert_eq!(
        ws.recv(),
        json!({"type": "ERROR", "meta": {}, "payload": {"code": "FAILED_PRECONDITION",
            "message": "this connection has joined as \"u-2\"; LEAVE before joining as another participant",
            "retryable": false}})
    );
    // The largest revision there is: a resume from the future, answered with a snapshot.
    let mut future = Ws::connect(&server.url("/"));
    future.send(json!({"type": "JOIN", "payload":
        {"participantId": "u-3", "name": "x", "rev": u64::MAX}}));
    assert_eq!(
        future.recv()["payload"],
        json!({"expectedRev": u64::MAX, "serverRev": 2, "bufferFirstRev": 0, "resumeFrom": 2})
    );
    assert_eq!(future.recv()["payload"]["rev"], 2);
    assert_every_shard_serves(&server);
}

/// Each abuse below ends the WebSocket with a close frame: (what is sent after the
/// upgrade, the close code and reason expected).
#[test]
fn broken_frames_get_a_close_frame_and_nobody_else_notices() {
    let server = TestServer::with(|config| config.limits.max_message_bytes = 1024);
    let protocol_error = (1002, "WebSocket protocol error");
    let huge_header = {
        let mut bytes = vec![0x81, 0xff];
        bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        bytes
    };
    let cases: Vec<(&str, Vec<u8>, (u16, &str))> = vec![
        (
            "a continuation with no message",
            frame(0x0, true, b"x"),
            protocol_error,
        ),
        (
            "an unknown data opcode",
            frame(0x3, true, b"x"),
            protocol_error,
        ),
        (
            "an unknown control opcode",
            frame(0xb, true, b""),
            protocol_error,
        ),
        ("a fragmented ping", frame(0x9, false, b"x"), protocol_error),
        (
            "a ping of 126 bytes",
            frame(0x9, true, &[b'p'; 126]),
            protocol_error,
        ),
        (
            "a new message inside a fragmented one",
            [frame(0x1, false, b"{\"type\""), frame(0x1, true, b"x")].concat(),
            protocol_error,
        ),
        (
            "a close frame with a 1-byte payload",
            frame(0x8, true, &[3]),
            protocol_error,
        ),
        (
            "a close code no one may send",
            frame(0x8, true, &1005u16.to_be_bytes()),
            (1002, "Protocol violation"),
        ),
        (
            "a frame header claiming 4 EiB",
            huge_header,
            (1009, "message too large"),
        ),
    ];
    let mut bystander = Ws::connect(&server.url("/"));
    assert_eq!(bystander.join("bystander", "B")["payload"]["rev"], 1);
    for (what, bytes, (code, reason)) in cases {
        let mut raw = RawWs::connect(server.addr(), "/");
        raw.write(&bytes);
        if code == 1009 {
            let (opcode, error) = raw.read_frame();
            assert_eq!(opcode, 0x1, "{what}");
            let error: Value = serde_json::from_slice(&error).unwrap();
            assert_eq!(
                error["payload"]["message"],
                format!(
                    "message of {} bytes exceeds the limit of 1024 bytes",
                    1u64 << 62
                ),
                "{what}"
            );
        }
        assert_eq!(raw.read_close(), (code, reason.to_owned()), "{what}");
        raw.expect_eof();
        // The bystander's connection, on its shard, goes on.
        bystander.send(common::update("away", what));
        assert_eq!(
            bystander.recv()["payload"]["operations"][0]["clientReqId"],
            what
        );
    }
    assert_every_shard_serves(&server);
}

#[test]
fn fragmented_pipelined_and_flooding_clients_are_served_in_order() {
    let server = TestServer::start();
    // A JOIN in three fragments with a ping in between is one message.
    let mut raw = RawWs::connect(server.addr(), "/");
    raw.write(
        &[
            frame(0x1, false, br#"{"type":"JOIN","#),
            frame(0x9, true, b"mid"),
            frame(0x0, false, br#""payload":{"participantId":"#),
            frame(0x0, true, br#""frag","name":"F"}}"#),
        ]
        .concat(),
    );
    let mut frames = [raw.read_frame(), raw.read_frame()];
    frames.sort();
    assert_eq!(frames[0], (0x1, frames[0].1.clone()));
    assert!(String::from_utf8_lossy(&frames[0].1).contains(r#""rev":1,"#));
    assert_eq!(frames[1], (0xa, b"mid".to_vec()));

    // Frames sent with the upgrade request, before its answer, are not lost.
    let mut stream = raw::connect(server.addr());
    let mut request = upgrade_request("/", "").into_bytes();
    request.extend(frame(
        0x1,
        true,
        br#"{"type":"JOIN","payload":{"participantId":"eager","name":"E"}}"#,
    ));
    stream.write_all(&request).unwrap();
    let mut eager = RawWs::from_stream(stream);
    eager.read_response();
    let (_, snapshot) = eager.read_frame();
    assert!(String::from_utf8_lossy(&snapshot).contains(r#""rev":2,"#));

    // A thousand pings at once are answered (pongs coalesce) and the session goes on.
    let mut pings = Vec::new();
    for i in 0..1000u32 {
        pings.extend(frame(0x9, true, &i.to_be_bytes()));
    }
    pings.extend(frame(0x1, true, br#"{"type":"HEARTBEAT","payload":{}}"#));
    eager.write(&pings);
    loop {
        let (opcode, payload) = eager.read_frame();
        if opcode == 0x1 {
            assert!(String::from_utf8_lossy(&payload).contains("HEARTBEAT takes no payload"));
            break;
        }
        assert_eq!(opcode, 0xa, "pongs until the answer");
    }
    assert_every_shard_serves(&server);
}

#[test]
fn connections_that_vanish_at_any_point_are_all_released() {
    let server = TestServer::start();
    let request = upgrade_request("/rooms/vanish", "");
    for i in 0..50 {
        let mut stream = raw::connect(server.addr());
        match i % 5 {
            // Gone before saying anything.
            0 => {}
            // Gone in the middle of the request.
            1 => stream.write_all(&request.as_bytes()[..20]).unwrap(),
            // Gone right after the request, before reading the answer.
            2 => stream.write_all(request.as_bytes()).unwrap(),
            // Gone in the middle of a frame.
            3 => {
                let mut bytes = request.clone().into_bytes();
                bytes.extend(&frame(0x1, true, br#"{"type":"HEARTBEAT"}"#)[..5]);
                stream.write_all(&bytes).unwrap();
            }
            // Half-closed after joining: the server ends it too.
            _ => {
                let mut raw = RawWs::from_stream(stream);
                raw.write(request.as_bytes());
                raw.read_response();
                raw.send_text(br#"{"type":"JOIN","payload":{"participantId":"h","name":"H"}}"#);
                let (opcode, _) = raw.read_frame();
                assert_eq!(opcode, 0x1);
                raw.shutdown_write();
                assert!(raw::closed_by_server(&mut raw.stream));
                continue;
            }
        }
        drop(stream);
    }
    eventually("every vanished connection is released", || {
        server.server().connections() == 0
    });
    assert_every_shard_serves(&server);
}

#[test]
fn a_client_flooding_its_shard_does_not_starve_the_others_on_it() {
    // One shard: the flooder and the others share its event loop.
    let server = TestServer::with(|config| config.server.shards = 1);
    let mut flooder = RawWs::connect(server.addr(), "/");
    let mut pings = Vec::new();
    for _ in 0..2000 {
        pings.extend(frame(0x9, true, &[b'p'; 125]));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flooding = {
        let stop = Arc::clone(&stop);
        let mut stream = flooder.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                stream.write_all(&pings).unwrap();
                sent += pings.len();
            }
            sent
        })
    };
    let mut alice = Ws::connect(&server.url("/"));
    assert_eq!(alice.join("user-1", "Alice")["payload"]["rev"], 1);
    for i in 0..5u64 {
        let status = if i % 2 == 0 { "away" } else { "online" };
        alice.send(common::update(status, &format!("req-{i}")));
        let ack = alice.recv();
        assert_eq!(ack["payload"]["toRev"], 2 + i, "{ack}");
    }
    assert_serves(&server.url(""));
    stop.store(true, Ordering::Relaxed);
    let sent = flooding.join().unwrap();
    assert!(sent > 0);
    // The flooder, which read nothing all along, is answered with pongs, not closed.
    assert_eq!(flooder.read_frame().0, 0xa);
}
