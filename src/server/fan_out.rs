//! A bounded share of a turn for a room's fan-out.
//!
//! When a room moved, every connection of it on the shard is to be flushed: a write
//! system call each, about 20 µs on loopback, where the kernel does the receiver's TCP
//! work inside the sender's call. Written all in one turn, a room of a few hundred
//! connections holds the shard for milliseconds, and every other client of the shard (in
//! that room or another) whose message arrives meanwhile waits for all of it
//! (`deltasync soak --bad-actors`, phase `byte-frames`: turns of up to 1.6 ms, each about
//! 13 `writev`s).
//!
//! So the shard queues the connections to flush here and writes at most
//! [`FLUSHES_PER_TURN`] per turn; while some wait, its next poll does not sleep, so the
//! events that came meanwhile are handled between two shares. Nothing is lost by the
//! wait: a connection's flush brings it to its room's head at that moment (pull, not
//! queue), and a connection flushed twice (queued again by a later move of its room)
//! finds nothing due the second time. A key may name a connection that is gone (or a new
//! one under a reused key): flushing it only writes what it is due.

use std::collections::VecDeque;

/// How many connections the fan-out writes per turn at most: a client of the shard
/// waits for at most this many writes (a few hundred microseconds) before its own
/// message is read. Not a configuration key: a larger share only delays other clients,
/// and the whole fan-out costs the same (one `epoll_wait` without waiting per share).
pub(super) const FLUSHES_PER_TURN: usize = 16;

/// The connections waiting for their share of a turn, first come first flushed.
#[derive(Debug, Default)]
pub(super) struct FanOut {
    keys: VecDeque<usize>,
}

impl FanOut {
    /// Queues the connections of a room that moved.
    pub(super) fn queue(&mut self, keys: &[usize]) {
        self.keys.extend(keys.iter().copied());
    }

    /// Whether connections wait to be flushed.
    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Moves this turn's share (at most [`FLUSHES_PER_TURN`], oldest first) to `out`.
    pub(super) fn take_share(&mut self, out: &mut Vec<usize>) {
        let share = self.keys.len().min(FLUSHES_PER_TURN);
        out.extend(self.keys.drain(..share));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_room_is_flushed_in_shares_in_order() {
        let mut fan_out = FanOut::default();
        let room: Vec<usize> = (0..40).collect();
        fan_out.queue(&room);
        let mut shares = Vec::new();
        while !fan_out.is_empty() {
            let mut share = Vec::new();
            fan_out.take_share(&mut share);
            shares.push(share);
        }
        assert_eq!(
            shares,
            vec![
                (0..16).collect(),
                (16..32).collect(),
                (32..40).collect::<Vec<_>>()
            ]
        );
    }

    #[test]
    fn a_room_queued_while_another_waits_comes_after_it() {
        let mut fan_out = FanOut::default();
        fan_out.queue(&(0..20).collect::<Vec<_>>());
        let mut share = Vec::new();
        fan_out.take_share(&mut share);
        fan_out.queue(&[100, 101]);
        share.clear();
        fan_out.take_share(&mut share);
        assert_eq!(share, vec![16, 17, 18, 19, 100, 101]);
        assert!(fan_out.is_empty());
        // A small room goes out in one share.
        fan_out.queue(&[7, 8, 9]);
        share.clear();
        fan_out.take_share(&mut share);
        assert_eq!(share, vec![7, 8, 9]);
    }
}
