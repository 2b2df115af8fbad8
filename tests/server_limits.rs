//! Every per-message and per-server limit over real sockets, each set low through the
//! configuration: message size, UTF-8, binary frames, pings, the message rate, the
//! connection limits (server-wide and per client address), the room limit and the
//! participants per room.
mod common;

use std::time::Duration;

use common::raw::{self, RawWs};
use common::{TestServer, Ws, assert_serves, eventually, update};
use serde_json::{Value, json};
use tungstenite::Message;

#[test]
fn a_message_over_the_size_limit_gets_resource_exhausted_then_close_1009() {
    let server = TestServer::with(|config| config.limits.max_message_bytes = 128);
    let mut ws = Ws::connect(&server.url("/"));
    // Exactly at the limit is fine: a heartbeat padded with JSON whitespace to 128 bytes.
    let heartbeat = format!("{:<128}", r#"{"type":"HEARTBEAT"}"#);
    ws.send_text(&heartbeat);
    ws.send_text(r#"{"type":"HEARTBEAT","payload":{}}"#);
    assert_eq!(
        ws.recv()["payload"]["message"],
        "HEARTBEAT takes no payload"
    );

    ws.send_text(&format!("{:<129}", r#"{"type":"HEARTBEAT"}"#));
    assert_eq!(
        ws.recv_text(),
        r#"{"type":"ERROR","meta":{},"payload":{"code":"RESOURCE_EXHAUSTED","message":"message of 129 bytes exceeds the limit of 128 bytes","retryable":true}}"#
    );
    assert_eq!(
        ws.recv_close_frame(),
        Some((1009, "message too large".to_owned()))
    );
    drop(ws);
    assert_serves(&server.url(""));
}

#[test]
fn invalid_utf8_in_a_text_frame_closes_1007() {
    let server = TestServer::start();
    let mut raw = RawWs::connect(server.addr(), "/");
    raw.send_text(b"{\"type\":\"HEARTBEAT\xff\"}");
    assert_eq!(raw.read_close(), (1007, "invalid UTF-8".to_owned()));
    raw.expect_eof();
    assert_serves(&server.url(""));
}

#[test]
fn a_binary_frame_gets_invalid_argument_and_the_connection_goes_on() {
    let server = TestServer::start();
    let mut ws = Ws::connect(&server.url("/"));
    ws.send_message(Message::binary(br#"{"type":"HEARTBEAT"}"#.to_vec()));
    assert_eq!(
        ws.recv_text(),
        r#"{"type":"ERROR","meta":{},"payload":{"code":"INVALID_ARGUMENT","message":"binary messages are not supported: send JSON text","retryable":false}}"#
    );
    assert_eq!(ws.join("user-1", "Alice")["payload"]["rev"], 1);
}

#[test]
fn a_ping_gets_its_pong() {
    let server = TestServer::start();
    let mut ws = Ws::connect(&server.url("/"));
    ws.send_message(Message::Ping(b"are you there".to_vec().into()));
    assert_eq!(
        ws.recv_message(),
        Message::Pong(b"are you there".to_vec().into())
    );
    // Between messages too, and the session is untouched by it.
    ws.send(common::join("user-1", "Alice"));
    ws.send_message(Message::Ping(b"2".to_vec().into()));
    let mut got = [ws.recv_message(), ws.recv_message()];
    got.sort_by_key(|m| m.is_text());
    assert_eq!(got[0], Message::Pong(b"2".to_vec().into()));
    assert!(
        got[1]
            .to_text()
            .unwrap()
            .contains(r#""type":"SYNC.SNAPSHOT""#)
    );
}

#[test]
fn the_message_rate_is_limited_per_connection() {
    let server = TestServer::with(|config| {
        config.limits.messages_per_second = 2;
        config.limits.message_burst = 3;
    });
    let mut alice = Ws::connect(&server.url("/"));
    let mut bob = Ws::connect(&server.url("/"));
    // The burst: JOIN and two updates.
    assert_eq!(alice.join("user-1", "Alice")["payload"]["rev"], 1);
    alice.send(update("away", "a-1"));
    alice.send(update("online", "a-2"));
    alice.recv_until_rev(3);
    // The fourth message at once is refused, naming the update and when to retry.
    alice.send(update("away", "a-3"));
    let mut refused = alice.recv();
    let retry_after = refused["payload"]["retryAfterMs"].as_u64().unwrap();
    assert!((1..=500).contains(&retry_after), "{refused}");
    refused["payload"]
        .as_object_mut()
        .unwrap()
        .remove("retryAfterMs");
    assert_eq!(
        refused,
        json!({"type": "ERROR", "meta": {}, "payload": {"code": "RESOURCE_EXHAUSTED",
            "message": "message rate limit exceeded; slow down",
            "details": {"clientReqId": "a-3"}, "retryable": true}})
    );
    // Bob has a budget of his own.
    assert_eq!(bob.join("user-2", "Bob")["payload"]["rev"], 4);
    bob.send(update("away", "b-1"));
    bob.send(update("online", "b-2"));
    // Errors come before deltas: reaching revision 6 without one means none was sent.
    for acked in bob.recv_until_rev(6) {
        assert_eq!(acked["type"], "SYNC.DELTAS", "{acked}");
    }
    // After the time it was told, Alice may send again.
    std::thread::sleep(Duration::from_millis(retry_after));
    alice.send(update("away", "a-4"));
    let last = alice.recv_until_rev(7).pop().unwrap();
    assert_eq!(last["payload"]["operations"][0]["clientReqId"], "a-4");
}

/// The decoder's bounds follow the configured model limits: a name JOIN refused by a
/// fixed 1,024-byte bound while UPDATE committed it is now accepted by both, and the
/// correlation id bound is a key of its own.
#[test]
fn join_accepts_every_name_the_configured_limits_allow() {
    let server = TestServer::with(|config| {
        config.presence.max_name_chars = 2000;
        config.limits.max_correlation_id_bytes = 300;
    });
    let long_name = "n".repeat(1500);
    let mut alice = Ws::connect(&server.url("/"));
    let snapshot = alice.join("user-1", &long_name);
    assert_eq!(snapshot["type"], "SYNC.SNAPSHOT", "{snapshot}");
    assert_eq!(
        snapshot["payload"]["participants"]["user-1"]["name"],
        long_name
    );
    // UPDATE accepts it too, and a name of 2,000 four-byte characters still decodes.
    let widest = "\u{1F600}".repeat(2000);
    alice.send(
        json!({"type": "UPDATE", "meta": {"correlationId": "c".repeat(300)},
        "payload": {"patch": {"name": widest}, "clientReqId": "a-1"}}),
    );
    let acked = alice.recv_until_rev(2).pop().unwrap();
    assert_eq!(acked["payload"]["operations"][0]["payload"]["name"], widest);
    let mut bob = Ws::connect(&server.url("/"));
    assert_eq!(bob.join("user-2", &widest)["payload"]["rev"], 3);
    // One character more is the model's refusal, with its own words.
    let mut carol = Ws::connect(&server.url("/"));
    carol.send(common::join("user-3", &"n".repeat(2001)));
    assert_eq!(
        carol.recv()["payload"]["message"],
        "name is 2001 characters long; the limit is 2000"
    );
}

const BUSY_503: &str = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 53\r\nConnection: close\r\nRetry-After: 5\r\n\r\nthe connection limit (2) is reached; try again later\n";

#[test]
fn connections_over_the_limit_are_refused_with_503() {
    let server = TestServer::with(|config| config.limits.max_connections = 2);
    let mut first = Ws::connect(&server.url("/"));
    let _second = Ws::connect(&server.url("/"));
    let upgrade = raw::upgrade_request("/", "");
    for _ in 0..3 {
        assert_eq!(raw::exchange(server.addr(), upgrade.as_bytes()), BUSY_503);
    }
    match Ws::try_connect(&server.url("/"), &[]) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        Err(e) => panic!("expected a 503, got {e}"),
        Ok(_) => panic!("a third connection was admitted"),
    }
    assert_eq!(server.server().connections(), 2);
    // A connection that goes frees its place.
    first.socket.close(None).unwrap();
    assert_eq!(first.recv_close(), None);
    drop(first);
    eventually("the closed connection is released", || {
        server.server().connections() == 1
    });
    let mut third = Ws::connect(&server.url("/"));
    assert_eq!(third.join("user-3", "Carol")["payload"]["rev"], 1);
}

const BUSY_429: &str = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 74\r\nConnection: close\r\nRetry-After: 5\r\n\r\nthe limit of 2 connections per client address is reached; close one first\n";

#[test]
fn connections_over_the_per_address_limit_are_refused_with_429() {
    // The server-wide limit is far away: only the address's share is full.
    let server = TestServer::with(|config| config.limits.max_connections_per_ip = 2);
    let mut first = Ws::connect(&server.url("/"));
    let mut second = Ws::connect(&server.url("/"));
    let upgrade = raw::upgrade_request("/", "");
    for _ in 0..3 {
        assert_eq!(raw::exchange(server.addr(), upgrade.as_bytes()), BUSY_429);
    }
    match Ws::try_connect(&server.url("/"), &[]) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        Err(e) => panic!("expected a 429, got {e}"),
        Ok(_) => panic!("a third connection from the address was admitted"),
    }
    assert_eq!(server.server().connections(), 2);
    // The two admitted go on.
    assert_eq!(second.join("user-2", "Bob")["payload"]["rev"], 1);
    // A connection that goes frees its address's place.
    first.socket.close(None).unwrap();
    assert_eq!(first.recv_close(), None);
    drop(first);
    eventually("the closed connection is released", || {
        server.server().connections() == 1
    });
    let mut third = Ws::connect(&server.url("/"));
    assert_eq!(third.join("user-3", "Carol")["payload"]["rev"], 2);
    assert_eq!(raw::exchange(server.addr(), upgrade.as_bytes()), BUSY_429);
}

#[test]
fn new_connections_over_the_per_address_rate_are_refused_with_429_before_any_upgrade() {
    // One new connection a second: the second within the same second is refused (the
    // test's two connects are milliseconds apart; the bucket refills after a second).
    let server = TestServer::with(|config| config.limits.max_new_connections_per_ip_per_sec = 1);
    let mut first = Ws::connect(&server.url("/"));
    let body =
        "the limit of 1 new connections a second per client address is reached; try again later\n";
    let expected = format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{body}",
        body.len()
    );
    let upgrade = raw::upgrade_request("/", "");
    assert_eq!(raw::exchange(server.addr(), upgrade.as_bytes()), expected);
    // Refused at accept: never counted, and the admitted connection goes on.
    assert_eq!(server.server().connections(), 1);
    assert_eq!(first.join("user-1", "Alice")["payload"]["rev"], 1);
}

#[test]
fn a_new_participant_in_a_full_room_gets_resource_exhausted_and_the_others_go_on() {
    let server = TestServer::with(|config| config.limits.max_participants_per_room = 2);
    let mut alice = Ws::connect(&server.url("/rooms/r"));
    let mut bob = Ws::connect(&server.url("/rooms/r"));
    let mut carol = Ws::connect(&server.url("/rooms/r"));
    assert_eq!(alice.join("user-1", "Alice")["payload"]["rev"], 1);
    assert_eq!(bob.join("user-2", "Bob")["payload"]["rev"], 2);
    alice.recv_until_rev(2);
    assert_eq!(
        carol.join("user-3", "Carol"),
        json!({"type": "ERROR", "meta": {}, "payload": {"code": "RESOURCE_EXHAUSTED",
            "message": "room \"r\" is full: it admits 2 participants at most",
            "retryable": true}})
    );
    // The participants go on, and one of them may come in again on a second connection.
    alice.send(update("away", "a-1"));
    let acked = alice.recv_until_rev(3).pop().unwrap();
    assert_eq!(acked["payload"]["operations"][0]["clientReqId"], "a-1");
    let mut alice_again = Ws::connect(&server.url("/rooms/r"));
    assert_eq!(alice_again.join("user-1", "Alice")["payload"]["rev"], 3);
    // Carol's connection is still usable: once Bob leaves, her JOIN is admitted.
    carol.send(json!({"type": "HEARTBEAT"}));
    bob.send(json!({"type": "LEAVE"}));
    bob.recv_until_rev(4);
    let snapshot = carol.join("user-3", "Carol");
    assert_eq!(snapshot["type"], "SYNC.SNAPSHOT", "{snapshot}");
    assert_eq!(snapshot["payload"]["rev"], 5);
    let kinds: Vec<Value> = alice
        .recv_until_rev(5)
        .iter()
        .flat_map(|m| m["payload"]["operations"].as_array().unwrap().clone())
        .map(|op| op["type"].clone())
        .collect();
    assert_eq!(
        kinds,
        [json!("participant.left"), json!("participant.joined")]
    );
    assert_eq!(
        server
            .room("r")
            .with_state(|state, _| state.participants().len()),
        2
    );
}

#[test]
fn rooms_over_the_limit_are_refused_with_503() {
    let server = TestServer::with(|config| config.limits.max_rooms = 1);
    let _a = Ws::connect(&server.url("/rooms/a"));
    let refused = raw::exchange(
        server.addr(),
        raw::upgrade_request("/rooms/b", "").as_bytes(),
    );
    assert_eq!(
        refused,
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 30\r\nConnection: close\r\nRetry-After: 5\r\n\r\nthe room limit (1) is reached\n"
    );
    assert_eq!(server.server().rooms(), 1);
    let mut again = Ws::connect(&server.url("/rooms/a"));
    assert_eq!(again.join("user-1", "Alice")["payload"]["rev"], 1);
}

#[test]
fn a_room_is_dropped_after_its_last_connection_closes_however_it_closes() {
    let server = TestServer::with(|config| {
        config.limits.max_rooms = 1;
        config.timeouts.room_idle_ms = 1;
        config.timeouts.participant_ttl_ms = 1;
        config.timeouts.idle_ms = 300;
    });
    // regression: a connection that ended with a close handshake (either side's) was
    // never counted out of its room, so the room was never dropped and, with the room
    // limit reached, every other room was refused for good.
    let mut client_closes = Ws::connect(&server.url("/rooms/a"));
    assert_eq!(client_closes.join("user-1", "Alice")["payload"]["rev"], 1);
    client_closes.socket.close(None).unwrap();
    assert_eq!(client_closes.recv_close(), None);
    drop(client_closes);
    eventually("room a is dropped", || server.server().rooms() == 0);

    let mut server_closes = Ws::connect(&server.url("/rooms/b"));
    assert_eq!(server_closes.join("user-1", "Alice")["payload"]["rev"], 1);
    assert_eq!(
        server_closes.recv_close_frame(),
        Some((1000, "idle timeout".to_owned()))
    );
    drop(server_closes);
    eventually("room b is dropped", || server.server().rooms() == 0);

    let mut last = Ws::connect(&server.url("/rooms/c"));
    assert_eq!(last.join("user-1", "Alice")["payload"]["rev"], 1);
}
