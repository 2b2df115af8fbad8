//! What a receiving thread measures of each `SYNC.DELTAS` frame in the game scenario:
//! which ticks it carries (against the [`TickLog`]), whether it ends at a tick boundary,
//! and how long after the flush it arrived.
//!
//! Two latencies are taken per frame: from the flush that published its `toRev` (the
//! tick it completes; "commit to receipt") and from the flush that published its first
//! operation (the oldest tick it carries). They differ only for a client that fell
//! behind and got several ticks coalesced into one frame.
//!
//! A frame whose `toRev` the game loop has not recorded yet waits in a short list and is
//! looked at again at the thread's next housekeeping; at the end of the run, whatever is
//! still unknown after a grace period was never published and is a violation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::super::check::Violations;
use super::super::metrics;
use super::ticks::{Span, TickLog};

/// The game figures of one thread (or, merged, of the run).
#[derive(Debug, Clone)]
pub(crate) struct TickMetrics {
    /// Receipt minus the instant after the flush that published the frame's `toRev`, µs.
    pub(crate) commit_to_receipt: Histogram<u64>,
    /// Receipt minus the instant after the flush of the frame's oldest operation, µs.
    pub(crate) oldest_op: Histogram<u64>,
    /// `SYNC.DELTAS` frames received in the window.
    pub(crate) frames: u64,
    /// Ticks those frames carried (one each when nobody falls behind).
    pub(crate) ticks_carried: u64,
    /// Frames of the window that carried more than one tick.
    pub(crate) coalesced: u64,
    /// Frames whose flush was not recorded yet when they arrived (looked at later).
    pub(crate) deferred: u64,
    /// Frames received before the instant recorded for their flush (the game loop was
    /// descheduled between the flush and its reading of the clock); they count as 1 µs.
    pub(crate) before_flush_instant: u64,
    /// `SYNC.DELTAS` frames each client received in the window.
    pub(crate) client_frames: Vec<u64>,
}

impl Default for TickMetrics {
    fn default() -> Self {
        Self {
            commit_to_receipt: metrics::histogram(),
            oldest_op: metrics::histogram(),
            frames: 0,
            ticks_carried: 0,
            coalesced: 0,
            deferred: 0,
            before_flush_instant: 0,
            client_frames: Vec::new(),
        }
    }
}

impl TickMetrics {
    /// Adds another thread's figures.
    pub(crate) fn merge(&mut self, other: &TickMetrics) {
        let _ = self.commit_to_receipt.add(&other.commit_to_receipt);
        let _ = self.oldest_op.add(&other.oldest_op);
        self.frames += other.frames;
        self.ticks_carried += other.ticks_carried;
        self.coalesced += other.coalesced;
        self.deferred += other.deferred;
        self.before_flush_instant += other.before_flush_instant;
        self.client_frames.extend_from_slice(&other.client_frames);
    }
}

/// One frame as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) client: usize,
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) at: Instant,
    /// Received inside the measured window.
    pub(crate) in_window: bool,
    /// Its latency goes into the histograms (`--latency-every`).
    pub(crate) sampled: bool,
}

/// A thread's view of the game's ticks.
#[derive(Debug)]
pub(crate) struct TickTracker {
    log: Arc<TickLog>,
    waiting: Vec<Frame>,
    pub(crate) metrics: TickMetrics,
}

impl TickTracker {
    pub(crate) fn new(log: Arc<TickLog>) -> Self {
        Self {
            log,
            waiting: Vec::new(),
            metrics: TickMetrics::default(),
        }
    }

    /// A `SYNC.DELTAS` frame arrived (its stream was checked already).
    pub(crate) fn frame(&mut self, frame: Frame, violations: &mut Violations) {
        if frame.in_window {
            self.metrics.frames += 1;
        }
        if !self.waiting.is_empty() {
            self.retry(violations);
        }
        if !self.account(&frame, violations) {
            self.metrics.deferred += 1;
            self.waiting.push(frame);
        }
    }

    /// Looks again at the frames whose flush was not recorded yet.
    pub(crate) fn retry(&mut self, violations: &mut Violations) {
        let mut waiting = std::mem::take(&mut self.waiting);
        waiting.retain(|frame| !self.account(frame, violations));
        self.waiting = waiting;
    }

