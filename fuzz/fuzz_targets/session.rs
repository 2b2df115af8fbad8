//! The session state machine fed arbitrary message sequences, with the protocol's
//! invariants asserted inside.
//!
//! Two or three connections ([`Session`]s) talk to one presence room with a small ring
//! (1 to 8 operations). The input is a structured sequence (the `arbitrary` crate) of
//! `JOIN` / `UPDATE` / `LEAVE` / `HEARTBEAT` / raw bytes / polls / reconnects / closes /
//! clock moves / participant expiry / server commits. Each connection's output goes to a
//! stream checker and to the project's client replica, and the target asserts:
//!
//! - every server message decodes, in the connection's dialect;
//! - invariant 1: per connection, each `SYNC.DELTAS` starts where the stream is (the last
//!   deltas' `toRev` or snapshot's `rev`; or, as the direct answer to a resuming `JOIN`,
//!   at the revision it asked for) and carries exactly `fromRev+1..=toRev`;
//! - invariant 5: `REVISION_GAP` is followed by `SYNC.SNAPSHOT`;
//! - invariant 2: every snapshot equals the replay of every committed operation up to its
//!   revision (the replay is built by a commit listener reading the ring), and every
//!   commit is exactly one revision after the previous one;
//! - invariant 3: every `UPDATE` with a readable `clientReqId` is answered on its
//!   connection exactly once: by its operation in the stream (or a snapshot at or past
//!   it) when it was committed, by an `ERROR` naming it when it was not, never both and
//!   never neither (checked after a final drain); an `appliedRev` notice names the
//!   revision the id was first committed at;
//! - invariant 4: an id is committed at most once per participant, resends included;
//! - at the end every connection is at the head and its replica equals the room.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use deltasync::client::Replica;
use deltasync::clock::ManualClock;
use deltasync::epoch::Epoch;
use deltasync::model::presence::{Presence, PresenceInput};
use deltasync::protocol::decode::{ClientMessage, ServerMessage, decode_client, decode_server};
use deltasync::protocol::{Dialect, encode};
use deltasync::room::{CommitListener, Origin, Room, RoomConfig};
use deltasync::session::{DeltaCache, Session, SessionConfig};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

