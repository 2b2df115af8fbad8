use super::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn request(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

fn open() -> Policy<'static> {
    Policy {
        token: None,
        max_request_bytes: 8192,
    }
}

fn secured() -> Policy<'static> {
    Policy {
        token: Some("s3cret"),
        max_request_bytes: 8192,
    }
}

fn upgraded(outcome: Outcome) -> (Upgrade, usize) {
    match outcome {
        Outcome::Upgrade { upgrade, consumed } => (upgrade, consumed),
        other => panic!("expected an upgrade, got {other:?}"),
    }
}

fn refused(outcome: Outcome) -> (u16, String) {
    match outcome {
        Outcome::Refused(refusal) => (
            refusal.status,
            String::from_utf8(refusal.response.to_vec()).unwrap(),
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_valid_upgrade_selects_room_and_dialect() {
    let mut bytes = request("/", "");
    let len = bytes.len();
    bytes.extend_from_slice(b"\x81\x80rest");
    let (upgrade, consumed) = upgraded(handshake(&bytes, open()));
    assert_eq!(
        consumed, len,
        "frames after the request are left for the WebSocket"
    );
    assert_eq!(upgrade.room, "default");
    assert_eq!(upgrade.dialect, Dialect::WsKit);
    let response = String::from_utf8(upgrade.response.to_vec()).unwrap();
    assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(response.contains(&format!("sec-websocket-accept: {ACCEPT}\r\n")));
    assert!(
        !response
            .to_ascii_lowercase()
            .contains("sec-websocket-protocol")
    );
    assert!(response.ends_with("\r\n\r\n"));
}

#[test]
fn paths_name_rooms() {
    for (path, room) in [
        ("/", "default"),
        ("/rooms/lobby", "lobby"),
        ("/rooms/lobby?x=1", "lobby"),
        ("/game/7", "/game/7"),
    ] {
        assert_eq!(upgraded(handshake(&request(path, ""), open())).0.room, room);
    }
    let long = format!("/rooms/{}", "r".repeat(257));
    assert_eq!(refused(handshake(&request(&long, ""), open())).0, 400);
}

#[test]
fn the_native_subprotocol_selects_the_native_dialect() {
    let (upgrade, _) = upgraded(handshake(
        &request("/", "Sec-WebSocket-Protocol: chat, deltasync.v1\r\n"),
        open(),
    ));
    assert_eq!(upgrade.dialect, Dialect::Native);
    let response = String::from_utf8(upgrade.response.to_vec()).unwrap();
    assert!(response.contains("sec-websocket-protocol: deltasync.v1\r\n"));
}

#[test]
fn a_token_is_required_when_configured_and_accepted_every_way_clients_send_it() {
    let (status, body) = refused(handshake(&request("/", ""), secured()));
    assert_eq!(status, 401);
    assert!(body.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
    assert!(body.ends_with("\r\n\r\nmissing or invalid token\n"));
    assert_eq!(
        refused(handshake(&request("/?token=wrong", ""), secured())).0,
        401
    );
    assert_eq!(
        refused(handshake(&request("/?token=s3cre", ""), secured())).0,
        401
    );
    for (path, extra) in [
        ("/?token=s3cret", ""),
        ("/rooms/a?x=1&access_token=s3cret", ""),
        ("/?token=s3%63ret", ""),
        ("/", "Authorization: Bearer s3cret\r\n"),
        ("/", "Sec-WebSocket-Protocol: bearer.s3cret\r\n"),
    ] {
        upgraded(handshake(&request(path, extra), secured()));
    }
    // A browser's bearer subprotocol is echoed, unless it also asked for ours.
    let (upgrade, _) = upgraded(handshake(
        &request("/", "Sec-WebSocket-Protocol: bearer.s3cret\r\n"),
        secured(),
    ));
    assert!(
        String::from_utf8_lossy(&upgrade.response)
            .contains("sec-websocket-protocol: bearer.s3cret\r\n")
    );
    let (upgrade, _) = upgraded(handshake(
        &request(
            "/",
            "Sec-WebSocket-Protocol: bearer.s3cret, deltasync.v1\r\n",
        ),
        secured(),
    ));
    assert_eq!(upgrade.dialect, Dialect::Native);
    assert!(
        String::from_utf8_lossy(&upgrade.response)
            .contains("sec-websocket-protocol: deltasync.v1\r\n")
    );
}

#[test]
fn incomplete_and_oversized_requests() {
    let full = request("/", "");
    assert_eq!(handshake(&full[..full.len() - 2], open()), Outcome::Partial);
    let small = Policy {
        token: None,
        max_request_bytes: 64,
    };
    assert_eq!(refused(handshake(&full[..100], small)).0, 431);
    assert_eq!(refused(handshake(&full, small)).0, 431);
}

#[test]
fn requests_that_are_not_websocket_upgrades_get_plain_answers() {
    let (status, body) = refused(handshake(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", open()));
    assert_eq!(status, 426);
    assert!(body.contains("Upgrade: websocket\r\n"));
    let (status, body) = refused(handshake(
        b"POST / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        open(),
    ));
    assert_eq!(status, 400);
    assert!(body.contains("bad WebSocket upgrade"), "{body}");
    let (status, body) = refused(handshake(b"\x16\x03\x01garbage\r\n\r\n", open()));
    assert_eq!(status, 400);
    assert!(body.contains("malformed HTTP request"), "{body}");
    let no_key = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(refused(handshake(no_key, open())).0, 400);
}

#[test]
fn another_websocket_version_gets_426_naming_ours() {
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    let (status, body) = refused(handshake(request, open()));
    assert_eq!(status, 426);
    assert!(body.contains("Sec-WebSocket-Version: 13\r\n"), "{body}");
    assert!(body.ends_with("unsupported WebSocket version: this server speaks version 13\n"));
}

#[test]
fn a_plain_request_for_an_endpoint_is_handed_back_and_an_upgrade_to_it_is_a_room() {
    let plain = b"HEAD /ready?from=lb HTTP/1.1\r\nHost: localhost\r\n\r\n";
    match handshake(plain, open()) {
        Outcome::Plain {
            method,
            path,
            otherwise,
        } => {
            assert_eq!((method.as_str(), path.as_str()), ("HEAD", "/ready"));
            assert_eq!(otherwise.status, 426);
        }
        other => panic!("expected a plain request, got {other:?}"),
    }
    // Other paths are refused as before; an upgrade to an endpoint's path is its room.
    let (status, _) = refused(handshake(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        open(),
    ));
    assert_eq!(status, 426);
    let (upgrade, _) = upgraded(handshake(&request("/metrics", ""), open()));
    assert_eq!(upgrade.room, "/metrics");
    // The token is not asked for the endpoints: the caller answers before any check.
    assert!(matches!(
        handshake(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", secured()),
        Outcome::Plain { .. }
    ));
}
