//! Helpers shared by the tests that run a real server on loopback.
#![allow(dead_code, unreachable_pub)]
// These tests are clients of the I/O shell over real sockets: they run on real time.
#![allow(clippy::disallowed_methods)]

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use deltasync::config::Config;
use deltasync::model::presence::Presence;
use deltasync::server::Server;
use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// How long a test waits for a message it expects.
pub const WAIT: Duration = Duration::from_secs(10);

/// A server on an ephemeral loopback port, stopped when dropped.
pub struct TestServer {
    server: Option<Server<Presence>>,
    addr: SocketAddr,
}

impl TestServer {
    pub fn start() -> Self {
        Self::with(|_| {})
    }

    pub fn with(configure: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.shards = 2;
        configure(&mut config);
        let server = Server::presence(config).start().expect("server starts");
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

/// A blocking WebSocket client speaking raw envelopes.
pub struct Ws {
    pub socket: WebSocket<TcpStream>,
}

impl Ws {
    pub fn connect(url: &str) -> Self {
        Self::connect_with(url, &[])
    }

    /// Connects offering `protocols` and extra headers.
    pub fn connect_with(url: &str, headers: &[(&str, &str)]) -> Self {
        Self::try_connect(url, headers).expect("WebSocket connects")
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
        let (socket, _) = tungstenite::client::client_with_config(request, stream, Some(config))
            .map_err(|e| match e {
                tungstenite::HandshakeError::Failure(e) => e,
                tungstenite::HandshakeError::Interrupted(_) => {
                    tungstenite::Error::Io(std::io::ErrorKind::WouldBlock.into())
                }
            })?;
        Ok(Self { socket })
    }

    pub fn send(&mut self, message: Value) {
        self.send_text(&message.to_string());
    }

    pub fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).expect("send");
    }

    /// The next text message, parsed; panics after `WAIT`.
    pub fn recv(&mut self) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no message within {WAIT:?}");
            match self.socket.read().expect("read") {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
                Message::Close(frame) => panic!("closed by the server: {frame:?}"),
                _ => {}
            }
        }
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
        loop {
            match self.socket.read() {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(e) => panic!("expected a close frame, got {e}"),
            }
        }
    }

    pub fn join(&mut self, id: &str, name: &str) -> Value {
        self.send(json!({"type": "JOIN", "payload": {"participantId": id, "name": name}}));
        self.recv()
    }
}

pub fn update(status: &str, req: &str) -> Value {
    json!({"type": "UPDATE", "payload": {"patch": {"status": status}, "clientReqId": req}})
}
