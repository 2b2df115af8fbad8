//! Helpers shared by the tests that run a real server on loopback.
#![allow(dead_code, unreachable_pub)]
// These tests are clients of the I/O shell over real sockets: they run on real time.
#![allow(clippy::disallowed_methods)]

pub mod raw;
pub mod sync;
pub mod tls;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltasync::clock::{Clock, ManualClock};
use deltasync::config::Config;
use deltasync::model::presence::Presence;
use deltasync::room::Room;
use deltasync::server::Server;
use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// How long a test waits for a message it expects.
pub const WAIT: Duration = Duration::from_secs(10);

/// The time of the manual clock servers of exact-message tests start with.
pub const CLOCK_MS: u64 = 1000;

/// A server on an ephemeral loopback port, stopped when dropped.
pub struct TestServer {
    server: Option<Server<Presence>>,
    addr: SocketAddr,
}

impl TestServer {
    pub fn start() -> Self {
        Self::with(|_| {})
    }

    /// A server with the system clock and `configure` applied to a test configuration
    /// (loopback, ephemeral port, two shards).
    pub fn with(configure: impl FnOnce(&mut Config)) -> Self {
        Self::start_with(configure, None)
    }

    /// A server whose rooms read a manual clock showing [`CLOCK_MS`], so that messages
    /// carrying `lastActive` can be compared byte for byte.
    pub fn with_manual_clock(configure: impl FnOnce(&mut Config)) -> Self {
        Self::start_with(configure, Some(Arc::new(ManualClock::new(CLOCK_MS))))
    }

    fn start_with(configure: impl FnOnce(&mut Config), clock: Option<Arc<dyn Clock>>) -> Self {
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.shards = 2;
        // These tests compare exact revisions from 0; restart-safe revisions (the default)
        // have their own tests in `storage_restart.rs`.
        config.storage.memory_revisions = deltasync::storage::MemoryRevisions::FromZero;
        // A test that drops its server before its clients waits this long for their
        // closes (the default, 10 s, is for production).
        config.server.shutdown_grace_ms = 2000;
        configure(&mut config);
        let mut builder = Server::presence(config);
        if let Some(clock) = clock {
            builder = builder.clock(clock);
        }
        let server = builder.start().expect("server starts");
        let addr = server.local_addr();
        Self {
            server: Some(server),
            addr,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn server(&self) -> &Server<Presence> {
        self.server.as_ref().unwrap()
    }

    /// The room `name` as the server holds it.
    pub fn room(&self, name: &str) -> Arc<Room<Presence>> {
        self.server()
            .room(name)
            .expect("room exists or can be created")
    }

    /// Takes the server out (to stop it from another thread); dropping `self` then does
    /// nothing.
    pub fn take(&mut self) -> Server<Presence> {
        self.server.take().expect("a running server")
    }

    /// Stops the server and waits for it.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `condition` every few milliseconds until it holds; panics after `WAIT`.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A blocking WebSocket client speaking raw envelopes.
pub struct Ws {
    pub socket: WebSocket<TcpStream>,
    /// The subprotocol the server selected in its `101` response.
    pub protocol: Option<String>,
}

impl Ws {
    pub fn connect(url: &str) -> Self {
        Self::connect_with(url, &[])
    }

    /// Connects with extra request headers (a subprotocol, a token).
    pub fn connect_with(url: &str, headers: &[(&str, &str)]) -> Self {
        Self::try_connect(url, headers).expect("WebSocket connects")
    }

    /// Connects asking for the native dialect (`Sec-WebSocket-Protocol: deltasync.v1`).
    pub fn connect_native(url: &str) -> Self {
        let ws = Self::connect_with(url, &[("Sec-WebSocket-Protocol", "deltasync.v1")]);
        assert_eq!(ws.protocol.as_deref(), Some("deltasync.v1"));
        ws
    }

    pub fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<Self, tungstenite::Error> {
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            request.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let host = request.uri().authority().unwrap().as_str().to_owned();
        let stream = TcpStream::connect(host).map_err(tungstenite::Error::Io)?;
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let (socket, response) =
            tungstenite::client::client_with_config(request, stream, Some(config)).map_err(
                |e| match e {
                    tungstenite::HandshakeError::Failure(e) => e,
                    tungstenite::HandshakeError::Interrupted(_) => {
                        tungstenite::Error::Io(std::io::ErrorKind::WouldBlock.into())
                    }
                },
            )?;
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        Ok(Self { socket, protocol })
    }

    pub fn send(&mut self, message: Value) {
        self.send_text(&message.to_string());
    }

    pub fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).expect("send");
    }

    pub fn send_message(&mut self, message: Message) {
        self.socket.send(message).expect("send");
    }

    /// The next message of any kind (pongs included); panics after `WAIT`.
    pub fn recv_message(&mut self) -> Message {
        self.socket.read().expect("read")
    }

    /// The next text message as received; panics after `WAIT` or on a close.
    pub fn recv_text(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no message within {WAIT:?}");
            match self.socket.read().expect("read") {
                Message::Text(text) => return text.as_str().to_owned(),
                Message::Close(frame) => panic!("closed by the server: {frame:?}"),
                _ => {}
            }
        }
    }

