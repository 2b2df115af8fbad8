//! Reconnect delays: exponential backoff with full jitter.
//!
//! Attempt `n` (from 0) waits a uniformly random time in `[0, min(max, initial * 2^n))`:
//! the "full jitter" of the AWS architecture note on backoff, the same rule as the
//! TypeScript client's `backoffDelay`. After a server restart every client of it loses its
//! connection at the same instant; full jitter spreads their reconnects evenly over the
//! whole window instead of sending them back as one wave.
//!
//! The random numbers come from a [`Jitter`]: seeded from the operating system by default,
//! or from a chosen seed, so that tests get the same delays on every run.
//!
//! ```
//! use std::time::Duration;
//! use deltasync::client::{Backoff, Jitter};
//!
//! let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1) };
//! assert_eq!(backoff.bound(0), Duration::from_millis(100));
//! assert_eq!(backoff.bound(3), Duration::from_millis(800));
//! assert_eq!(backoff.bound(4), Duration::from_secs(1), "capped");
//! let mut jitter = Jitter::seeded(7);
//! assert!(backoff.delay(2, &mut jitter) < Duration::from_millis(400));
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The bounds of reconnect delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The bound of the first delay (default 250 ms, as the TypeScript client).
    pub initial: Duration,
    /// The largest bound (default 10 s).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(10),
        }
    }
}

/// Doublings after which the bound no longer grows (2^30 times the initial bound is
/// beyond any sensible maximum, and keeps the multiplication in range).
const MAX_DOUBLINGS: u32 = 30;

impl Backoff {
    /// The bound of attempt `attempt` (from 0): `min(max, initial * 2^attempt)`.
    pub fn bound(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(MAX_DOUBLINGS);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before attempt `attempt`: uniform in `[0, bound(attempt))`.
    pub fn delay(&self, attempt: u32, jitter: &mut Jitter) -> Duration {
        self.bound(attempt).mul_f64(jitter.fraction())
    }
}

/// A small random number generator for jitter (SplitMix64): not for secrets.
#[derive(Debug, Clone)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    /// A generator that gives the same numbers for the same `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator seeded by the operating system (or, should it fail, by the standard
    /// library's per-process random hash keys).
    pub fn from_entropy() -> Self {
        let mut bytes = [0u8; 8];
        let seed = match getrandom::fill(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => RandomState::new().build_hasher().finish(),
        };
        Self::seeded(seed)
    }

    /// The next number of the SplitMix64 sequence.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, 1)`, from the top 53 bits (the precision of an `f64`).
    pub fn fraction(&mut self) -> f64 {
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.next_u64() >> 11) as f64 * SCALE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_bound_doubles_from_initial_and_stops_at_max() {
        let backoff = Backoff {
            initial: 250 * MS,
            max: 10_000 * MS,
        };
        let bounds: Vec<Duration> = (0..8).map(|n| backoff.bound(n)).collect();
        assert_eq!(
            bounds,
            [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000].map(|ms| ms * MS)
        );
        assert_eq!(backoff.bound(u32::MAX), 10_000 * MS, "no overflow");
        let huge = Backoff {
            initial: Duration::MAX,
            max: Duration::MAX,
        };
        assert_eq!(huge.bound(40), Duration::MAX);
    }

    #[test]
    fn delays_stay_below_their_bound_and_fill_it() {
        let backoff = Backoff::default();
        let mut jitter = Jitter::seeded(1);
        for attempt in 0..10 {
            let bound = backoff.bound(attempt);
            let delays: Vec<Duration> = (0..1000)
                .map(|_| backoff.delay(attempt, &mut jitter))
                .collect();
            let (min, max) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
            assert!(*max < bound, "attempt {attempt}: {max:?} < {bound:?}");
            // 1000 uniform draws: below 2 % and above 98 % of the bound, every time
            // (the chance of missing either is 0.98^1000, about 2e-9; the seed is fixed).
            assert!(*min < bound.mul_f64(0.02), "attempt {attempt}: {min:?}");
            assert!(*max > bound.mul_f64(0.98), "attempt {attempt}: {max:?}");
        }
    }

    #[test]
    fn delays_grow_on_average_until_the_cap() {
        let backoff = Backoff {
            initial: 100 * MS,
            max: 1600 * MS,
        };
        let mut jitter = Jitter::seeded(2);
        let mean = |attempt: u32, jitter: &mut Jitter| {
            let total: Duration = (0..2000).map(|_| backoff.delay(attempt, jitter)).sum();
            total / 2000
        };
        let means: Vec<Duration> = (0..7).map(|n| mean(n, &mut jitter)).collect();
        // The mean of a uniform draw is half its bound: 50, 100, 200, 400, 800, 800, 800.
        for (attempt, mean) in means.iter().enumerate() {
            let half = backoff.bound(attempt as u32) / 2;
            let off = mean.abs_diff(half);
            assert!(
                off < half / 10,
                "attempt {attempt}: mean {mean:?}, expected ~{half:?}"
            );
        }
    }

    #[test]
    fn a_seed_gives_the_same_delays_and_seeds_differ() {
        let backoff = Backoff::default();
        let draw = |seed| {
            let mut jitter = Jitter::seeded(seed);
            (0..5)
                .map(|n| backoff.delay(n, &mut jitter))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
        let fractions: Vec<f64> = {
            let mut jitter = Jitter::seeded(0);
            (0..10_000).map(|_| jitter.fraction()).collect()
        };
        assert!(fractions.iter().all(|f| (0.0..1.0).contains(f)));
    }
}
