//! Loom model of the rejection log (`room::inputs::RejectionLog`) as the server uses it:
//! the room's owner rejects forwarded inputs while a shard flushes the participant's
//! connection.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --lib --release`.
//!
//! Each rejection reaches its participant once, in order: when the shard stops, its
//! session has picked up every rejection, or a wake-up is pending. The session's side is
//! `Session::poll_rejections`: read the log's number, and when it moved, take what is new
//! for the actor under the log's lock.

use bytes::Bytes;
use loom::sync::Arc;
use loom::thread;

use super::loom_room::{Counter, counter_room};
use super::loom_wake::Shard;
use crate::model::Rejection;
use crate::room::{ClientInput, FlushPolicy, Room};

fn input(actor: &str, id: &str) -> ClientInput<u8> {
    ClientInput {
        actor: actor.into(),
        client_req_id: id.into(),
        base_rev: None,
        input: 0,
    }
}

/// A session's view of the log, as `Session::poll_rejections` keeps it.
struct Session {
    actor: &'static str,
    seen: u64,
    received: Vec<Bytes>,
}

impl Session {
    fn poll_rejections(&mut self, room: &Room<Counter>) {
        let seq = room.rejection_seq();
        if seq != self.seen {
            self.seen = room.rejections_for(self.actor, self.seen, &mut self.received);
        }
    }
}

#[test]
fn each_rejection_reaches_its_participant_once_in_order() {
    loom::model(|| {
        let room = Arc::new(counter_room(2, FlushPolicy::Immediate));
        let shard = Shard::on(&room);
        let owner = {
            let room = Arc::clone(&room);
            thread::spawn(move || {
                let no = Rejection::precondition("no");
                room.reject(&input("a", "r1"), &no);
                room.reject(&input("b", "r2"), &no);
                room.reject(&input("a", "r3"), &no);
            })
        };
        let mut session = Session {
            actor: "a",
            seen: room.rejection_seq(),
            received: Vec::new(),
        };
        // Three rejections make at most three wake-ups.
        shard.run(4, || session.poll_rejections(&room));
        owner.join().unwrap();
        let mut all = Vec::new();
        assert_eq!(room.rejections_for("a", 0, &mut all), 3);
        assert_eq!(all.len(), 2);
        assert!(
            session.received.len() == 2 || shard.waker.poll(),
            "lost wake-up: {} of 2 rejections picked up and the shard sleeps",
            session.received.len()
        );
        assert_eq!(session.received, all[..session.received.len()]);
    });
}
