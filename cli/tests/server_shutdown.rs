//! Ending connections and servers: the close handshake from either side, and a graceful
//! shutdown (everything owed, then close 1012, or 1001 when configured as final, within
//! `server.shutdown_grace_ms`) of the library's server and of the real binary.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::mpsc;

use common::raw::{self, RawWs, frame};
use common::{TestServer, WAIT, Ws, assert_serves, eventually, rename, serve};

#[test]
fn a_close_from_the_client_is_answered_with_a_close_frame() {
    let server = TestServer::start();
    let mut raw = RawWs::connect(server.addr(), "/");
    // regression: the answer tungstenite queued was never written, so a client's close
    // got no close frame back, only the end of the TCP connection.
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    raw.write(&frame(0x8, true, &payload));
    assert_eq!(raw.read_close(), (1000, "bye".to_owned()));
    raw.expect_eof();
    assert_serves(&server.url(""));
}

/// Runs `stop` on another thread; returns a receiver told when it returned.
fn in_background(stop: impl FnOnce() + Send + 'static) -> mpsc::Receiver<()> {
    let (done, stopped) = mpsc::channel();
    std::thread::spawn(move || {
        stop();
        let _ = done.send(());
    });
    stopped
}

#[test]
fn shutdown_sends_1012_to_every_client_and_drops_unfinished_handshakes() {
    let mut server = TestServer::start();
    let addr = server.addr();
    let mut joined = Ws::connect(&server.url("/"));
    assert_eq!(joined.join("user-1", "Alice")["payload"]["rev"], 1);
    let mut silent = Ws::connect(&server.url("/rooms/other"));
    let mut upgrading = raw::connect(addr);
    upgrading
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    eventually("the server holds the three connections", || {
        server.server().connections() == 3
    });

    let server = server.take();
    let stopped = in_background(move || server.shutdown());
    for ws in [&mut joined, &mut silent] {
        assert_eq!(
            ws.recv_close_frame(),
            Some((1012, "server restarting".to_owned()))
        );
    }
    assert!(raw::closed_by_server(&mut upgrading));
    // The clients answered the close; once they hang up the server is done.
    drop((joined, silent, upgrading));
    stopped.recv_timeout(WAIT).expect("shutdown returns");
    let refused = TcpStream::connect(addr).map(|_| ()).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn a_server_handle_stops_the_server_from_another_thread() {
    let mut server = TestServer::start();
    let handle = server.server().handle();
    let mut ws = Ws::connect(&server.url("/"));
    assert_eq!(ws.join("user-1", "Alice")["payload"]["rev"], 1);
    let stopped = in_background(move || handle.shutdown());
    stopped
        .recv_timeout(WAIT)
        .expect("shutdown() returns at once");
    assert_eq!(ws.recv_close(), Some(1012));
    drop(ws);
    let server = server.take();
    in_background(move || server.join())
        .recv_timeout(WAIT)
        .expect("the threads end");
}

/// Runs the binary with `extra` flags, joins one client, sends `signal`; returns the close
/// frame the client got, and checks the exit status (0) and that nothing else was printed.
fn serve_then_signal(extra: &[&str], signal: &str) -> Option<(u16, String)> {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "1",
        "--set",
        "storage.memory_revisions=from-zero",
    ];
    args.extend_from_slice(extra);
    let mut child = serve(&args).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line
        .strip_prefix("deltasync listening on ws://")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let addr: SocketAddr = url.parse().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{line:?}");

    let mut ws = Ws::connect(&format!("ws://{addr}/"));
    let snapshot = ws.join("user-1", "Alice");
    assert_eq!(snapshot["payload"]["rev"], 1);
    let signalled = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let close = ws.recv_close_frame();
    drop(ws);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "nothing else on stdout");
    close
}

#[test]
fn the_binary_serves_until_sigterm_then_closes_1012_and_exits_0() {
    assert_eq!(
        serve_then_signal(&[], "-TERM"),
        Some((1012, "server restarting".to_owned()))
    );
}

