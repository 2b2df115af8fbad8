//! One simulated client of the soak: a non-blocking socket, the project's [`Replica`], and
//! the record of what happened to every update it made.
//!
//! The replica does the protocol: it refuses deltas that break invariant 1 or 5 (each
//! refusal is a violation here: the server must never send them), acknowledges and
//! rejects pending updates, and gives the `JOIN` that resumes and the updates to resend
//! after a reconnect or a snapshot.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use deltasync::client::{Replica, ReplicaEvent};
use deltasync::model::presence::{Patch, Presence, PresenceInput, Status};
use deltasync::protocol::Dialect;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::wire::{self, Frame, Reader};

/// How each update a client made was answered.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Answers {
    pub(crate) acked: u32,
    pub(crate) rejected: u32,
}

/// What one client saw.
#[derive(Debug, Default, Clone)]
pub(crate) struct Seen {
    pub(crate) snapshots: u64,
    pub(crate) gaps: u64,
    pub(crate) deltas: u64,
    pub(crate) operations: u64,
    /// Protocol violations: messages the replica refused, bad frames, refused upgrades.
    pub(crate) violations: Vec<String>,
}

/// One client.
pub(crate) struct Client {
    token: Token,
    host: String,
    path: String,
    participant: String,
    stream: Option<TcpStream>,
    reader: Reader,
    out: Vec<u8>,
    mask: [u8; 4],
    pub(crate) replica: Replica<Presence>,
    pub(crate) answers: HashMap<String, Answers>,
    pub(crate) seen: Seen,
    /// Messages received since the last look (for the caller's settle checks).
    pub(crate) received: u64,
    counter: u64,
}

