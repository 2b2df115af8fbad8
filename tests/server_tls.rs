//! `wss://`: the server with a certificate made at test time, the Connector and a raw
//! client over TLS, clients that do not speak TLS on the TLS port, bad certificate and
//! key files at start, and a certificate reloaded while clients stay connected.
// Clients of the I/O shell over real sockets: real time.
#![allow(clippy::disallowed_methods)]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::tls::{Certificates, connect_wss};
use common::{TestServer, WAIT, eventually, join, update};
use deltasync::client::{Connector, ConnectorError, ConnectorOptions};
use deltasync::config::Config;
use deltasync::model::presence::{Patch, Presence, PresenceInput, Status};
use deltasync::server::Server;
use serde_json::{Value, json};
use tungstenite::Message;

fn tls_server(certificates: &Certificates, configure: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::with_manual_clock(|config| {
        config.server.tls_cert = Some(certificates.cert.clone());
        config.server.tls_key = Some(certificates.key.clone());
        configure(config);
    })
}

fn wss_url(server: &TestServer, path: &str) -> String {
    format!("wss://localhost:{}{path}", server.addr().port())
}

fn trusting(certificates: &Certificates) -> ConnectorOptions {
    ConnectorOptions::default().with_ca_file(&certificates.ca)
}

fn away() -> PresenceInput {
    PresenceInput {
        patch: Patch {
            status: Some(Status::Away),
            ..Patch::default()
        },
    }
}

