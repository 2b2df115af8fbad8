//! Client inputs waiting for the room's owner, and the rejections it sends back.

use bytes::Bytes;
use std::collections::VecDeque;

use crate::sync::{AtomicU64, Mutex, Ordering};

/// A client's `UPDATE`, forwarded to the room's owner.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientInput<I> {
    /// The participant whose connection sent it.
    pub actor: String,
    /// The client's id for it: commit with it in the [`Origin`](super::Origin) to
    /// acknowledge it, or name it in [`Room::reject`](super::Room::reject).
    pub client_req_id: String,
    /// The revision the client saw when it made the input.
    pub base_rev: Option<u64>,
    /// The input itself.
    pub input: I,
}

/// The input queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct QueueFull;

/// A bounded queue of inputs.
pub(super) struct InputQueue<I> {
    queue: Mutex<VecDeque<ClientInput<I>>>,
    capacity: usize,
}

impl<I> InputQueue<I> {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            capacity,
        }
    }

    pub(super) fn push(&self, input: ClientInput<I>) -> Result<(), QueueFull> {
        let mut queue = self.queue.lock();
        if queue.len() >= self.capacity {
            return Err(QueueFull);
        }
        queue.push_back(input);
        Ok(())
    }

    pub(super) fn drain_into(&self, out: &mut Vec<ClientInput<I>>) {
        out.extend(self.queue.lock().drain(..));
    }
}

/// The last rejections the owner sent, each an encoded `ERROR` for one actor. Sessions
/// keep the sequence number they have seen and pick up what is new for their actor.
pub(super) struct RejectionLog {
    entries: Mutex<VecDeque<(u64, Box<str>, Bytes)>>,
    seq: AtomicU64,
    capacity: usize,
}

impl RejectionLog {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(VecDeque::new()),
            seq: AtomicU64::new(0),
            capacity,
        }
    }

    /// The sequence number of the newest rejection (0 before any).
    pub(super) fn seq(&self) -> u64 {
        // Relaxed: the number only says "look"; the entries are read under the lock, and
        // a shard that sees an old number is woken again, the wake-up flag ordering the
        // push before its next look (`ShardWake`; `src/tests/loom_rejections.rs`).
        self.seq.load(Ordering::Relaxed)
    }

    pub(super) fn push(&self, actor: &str, message: Bytes) {
        let mut entries = self.entries.lock();
        let seq = self.seq.load(Ordering::Relaxed) + 1;
        if entries.len() >= self.capacity {
            entries.pop_front();
        }
        entries.push_back((seq, actor.into(), message));
        // Relaxed: see `seq`; written under the lock, so numbers never go down.
        self.seq.store(seq, Ordering::Relaxed);
    }

    /// Appends to `out` the rejections for `actor` after `seen`; returns the newest
    /// sequence number.
    pub(super) fn for_actor(&self, actor: &str, seen: u64, out: &mut Vec<Bytes>) -> u64 {
        let entries = self.entries.lock();
        out.extend(
            entries
                .iter()
                .filter(|(seq, who, _)| *seq > seen && &**who == actor)
                .map(|(_, _, message)| message.clone()),
        );
        entries.back().map_or(seen, |(seq, _, _)| *seq)
    }
}

// The log uses loom's atomics under `cfg(loom)`; only the loom models run there.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_and_drains_in_order() {
        let queue = InputQueue::new(2);
        let input = |id: &str| ClientInput {
            actor: "a".into(),
            client_req_id: id.into(),
            base_rev: None,
            input: 0u8,
        };
        assert_eq!(queue.push(input("1")), Ok(()));
        assert_eq!(queue.push(input("2")), Ok(()));
        assert_eq!(queue.push(input("3")), Err(QueueFull));
        let mut out = Vec::new();
        queue.drain_into(&mut out);
        assert_eq!(out, [input("1"), input("2")]);
        assert_eq!(queue.push(input("3")), Ok(()));
    }

    #[test]
    fn rejections_reach_their_actor_once() {
        let log = RejectionLog::new(3);
        assert_eq!(log.seq(), 0);
        log.push("a", Bytes::from_static(b"1"));
        log.push("b", Bytes::from_static(b"2"));
        log.push("a", Bytes::from_static(b"3"));
        let mut out = Vec::new();
        assert_eq!(log.for_actor("a", 0, &mut out), 3);
        assert_eq!(out, [Bytes::from_static(b"1"), Bytes::from_static(b"3")]);
        out.clear();
        assert_eq!(log.for_actor("a", 3, &mut out), 3);
        assert!(out.is_empty());
        log.push("a", Bytes::from_static(b"4"));
        assert_eq!(log.for_actor("a", 1, &mut out), 4, "the oldest was dropped");
        assert_eq!(out, [Bytes::from_static(b"3"), Bytes::from_static(b"4")]);
    }
}
