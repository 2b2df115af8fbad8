//! Property test of the room engine against a trivially correct reference: random commits
//! (joins, updates with possibly repeated `clientReqId`s, leaves, server touches) and
//! random reads from random revisions, on rings from capacity 1 up.
//!
//! Checked after every instruction:
//! - each accepted commit moves the revision by exactly one and is the operation the
//!   reference decides (a duplicate returns its first revision and commits nothing);
//!   a rejection is the reference's rejection;
//! - invariant 1 of protocol.md: `since(r)` for `bufferFirstRev <= r <= head` returns
//!   exactly the operations `r+1..=head`, in order, each once, as committed; any other `r`
//!   gets the gap with exactly `protocol.md`'s numbers;
//! - invariant 2: the snapshot at `rev` equals the replay of operations `1..=rev` on the
//!   empty state;
//! - followers that catch up by deltas (or gap and snapshot) always hold the reference
//!   state at their revision.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use deltasync::clock::{Clock, ManualClock};
use deltasync::epoch::Epoch;
use deltasync::model::Model;
use deltasync::model::presence::{Patch, Presence, PresenceInput, PresenceOp, Status};
use deltasync::protocol::decode::OperationRecord;
use deltasync::room::{GapInfo, Origin, Room, RoomConfig};
use proptest::prelude::*;
use serde_json::Value;

const ACTORS: [&str; 4] = ["a", "b", "c", "d"];

#[derive(Debug, Clone)]
enum Step {
    Join(usize),
    Update { actor: usize, status: u8, req: u8 },
    Leave(usize),
    Touch(usize),
    ReadFrom(u64),
    Snapshot,
    Follow(usize),
    Tick,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..ACTORS.len()).prop_map(Step::Join),
        4 => (0..ACTORS.len(), 0u8..3, 0u8..6)
            .prop_map(|(actor, status, req)| Step::Update { actor, status, req }),
        1 => (0..ACTORS.len()).prop_map(Step::Leave),
        2 => (0..ACTORS.len()).prop_map(Step::Touch),
        3 => (0u64..40).prop_map(Step::ReadFrom),
        1 => Just(Step::Snapshot),
        3 => (0usize..3).prop_map(Step::Follow),
        1 => Just(Step::Tick),
    ]
}

/// What the room should have done: every committed operation, in order, and the dedup
/// memory.
struct Reference {
    ops: Vec<PresenceOp>,
    state: Presence,
    applied: HashMap<(String, String), u64>,
}

impl Reference {
    fn state_at(&self, rev: u64) -> Presence {
        let mut state = Presence::default();
        for op in &self.ops[..rev as usize] {
            state.apply(op);
        }
        state
    }

    fn commit(&mut self, op: PresenceOp) -> u64 {
        self.state.apply(&op);
        self.ops.push(op);
        self.ops.len() as u64
    }
}

struct Follower {
    rev: u64,
    state: Presence,
}

struct Harness {
    room: Room<Presence>,
    clock: Arc<ManualClock>,
    reference: Reference,
    followers: Vec<Follower>,
    capacity: u64,
}

fn status(index: u8) -> Status {
    [Status::Online, Status::Away, Status::Offline][usize::from(index)]
}

fn parse_op(bytes: &[u8]) -> OperationRecord<PresenceOp> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Record {
        rev: u64,
        #[serde(rename = "type")]
        kind: String,
        payload: Value,
        #[serde(rename = "clientReqId")]
        client_req_id: Option<String>,
    }
    let record: Record = serde_json::from_slice(bytes).expect("an operation record");
    let op =
        serde_json::from_value(serde_json::json!({"type": record.kind, "payload": record.payload}))
            .expect("a presence operation");
    OperationRecord {
        rev: record.rev,
        op,
        client_req_id: record.client_req_id,
    }
}

impl Harness {
    fn new(capacity: usize) -> Self {
        let clock = Arc::new(ManualClock::new(1000));
        let room = Room::builder("prop", Presence::default())
            .config(RoomConfig::with_ring_capacity(capacity).unwrap())
            .clock(Arc::clone(&clock) as Arc<dyn Clock>)
            .epoch(Epoch::new("e").unwrap())
            .build()
            .unwrap();
        Self {
            room,
            clock,
            reference: Reference {
                ops: Vec::new(),
                state: Presence::default(),
                applied: HashMap::new(),
            },
            followers: (0..3)
                .map(|_| Follower {
                    rev: 0,
                    state: Presence::default(),
                })
                .collect(),
            capacity: capacity as u64,
        }
    }

    /// The operation the room committed at `rev`, read back from the ring.
    fn committed(&self, rev: u64) -> OperationRecord<PresenceOp> {
        let deltas = self
            .room
            .since(rev - 1, None)
            .expect("just committed, so held");
        parse_op(&deltas.operations[0])
    }

