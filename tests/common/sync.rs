//! Clients that check the protocol's delivery invariants on everything they receive, and
//! apply it to the project's client replica.

use deltasync::client::Replica;
use deltasync::model::presence::{Patch, Presence, PresenceInput, Status};
use deltasync::protocol::Dialect;
use serde_json::Value;

use super::Ws;

/// What one connection was sent, checked as it arrives against invariant 1 (deltas are
/// contiguous: each `fromRev` is the revision reached so far, and the operations carry
/// exactly `fromRev+1..=toRev`, each once) and invariant 5 (after `REVISION_GAP` the next
/// message is a snapshot).
#[derive(Debug, Default)]
pub struct Stream {
    /// The revision the stream has reached: the last snapshot's `rev` or deltas' `toRev`.
    pub rev: Option<u64>,
    awaiting_snapshot: bool,
    /// The revision of every operation received, in order of arrival.
    pub op_revs: Vec<u64>,
    /// The revision of every snapshot received.
    pub snapshots: Vec<u64>,
    /// The `(fromRev, toRev)` of every `SYNC.DELTAS` received.
    pub ranges: Vec<(u64, u64)>,
    /// Every `REVISION_GAP` payload received.
    pub gaps: Vec<Value>,
    /// Every `ERROR` received.
    pub errors: Vec<Value>,
}

impl Stream {
    /// Checks `message` against the invariants and records it.
    pub fn observe(&mut self, message: &Value) {
        let payload = &message["payload"];
        let kind = message["type"].as_str().expect("a type");
        if kind != "SYNC.SNAPSHOT" {
            assert!(
                !self.awaiting_snapshot,
                "invariant 5: {message} came after REVISION_GAP instead of a snapshot"
            );
        }
        match kind {
            "SYNC.SNAPSHOT" => {
                let rev = payload["rev"].as_u64().expect("snapshot rev");
                self.awaiting_snapshot = false;
                self.snapshots.push(rev);
                self.rev = Some(rev);
            }
            "SYNC.DELTAS" => self.observe_deltas(message),
            "REVISION_GAP" => {
                self.gaps.push(payload.clone());
                self.awaiting_snapshot = true;
            }
            "ERROR" => self.errors.push(message.clone()),
            other => panic!("unknown server message type {other}: {message}"),
        }
    }

    fn observe_deltas(&mut self, message: &Value) {
        let payload = &message["payload"];
        let from = payload["fromRev"].as_u64().expect("fromRev");
        let to = payload["toRev"].as_u64().expect("toRev");
        assert_eq!(
            Some(from),
            self.rev,
            "invariant 1: SYNC.DELTAS from {from} after the stream reached {:?}",
            self.rev
        );
        let revs: Vec<u64> = payload["operations"]
            .as_array()
            .expect("operations")
            .iter()
            .map(|op| op["rev"].as_u64().expect("operation rev"))
            .collect();
        assert_eq!(
            revs,
            (from + 1..=to).collect::<Vec<_>>(),
            "invariant 1: SYNC.DELTAS {from}->{to} carries revisions {revs:?}"
        );
        if let (Some(&last), Some(&first)) = (self.op_revs.last(), revs.first()) {
            assert!(
                first > last,
                "operation {first} received again after {last}"
            );
        }
        self.op_revs.extend(revs);
        self.ranges.push((from, to));
        self.rev = Some(to);
    }
}

/// A participant's connection: a WebSocket, the invariant checks of [`Stream`] and the
/// client replica, fed every message.
pub struct SyncClient {
    pub ws: Ws,
    pub id: String,
    pub dialect: Dialect,
    pub stream: Stream,
    pub replica: Replica<Presence>,
    /// How many bytes of text messages arrived.
    pub bytes: usize,
}

impl SyncClient {
    /// Connects to `url` in the ws-kit dialect as participant `id` (not joined yet).
    pub fn connect(url: &str, id: &str) -> Self {
        Self::with_ws(Ws::connect(url), id, Dialect::WsKit)
    }

    /// Connects to `url` in the native dialect (`deltasync.v1`).
    pub fn connect_native(url: &str, id: &str) -> Self {
        Self::with_ws(Ws::connect_native(url), id, Dialect::Native)
    }

    fn with_ws(ws: Ws, id: &str, dialect: Dialect) -> Self {
        Self {
            ws,
            id: id.to_owned(),
            dialect,
            stream: Stream::default(),
            replica: Replica::new(id),
            bytes: 0,
        }
    }

    /// A new connection for the same replica (a reconnect): the stream starts over.
    pub fn reconnect(&mut self, ws: Ws) {
        self.replica.disconnected();
        self.ws = ws;
        self.stream = Stream::default();
    }

    /// Sends the replica's `JOIN` (a resume once it has a state).
    pub fn send_join(&mut self, name: &str) {
        let join = self.replica.join_message(&self.id, name, self.dialect);
        self.ws.send_text(std::str::from_utf8(&join).unwrap());
    }

    /// Joins and reads the snapshot; returns its revision.
    pub fn join(&mut self, name: &str) -> u64 {
        self.send_join(name);
        let snapshot = self.recv();
        assert_eq!(snapshot["type"], "SYNC.SNAPSHOT", "{snapshot}");
        self.replica.server_rev()
    }

    /// The next message: checked, applied to the replica, returned.
    pub fn recv(&mut self) -> Value {
        let text = self.ws.recv_text();
        self.bytes += text.len();
        let message: Value = serde_json::from_str(&text).expect("JSON");
        self.stream.observe(&message);
        if let Err(e) = self.replica.handle_text(text.as_bytes(), 0) {
            panic!("{}: the replica refused {message}: {e}", self.id);
        }
        message
    }

    /// Reads until the stream reaches `rev`.
    pub fn until_rev(&mut self, rev: u64) {
        while self.stream.rev != Some(rev) {
            let message = self.recv();
            if let Some(reached) = self.stream.rev {
                assert!(reached <= rev, "{}: went past {rev}: {message}", self.id);
            }
        }
    }

    /// Sends an update made by the replica; returns its `clientReqId`.
    pub fn update(&mut self, patch: Patch) -> String {
        let (id, message) = self.replica.update(PresenceInput { patch }, 0);
        self.ws.send_text(std::str::from_utf8(&message).unwrap());
        id
    }

    pub fn set_status(&mut self, status: Status) -> String {
        self.update(Patch {
            status: Some(status),
            ..Patch::default()
        })
    }

    pub fn set_name(&mut self, name: &str) -> String {
        self.update(Patch {
            name: Some(name.to_owned()),
            ..Patch::default()
        })
    }

    /// The server state the replica holds.
    pub fn state(&self) -> &Presence {
        self.replica.server_state().expect("a state")
    }
}
