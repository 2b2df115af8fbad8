//! The fan-out's latency budget (`server.flush_interval_us`): when a shard writes a room's
//! connections again.
//!
//! A write system call costs far more than the bytes it carries (5-11 µs of CPU for a small
//! loopback `writev`), so a room whose connections were written to less than the interval
//! ago is not flushed again at once: it waits in the shard's one timer heap until the
//! interval has passed, and everything committed meanwhile goes out in that one write per
//! connection. A room is paced, not its connections one by one: every connection of a room
//! on a shard is flushed in the same pass, so they share one entry.
//!
//! The wait only starts after a write: the first commit after a quiet period (longer than
//! the interval) goes out at once, so an idle room pays no latency for the budget, and a
//! busy one pays at most the interval. An interval of 0 never waits (every commit that
//! finds a connection's socket free is written at once, as before the budget existed).
//! Rooms flushed on their owner's tick (`FlushPolicy::Tick`) are never paced: the tick is
//! their budget already.
//!
//! ## Long passes wait as long as they took
//!
//! The interval grows with the room: a pass over a room's connections on a shard that
//! took `P` (thousands of connections, a `writev` each) is followed by a wait of at least
//! `P` (at most 100 ms) before the next one, i.e. the next pass is due `max(interval,
//! 2 P)` after the last one started. Without that a room whose pass outlasts the interval is flushed back to
//! back: every turn of the shard is one whole pass, so a client joining, reading or
//! upgrading waits a pass per step, and each write carries only what one pass's time
//! committed. With it, half of the shard's time at least is left to the turns between
//! passes, and each write carries twice as much. A room whose pass is under half the
//! interval (1,000 connections at the default) is not affected.
//!
//! ## No lost flush
//!
//! A room that waits is due at a known instant; the shard's poll never sleeps past the
//! earliest one ([`FlushTimer::poll_timeout`]), and a due room is flushed with whatever
//! its room published by then, so nothing committed during the wait is left behind.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// The longest a room waits after a long pass before the next (see the module doc): a
/// pass stretched by a stall of the machine (the thread descheduled for a second, say)
/// must not hold the room's next deltas for as long again.
const LONGEST_WAIT_AFTER_A_PASS: Duration = Duration::from_millis(100);

/// The pacing state of one room on one shard.
#[derive(Debug, Default)]
pub(super) struct Pace {
    /// When its connections were last flushed for a commit.
    last: Option<Instant>,
    /// How long that pass over its connections took.
    took: Duration,
    /// Whether it waits in the timer for its next flush.
    waiting: bool,
}

/// What to do with a room that has something new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Flush its connections now.
    Now,
    /// It waits (it was already waiting, or now waits until its interval is over).
    Later,
}

