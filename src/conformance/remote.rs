//! Running fixtures over a real WebSocket against a server at a URL.
//!
//! Every client of a fixture opens its own connection (ws-kit dialect, the dialect
//! fixtures are written in) to a room of its own (`/rooms/conformance-<fixture>-<n>`), so
//! fixtures never see each other. Steps that need control of the server (`CLOCK`,
//! `PROCESS_OPERATIONS`, `STATE`), a socket the server cannot write to (`PAUSE`), or a
//! ring of a given size cannot be driven over the wire: such a fixture is reported as not
//! drivable, with the step that needs it, and is not run.
//!
//! Over the wire, `server.rev` is read as the newest revision the server sent to any
//! client of the fixture; the runner has made sure by then that every message was
//! consumed, so it is the server's revision as long as a client is connected and joined.
//!
//! `lastActive` values in fixtures come from the test clock (1000 at the start): run the
//! server with a frozen clock, `deltasync serve --test-clock 1000`.

use std::collections::{BTreeMap, VecDeque};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use super::ConformanceModel;
use super::fixture::{Action, Fixture};
use super::server::FixtureServer;
use crate::epoch::Epoch;

/// How long the runner waits for a message a step expects.
const EXPECT_WAIT: Duration = Duration::from_secs(5);
/// How long the runner listens for messages no step expects, at the end of a fixture.
const QUIET_WAIT: Duration = Duration::from_millis(300);

/// Why a fixture cannot be run over the wire: the first step (1-based) that needs control
/// of the server, and what it is.
pub fn not_drivable(fixture: &Fixture) -> Option<String> {
    if let Some(capacity) = fixture.ring_capacity {
        return Some(format!("needs a ring of {capacity} (config.ringCapacity)"));
    }
    fixture.steps.iter().enumerate().find_map(|(i, step)| {
        let what = match step.action {
            Action::ClientPause | Action::ClientResume => "client PAUSE/RESUME",
            Action::ClientState { .. } => "client STATE",
            Action::ServerProcessOperations(_) => "server PROCESS_OPERATIONS",
            Action::ServerClock(_) => "server CLOCK",
            _ => return None,
        };
        Some(format!(
            "step {} ({what}) needs control of the server",
            i + 1
        ))
    })
}

/// A server at a URL, driven over WebSocket connections.
pub struct Remote {
    base: String,
    room: String,
    connections: BTreeMap<String, Connection>,
    newest_rev: u64,
}

struct Connection {
    socket: WebSocket<TcpStream>,
    inbox: VecDeque<Bytes>,
}

impl Remote {
    /// A server at `url` (`ws://host:port`); the fixture's clients use room `room`.
    pub fn new(url: &str, room: &str) -> Self {
        Self {
            base: url.trim_end_matches('/').to_owned(),
            room: room.to_owned(),
            connections: BTreeMap::new(),
            newest_rev: 0,
        }
    }

    fn connection(&mut self, client: &str) -> Result<&mut Connection, String> {
        self.connections
            .get_mut(client)
            .ok_or_else(|| format!("client {client:?} has no connection"))
    }

    /// Reads one message within `wait`, keeping what it says of the room's revision.
    fn read_one(&mut self, client: &str, wait: Duration) -> Option<Bytes> {
        let connection = self.connections.get_mut(client)?;
        let _ = connection.socket.get_ref().set_read_timeout(Some(wait));
        let bytes = loop {
            match connection.socket.read() {
                Ok(Message::Text(text)) => break Bytes::copy_from_slice(text.as_bytes()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        };
        self.newest_rev = self.newest_rev.max(revision_of(&bytes));
        Some(bytes)
    }
}

/// The revision a server message brings its client to (0 for others).
fn revision_of(bytes: &[u8]) -> u64 {
    let Ok(message) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return 0;
    };
    let payload = &message["payload"];
    match message["type"].as_str() {
        Some("SYNC.SNAPSHOT") => payload["rev"].as_u64().unwrap_or(0),
        Some("SYNC.DELTAS") => payload["toRev"].as_u64().unwrap_or(0),
        _ => 0,
    }
}

impl<M: ConformanceModel> FixtureServer<M> for Remote {
    fn connect(&mut self, client: &str) -> Result<(), String> {
        self.connections.remove(client);
        let url = format!("{}/rooms/{}", self.base, self.room);
        let request = url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("bad URL {url}: {e}"))?;
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| format!("no host in {url}"))?;
        let stream = TcpStream::connect(&authority)
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(EXPECT_WAIT));
        let (socket, _) = tungstenite::client::client(request, stream)
            .map_err(|e| format!("WebSocket handshake with {url} failed: {e}"))?;
        self.connections.insert(
            client.to_owned(),
            Connection {
                socket,
                inbox: VecDeque::new(),
            },
        );
        Ok(())
    }

    fn disconnect(&mut self, client: &str) {
        if let Some(mut connection) = self.connections.remove(client) {
            let _ = connection.socket.close(None);
            let _ = connection.socket.flush();
        }
    }

    fn send(&mut self, client: &str, text: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(text).into_owned();
        let connection = self.connection(client)?;
        connection
            .socket
            .send(Message::text(text))
            .map_err(|e| format!("send failed: {e}"))
    }

    fn set_reading(&mut self, _client: &str, _reading: bool) {}

    fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn receive(&mut self, client: &str) -> Option<Bytes> {
        if let Some(bytes) = self.connections.get_mut(client)?.inbox.pop_front() {
            return Some(bytes);
        }
        self.read_one(client, EXPECT_WAIT)
    }

    fn receive_unexpected(&mut self, client: &str) -> Option<Bytes> {
        if let Some(bytes) = self.connections.get_mut(client)?.inbox.pop_front() {
            return Some(bytes);
        }
        self.read_one(client, QUIET_WAIT)
    }

    fn set_clock(&mut self, _now_ms: u64) -> Result<(), String> {
        Err("the clock of a server at a URL cannot be set".into())
    }

    fn process_operations(&mut self, _count: u64) -> Result<(), String> {
        Err("a server at a URL cannot be told to commit operations".into())
    }

    fn restore(
        &mut self,
        _rev: u64,
        _state: M,
        _bind: Option<(&str, &str)>,
    ) -> Result<Epoch, String> {
        Err("a server at a URL cannot be restored".into())
    }

    fn rev(&self) -> Result<u64, String> {
        if self.connections.is_empty() {
            return Err("over the wire, server.rev needs a connected client".into());
        }
        Ok(self.newest_rev)
    }
}