    fn run(&mut self, step: &Step) {
        let now = self.clock.now_ms();
        match step {
            Step::Join(actor) => {
                let actor = ACTORS[*actor];
                let expected = self.reference.state.join(actor, actor, now).unwrap();
                let rev = self.room.join(actor, actor).unwrap();
                self.check_commit(rev, expected, None);
            }
            Step::Update {
                actor,
                status: s,
                req,
            } => {
                let actor = ACTORS[*actor];
                let id = format!("req-{req}");
                let input = PresenceInput {
                    patch: Patch {
                        status: Some(status(*s)),
                        ..Patch::default()
                    },
                };
                let result = self.room.submit(actor, &input, Some(&id));
                let key = (actor.to_owned(), id.clone());
                if let Some(&rev) = self.reference.applied.get(&key) {
                    let commit = result.expect("a duplicate is accepted");
                    assert!(commit.duplicate);
                    assert_eq!(commit.rev, rev);
                    assert_eq!(self.room.rev(), self.reference.ops.len() as u64);
                    return;
                }
                match self.reference.state.decide(actor, &input, now) {
                    Ok(op) => {
                        let commit = result.expect("the reference accepts it");
                        assert!(!commit.duplicate);
                        self.check_commit(Some(commit.rev), Some(op), Some(&id));
                        self.reference.applied.insert(key, commit.rev);
                    }
                    Err(rejection) => assert_eq!(result.unwrap_err(), rejection),
                }
            }
            Step::Leave(actor) => {
                let actor = ACTORS[*actor];
                let expected = self.reference.state.leave(actor, now);
                let rev = self.room.leave(actor).unwrap();
                self.check_commit(rev, expected, None);
            }
            Step::Touch(actor) => {
                let op = Presence::touch(ACTORS[*actor], now);
                let expected = self.reference.state.check(&op).map(|()| op.clone());
                match (self.room.commit(op, Origin::SERVER), expected) {
                    (Ok(commit), Ok(op)) => self.check_commit(Some(commit.rev), Some(op), None),
                    (Err(got), Err(want)) => assert_eq!(got, want),
                    (got, want) => panic!("room {got:?}, reference {want:?}"),
                }
            }
            Step::ReadFrom(back) => {
                let head = self.room.rev();
                self.check_since(head.saturating_sub(*back));
                self.check_since(head + 1);
            }
            Step::Snapshot => {
                let snapshot = self.room.snapshot().unwrap();
                let state: Value = serde_json::from_slice(snapshot.state_json()).unwrap();
                let replayed =
                    serde_json::to_value(self.reference.state_at(snapshot.rev())).unwrap();
                assert_eq!(state, replayed, "invariant 2 at rev {}", snapshot.rev());
            }
            Step::Follow(index) => self.follow(*index),
            Step::Tick => self.clock.advance(7),
        }
    }

    /// A commit happened (or not) exactly as the reference says.
    fn check_commit(&mut self, rev: Option<u64>, expected: Option<PresenceOp>, id: Option<&str>) {
        let before = self.reference.ops.len() as u64;
        match (rev, expected) {
            (None, None) => assert_eq!(self.room.rev(), before),
            (Some(rev), Some(op)) => {
                assert_eq!(rev, before + 1, "the revision moves by exactly one");
                let record = self.committed(rev);
                assert_eq!(record.rev, rev);
                assert_eq!(record.op, op);
                assert_eq!(record.client_req_id.as_deref(), id);
                self.reference.commit(op);
            }
            (rev, op) => panic!("room committed {rev:?}, reference expected {op:?}"),
        }
    }

    /// Invariant 1, or the exact gap.
    fn check_since(&self, from: u64) {
        let head = self.reference.ops.len() as u64;
        let buffer_first = head.saturating_sub(self.capacity);
        match self.room.since(from, None) {
            Ok(deltas) => {
                assert!(
                    buffer_first <= from && from <= head,
                    "served {from} outside the ring"
                );
                assert_eq!((deltas.from, deltas.to), (from, head));
                let revs: Vec<u64> = deltas.operations.iter().map(|b| parse_op(b).rev).collect();
                assert_eq!(
                    revs,
                    (from + 1..=head).collect::<Vec<_>>(),
                    "contiguous, each once"
                );
                for bytes in &deltas.operations {
                    let record = parse_op(bytes);
                    assert_eq!(record.op, self.reference.ops[record.rev as usize - 1]);
                }
            }
            Err(gap) => {
                assert!(
                    from < buffer_first || from > head,
                    "a gap for servable {from}"
                );
                assert_eq!(
                    gap,
                    GapInfo {
                        expected_rev: from,
                        server_rev: head,
                        buffer_first_rev: buffer_first,
                        resume_from: head
                    }
                );
            }
        }
    }

    /// A follower catches up the way a session does and must then hold the reference state.
    fn follow(&mut self, index: usize) {
        let follower = &mut self.followers[index];
        match self.room.since(follower.rev, Some("e")) {
            Ok(deltas) => {
                for bytes in &deltas.operations {
                    let record = parse_op(bytes);
                    assert_eq!(record.rev, follower.rev + 1);
                    follower.state.apply(&record.op);
                    follower.rev = record.rev;
                }
            }
            Err(gap) => {
                let snapshot = self.room.snapshot().unwrap();
                assert!(snapshot.rev() >= gap.resume_from);
                follower.state = serde_json::from_slice(snapshot.state_json()).unwrap();
                follower.rev = snapshot.rev();
            }
        }
        let expected = self.reference.state_at(follower.rev);
        assert_eq!(follower.state, expected, "follower at {}", follower.rev);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 4 } else { 256 }, ..ProptestConfig::default() })]

    #[test]
    fn room_matches_the_reference(
        capacity in prop_oneof![Just(1usize), Just(2), Just(3), Just(8), Just(64)],
        steps in proptest::collection::vec(step(), 1..120),
    ) {
        let mut harness = Harness::new(capacity);
        for step in &steps {
            harness.run(step);
        }
        assert_eq!(harness.room.rev(), harness.reference.ops.len() as u64);
        assert_eq!(harness.room.config().ring_capacity, NonZeroUsize::new(capacity).unwrap());
        harness.run(&Step::Snapshot);
        for index in 0..3 {
            harness.follow(index);
        }
    }
}