fn recv(socket: &mut common::tls::WssSocket) -> Value {
    loop {
        match socket.read().expect("read") {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

#[test]
fn connectors_join_and_sync_over_wss() {
    let certificates = Certificates::new();
    let server = tls_server(&certificates, |_| {});
    let url = wss_url(&server, "/rooms/tls");
    let connect = |id: &str, name: &str| {
        Connector::<Presence>::connect_with(&url, id, name, trusting(&certificates)).unwrap()
    };
    let mut alice = connect("alice", "Alice");
    let mut bob = connect("bob", "Bob");
    assert_eq!(bob.replica().server_rev(), 2);
    let id = alice.update(away()).unwrap();
    alice
        .poll_until(WAIT, |replica| replica.was_acked(&id))
        .unwrap();
    bob.poll_until(WAIT, |replica| replica.server_rev() == 3)
        .unwrap();
    let status = |client: &Connector<Presence>| {
        client
            .replica()
            .server_state()
            .and_then(|state| state.participant("alice"))
            .map(|participant| participant.status)
    };
    assert_eq!(
        (status(&alice), status(&bob)),
        (Some(Status::Away), Some(Status::Away))
    );
    // A reconnect over TLS resumes with deltas.
    bob.reconnect().unwrap();
    assert_eq!(bob.replica().server_rev(), 3);
    assert!(!bob.replica().detected_gap());
}

#[test]
fn a_raw_wss_client_gets_the_exact_messages_of_ws() {
    let certificates = Certificates::new();
    let server = tls_server(&certificates, |_| {});
    let mut socket = connect_wss(server.addr(), "/", &certificates.ca).unwrap();
    socket
        .send(Message::text(join("user-1", "Alice").to_string()))
        .unwrap();
    assert_eq!(
        recv(&mut socket),
        json!({"type": "SYNC.SNAPSHOT", "meta": {}, "payload": {"rev": 1, "participants": {
            "user-1": {"id": "user-1", "name": "Alice", "status": "online", "lastActive": 1000}}}})
    );
    socket
        .send(Message::text(update("away", "req-1").to_string()))
        .unwrap();
    assert_eq!(
        recv(&mut socket),
        json!({"type": "SYNC.DELTAS", "meta": {}, "payload": {"fromRev": 1, "toRev": 2, "operations": [
            {"rev": 2, "type": "participant.updated", "payload": {"id": "user-1", "status": "away"}, "clientReqId": "req-1"}]}})
    );
    socket.close(None).unwrap();
    // The server answers the close; then the TLS session ends with its close_notify.
    loop {
        match socket.read() {
            Ok(Message::Close(frame)) => assert_eq!(frame, None),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("not a clean end: {e}"),
        }
    }
}

/// Reads what the server sends to a client that does not speak TLS, until it closes.
fn answer_to(server: &TestServer, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(server.addr()).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp.write_all(bytes).unwrap();
    let mut answer = Vec::new();
    match tcp.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close the connection: {e}"),
    }
    answer
}

#[test]
fn plain_http_and_garbage_on_the_tls_port_are_closed_and_disturb_no_one() {
    let certificates = Certificates::new();
    let server = tls_server(&certificates, |config| config.timeouts.handshake_ms = 500);
    let url = wss_url(&server, "/rooms/calm");
    let mut alice =
        Connector::<Presence>::connect_with(&url, "alice", "Alice", trusting(&certificates))
            .unwrap();
    // A client that connects and says nothing: cut off at the handshake timeout.
    let mut silent = TcpStream::connect(server.addr()).unwrap();
    silent.set_read_timeout(Some(WAIT)).unwrap();
    // Plain HTTP, a plain WebSocket upgrade, and bytes that are nothing: each gets a TLS
    // alert (fatal, decode_error: not a TLS record) and the end of the connection.
    let alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32];
    let http = answer_to(&server, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(http, alert);
    let upgrade = answer_to(
        &server,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(upgrade, alert);
    let garbage = answer_to(&server, &[0xff; 300]);
    assert_eq!(garbage, alert);
    // Meanwhile and after, the wss client is served.
    let id = alice.update(away()).unwrap();
    alice
        .poll_until(WAIT, |replica| replica.was_acked(&id))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    assert_eq!(
        silent.read_to_end(&mut rest).unwrap(),
        0,
        "closed with nothing"
    );
    assert!(started.elapsed() < WAIT);
    eventually("only the wss client is left", || {
        server.server().connections() == 1
    });
    assert_eq!(alice.replica().server_rev(), 2);
}

#[test]
fn a_client_that_does_not_trust_the_certificate_fails_the_handshake() {
    let certificates = Certificates::new();
    let server = tls_server(&certificates, |_| {});
    let other = Certificates::new();
    let refused = Connector::<Presence>::connect_with(
        &wss_url(&server, "/"),
        "mallory",
        "Mallory",
        trusting(&other),
    );
    match refused {
        Err(ConnectorError::WebSocket(e)) => assert_eq!(
            e.to_string(),
            "IO error: invalid peer certificate: BadSignature"
        ),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("connected to a server it does not trust"),
    }
    // A ws:// client to the wss:// port: refused too (the server wants a ClientHello).
    let plain = Connector::<Presence>::connect(&format!("ws://{}/", server.addr()), "p", "P");
    assert!(plain.is_err());
    assert_eq!(server.server().rooms(), 0);
}

fn start_error(configure: impl FnOnce(&mut Config)) -> String {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    configure(&mut config);
    match Server::presence(config).start() {
        Ok(_) => panic!("the server started"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_certificate_or_key_files_stop_the_start_with_the_file_named() {
    let certificates = Certificates::new();
    let dir = certificates.dir().display().to_string();
    let missing = certificates.dir().join("missing.pem");
    let not_pem = certificates.dir().join("not.pem");
    std::fs::write(&not_pem, "just text\n").unwrap();
    let with = |cert: &std::path::Path, key: &std::path::Path| {
        let (cert, key) = (cert.to_owned(), key.to_owned());
        start_error(move |config| {
            config.server.tls_cert = Some(cert);
            config.server.tls_key = Some(key);
        })
    };
    assert_eq!(
        with(&missing, &certificates.key),
        format!(
            "cannot read the TLS certificate file {dir}/missing.pem: No such file or directory (os error 2)"
        )
    );
    assert_eq!(
        with(&certificates.cert, &missing),
        format!(
            "cannot read the TLS private key file {dir}/missing.pem: No such file or directory (os error 2)"
        )
    );
    assert_eq!(
        with(&not_pem, &certificates.key),
        format!("the TLS certificate file {dir}/not.pem holds no PEM certificate")
    );
    assert_eq!(
        with(&certificates.cert, &not_pem),
        format!("the TLS private key file {dir}/not.pem holds no PEM private key")
    );
    assert_eq!(
        with(&certificates.cert, &certificates.other_key),
        format!(
            "the TLS private key {dir}/other-key.pem does not match the certificate {dir}/cert.pem"
        )
    );
    // The key as the certificate: PEM, but no certificate in it.
    assert_eq!(
        with(&certificates.key, &certificates.key),
        format!("the TLS certificate file {dir}/key.pem holds no PEM certificate")
    );
    let cert = certificates.cert.clone();
    assert_eq!(
        start_error(move |config| config.server.tls_cert = Some(cert)),
        "server.tls_cert is set without server.tls_key (TLS needs both)"
    );
    let key = certificates.key.clone();
    assert_eq!(
        start_error(move |config| config.server.tls_key = Some(key)),
        "server.tls_key is set without server.tls_cert (TLS needs both)"
    );
}

#[test]
fn a_reloaded_certificate_serves_new_clients_and_keeps_the_connected_ones() {
    let mut certificates = Certificates::new();
    let server = tls_server(&certificates, |_| {});
    let url = wss_url(&server, "/rooms/reload");
    let old_ca = certificates.dir().join("old-ca.pem");
    std::fs::copy(&certificates.ca, &old_ca).unwrap();
    let mut alice = Connector::<Presence>::connect_with(
        &url,
        "alice",
        "Alice",
        ConnectorOptions::default().with_ca_file(&old_ca),
    )
    .unwrap();
    certificates.renew();
    assert!(server.server().handle().reload_tls().unwrap());
    // New connections present the new certificate: the old CA no longer fits...
    let old = Connector::<Presence>::connect_with(
        &url,
        "bob",
        "Bob",
        ConnectorOptions::default().with_ca_file(&old_ca),
    );
    assert!(matches!(old, Err(ConnectorError::WebSocket(_))));
    // ...the new one does, and the connection opened before goes on.
    let mut bob =
        Connector::<Presence>::connect_with(&url, "bob", "Bob", trusting(&certificates)).unwrap();
    let id = alice.update(away()).unwrap();
    alice
        .poll_until(WAIT, |replica| replica.was_acked(&id))
        .unwrap();
    bob.poll_until(WAIT, |replica| replica.server_rev() == 3)
        .unwrap();
    // A reload that fails keeps the certificate in use.
    std::fs::write(&certificates.key, "not a key\n").unwrap();
    let error = server.server().handle().reload_tls().unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the TLS private key file {} holds no PEM private key",
            certificates.key.display()
        )
    );
    Connector::<Presence>::connect_with(&url, "carol", "Carol", trusting(&certificates)).unwrap();
}

/// Renames while the slow client does not read: far more bytes (about 8 MB) than the
/// loopback socket buffers hold, so the server's TLS records back up behind a full socket.
const RENAMES: u64 = 1000;
const NAME_CHARS: usize = 8000;

#[test]
fn a_slow_wss_reader_gets_every_record_once_its_socket_drains() {
    let certificates = Certificates::new();
    let server = tls_server(&certificates, |config| {
        config.room.ring_capacity = 4096.try_into().unwrap();
        config.presence.max_name_chars = 8192;
        config.limits.max_message_bytes = 16 * 1024;
        config.limits.messages_per_second = 1_000_000;
        config.limits.message_burst = 1_000_000;
    });
    let url = wss_url(&server, "/rooms/busy");
    let mut slow = connect_wss(server.addr(), "/rooms/busy", &certificates.ca).unwrap();
    slow.send(Message::text(join("slow", "Slow").to_string()))
        .unwrap();
    assert_eq!(recv(&mut slow)["payload"]["rev"], 1);
    let mut writer =
        Connector::<Presence>::connect_with(&url, "writer", "Writer", trusting(&certificates))
            .unwrap();
    for i in 0..RENAMES {
        let mut name = format!("{i:05}-");
        name.extend(std::iter::repeat_n('n', NAME_CHARS - name.len()));
        let rename = PresenceInput {
            patch: Patch {
                name: Some(name),
                ..Patch::default()
            },
        };
        writer.update(rename).unwrap();
        // Read what came back so far, so that only the slow client backs up.
        while !writer.poll(Duration::from_millis(1)).unwrap().is_empty() {}
    }
    let head = 2 + RENAMES;
    writer
        .poll_until(WAIT, |replica| replica.server_rev() == head)
        .unwrap();
    // Now the slow client reads: every operation, in order, each once, up to the head.
    let mut revs = Vec::new();
    let mut from = 1;
    while revs.last() != Some(&head) {
        let deltas = recv(&mut slow);
        assert_eq!(deltas["type"], "SYNC.DELTAS", "{deltas}");
        assert_eq!(deltas["payload"]["fromRev"], from);
        for op in deltas["payload"]["operations"].as_array().unwrap() {
            revs.push(op["rev"].as_u64().unwrap());
        }
        from = deltas["payload"]["toRev"].as_u64().unwrap();
    }
    assert_eq!(revs, (2..=head).collect::<Vec<_>>());
}