#[derive(Arbitrary, Debug)]
struct Scenario {
    ring_capacity: u8,
    snapshot_max_lag: u8,
    connections: u8,
    native: [bool; 3],
    burst: u8,
    max_queued_replies: u8,
    idle_s: u8,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Join {
        slot: u8,
        who: u8,
        name: Name,
        resume: Resume,
    },
    Update {
        slot: u8,
        req: u8,
        patch: PatchKind,
        base_rev: Option<u8>,
    },
    Leave {
        slot: u8,
    },
    Heartbeat {
        slot: u8,
    },
    Raw {
        slot: u8,
        bytes: Vec<u8>,
    },
    Poll {
        slot: u8,
    },
    PollAll,
    Reconnect {
        slot: u8,
    },
    Close {
        slot: u8,
    },
    Advance {
        ms: u16,
    },
    Expire {
        ttl_ms: u16,
    },
    ServerTouch,
    ClearCache,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Name {
    Ann,
    Bob,
    Empty,
    Control,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Resume {
    Fresh,
    FromReplica,
    At { rev: u8, wrong_epoch: bool },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum PatchKind {
    Status(u8),
    Name(Name),
    Empty,
    SomeoneElse,
}

impl Name {
    fn text(self) -> &'static str {
        match self {
            Name::Ann => "Ann",
            Name::Bob => "Bob",
            Name::Empty => " ",
            Name::Control => "a\u{7}",
        }
    }
}

fuzz_target!(|scenario: Scenario| {
    let mut harness = Harness::new(&scenario);
    for step in scenario.steps.iter().take(256) {
        harness.step(step);
    }
    harness.finish();
});

/// The replay of every commit, built by reading each operation from the ring as it is
/// committed (the session and the listener run on one thread, so the ring still holds it).
#[derive(Default)]
struct CommitLog {
    room: OnceLock<Weak<Room<Presence>>>,
    inner: Mutex<LogInner>,
}

#[derive(Default)]
struct LogInner {
    /// The state at each revision, from 0.
    states: Vec<Presence>,
    /// The `clientReqId` of the last operation committed.
    last_client_req_id: Option<String>,
}

impl CommitListener for CommitLog {
    fn committed(&self, _room: &str, rev: u64) {
        let room = self.room.get().and_then(Weak::upgrade).expect("the room");
        let mut inner = self.inner.lock().unwrap();
        assert_eq!(
            rev,
            inner.states.len() as u64,
            "a commit is exactly one revision after the previous one"
        );
        let deltas = room
            .since(rev - 1, None)
            .expect("the ring holds the operation just committed");
        assert_eq!((deltas.from, deltas.to), (rev - 1, rev));
        let message = encode::deltas(deltas.from, deltas.to, &deltas.operations);
        let Ok(ServerMessage::Deltas { operations, .. }) = decode_server::<Presence>(&message)
        else {
            panic!("a committed operation decodes: {message:?}");
        };
        let [record] = operations.as_slice() else {
            panic!("one operation per commit");
        };
        assert_eq!(record.rev, rev);
        let mut state = inner.states.last().expect("state 0").clone();
        deltasync::model::Model::apply(&mut state, &record.op);
        inner.states.push(state);
        inner.last_client_req_id = record.client_req_id.clone();
    }
}

impl CommitLog {
    fn state_at(&self, rev: u64) -> Presence {
        self.inner.lock().unwrap().states[rev as usize].clone()
    }

    fn last_client_req_id(&self) -> Option<String> {
        self.inner.lock().unwrap().last_client_req_id.clone()
    }
}

/// What an `UPDATE` sent on a connection is owed.
#[derive(Debug, Clone)]
struct Obligation {
    id: String,
    expect: Expect,
    /// The message, resent on the next connection if this one goes first.
    message: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Committed now at this revision: its operation (or a snapshot at or past it).
    Op(u64),
    /// Not committed, and never before: an `ERROR` naming it.
    Error,
    /// A resend of an id committed at this revision: an `ERROR` (the "already applied"
    /// notice carries that revision) or the operation still to come.
    ErrorOrOp(u64),
}

/// Invariants 1 and 5 on one connection's stream.
#[derive(Debug, Default)]
struct StreamCheck {
    rev: Option<u64>,
    awaiting_snapshot: bool,
    /// The revision a resuming `JOIN` asked for: its answer (the next message) may start
    /// there rather than where the stream is.
    resume: Option<u64>,
}

struct Connection {
    session: Session<Presence>,
    stream: StreamCheck,
    obligations: Vec<Obligation>,
}

struct Slot {
    participant: String,
    name: &'static str,
    dialect: Dialect,
    connection: Option<Connection>,
    /// The client's copy of the room: it outlives connections, as a client's does.
    replica: Replica<Presence>,
    /// The replica refused the answer to a resume from elsewhere and has not resumed
    /// since: it may refuse the stream's next messages too.
    desynced: bool,
    resend: Vec<Bytes>,
}

struct Harness {
    room: Arc<Room<Presence>>,
    log: Arc<CommitLog>,
    clock: Arc<ManualClock>,
    config: SessionConfig,
    origin: Instant,
    elapsed: Duration,
    cache: DeltaCache,
    slots: Vec<Slot>,
    /// Every `(participant, clientReqId)` committed, and its revision.
    ledger: HashMap<(String, String), u64>,
    /// How deep `send` → `poll` → rejoin → `send` may go.
    depth: u32,
}

impl Harness {
    fn new(scenario: &Scenario) -> Self {
        let clock = Arc::new(ManualClock::new(1000));
        let mut room_config =
            RoomConfig::with_ring_capacity(1 + usize::from(scenario.ring_capacity % 8))
                .expect("capacity");
        room_config.snapshot_max_lag = u64::from(scenario.snapshot_max_lag % 4);
        let room = Arc::new(
            Room::builder("fuzz", Presence::default())
                .config(room_config)
                .clock(Arc::clone(&clock) as _)
                .epoch(Epoch::new("epoch-a").expect("epoch"))
                .build()
                .expect("room"),
        );
        let log = Arc::new(CommitLog::default());
        let _ = log.room.set(Arc::downgrade(&room));
        log.inner.lock().unwrap().states.push(Presence::default());
        room.subscribe(Arc::clone(&log) as _);
        let mut config = SessionConfig::default();
        config.message_burst = 1 + u32::from(scenario.burst);
        config.messages_per_second = config.message_burst;
        config.max_queued_replies = 2 + usize::from(scenario.max_queued_replies % 64);
        config.idle_timeout = Duration::from_secs(1 + u64::from(scenario.idle_s % 60));
        let count = 2 + usize::from(scenario.connections % 2);
        let slots = (0..count)
            .map(|i| Slot {
                participant: format!("p{i}"),
                name: "Ann",
                dialect: if scenario.native[i] {
                    Dialect::Native
                } else {
                    Dialect::WsKit
                },
                connection: None,
                replica: Replica::with_id_suffix("observer", "fuzz"),
                desynced: false,
                resend: Vec::new(),
            })
            .collect();
        Self {
            room,
            log,
            clock,
            config,
            origin: Instant::now(),
            elapsed: Duration::ZERO,
            cache: DeltaCache::new(),
            slots,
            ledger: HashMap::new(),
            depth: 0,
        }
    }

    fn now(&self) -> Instant {
        self.origin + self.elapsed
    }

    fn slot(&self, slot: u8) -> usize {
        usize::from(slot) % self.slots.len()
    }

    fn step(&mut self, step: &Step) {
        match *step {
            Step::Join {
                slot,
                who,
                name,
                resume,
            } => {
                let s = self.slot(slot);
                let participant = format!("p{}", who % 4);
                let rev_epoch = match resume {
                    Resume::Fresh => None,
                    Resume::FromReplica => self.slots[s].replica.server_state().map(|_| {
                        let replica = &self.slots[s].replica;
                        (
                            replica.server_rev(),
                            replica.epoch().map(|e| e.as_str().to_owned()),
                        )
                    }),
                    Resume::At { rev, wrong_epoch } => {
                        Some((u64::from(rev), wrong_epoch.then(|| "epoch-b".to_owned())))
                    }
                };
                let mut payload = json!({"participantId": participant, "name": name.text()});
                if let Some((rev, epoch)) = rev_epoch {
                    payload["rev"] = json!(rev);
                    if let Some(epoch) = epoch {
                        payload["epoch"] = json!(epoch);
                    }
                }
                let text = json!({"type": "JOIN", "payload": payload}).to_string();
                self.send(s, text.as_bytes());
            }
            Step::Update {
                slot,
                req,
                patch,
                base_rev,
            } => {
                let s = self.slot(slot);
                self.connect(s);
                let actor = self.session(s).participant().unwrap_or("anon").to_owned();
                let patch = match patch {
                    PatchKind::Status(n) => {
                        let status = ["online", "away", "offline"][usize::from(n % 3)];
                        json!({ "status": status })
                    }
                    PatchKind::Name(name) => json!({"name": name.text()}),
                    PatchKind::Empty => json!({}),
                    PatchKind::SomeoneElse => json!({"id": "p9", "status": "away"}),
                };
                let mut payload =
                    json!({"patch": patch, "clientReqId": format!("{actor}-r{}", req % 6)});
                if let Some(base_rev) = base_rev {
                    payload["baseRev"] = json!(base_rev);
                }
                let text = json!({"type": "UPDATE", "payload": payload}).to_string();
                self.send(s, text.as_bytes());
            }
            Step::Leave { slot } => self.send(self.slot(slot), br#"{"type":"LEAVE"}"#),
            Step::Heartbeat { slot } => self.send(self.slot(slot), br#"{"type":"HEARTBEAT"}"#),
            Step::Raw { slot, ref bytes } => self.send(self.slot(slot), bytes),
            Step::Poll { slot } => self.poll(self.slot(slot)),
            Step::PollAll => (0..self.slots.len()).for_each(|s| self.poll(s)),
            Step::Reconnect { slot } => {
                let s = self.slot(slot);
                self.close(s);
                self.connect(s);
            }
            Step::Close { slot } => self.close(self.slot(slot)),
            Step::Advance { ms } => {
                self.clock.advance(u64::from(ms));
                self.elapsed += Duration::from_millis(u64::from(ms));
                let now = self.now();
                for s in 0..self.slots.len() {
                    let timed_out = self.slots[s]
                        .connection
                        .as_mut()
                        .is_some_and(|c| c.session.handle_timeout(now).is_some());
                    if timed_out {
                        self.close(s);
                    }
                }
            }
            Step::Expire { ttl_ms } => {
                self.room
                    .expire_detached(u64::from(ttl_ms))
                    .expect("leaves encode");
            }
            Step::ServerTouch => {
                let head = self.room.rev();
                let first = self
                    .log
                    .state_at(head)
                    .participants()
                    .keys()
                    .next()
                    .cloned();
                if let Some(id) = first {
                    let op = Presence::touch(&id, self.room.now_ms());
                    let commit = self
                        .room
                        .commit(op, Origin::SERVER)
                        .expect("a touch commits");
                    assert_eq!(commit.rev, head + 1);
                }
            }
            Step::ClearCache => self.cache.clear(),
        }
    }

    fn session(&self, s: usize) -> &Session<Presence> {
        &self.slots[s]
            .connection
            .as_ref()
            .expect("connected")
            .session
    }

    /// Opens a connection on slot `s` if it has none: a `JOIN` (resuming from the
    /// replica's revision once it has a state), then every update still unanswered.
    fn connect(&mut self, s: usize) {
        if self.slots[s].connection.is_some() {
            return;
        }
        let slot = &mut self.slots[s];
        let session = Session::new(
            Arc::clone(&self.room),
            slot.dialect,
            self.config.clone(),
            self.origin + self.elapsed,
        );
        slot.connection = Some(Connection {
            session,
            stream: StreamCheck::default(),
            obligations: Vec::new(),
        });
        let join = slot
            .replica
            .join_message(&slot.participant, slot.name, slot.dialect);
        let resend = std::mem::take(&mut slot.resend);
        self.send(s, &join);
        for message in resend {
            self.send(s, &message);
        }
    }

    /// Ends slot `s`'s connection as the server would: what is due goes out, then the
    /// session closes. Unanswered updates are resent on the next connection.
    fn close(&mut self, s: usize) {
        if self.slots[s].connection.is_none() {
            return;
        }
        self.poll(s);
        let slot = &mut self.slots[s];
        if let Some(mut connection) = slot.connection.take() {
            connection.session.close();
            slot.resend
                .extend(connection.obligations.into_iter().map(|o| o.message));
            slot.replica.disconnected();
        }
    }

    fn send(&mut self, s: usize, text: &[u8]) {
        self.connect(s);
        let decoded = decode_client::<PresenceInput>(text, &self.config.decode);
        let join_rev = match &decoded {
            Ok(envelope) => match &envelope.message {
                ClientMessage::Join { rev, .. } => Some(*rev),
                _ => None,
            },
            Err(_) => None,
        };
        if join_rev.is_some() {
            // The answer to a JOIN is then the first message of the next poll. (A resume
            // the poll makes may close the connection: then it opens again.)
            self.poll(s);
            self.connect(s);
        }
        let now = self.now();
        let rev_before = self.room.rev();
        let connection = self.slots[s].connection.as_mut().expect("connected");
        let participant = connection.session.participant().map(str::to_owned);
        connection.session.handle_message(text, now);
        let rev_after = self.room.rev();
        assert!(
            rev_after <= rev_before + 1,
            "one message committed {} operations",
            rev_after - rev_before
        );
        if let Some(p) = connection.session.participant() {
            self.slots[s].participant = p.to_owned();
        }
        let id = match &decoded {
            Ok(envelope) => match &envelope.message {
                ClientMessage::Update { client_req_id, .. } => Some(client_req_id.clone()),
                _ => None,
            },
            Err(error) => error.client_req_id.clone(),
        };
        if let Some(id) = id {
            let expect = if rev_after > rev_before {
                assert_eq!(
                    self.log.last_client_req_id().as_deref(),
                    Some(id.as_str()),
                    "the operation an UPDATE committed carries its id"
                );
                let actor = participant.expect("only a joined connection commits an update");
                let earlier = self.ledger.insert((actor, id.clone()), rev_after);
                assert_eq!(earlier, None, "{id:?} applied twice (invariant 4)");
                Expect::Op(rev_after)
            } else {
                match participant.and_then(|p| self.ledger.get(&(p, id.clone()))) {
                    Some(&rev) => Expect::ErrorOrOp(rev),
                    None => Expect::Error,
                }
            };
            let connection = self.slots[s].connection.as_mut().expect("connected");
            connection.obligations.push(Obligation {
                id,
                expect,
                message: Bytes::copy_from_slice(text),
            });
        }
        if let Some(rev) = join_rev {
            let connection = self.slots[s].connection.as_mut().expect("connected");
            connection.stream.resume = rev;
            self.poll(s);
            if let Some(connection) = self.slots[s].connection.as_mut() {
                connection.stream.resume = None;
            }
        }
        let closing = self.slots[s]
            .connection
            .as_ref()
            .is_some_and(|c| c.session.close_reason().is_some());
        if closing {
            self.close(s);
        }
    }

    fn poll(&mut self, s: usize) {
        let Some(connection) = self.slots[s].connection.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        let count = connection.session.poll_transmit(&mut self.cache, &mut out);
        assert_eq!(count, out.len());
        assert!(
            !connection.session.wants_transmit(),
            "nothing is due right after a poll"
        );
        for message in out {
            self.receive(s, &message);
        }
        let slot = &self.slots[s];
        if slot.replica.needs_resume() && slot.connection.is_some() && self.depth < 8 {
            // What the connector does after refusing deltas: resume on this connection.
            let join = slot
                .replica
                .join_message(&slot.participant, slot.name, slot.dialect);
            self.depth += 1;
            self.send(s, &join);
            self.depth -= 1;
        }
    }

    fn receive(&mut self, s: usize, bytes: &[u8]) {
        let message = decode_server::<Presence>(bytes).unwrap_or_else(|e| {
            panic!(
                "the server sent what does not decode: {e}: {}",
                String::from_utf8_lossy(bytes)
            )
        });
        let dialect = self.slots[s].dialect;
        let epoch = self.room.epoch().clone();
        let connection = self.slots[s].connection.as_mut().expect("connected");
        let resume = connection.stream.resume.take();
        let mut reset = false;
        let stream = &mut connection.stream;
        if !matches!(message, ServerMessage::Snapshot { .. }) {
            assert!(
                !stream.awaiting_snapshot,
                "invariant 5: {} after REVISION_GAP",
                String::from_utf8_lossy(bytes)
            );
        }
        match &message {
            ServerMessage::Snapshot {
                rev,
                epoch: sent,
                state,
            } => {
                assert_eq!(sent.is_some(), dialect == Dialect::Native);
                if let Some(sent) = sent {
                    assert_eq!(sent, &epoch);
                }
                assert_eq!(
                    *state,
                    self.log.state_at(*rev),
                    "invariant 2: the snapshot at {rev} is not the replay"
                );
                stream.awaiting_snapshot = false;
                stream.rev = Some(*rev);
                let rev = *rev;
                connection.obligations.retain(|o| match o.expect {
                    Expect::Op(r) | Expect::ErrorOrOp(r) => r > rev,
                    Expect::Error => true,
                });
            }
            ServerMessage::Deltas {
                from,
                to,
                operations,
            } => {
                let start = resume.or(stream.rev);
                assert_eq!(
                    Some(*from),
                    start,
                    "invariant 1: SYNC.DELTAS from {from} on a stream at {:?}",
                    stream.rev
                );
                reset = resume.is_some();
                let revs: Vec<u64> = operations.iter().map(|o| o.rev).collect();
                assert_eq!(revs, (from + 1..=*to).collect::<Vec<_>>(), "invariant 1");
                stream.rev = Some(*to);
                for record in operations {
                    let Some(id) = &record.client_req_id else {
                        continue;
                    };
                    connection.obligations.retain(|o| {
                        if &o.id != id {
                            return true;
                        }
                        // Another participant's operation may carry the same id: only the
                        // revision the id was committed at settles it.
                        match o.expect {
                            Expect::Op(r) | Expect::ErrorOrOp(r) => r != record.rev,
                            Expect::Error => true,
                        }
                    });
                }
            }
            ServerMessage::Gap { info, epoch: sent } => {
                assert_eq!(sent.is_some(), dialect == Dialect::Native);
                let expected = resume.or(stream.rev);
                assert_eq!(
                    Some(info.expected_rev),
                    expected,
                    "the gap names the stream's revision"
                );
                assert_eq!(info.resume_from, info.server_rev);
                assert!(info.buffer_first_rev <= info.server_rev);
                stream.awaiting_snapshot = true;
            }
            ServerMessage::Error { details, .. } => {
                let named = details
                    .as_ref()
                    .and_then(|d| d.get("clientReqId"))
                    .and_then(Value::as_str);
                if let Some(id) = named {
                    let applied = details
                        .as_ref()
                        .and_then(|d| d.get("appliedRev"))
                        .and_then(Value::as_u64);
                    let index = connection
                        .obligations
                        .iter()
                        .position(|o| o.id == id && !matches!(o.expect, Expect::Op(_)))
                        .unwrap_or_else(|| {
                            panic!(
                                "invariant 3: an ERROR names {id:?}, which nothing on this connection waits an error for: {}",
                                String::from_utf8_lossy(bytes)
                            )
                        });
                    let obligation = connection.obligations.remove(index);
                    if let Some(applied) = applied {
                        assert_eq!(
                            obligation.expect,
                            Expect::ErrorOrOp(applied),
                            "the appliedRev of {id:?}"
                        );
                    }
                }
            }
            other => panic!("a server message the target does not know: {other:?}"),
        }
        let slot = &mut self.slots[s];
        let replica_rev = slot.replica.server_rev();
        match slot.replica.handle_text(bytes, 0) {
            Ok(_) => slot.desynced = slot.replica.needs_resume(),
            Err(error) => {
                // Only the answer to a resume from elsewhere than the replica's revision
                // may be refused; the replica then resumes (see `poll`), and until that
                // resume is answered (it may be refused by the rate limit) the stream is
                // ahead of the replica, which refuses what follows too.
                let from = match &message {
                    ServerMessage::Deltas { from, .. } => Some(*from),
                    _ => None,
                };
                assert!(
                    slot.desynced || reset && from != Some(replica_rev),
                    "the replica refused {}: {error}",
                    String::from_utf8_lossy(bytes)
                );
                slot.desynced = true;
            }
        }
    }

    /// Drains every connection, then checks that nothing is left unanswered and that
    /// every connection is at the head with its replica equal to the room.
    fn finish(&mut self) {
        for _ in 0..16 {
            // Time passes between rounds, as it would for a client told to retry later: a
            // resume refused by the rate limit goes through in a later round.
            self.elapsed += Duration::from_secs(2);
            for s in 0..self.slots.len() {
                self.poll(s);
            }
            let busy = self.slots.iter().any(|slot| {
                slot.connection
                    .as_ref()
                    .is_some_and(|c| c.session.wants_transmit())
                    || slot.replica.needs_resume() && slot.connection.is_some()
            });
            if !busy {
                break;
            }
        }
        let head = self.room.rev();
        let state = self.log.state_at(head);
        for slot in &self.slots {
            let Some(connection) = &slot.connection else {
                continue;
            };
            assert!(
                connection.obligations.is_empty(),
                "invariant 3: unanswered {:?}",
                connection.obligations
            );
            if connection.stream.rev.is_some() {
                assert_eq!(connection.stream.rev, Some(head), "a connection is behind");
                assert_eq!(connection.session.last_sent_rev(), Some(head));
                assert_eq!(slot.replica.server_rev(), head);
                assert_eq!(
                    slot.replica.server_state(),
                    Some(&state),
                    "a replica differs"
                );
            }
        }
    }
}
