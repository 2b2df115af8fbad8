//! Counters and histograms written by one thread and read by any: what the server's
//! `/metrics` endpoint sums at scrape time.
//!
//! The hot path (a shard's flush, a session's message) must not pay for being watched:
//! no lock, no cache line another thread writes. So each writer owns its counters (one
//! set per shard, one per storage syncer thread, kept on cache lines of their own by their
//! owner), a `Counter` is bumped with a plain load and store rather than a locked
//! read-modify-write, and a scrape reads every set and adds them up.
//!
//! # One writer
//!
//! A `Counter` or a `Histogram` has one writer thread: its owner's. Two writers would
//! lose increments (a load and a store are not one step), never corrupt memory: every
//! access is atomic. The server keeps to it: a session's counters are its shard's, and a
//! session lives on one shard for life.
//!
//! # Reading
//!
//! Readers load with `Relaxed`: a scrape is a statistic, ordered with nothing. A
//! histogram read while its writer observes may show the new bucket count with the old
//! sum; its total count is taken as the sum of the buckets read, so the buckets and the
//! count always agree (Prometheus requires the `+Inf` bucket to equal the count).

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonic count with one writer thread (see the [module documentation](self)).
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owner thread may call this.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        // Relaxed: a statistic with a single writer; the load and store are not one
        // step, which is only correct because nobody else writes (module doc).
        let value = self.0.load(Ordering::Relaxed);
        self.0.store(value.wrapping_add(n), Ordering::Relaxed);
    }

    /// Adds one. Only the owner thread may call this.
    #[inline]
    pub(crate) fn incr(&self) {
        self.add(1);
    }

    /// Sets the value (a gauge). Only the owner thread may call this.
    #[inline]
    pub(crate) fn set(&self, n: u64) {
        // Relaxed: a statistic.
        self.0.store(n, Ordering::Relaxed);
    }

    /// The value now.
    pub(crate) fn get(&self) -> u64 {
        // Relaxed: a statistic, read on its own.
        self.0.load(Ordering::Relaxed)
    }
}

/// How many buckets a histogram has, the last one above every bound.
pub const BUCKETS: usize = 12;

/// A histogram's counts at one instant, in the unit its bounds are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramCounts {
    /// The inclusive upper bound of each bucket but the last, which has none.
    pub bounds: &'static [u64; BUCKETS - 1],
    /// Observations per bucket (not cumulative): `counts[i]` were above `bounds[i - 1]`
    /// and at most `bounds[i]`.
    pub counts: [u64; BUCKETS],
    /// The sum of every observation.
    pub sum: u64,
}

impl HistogramCounts {
    /// No observation yet, with these bounds.
    pub fn empty(bounds: &'static [u64; BUCKETS - 1]) -> Self {
        Self {
            bounds,
            counts: [0; BUCKETS],
            sum: 0,
        }
    }

    /// How many observations in all.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other`'s observations (the same bounds) to these.
    pub fn merge(&mut self, other: &HistogramCounts) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.sum = self.sum.wrapping_add(other.sum);
    }
}

/// Powers of two from 1 to 1024: revisions behind, operations per frame.
pub(crate) const POWERS_OF_TWO: [u64; BUCKETS - 1] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// Latencies in nanoseconds, from 10 µs to 1 s.
pub(crate) const LATENCY_NS: [u64; BUCKETS - 1] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

/// A histogram with fixed bounds and one writer thread (see the
/// [module documentation](self)).
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [u64; BUCKETS - 1],
    /// The bounds are [`POWERS_OF_TWO`]: a bucket is found from the value's bit length
    /// (a few instructions on the fan-out path) instead of a search.
    powers_of_two: bool,
    counts: [Counter; BUCKETS],
    sum: Counter,
}

impl Histogram {
    /// An empty histogram with these (rising) bounds.
    pub(crate) fn new(bounds: &'static [u64; BUCKETS - 1]) -> Self {
        Self {
            bounds,
            powers_of_two: *bounds == POWERS_OF_TWO,
            counts: Default::default(),
            sum: Counter::default(),
        }
    }

    /// Records `value`. Only the owner thread may call this.
    #[inline]
    pub(crate) fn observe(&self, value: u64) {
        let bucket = if self.powers_of_two {
            // The first power of two at or above `value`: its exponent (0 and 1 in the
            // first bucket), past the last bound in the last.
            let exponent = u64::BITS - value.saturating_sub(1).leading_zeros();
            (exponent as usize).min(BUCKETS - 1)
        } else {
            self.bounds.partition_point(|&bound| bound < value)
        };
        self.counts[bucket].incr();
        self.sum.add(value);
    }

    /// The counts now.
    pub(crate) fn read(&self) -> HistogramCounts {
        let mut counts = [0; BUCKETS];
        for (out, counter) in counts.iter_mut().zip(&self.counts) {
            *out = counter.get();
        }
        HistogramCounts {
            bounds: self.bounds,
            counts,
            sum: self.sum.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_holds_them() {
        let histogram = Histogram::new(&POWERS_OF_TWO);
        for value in [0, 1, 2, 3, 4, 5, 1024, 1025, 1 << 40] {
            histogram.observe(value);
        }
        let read = histogram.read();
        assert_eq!(read.counts, [2, 1, 2, 1, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(read.count(), 9);
        assert_eq!(read.sum, 1 + 2 + 3 + 4 + 5 + 1024 + 1025 + (1 << 40));
        let mut merged = HistogramCounts::empty(&POWERS_OF_TWO);
        merged.merge(&read);
        merged.merge(&read);
        assert_eq!(merged.counts, [4, 2, 4, 2, 0, 0, 0, 0, 0, 0, 2, 4]);
    }

    #[test]
    fn the_power_of_two_shortcut_agrees_with_the_search() {
        let shortcut = Histogram::new(&POWERS_OF_TWO);
        assert!(shortcut.powers_of_two);
        for value in (0..3000).chain([u64::MAX - 1, u64::MAX]) {
            let searched = POWERS_OF_TWO.partition_point(|&bound| bound < value);
            let before = shortcut.read().counts;
            shortcut.observe(value);
            let after = shortcut.read().counts;
            let bucket = (0..BUCKETS).find(|&i| after[i] != before[i]).unwrap();
            assert_eq!(bucket, searched, "{value}");
        }
    }

    #[test]
    fn a_counter_adds_and_a_gauge_is_set() {
        let counter = Counter::default();
        counter.incr();
        counter.add(41);
        assert_eq!(counter.get(), 42);
        counter.set(7);
        assert_eq!(counter.get(), 7);
    }
}
