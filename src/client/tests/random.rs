//! The replica against a real room as the reference server, in random interleavings.
//!
//! The server side is a [`Room`] on a [`ManualClock`] plus the little a session does for
//! one connection (decode with [`decode_client`], commit, answer, pull deltas from its
//! `lastSentRev`), talking to one replica through two byte queues. Random steps make
//! local updates (valid and invalid), commits by other participants, server-side leaves
//! of our own participant, flushes, deliveries and reconnects that lose whatever was in
//! flight. A ring of 4 makes gaps common. After every step:
//!
//! - every message the replica got was accepted (the reference server keeps the
//!   invariants, so a refusal is a replica bug);
//! - its server state is the room's state at the same revision (invariant 2);
//! - its visible state is its server state with its pending updates replayed
//!   (invariant 6).
//!
//! At the end the network is drained; then nothing is pending, the visible state is the
//! room's, and every update was either acknowledged or rejected, never both (invariant 3).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Map, json};

use super::*;
use crate::client::ReplicaEvent;
use crate::clock::{Clock, ManualClock};
use crate::model::Model;
use crate::protocol::decode::{ClientMessage, DecodeLimits, decode_client};
use crate::room::{Commit, Room, RoomConfig};

const ME: &str = "me";
const OTHERS: [&str; 3] = ["p0", "p1", "p2"];
const NAMES: [&str; 4] = ["Ann", "Bea", "", "bad\u{7}name"];

#[derive(Debug, Clone)]
enum Step {
    /// A local update: a status, a name (maybe invalid), or an empty patch (invalid).
    Local(Option<Status>, Option<usize>),
    /// The server handles the next client message.
    Serve,
    /// Another participant joins, changes status, or leaves.
    OtherJoin(usize),
    OtherStatus(usize, Status),
    OtherLeave(usize),
    /// The server removes our own participant (a time-to-live ran out).
    OwnLeave,
    /// The server sends the connection everything from its `lastSentRev`.
    Flush,
    /// The client handles the next server message.
    Deliver,
    /// The connection drops with everything in flight, and the client reconnects.
    Reconnect,
}

fn status_strategy() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Online),
        Just(Status::Away),
        Just(Status::Offline)
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let other = 0..OTHERS.len();
    prop_oneof![
        4 => (proptest::option::of(status_strategy()), proptest::option::of(0..NAMES.len()))
            .prop_map(|(s, n)| Step::Local(s, n)),
        5 => Just(Step::Serve),
        1 => other.clone().prop_map(Step::OtherJoin),
        2 => (other.clone(), status_strategy()).prop_map(|(i, s)| Step::OtherStatus(i, s)),
        1 => other.prop_map(Step::OtherLeave),
        1 => Just(Step::OwnLeave),
        3 => Just(Step::Flush),
        5 => Just(Step::Deliver),
        1 => Just(Step::Reconnect),
    ]
}

/// One room, one connection, one replica.
struct Sim {
    clock: Arc<ManualClock>,
    room: Room<Presence>,
    /// The room's state at each revision.
    history: Vec<Presence>,
    /// Whether the connection has joined (a session sends nothing before).
    joined: bool,
    last_sent: u64,
    to_server: VecDeque<Bytes>,
    to_client: VecDeque<Bytes>,
    replica: Replica<Presence>,
    issued: Vec<String>,
    rejected: HashSet<String>,
}

