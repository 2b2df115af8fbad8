//! Loom model of a shard's wake-up (`ShardWake`): a flag, so that a burst of commits wakes
//! the shard once, in front of its poll's waker.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --lib --release`.
//!
//! No lost wake-up: whatever a commit's wake-up and the shard's turns race, when the shard
//! stops (its poll finds no wake-up) it has seen the last published revision, or a
//! wake-up is still pending, so its poll returns and it takes another turn. The waker is
//! loom's stand-in from `crate::sync`, which orders nothing: what the shard sees after a
//! wake-up is ordered by the flag alone.

use loom::sync::Arc;
use loom::thread;

use super::loom_room::{Counter, CounterOp, counter_room};
use crate::room::{CommitListener, FlushPolicy, Origin, Room};
use crate::server::ShardWake;
use crate::sync::Waker;

/// The commit listener a server installs (`Wakers`), for one shard.
pub(super) struct WakeOnCommit(pub(super) std::sync::Arc<ShardWake>);

impl CommitListener for WakeOnCommit {
    fn committed(&self, _room: &str, _rev: u64) {
        self.0.wake();
    }
}

/// A shard, its wake-up and the waker's handle for the shard's poll.
pub(super) struct Shard {
    pub(super) wake: std::sync::Arc<ShardWake>,
    pub(super) waker: Waker,
}

impl Shard {
    /// A shard listening to `room`'s commits.
    pub(super) fn on(room: &Room<Counter>) -> Self {
        let waker = Waker::for_model();
        let wake = std::sync::Arc::new(ShardWake::new(waker.clone()));
        room.subscribe(std::sync::Arc::new(WakeOnCommit(std::sync::Arc::clone(
            &wake,
        ))));
        Self { wake, waker }
    }

    /// The shard's loop: a first turn, then one more per wake-up its poll finds (up to
    /// `turns` in all). Each turn takes the flag, then runs `turn` (looks at the rooms).
    pub(super) fn run(&self, turns: usize, mut turn: impl FnMut()) {
        for n in 0..turns {
            if n > 0 && !self.waker.poll() {
                return;
            }
            self.wake.take();
            turn();
        }
    }
}

#[test]
fn a_commit_after_the_shard_took_its_flag_wakes_it_or_is_seen() {
    loom::model(|| {
        let room = Arc::new(counter_room(2, FlushPolicy::Immediate));
        let shard = Shard::on(&room);
        let committer = {
            let room = Arc::clone(&room);
            thread::spawn(move || {
                // Two commits: the second finds the flag still set or the shard's take.
                for _ in 0..2 {
                    room.commit(CounterOp::Add, Origin::SERVER).unwrap();
                }
            })
        };
        let mut seen = 0;
        // Two commits make at most two wake-ups: three turns are enough.
        shard.run(3, || seen = room.published_rev());
        committer.join().unwrap();
        assert!(
            seen == 2 || shard.waker.poll(),
            "lost wake-up: the shard saw revision {seen} of 2 and sleeps"
        );
    });
}