#[test]
fn a_final_stop_is_configured_and_closes_1001_on_sigint_too() {
    let going_away = ["--set", "server.shutdown_close_code=going-away"];
    assert_eq!(
        serve_then_signal(&going_away, "-INT"),
        Some((1001, "server shutting down".to_owned()))
    );
}

#[test]
fn a_client_gets_every_operation_up_to_the_head_before_the_close() {
    let mut server = TestServer::with(|config| config.server.shards = 2);
    let mut reader = Ws::connect(&server.url("/rooms/owed"));
    assert_eq!(reader.join("reader", "Reader")["payload"]["rev"], 1);
    // The reader reads nothing while the writer commits 40 renames.
    let mut writer = Ws::connect(&server.url("/rooms/owed"));
    writer.join("writer", "Writer");
    for i in 1..=40 {
        writer.send(rename(&format!("W{i}"), &format!("req-{i}")));
    }
    writer.recv_until_rev(42);
    let server = server.take();
    let stopped = in_background(move || server.shutdown());
    // Deltas to revision 42, contiguous, then the close: nothing owed is lost.
    let mut at = 1;
    let close = loop {
        match reader.recv_message() {
            tungstenite::Message::Text(text) => {
                let deltas: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(deltas["type"], "SYNC.DELTAS", "{deltas}");
                assert_eq!(deltas["payload"]["fromRev"], at, "{deltas}");
                at = deltas["payload"]["toRev"].as_u64().unwrap();
            }
            tungstenite::Message::Close(frame) => break frame.map(|f| u16::from(f.code)),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!((at, close), (42, Some(1012)));
    drop((reader, writer));
    stopped.recv_timeout(WAIT).expect("shutdown returns");
}

#[test]
fn the_grace_deadline_cuts_a_client_that_never_answers_the_close() {
    let mut server = TestServer::with(|config| config.server.shutdown_grace_ms = 200);
    let mut silent = RawWs::connect(server.addr(), "/");
    silent.send_text(br#"{"type":"JOIN","payload":{"participantId":"u1","name":"U"}}"#);
    let (opcode, _snapshot) = silent.read_frame();
    assert_eq!(opcode, 0x1);
    let server = server.take();
    let stopped = in_background(move || server.shutdown());
    // The client holds its socket open and never answers the close: the server ends anyway.
    stopped.recv_timeout(WAIT).expect("shutdown returns");
    assert_eq!(silent.read_close(), (1012, "server restarting".to_owned()));
    silent.expect_eof();
}

#[test]
fn the_binary_refuses_a_bad_configuration_with_exit_2() {
    let output = serve(&["--listen", "127.0.0.1:0", "--ring-capacity", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: room.ring_capacity = 0 (from --ring-capacity): must be between 1 and 16777216\n"
    );
}

#[test]
fn a_ping_just_before_the_server_closes_still_gets_its_pong() {
    let server = TestServer::with(|config| config.limits.max_message_bytes = 128);
    let mut raw = RawWs::connect(server.addr(), "/");
    // regression: the pong waited for the outbox to drain, and closing dropped it.
    raw.write(
        &[
            frame(0x9, true, b"last words"),
            frame(0x1, true, &[b' '; 200]),
        ]
        .concat(),
    );
    assert_eq!(raw.read_frame(), (0xa, b"last words".to_vec()));
    let (opcode, error) = raw.read_frame();
    assert_eq!(opcode, 0x1);
    assert_eq!(
        String::from_utf8(error).unwrap(),
        r#"{"type":"ERROR","meta":{},"payload":{"code":"RESOURCE_EXHAUSTED","message":"message of 200 bytes exceeds the limit of 128 bytes","retryable":true}}"#
    );
    assert_eq!(raw.read_close(), (1009, "message too large".to_owned()));
    raw.expect_eof();
}
