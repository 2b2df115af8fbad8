//! The two dialects byte for byte: what a ws-kit client gets has exactly the keys of the
//! protocol (its strict schemas drop a message with any other), `meta` is `{}` or echoes
//! `correlationId`; the native dialect (`deltasync.v1`) is selected in the handshake and
//! adds `epoch` to snapshots and gaps, nothing else.
mod common;

use common::raw::RawWs;
use common::{TestServer, Ws};
use serde_json::json;

const SNAPSHOT_1: &str = r#"{"type":"SYNC.SNAPSHOT","meta":{},"payload":{"rev":1,"participants":{"user-1":{"id":"user-1","name":"Alice","status":"online","lastActive":1000}}}}"#;
const DELTAS_1_2: &str = r#"{"type":"SYNC.DELTAS","meta":{},"payload":{"fromRev":1,"toRev":2,"operations":[{"rev":2,"type":"participant.updated","payload":{"id":"user-1","status":"away"},"clientReqId":"req-1"}]}}"#;
const SNAPSHOT_2: &str = r#"{"type":"SYNC.SNAPSHOT","meta":{},"payload":{"rev":2,"participants":{"user-1":{"id":"user-1","name":"Alice","status":"away","lastActive":1000}}}}"#;

fn join_text(rev: Option<u64>) -> String {
    let rev = rev.map_or(String::new(), |rev| format!(r#","rev":{rev}"#));
    format!(
        r#"{{"type":"JOIN","meta":{{"timestamp":1712345678901,"correlationId":"c-join"}},"payload":{{"participantId":"user-1","name":"Alice"{rev}}}}}"#
    )
}

const UPDATE_TEXT: &str = r#"{"type":"UPDATE","meta":{"timestamp":1712345678902},"payload":{"patch":{"status":"away"},"clientReqId":"req-1"}}"#;

#[test]
fn ws_kit_messages_are_exactly_the_protocol_s_keys() {
    let server = TestServer::with_manual_clock(|_| {});
    let mut alice = Ws::connect(&server.url("/"));
    assert_eq!(alice.protocol, None, "no subprotocol asked, none selected");
    // ws-kit's client stamps `meta.timestamp` (and may send `correlationId`) on everything:
    // accepted, and nothing of it comes back on a snapshot or deltas.
    alice.send_text(&join_text(None));
    assert_eq!(alice.recv_text(), SNAPSHOT_1);
    alice.send_text(UPDATE_TEXT);
    assert_eq!(alice.recv_text(), DELTAS_1_2);

    let mut ahead = Ws::connect(&server.url("/"));
    ahead.send_text(&join_text(Some(99)));
    assert_eq!(
        ahead.recv_text(),
        r#"{"type":"REVISION_GAP","meta":{},"payload":{"expectedRev":99,"serverRev":2,"bufferFirstRev":0,"resumeFrom":2}}"#
    );
    assert_eq!(ahead.recv_text(), SNAPSHOT_2);

    // An error answering a request with a correlationId echoes it, and only it.
    let mut stranger = Ws::connect(&server.url("/"));
    stranger.send_text(
        r#"{"type":"UPDATE","meta":{"correlationId":"c-7","timestamp":1},"payload":{"patch":{"status":"away"},"clientReqId":"req-9"}}"#,
    );
    assert_eq!(
        stranger.recv_text(),
        r#"{"type":"ERROR","meta":{"correlationId":"c-7"},"payload":{"code":"UNAUTHENTICATED","message":"UPDATE before JOIN: join the room first","details":{"clientReqId":"req-9"},"retryable":false}}"#
    );
    // Without one, `meta` is empty; a server-owned key sent by a client is not an error
    // (it is dropped), an unknown one is.
    stranger.send_text(r#"{"type":"HEARTBEAT","meta":{"clientId":"forged","receivedAt":5}}"#);
    stranger.send_text(r#"{"type":"HEARTBEAT","payload":{}}"#);
    assert_eq!(
        stranger.recv_text(),
        r#"{"type":"ERROR","meta":{},"payload":{"code":"INVALID_ARGUMENT","message":"HEARTBEAT takes no payload","retryable":false}}"#
    );
}

#[test]
fn the_native_dialect_is_selected_in_the_handshake_and_adds_the_epoch() {
    let server = TestServer::with_manual_clock(|_| {});
    let epoch = server.room("default").epoch().as_str().to_owned();
    let mut raw = RawWs::connect_with(
        server.addr(),
        "/",
        "Sec-WebSocket-Protocol: chat, deltasync.v1\r\n",
    );
    assert_eq!(
        raw.response,
        "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nsec-websocket-protocol: deltasync.v1\r\n\r\n"
    );
    raw.send_text(join_text(None).as_bytes());
    let (opcode, snapshot) = raw.read_frame();
    assert_eq!(opcode, 0x1);
    assert_eq!(
        String::from_utf8(snapshot).unwrap(),
        format!(
            r#"{{"type":"SYNC.SNAPSHOT","meta":{{}},"payload":{{"rev":1,"epoch":"{epoch}","participants":{{"user-1":{{"id":"user-1","name":"Alice","status":"online","lastActive":1000}}}}}}}}"#
        )
    );
    raw.send_text(UPDATE_TEXT.as_bytes());
    let (_, deltas) = raw.read_frame();
    assert_eq!(
        String::from_utf8(deltas).unwrap(),
        DELTAS_1_2,
        "deltas are the same bytes in both dialects"
    );

    let mut ahead = Ws::connect_native(&server.url("/"));
    ahead.send(json!({"type": "JOIN", "payload":
        {"participantId": "user-1", "name": "Alice", "rev": 1, "epoch": "an-older-history"}}));
    assert_eq!(
        ahead.recv_text(),
        format!(
            r#"{{"type":"REVISION_GAP","meta":{{}},"payload":{{"expectedRev":1,"serverRev":2,"bufferFirstRev":0,"resumeFrom":2,"epoch":"{epoch}"}}}}"#
        )
    );
    assert_eq!(
        ahead.recv_text(),
        format!(
            r#"{{"type":"SYNC.SNAPSHOT","meta":{{}},"payload":{{"rev":2,"epoch":"{epoch}","participants":{{"user-1":{{"id":"user-1","name":"Alice","status":"away","lastActive":1000}}}}}}}}"#
        )
    );
}

#[test]
fn an_unknown_subprotocol_alone_gets_the_ws_kit_dialect_and_none_selected() {
    let server = TestServer::with_manual_clock(|_| {});
    let mut raw = RawWs::connect_with(server.addr(), "/", "Sec-WebSocket-Protocol: chat\r\n");
    assert_eq!(
        raw.response,
        "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
    raw.send_text(join_text(None).as_bytes());
    let (_, snapshot) = raw.read_frame();
    assert_eq!(String::from_utf8(snapshot).unwrap(), SNAPSHOT_1);
}