/// One shard's latency budget: the interval and the rooms waiting for it to pass.
#[derive(Debug)]
pub(super) struct FlushTimer {
    interval: Duration,
    /// Rooms (by key) waiting, by the instant they are due. One entry per waiting room.
    due: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl FlushTimer {
    /// A timer with this interval (zero: nothing ever waits).
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            interval,
            due: BinaryHeap::new(),
        }
    }

    /// A room (`key`, paced by `pace`) has something new at `now`: flush it now, or let it
    /// wait until its interval since the last flush is over. `paced` is false for rooms
    /// that must never wait (tick-flushed rooms).
    pub(super) fn admit(
        &mut self,
        key: usize,
        pace: &mut Pace,
        paced: bool,
        now: Instant,
    ) -> Admit {
        if pace.waiting {
            return Admit::Later;
        }
        let due = match pace.last {
            Some(last) if paced && !self.interval.is_zero() => {
                let wait_after = pace.took.min(LONGEST_WAIT_AFTER_A_PASS);
                last + self.interval.max(pace.took + wait_after)
            }
            _ => return Admit::Now,
        };
        if due <= now {
            return Admit::Now;
        }
        pace.waiting = true;
        self.due.push(Reverse((due, key)));
        Admit::Later
    }

    /// The room was flushed at `now`, in a pass over its connections that took `took`
    /// (its wait, if any, is over).
    pub(super) fn flushed(pace: &mut Pace, now: Instant, took: Duration) {
        pace.last = Some(now);
        pace.took = took;
        pace.waiting = false;
    }

    /// The room was due or told it moved but had nothing new: its wait is over, and it
    /// was not written to.
    pub(super) fn nothing_new(pace: &mut Pace) {
        pace.waiting = false;
    }

    /// Moves the keys of the rooms due at `now` to `out`. A key may name a room that is
    /// gone (its connections left while it waited): the caller skips it.
    pub(super) fn take_due(&mut self, now: Instant, out: &mut Vec<usize>) {
        while let Some(&Reverse((at, key))) = self.due.peek() {
            if at > now {
                return;
            }
            self.due.pop();
            out.push(key);
        }
    }

    /// How long the shard's poll may sleep at `now`, at most `limit`: never past the
    /// instant the first waiting room is due.
    pub(super) fn poll_timeout(&self, now: Instant, limit: Duration) -> Duration {
        match self.due.peek() {
            Some(Reverse((at, _))) => at.saturating_duration_since(now).min(limit),
            None => limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Any instant: the timer only compares instants it is given.
    fn origin() -> Instant {
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    #[test]
    fn zero_never_waits() {
        let mut timer = FlushTimer::new(Duration::ZERO);
        let mut pace = Pace::default();
        let t0 = origin();
        for i in 0..5 {
            let now = t0 + Duration::from_micros(i);
            assert_eq!(timer.admit(7, &mut pace, true, now), Admit::Now);
            FlushTimer::flushed(&mut pace, now, Duration::ZERO);
        }
        assert_eq!(timer.poll_timeout(t0, 250 * MS), 250 * MS);
    }

    #[test]
    fn a_burst_after_a_write_waits_once_until_the_interval_is_over() {
        let mut timer = FlushTimer::new(5 * MS);
        let mut pace = Pace::default();
        let t0 = origin();
        // Quiet room: the first commit goes out at once.
        assert_eq!(timer.admit(7, &mut pace, true, t0), Admit::Now);
        FlushTimer::flushed(&mut pace, t0, Duration::ZERO);
        // The burst right after waits, with one timer entry for all of it.
        for i in 1..=4 {
            assert_eq!(
                timer.admit(7, &mut pace, true, t0 + i * MS / 2),
                Admit::Later
            );
        }
        assert_eq!(timer.due.len(), 1);
        let mut due = Vec::new();
        timer.take_due(t0 + 4 * MS, &mut due);
        assert_eq!(due, Vec::<usize>::new());
        timer.take_due(t0 + 5 * MS, &mut due);
        assert_eq!(due, vec![7]);
        FlushTimer::flushed(&mut pace, t0 + 5 * MS, Duration::ZERO);
        // Quiet again for longer than the interval: no wait.
        assert_eq!(timer.admit(7, &mut pace, true, t0 + 11 * MS), Admit::Now);
    }

    #[test]
    fn an_idle_shard_never_sleeps_past_a_due_room() {
        let mut timer = FlushTimer::new(5 * MS);
        let (mut a, mut b) = (Pace::default(), Pace::default());
        let t0 = origin();
        FlushTimer::flushed(&mut a, t0, Duration::ZERO);
        FlushTimer::flushed(&mut b, t0 + 2 * MS, Duration::ZERO);
        assert_eq!(timer.admit(1, &mut a, true, t0 + MS), Admit::Later);
        assert_eq!(timer.admit(2, &mut b, true, t0 + MS), Admit::Later);
        // Due at t0 + 5 ms and t0 + 7 ms: the poll wakes for the first, then the second.
        assert_eq!(timer.poll_timeout(t0 + MS, 250 * MS), 4 * MS);
        let mut due = Vec::new();
        timer.take_due(t0 + 5 * MS, &mut due);
        assert_eq!(due, vec![1]);
        assert_eq!(timer.poll_timeout(t0 + 5 * MS, 250 * MS), 2 * MS);
        // A room already late is due at once.
        assert_eq!(timer.poll_timeout(t0 + 8 * MS, 250 * MS), Duration::ZERO);
    }

    #[test]
    fn a_pass_longer_than_half_the_interval_is_followed_by_a_wait_as_long() {
        let mut timer = FlushTimer::new(5 * MS);
        let mut pace = Pace::default();
        let t0 = origin();
        // A pass of 2 ms: under half the interval, the interval rules.
        FlushTimer::flushed(&mut pace, t0, 2 * MS);
        assert_eq!(timer.admit(7, &mut pace, true, t0 + MS), Admit::Later);
        let mut due = Vec::new();
        timer.take_due(t0 + 5 * MS, &mut due);
        assert_eq!(due, vec![7]);
        // A pass of 8 ms (it ended at t0 + 13 ms): the next is due 8 ms after its end.
        FlushTimer::flushed(&mut pace, t0 + 5 * MS, 8 * MS);
        assert_eq!(timer.admit(7, &mut pace, true, t0 + 13 * MS), Admit::Later);
        due.clear();
        timer.take_due(t0 + 20 * MS, &mut due);
        assert_eq!(due, Vec::<usize>::new());
        assert_eq!(timer.poll_timeout(t0 + 20 * MS, 250 * MS), MS);
        timer.take_due(t0 + 21 * MS, &mut due);
        assert_eq!(due, vec![7]);
        // A pass stretched to a second by a stall waits 100 ms after it, not a second.
        FlushTimer::flushed(&mut pace, t0 + 21 * MS, 1000 * MS);
        assert_eq!(
            timer.admit(7, &mut pace, true, t0 + 1021 * MS),
            Admit::Later
        );
        assert_eq!(timer.poll_timeout(t0 + 1021 * MS, 250 * MS), 100 * MS);
        // With 0, nothing waits however long the pass took.
        let mut unpaced = FlushTimer::new(Duration::ZERO);
        FlushTimer::flushed(&mut pace, t0, 100 * MS);
        assert_eq!(unpaced.admit(7, &mut pace, true, t0 + MS), Admit::Now);
    }

    #[test]
    fn unpaced_rooms_never_wait() {
        let mut timer = FlushTimer::new(5 * MS);
        let mut pace = Pace::default();
        let t0 = origin();
        FlushTimer::flushed(&mut pace, t0, Duration::ZERO);
        assert_eq!(timer.admit(3, &mut pace, false, t0 + MS), Admit::Now);
        assert_eq!(timer.poll_timeout(t0, 250 * MS), 250 * MS);
    }
}
