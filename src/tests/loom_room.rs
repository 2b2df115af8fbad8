//! Loom models of the room's lock-free read side: the published revision and `since`, and
//! the snapshot's double-checked publish.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --lib --release`.
//!
//! - A reader that sees a revision published (`published_rev`, either policy) is served
//!   the operations up to it by `since`, each exactly, never a gap: the publish is ordered
//!   after the ring's append (`Release` in `Room::publish`, `Acquire` in `published_rev`).
//! - Readers asking for a snapshot while a writer commits get one at least as new as the
//!   head they saw, holding the state of its own revision, and each revision is encoded at
//!   most once (the re-check under `snapshot_encoding`; the published snapshot is read
//!   lock-free through the `ArcSwap` stand-in of `crate::sync`).

use bytes::Bytes;
use loom::sync::Arc;
use loom::thread;
use serde::{Deserialize, Serialize};

use crate::clock::ManualClock;
use crate::epoch::Epoch;
use crate::model::{Model, Rejection};
use crate::room::{FlushPolicy, Origin, Room, RoomConfig};

/// A state whose revision can be read off it: every operation adds one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Counter {
    n: u64,
}

/// The counter's one operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub(super) enum CounterOp {
    #[serde(rename = "add")]
    Add,
}

impl Model for Counter {
    type Op = CounterOp;
    type Input = u8;

    fn decide(&self, _: &str, _: &u8, _: u64) -> Result<CounterOp, Rejection> {
        Ok(CounterOp::Add)
    }

    fn check(&self, _: &CounterOp) -> Result<(), Rejection> {
        Ok(())
    }

    fn apply(&mut self, CounterOp::Add: &CounterOp) {
        self.n += 1;
    }
}

/// A counter room with a ring of `capacity`, a fixed epoch and clock (no entropy drawn in
/// every one of loom's executions).
pub(super) fn counter_room(capacity: usize, flush: FlushPolicy) -> Room<Counter> {
    let epoch = Epoch::new("0123456789abcdef0123456789abcdef").unwrap();
    Room::builder("loom", Counter::default())
        .config(RoomConfig::with_ring_capacity(capacity).unwrap())
        .flush_policy(flush)
        .clock(std::sync::Arc::new(ManualClock::new(0)))
        .epoch(epoch)
        .build()
        .unwrap()
}

/// How the ring encodes the counter's operation at `rev`.
fn op(rev: u64) -> Bytes {
    Bytes::from(format!(r#"{{"rev":{rev},"type":"add"}}"#))
}

/// Reads the published revision, then asks for everything since 0: it must be served,
/// up to at least that revision, with exactly the operations committed.
fn read_published(room: &Room<Counter>) {
    let published = room.published_rev();
    let deltas = match room.since(0, None) {
        Ok(deltas) => deltas,
        Err(gap) => panic!("since(0) after seeing revision {published} published: {gap:?}"),
    };
    assert!(deltas.to >= published, "{} < {published}", deltas.to);
    let expected: Vec<Bytes> = (1..=deltas.to).map(op).collect();
    assert_eq!(deltas.operations, expected);
}

#[test]
fn a_published_revision_is_served_by_since_immediate() {
    loom::model(|| {
        // Capacity 2 and two commits: the ring always holds everything since 0.
        let room = Arc::new(counter_room(2, FlushPolicy::Immediate));
        let writer = {
            let room = Arc::clone(&room);
            thread::spawn(move || {
                for rev in 1..=2 {
                    assert_eq!(
                        room.commit(CounterOp::Add, Origin::SERVER).unwrap().rev,
                        rev
                    );
                }
            })
        };
        read_published(&room);
        writer.join().unwrap();
        assert_eq!(room.published_rev(), 2);
    });
}

#[test]
fn a_published_revision_is_served_by_since_tick() {
    loom::model(|| {
        // The writer commits, another thread flushes (the flusher's Acquire of the head
        // is what orders the append before its publish), the main thread reads.
        let room = Arc::new(counter_room(2, FlushPolicy::Tick));
        let writer = {
            let room = Arc::clone(&room);
            thread::spawn(move || {
                room.commit(CounterOp::Add, Origin::SERVER).unwrap();
            })
        };
        let flusher = {
            let room = Arc::clone(&room);
            thread::spawn(move || {
                room.flush();
            })
        };
        read_published(&room);
        writer.join().unwrap();
        flusher.join().unwrap();
        assert!(room.published_rev() <= 1);
    });
}

/// Takes a snapshot and checks it against the head seen just before asking.
fn snapshot_and_check(room: &Room<Counter>) {
    let head = room.rev();
    let snapshot = room.snapshot().unwrap();
    assert!(snapshot.rev() >= head, "stale: {} < {head}", snapshot.rev());
    let state = format!(r#"{{"n":{}}}"#, snapshot.rev());
    assert_eq!(snapshot.state_json(), state.as_bytes());
}

#[test]
fn concurrent_snapshots_are_fresh_and_encoded_once_per_revision() {
    loom::model(|| {
        let room = Arc::new(counter_room(2, FlushPolicy::Immediate));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let room = Arc::clone(&room);
                thread::spawn(move || snapshot_and_check(&room))
            })
            .collect();
        room.commit(CounterOp::Add, Origin::SERVER).unwrap();
        for reader in readers {
            reader.join().unwrap();
        }
        // One encoding when the room was built, at most one more for revision 1 however
        // the two readers raced.
        assert!(
            room.snapshots_encoded() <= 2,
            "{} encodings",
            room.snapshots_encoded()
        );
    });
}
