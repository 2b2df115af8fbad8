//! The HTTP side over real sockets: what is not a WebSocket upgrade gets a plain answer,
//! garbage gets refused, the token is checked before anything is read, and a client that
//! never finishes its request is cut off at the handshake timeout.
// The handshake timeout is measured on real time.
#![allow(clippy::disallowed_methods)]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use common::raw::{self, RawWs, frame, frame_with};
use common::{TestServer, Ws, assert_serves, eventually};

#[test]
fn a_plain_http_request_gets_426_and_the_server_goes_on() {
    let server = TestServer::start();
    let answer = raw::exchange(
        server.addr(),
        b"GET /rooms/a HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\n\r\n",
    );
    assert_eq!(
        answer,
        "HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 62\r\nConnection: close\r\nUpgrade: websocket\r\n\r\nthis is a WebSocket endpoint: connect with a WebSocket client\n"
    );
    assert_eq!(server.server().rooms(), 0, "no room for a refused request");
    assert_serves(&server.url(""));
}

#[test]
fn garbage_before_the_upgrade_gets_400() {
    let server = TestServer::start();
    // The start of a TLS ClientHello: someone speaking wss:// to a ws:// port.
    let answer = raw::exchange(
        server.addr(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8a\x1f\r\n\r\n",
    );
    assert_eq!(
        answer,
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 38\r\nConnection: close\r\n\r\nmalformed HTTP request: invalid token\n"
    );
    assert_serves(&server.url(""));
}

#[test]
fn bad_upgrade_requests_get_a_plain_answer_saying_why() {
    let server = TestServer::start();
    let plain = |status: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}\n",
            body.len() + 1
        )
    };
    let filler = format!("X-Filler: {}\r\n", "f".repeat(9000));
    let cases = [
        (
            raw::upgrade_request("/", &filler),
            plain(
                "431 Request Header Fields Too Large",
                "request headers too large",
            ),
        ),
        (
            raw::upgrade_request("/", "").replacen("GET", "POST", 1),
            plain(
                "400 Bad Request",
                "bad WebSocket upgrade: WebSocket protocol error: Unsupported HTTP method used - only GET is allowed",
            ),
        ),
        (
            raw::upgrade_request("/", "")
                .replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            plain(
                "400 Bad Request",
                "bad WebSocket upgrade: WebSocket protocol error: No \"Sec-WebSocket-Key\" header",
            ),
        ),
        (
            raw::upgrade_request(&format!("/rooms/{}", "r".repeat(257)), ""),
            plain("400 Bad Request", "a room name must be 1 to 256 bytes long"),
        ),
    ];
    for (request, answer) in cases {
        assert_eq!(raw::exchange(server.addr(), request.as_bytes()), answer);
    }
    assert_eq!(server.server().rooms(), 0);
    eventually("every refused connection is released", || {
        server.server().connections() == 0
    });
    assert_serves(&server.url(""));
}

#[test]
fn garbage_after_the_upgrade_closes_with_a_protocol_error() {
    let server = TestServer::start();
    // Reserved bits set and a reserved opcode, masked, empty: no frame a client may send.
    let mut raw = RawWs::connect(server.addr(), "/");
    raw.write(b"\xfb\x80\x01\x02\x03\x04 and more garbage");
    assert_eq!(
        raw.read_close(),
        (1002, "WebSocket protocol error".to_owned())
    );
    raw.expect_eof();
    // A frame a client sends unmasked.
    let mut raw = RawWs::connect(server.addr(), "/");
    raw.write(&frame_with(0x1, true, None, br#"{"type":"HEARTBEAT"}"#));
    assert_eq!(
        raw.read_close(),
        (1002, "WebSocket protocol error".to_owned())
    );
    raw.expect_eof();
    assert_serves(&server.url(""));
}

const UNAUTHORIZED: &str = "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 25\r\nConnection: close\r\n\r\nmissing or invalid token\n";

#[test]
fn a_missing_or_wrong_token_gets_401_before_anything_is_read() {
    let server = TestServer::with(|config| config.server.token = Some("s3cret".into()));
    for (path, header) in [
        ("/rooms/secret", ""),
        ("/rooms/secret?token=wrong", ""),
        ("/rooms/secret?access_token=s3cre", ""),
        ("/rooms/secret?token=", ""),
        ("/rooms/secret", "Authorization: Bearer wrong\r\n"),
        ("/rooms/secret", "Authorization: Basic czNjcmV0\r\n"),
        ("/rooms/secret", "Sec-WebSocket-Protocol: bearer.wrong\r\n"),
        ("/rooms/secret", "Sec-WebSocket-Protocol: s3cret\r\n"),
    ] {
        // A JOIN pipelined after the request is never looked at.
        let mut request = raw::upgrade_request(path, header).into_bytes();
        request.extend(frame(
            0x1,
            true,
            br#"{"type":"JOIN","payload":{"participantId":"intruder","name":"X"}}"#,
        ));
        assert_eq!(
            raw::exchange(server.addr(), &request),
            UNAUTHORIZED,
            "{path} {header}"
        );
    }
    assert_eq!(server.server().rooms(), 0, "no room was even created");
    eventually("every refused connection is released", || {
        server.server().connections() == 0
    });
    match Ws::try_connect(&server.url("/"), &[]) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected a 401, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn the_token_is_accepted_every_way_clients_send_it() {
    let server = TestServer::with(|config| config.server.token = Some("s3cret".into()));
    // (path, request headers, the subprotocol the server selects)
    type Way<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
    let ways: [Way<'_>; 6] = [
        ("/?token=s3cret", &[], None),
        ("/?x=1&access_token=s3cret", &[], None),
        ("/?token=s3%63ret", &[], None),
        ("/", &[("Authorization", "Bearer s3cret")], None),
        (
            "/",
            &[("Sec-WebSocket-Protocol", "bearer.s3cret")],
            Some("bearer.s3cret"),
        ),
        (
            "/",
            &[("Sec-WebSocket-Protocol", "bearer.s3cret, deltasync.v1")],
            Some("deltasync.v1"),
        ),
    ];
    for (i, (path, headers, selected)) in ways.into_iter().enumerate() {
        let mut ws = Ws::connect_with(&server.url(path), headers);
        assert_eq!(ws.protocol.as_deref(), selected, "{path} {headers:?}");
        let snapshot = ws.join(&format!("user-{i}"), "Someone");
        assert_eq!(snapshot["type"], "SYNC.SNAPSHOT", "{path} {headers:?}");
        let has_epoch = snapshot["payload"].get("epoch").is_some();
        assert_eq!(has_epoch, selected == Some("deltasync.v1"), "the dialect");
    }
}

#[test]
fn a_request_never_finished_is_closed_at_the_handshake_timeout() {
    let server = TestServer::with(|config| config.timeouts.handshake_ms = 200);
    let started = Instant::now();
    let mut slow = raw::connect(server.addr());
    slow.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    // Others are served meanwhile.
    assert_serves(&server.url(""));
    // A slowloris keeps sending a byte at a time: that does not extend the deadline.
    slow.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = [0u8; 64];
    loop {
        if slow.write_all(b"X").is_err() {
            break;
        }
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => panic!("unexpected answer {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("{e}"),
        }
        assert!(started.elapsed() < common::WAIT, "never closed");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "closed before its deadline"
    );
    assert_serves(&server.url(""));
}