impl Client {
    pub(crate) fn new(token: Token, addr: SocketAddr, path: &str, participant: &str) -> Self {
        let seed = (token.0 as u32).wrapping_mul(2_654_435_761) | 1;
        Self {
            token,
            host: addr.to_string(),
            path: path.to_owned(),
            participant: participant.to_owned(),
            stream: None,
            reader: Reader::default(),
            out: Vec::new(),
            mask: seed.to_be_bytes(),
            replica: Replica::new(participant),
            answers: HashMap::new(),
            seen: Seen::default(),
            received: 0,
            counter: 0,
        }
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    /// Opens a connection: the upgrade request, then the replica's `JOIN` (a resume once
    /// it has a state) and every pending update, pipelined.
    pub(crate) fn connect(&mut self, addr: SocketAddr, registry: &Registry) -> io::Result<()> {
        let mut stream = TcpStream::connect(addr)?;
        registry.register(
            &mut stream,
            self.token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let _ = stream.set_nodelay(true);
        self.stream = Some(stream);
        self.reader = Reader::default();
        self.out = wire::upgrade_request(&self.host, &self.path);
        let join = self
            .replica
            .join_message(&self.participant, &self.participant, Dialect::Native);
        self.queue(&join);
        for message in self.replica.resend_messages() {
            self.queue(&message);
        }
        Ok(())
    }

    fn queue(&mut self, message: &[u8]) {
        let frame = wire::text_frame(message, self.mask);
        self.out.extend_from_slice(&frame);
    }

    /// Makes an update (a status or a name), predicts it and sends it if connected.
    pub(crate) fn update(&mut self, now_ms: u64) {
        let input = self.next_input();
        let (id, message) = self.replica.update(input, now_ms);
        self.answers.insert(id, Answers::default());
        if self.stream.is_some() {
            self.queue(&message);
        }
    }

    fn next_input(&mut self) -> PresenceInput {
        self.counter += 1;
        let patch = match self.counter % 3 {
            0 => Patch {
                name: Some(format!("{} #{}", self.participant, self.counter)),
                ..Patch::default()
            },
            1 => Patch {
                status: Some(Status::Away),
                ..Patch::default()
            },
            _ => Patch {
                status: Some(Status::Online),
                ..Patch::default()
            },
        };
        PresenceInput { patch }
    }

    /// Sends `HEARTBEAT` (keeps a client that makes no update alive).
    pub(crate) fn heartbeat(&mut self) {
        if self.stream.is_some() {
            self.queue(br#"{"type":"HEARTBEAT"}"#);
        }
    }

    /// Makes an update, writes the first half of its frame, and drops the socket: the
    /// server sees a connection cut in the middle of a frame. The update stays pending
    /// and is resent on the next connection.
    pub(crate) fn kill_mid_frame(&mut self, now_ms: u64, registry: &Registry) {
        let input = self.next_input();
        let (id, message) = self.replica.update(input, now_ms);
        self.answers.insert(id, Answers::default());
        let frame = wire::text_frame(&message, self.mask);
        if let Some(stream) = self.stream.as_mut() {
            // What is queued goes first, so that the half frame is really half a frame.
            if write_all_now(stream, &self.out).is_ok() {
                let _ = write_all_now(stream, &frame[..frame.len() / 2]);
            }
        }
        self.drop_connection(registry);
    }

    /// Ends the connection without a close frame (the socket just goes).
    pub(crate) fn drop_connection(&mut self, registry: &Registry) {
        if let Some(mut stream) = self.stream.take() {
            let _ = registry.deregister(&mut stream);
        }
        self.out.clear();
        self.replica.disconnected();
    }

    /// Writes what is queued, until the socket blocks.
    pub(crate) fn flush(&mut self, registry: &Registry) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        while !self.out.is_empty() {
            match stream.write(&self.out) {
                Ok(0) => return self.drop_connection(registry),
                Ok(n) => {
                    self.out.drain(..n);
                }
                // Still connecting: the writable event comes once it is.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::NotConnected
                    ) =>
                {
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Refused or reset (the server closed it): the caller reconnects.
                Err(_) => return self.drop_connection(registry),
            }
        }
        if self.out.capacity() > 64 * 1024 {
            self.out = Vec::new();
        }
    }

    /// Reads what the socket has and hands every message to the replica; returns false
    /// when the connection ended.
    pub(crate) fn read(&mut self, now_ms: u64, registry: &Registry, scratch: &mut [u8]) -> bool {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return false;
            };
            match stream.read(scratch) {
                Ok(0) => {
                    self.drop_connection(registry);
                    return false;
                }
                Ok(n) => self.reader.push(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return true,
                Err(_) => {
                    self.drop_connection(registry);
                    return false;
                }
            }
            if !self.handle_frames(now_ms, registry) {
                return false;
            }
        }
        self.handle_frames(now_ms, registry)
    }

    fn handle_frames(&mut self, now_ms: u64, registry: &Registry) -> bool {
        loop {
            match self.reader.next() {
                Ok(Some(Frame::Text(text))) => self.handle_text(&text, now_ms),
                Ok(Some(Frame::Ping(payload))) => {
                    let pong = wire::client_frame(0xa, &payload, self.mask);
                    self.out.extend_from_slice(&pong);
                }
                Ok(Some(Frame::Close(_))) => {
                    self.drop_connection(registry);
                    return false;
                }
                Ok(Some(Frame::Other)) => {}
                Ok(None) => return true,
                Err(e) => {
                    self.seen
                        .violations
                        .push(format!("{}: {e}", self.participant));
                    self.drop_connection(registry);
                    return false;
                }
            }
        }
    }

    fn handle_text(&mut self, text: &[u8], now_ms: u64) {
        self.received += 1;
        let events = match self.replica.handle_text(text, now_ms) {
            Ok(events) => events,
            Err(error) => {
                self.seen.violations.push(format!(
                    "{}: refused {:.200}: {error}",
                    self.participant,
                    String::from_utf8_lossy(text)
                ));
                // What the connector does: resume on this connection.
                let join = self.replica.join_message(
                    &self.participant,
                    &self.participant,
                    Dialect::Native,
                );
                self.queue(&join);
                return;
            }
        };
        let mut resend = false;
        for event in events {
            match event {
                ReplicaEvent::Snapshot { .. } => {
                    self.seen.snapshots += 1;
                    resend = true;
                }
                ReplicaEvent::Applied { from, to } => {
                    self.seen.deltas += 1;
                    self.seen.operations += to - from;
                }
                ReplicaEvent::Gap(_) => self.seen.gaps += 1,
                ReplicaEvent::Acked { client_req_id, .. } => {
                    self.answers.entry(client_req_id).or_default().acked += 1;
                }
                ReplicaEvent::Rejected { client_req_id, .. } => {
                    self.answers.entry(client_req_id).or_default().rejected += 1;
                }
                // Not processed (a rate limit, a full disk): still pending; sent again at
                // once (a throttled connection waits for its token on the server).
                ReplicaEvent::Deferred { client_req_id, .. } => {
                    if let Some(message) = self.replica.message_of(&client_req_id) {
                        self.queue(&message);
                    }
                }
                _ => {}
            }
        }
        if resend {
            for message in self.replica.resend_messages() {
                self.queue(&message);
            }
        }
    }

    /// Every update whose answers are not exactly one ack or one rejection.
    pub(crate) fn unanswered_or_twice(&self) -> Vec<String> {
        self.answers
            .iter()
            .filter(|(_, a)| a.acked + a.rejected != 1)
            .map(|(id, a)| {
                format!(
                    "{id}: acknowledged {} and rejected {} times",
                    a.acked, a.rejected
                )
            })
            .collect()
    }
}

/// Writes all of `bytes` on a non-blocking socket, spinning briefly on `WouldBlock` (only
/// for the few bytes before a deliberate cut).
fn write_all_now(stream: &mut TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    let mut spins = 0;
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && spins < 1000 => {
                spins += 1;
                std::thread::yield_now();
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