    /// Whether frames are still waiting for their flush to be recorded.
    pub(crate) fn is_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// The end of the run: frames still unknown were never published by a flush.
    pub(crate) fn give_up(&mut self, violations: &mut Violations) {
        for frame in self.waiting.drain(..) {
            not_at_boundary(&frame, violations, "was never published by a flush");
        }
    }

    /// Accounts for `frame`; `false` if its flush is not recorded yet.
    fn account(&mut self, frame: &Frame, violations: &mut Violations) -> bool {
        let (first, last) = match self.log.span(frame.from, frame.to) {
            Span::Unknown => return false,
            Span::NotAtBoundary => {
                not_at_boundary(frame, violations, "ends between two flushes");
                return true;
            }
            Span::Ticks { first, last } => (first, last),
        };
        if frame.in_window {
            let carried = (last - first + 1) as u64;
            self.metrics.ticks_carried += carried;
            self.metrics.coalesced += u64::from(carried > 1);
        }
        if frame.in_window && frame.sampled {
            let flushed = self.log.flushed_at(last);
            if frame.at < flushed {
                self.metrics.before_flush_instant += 1;
            }
            let m = &mut self.metrics;
            metrics::record(&mut m.commit_to_receipt, since(frame.at, flushed));
            let oldest = self.log.flushed_at(first);
            metrics::record(&mut m.oldest_op, since(frame.at, oldest));
        }
        true
    }
}

fn since(at: Instant, earlier: Instant) -> Duration {
    at.saturating_duration_since(earlier)
}

fn not_at_boundary(frame: &Frame, violations: &mut Violations, why: &str) {
    let Frame {
        client, from, to, ..
    } = *frame;
    violations.add("not_at_tick_boundary", || {
        format!("client {client}: SYNC.DELTAS {from}->{to} {why}")
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::control::now;

    fn frame(from: u64, to: u64, at: Instant) -> Frame {
        Frame {
            client: 3,
            from,
            to,
            at,
            in_window: true,
            sampled: true,
        }
    }

    #[test]
    fn frames_are_timed_from_their_flushes_and_checked_at_boundaries() {
        let origin = now();
        let ms = |n| origin + Duration::from_millis(n);
        let log = Arc::new(TickLog::new(origin, 16));
        log.published(100, ms(0));
        log.published(200, ms(16));
        let mut tracker = TickTracker::new(Arc::clone(&log));
        let mut violations = Violations::default();
        // On time: 2 ms after the flush of 200.
        tracker.frame(frame(100, 200, ms(18)), &mut violations);
        // Published later than it arrived (the loop had not recorded it yet).
        tracker.frame(frame(200, 300, ms(33)), &mut violations);
        assert!(tracker.is_waiting());
        log.published(300, ms(32));
        log.published(400, ms(48));
        tracker.retry(&mut violations);
        assert!(!tracker.is_waiting());
        // Coalesced: ticks 300 and 400 in one frame, 10 ms after the second flush.
        tracker.frame(frame(300, 400, ms(58)), &mut violations);
        tracker.frame(frame(200, 400, ms(58)), &mut violations);
        // Not at a boundary, and never published.
        tracker.frame(frame(300, 350, ms(60)), &mut violations);
        tracker.frame(frame(400, 999, ms(60)), &mut violations);
        tracker.give_up(&mut violations);
        let m = &tracker.metrics;
        assert_eq!((m.frames, m.ticks_carried, m.coalesced), (6, 5, 1));
        assert_eq!((m.deferred, m.before_flush_instant), (2, 0));
        assert_eq!(violations.by_kind["not_at_tick_boundary"], 2);
        assert_eq!(m.commit_to_receipt.len(), 4);
        // 2, 1, 10 and 10 ms; the coalesced frame's oldest tick is 26 ms old.
        assert_eq!(m.commit_to_receipt.max() / 1000, 10);
        assert_eq!(m.oldest_op.max() / 1000, 26);
        assert_eq!(m.commit_to_receipt.min() / 1000, 1);
    }
}