    /// The next text message, parsed; panics after `WAIT`.
    pub fn recv(&mut self) -> Value {
        serde_json::from_str(&self.recv_text()).expect("JSON")
    }

    /// The next message if one comes within `within`.
    pub fn recv_within(&mut self, within: Duration) -> Option<Value> {
        self.socket
            .get_ref()
            .set_read_timeout(Some(within))
            .unwrap();
        let result = match self.socket.read() {
            Ok(Message::Text(text)) => Some(serde_json::from_str(&text).expect("JSON")),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("read failed: {e}"),
        };
        self.socket.get_ref().set_read_timeout(Some(WAIT)).unwrap();
        result
    }

    /// Reads until the server closes; returns the close code.
    pub fn recv_close(&mut self) -> Option<u16> {
        self.recv_close_frame().map(|(code, _)| code)
    }

    /// Reads until the server's close frame; returns its code and reason. Text messages
    /// before it are skipped; anything else (an EOF without a close frame) panics.
    pub fn recv_close_frame(&mut self) -> Option<(u16, String)> {
        loop {
            match self.socket.read() {
                Ok(Message::Close(frame)) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
                }
                Ok(_) => {}
                Err(e) => panic!("expected a close frame, got {e}"),
            }
        }
    }

    /// The server's close frame if one comes within `within` (text messages before it
    /// are skipped); `None` if nothing came.
    pub fn close_within(&mut self, within: Duration) -> Option<(u16, String)> {
        self.socket
            .get_ref()
            .set_read_timeout(Some(within))
            .unwrap();
        let result = loop {
            match self.socket.read() {
                Ok(Message::Close(frame)) => {
                    break Some(frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.as_str().to_owned())
                    }));
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break None;
                }
                Err(e) => panic!("expected a close frame, got {e}"),
            }
        };
        self.socket.get_ref().set_read_timeout(Some(WAIT)).unwrap();
        result
    }

    /// Reads until a `SYNC.DELTAS` reaches `rev` (deltas may come one by one or coalesced);
    /// returns every message read, that one included.
    pub fn recv_until_rev(&mut self, rev: u64) -> Vec<Value> {
        let mut messages = Vec::new();
        loop {
            let message = self.recv();
            let reached = message["payload"]["toRev"] == rev;
            messages.push(message);
            if reached {
                return messages;
            }
        }
    }

    /// Ends the TCP connection at once (what dropping the client does), keeping the
    /// value around.
    pub fn disconnect(&self) {
        let _ = self.socket.get_ref().shutdown(std::net::Shutdown::Both);
    }

    pub fn join(&mut self, id: &str, name: &str) -> Value {
        self.send(join(id, name));
        self.recv()
    }
}

pub fn join(id: &str, name: &str) -> Value {
    json!({"type": "JOIN", "payload": {"participantId": id, "name": name}})
}

pub fn update(status: &str, req: &str) -> Value {
    json!({"type": "UPDATE", "payload": {"patch": {"status": status}, "clientReqId": req}})
}

pub fn rename(name: &str, req: &str) -> Value {
    json!({"type": "UPDATE", "payload": {"patch": {"name": name}, "clientReqId": req}})
}

/// The `participant.joined` operation of a participant who joined at the manual clock.
pub fn joined_op(rev: u64, id: &str, name: &str) -> Value {
    json!({"rev": rev, "type": "participant.joined", "payload":
        {"id": id, "name": name, "status": "online", "lastActive": CLOCK_MS}})
}

/// A `SYNC.DELTAS` message.
pub fn deltas(from: u64, to: u64, operations: Vec<Value>) -> Value {
    json!({"type": "SYNC.DELTAS", "meta": {}, "payload":
        {"fromRev": from, "toRev": to, "operations": operations}})
}

/// Checks that `url` serves a well-behaved client: it joins a room of its own (so the
/// check commits nothing where the test looks), gets a snapshot and its update back as
/// the acknowledging operation.
pub fn assert_serves(base_url: &str) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut ws = Ws::connect(&format!("{base_url}/rooms/health-{n}"));
    let snapshot = ws.join("probe", "Probe");
    assert_eq!(snapshot["type"], "SYNC.SNAPSHOT", "{snapshot}");
    assert_eq!(snapshot["payload"]["rev"], 1, "{snapshot}");
    ws.send(update("away", "probe-1"));
    assert_eq!(
        ws.recv(),
        deltas(
            1,
            2,
            vec![json!({"rev": 2, "type": "participant.updated",
                "payload": {"id": "probe", "status": "away"}, "clientReqId": "probe-1"})]
        )
    );
}