impl Sim {
    fn new() -> Self {
        let clock = Arc::new(ManualClock::new(1000));
        let room = Room::builder("random", Presence::default())
            .config(RoomConfig::with_ring_capacity(4).unwrap())
            .clock(Arc::clone(&clock) as Arc<dyn Clock>)
            .epoch(epoch("e1"))
            .build()
            .unwrap();
        let mut sim = Self {
            clock,
            room,
            history: vec![Presence::default()],
            joined: false,
            last_sent: 0,
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            replica: Replica::with_id_suffix(ME, "x"),
            issued: Vec::new(),
            rejected: HashSet::new(),
        };
        sim.connect();
        sim
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Records the room's states up to its head.
    fn record(&mut self) {
        let history = &mut self.history;
        self.room.with_state(|state, rev| {
            let rev = usize::try_from(rev).unwrap();
            assert_eq!(history.len(), rev, "one commit at a time");
            history.push(state.clone());
        });
    }

    fn connect(&mut self) {
        let join = self.replica.join_message(ME, "Me", Dialect::Native);
        self.to_server.push_back(join);
        self.to_server.extend(self.replica.resend_messages());
    }

    fn run(&mut self, step: &Step) {
        self.clock.advance(10);
        match step {
            Step::Local(status, name) => self.local(*status, name.map(|i| NAMES[i])),
            Step::Serve => self.serve(),
            // Refusals (a participant absent or already there) commit nothing.
            Step::OtherJoin(i) => self.commit_if(|room| drop(room.join(OTHERS[*i], "Other"))),
            Step::OtherStatus(i, s) => {
                let input = super::status(*s);
                self.commit_if(|room| drop(room.submit(OTHERS[*i], &input, None)));
            }
            Step::OtherLeave(i) => self.commit_if(|room| drop(room.leave(OTHERS[*i]))),
            Step::OwnLeave => self.commit_if(|room| drop(room.leave(ME))),
            Step::Flush => self.flush(),
            Step::Deliver => self.deliver(),
            Step::Reconnect => {
                self.to_server.clear();
                self.to_client.clear();
                self.replica.disconnected();
                self.joined = false;
                self.connect();
            }
        }
        self.check_replica();
    }

    /// Runs a server-side change and records the state if it committed.
    fn commit_if(&mut self, commit: impl FnOnce(&Room<Presence>)) {
        let before = self.room.rev();
        commit(&self.room);
        if self.room.rev() != before {
            self.record();
        }
    }

    fn local(&mut self, status: Option<Status>, name: Option<&str>) {
        let patch = Patch {
            status,
            name: name.map(str::to_owned),
            ..Patch::default()
        };
        let now = self.now();
        let (id, message) = self.replica.update(PresenceInput { patch }, now);
        self.issued.push(id);
        self.to_server.push_back(message);
    }

    /// What a session does with one client message.
    fn serve(&mut self) {
        let Some(bytes) = self.to_server.pop_front() else {
            return;
        };
        let envelope = decode_client::<PresenceInput>(&bytes, &DecodeLimits::default())
            .expect("the replica sends valid messages");
        match envelope.message {
            ClientMessage::Join { rev, epoch, .. } => {
                self.joined = true;
                self.commit_if(|room| drop(room.join(ME, "Me")));
                self.answer_join(rev, epoch.as_deref());
            }
            ClientMessage::Update {
                input,
                client_req_id,
                ..
            } => self.update(&input, &client_req_id),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn update(&mut self, input: &PresenceInput, id: &str) {
        let before = self.room.rev();
        let mut details = Map::new();
        details.insert("clientReqId".into(), json!(id));
        let (code, message) = match self.room.submit(ME, input, Some(id)) {
            Ok(Commit {
                duplicate: false, ..
            }) => {
                assert_eq!(self.room.rev(), before + 1);
                self.record();
                return;
            }
            Ok(Commit {
                duplicate: true,
                rev,
            }) => {
                details.insert("appliedRev".into(), json!(rev));
                (ErrorCode::FailedPrecondition, "already applied".to_owned())
            }
            Err(rejection) => (rejection.code, rejection.message),
        };
        self.to_client.push_back(encode::error(&ErrorMessage {
            code,
            message: &message,
            details: Some(&details),
            retry_after_ms: None,
            correlation_id: None,
        }));
    }

    fn answer_join(&mut self, rev: Option<u64>, epoch: Option<&str>) {
        match rev.map(|rev| self.room.since(rev, epoch)) {
            Some(Ok(d)) => {
                self.to_client
                    .push_back(encode::deltas(d.from, d.to, &d.operations));
                self.last_sent = d.to;
            }
            Some(Err(gap)) => self.send_gap(&gap),
            None => self.send_snapshot(),
        }
    }

    fn send_gap(&mut self, gap: &crate::room::GapInfo) {
        let epoch = self.room.epoch().as_str();
        self.to_client
            .push_back(encode::gap(Dialect::Native, gap, epoch));
        self.send_snapshot();
    }

    fn send_snapshot(&mut self) {
        let snapshot = self.room.snapshot().unwrap();
        self.to_client
            .push_back(snapshot.message(Dialect::Native).clone());
        self.last_sent = snapshot.rev();
    }

    /// Pulls everything after `lastSentRev`: deltas, or a gap and a snapshot.
    fn flush(&mut self) {
        if !self.joined || self.room.rev() == self.last_sent {
            return;
        }
        match self.room.since(self.last_sent, None) {
            Ok(d) => {
                self.to_client
                    .push_back(encode::deltas(d.from, d.to, &d.operations));
                self.last_sent = d.to;
            }
            Err(gap) => self.send_gap(&gap),
        }
    }

    /// What a connector does with one server message.
    fn deliver(&mut self) {
        let Some(bytes) = self.to_client.pop_front() else {
            return;
        };
        let now = self.now();
        let events = match self.replica.handle_text(&bytes, now) {
            Ok(events) => events,
            Err(error) => panic!("the replica refused {bytes:?}: {error}"),
        };
        for event in events {
            match event {
                ReplicaEvent::Rejected { client_req_id, .. } => {
                    assert!(self.rejected.insert(client_req_id), "rejected twice");
                }
                ReplicaEvent::Snapshot { .. } => {
                    self.to_server.extend(self.replica.resend_messages());
                }
                // The one error about no pending update the reference server can cause:
                // an update acknowledged by a snapshot that showed its effect, rejected
                // when the server got to it after our participant was removed.
                ReplicaEvent::Error { code, message, .. } => {
                    assert_eq!(code, "NOT_FOUND", "unexpected error {code}: {message}");
                }
                _ => {}
            }
        }
    }

    fn check_replica(&self) {
        let Some(server) = self.replica.server_state() else {
            return;
        };
        let rev = usize::try_from(self.replica.server_rev()).unwrap();
        assert_eq!(server, &self.history[rev], "server state at {rev}");
        let mut expected = server.clone();
        for pending in self.replica.pending() {
            expected.predict(ME, &pending.input, pending.issued_at_ms);
        }
        assert_eq!(self.replica.visible(), Some(&expected));
    }

    /// Delivers everything until nothing is in flight and nothing is pending.
    fn drain(&mut self) {
        for _ in 0..16 {
            while !self.to_server.is_empty() {
                self.serve();
            }
            self.flush();
            while !self.to_client.is_empty() {
                self.deliver();
            }
            self.check_replica();
            if self.to_server.is_empty() && self.replica.pending().is_empty() {
                return;
            }
        }
        panic!("no quiescence: {:?} pending", self.replica.pending());
    }

    fn check_quiescent(&self) {
        assert_eq!(self.replica.server_rev(), self.room.rev());
        self.room.with_state(|state, _| {
            assert_eq!(self.replica.visible(), Some(state));
            assert_eq!(self.replica.server_state(), Some(state));
        });
        for id in &self.issued {
            let (acked, rejected) = (self.replica.was_acked(id), self.rejected.contains(id));
            assert!(
                acked != rejected,
                "{id}: acked {acked}, rejected {rejected}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_replica_follows_the_room(steps in proptest::collection::vec(step_strategy(), 0..80)) {
        let mut sim = Sim::new();
        for step in &steps {
            sim.run(step);
        }
        sim.drain();
        sim.check_quiescent();
    }
}

/// Whatever bytes arrive, the replica answers with a value, never a panic.
fn mutated(valid: &[u8], at: usize, byte: u8, cut: usize) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    if let Some(b) = bytes.get_mut(at % valid.len().max(1)) {
        *b = byte;
    }
    bytes.truncate(bytes.len() - cut % (bytes.len() + 1));
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_server_message_makes_the_replica_panic(
        which in 0..4usize,
        at in any::<usize>(),
        byte in any::<u8>(),
        cut in 0..8usize,
    ) {
        let op = updated(ME, None, Some(Status::Away));
        let valid = [
            deltas(5, 6, &[(6, op, Some("x"))]),
            snapshot(Dialect::Native, 5, &presence([alice(Status::Online)])),
            encode::gap(Dialect::Native, &crate::room::GapInfo {
                expected_rev: 1, server_rev: 2, buffer_first_rev: 0, resume_from: 2 }, "e"),
            error(ErrorCode::NotFound, "m", json!({"clientReqId": "user-1-1-t", "appliedRev": 3})),
        ];
        let mut replica = replica_at(5);
        replica.update(status(Status::Away), 0);
        let _ = replica.handle_text(&mutated(&valid[which], at, byte, cut), 1);
        let _ = replica.handle_text(&valid[which], 2);
    }
}
