//! A token bucket: the per-connection message rate limit.
//!
//! The bucket counts in whole nanotokens (10^-9 of a message) and refills by
//! `elapsed_ns * per_second` of them, so its arithmetic is exact: the wait it reports for
//! a refused message is the least number of nanoseconds after which a token is there, and
//! [`retry_after_ms`] rounds it *up* to the millisecond. A client that waits exactly the
//! `retryAfterMs` it was told, counted from when its refused message was read, is admitted.

use std::time::{Duration, Instant};

/// Nanotokens in one token (one message).
const TOKEN: u128 = 1_000_000_000;

/// Allows `burst` messages at once and `per_second` on average; time comes from outside.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    per_second: u128,
    /// The bucket's size, in nanotokens.
    capacity: u128,
    /// What is in the bucket, in nanotokens (at most `capacity`).
    nanotokens: u128,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        let capacity = u128::from(burst.max(1)) * TOKEN;
        Self {
            per_second: u128::from(per_second.max(1)),
            capacity,
            nanotokens: capacity,
            updated: now,
        }
    }

    /// How long after `now` a token is available: `None` when one is. Takes nothing
    /// (the bucket is not refilled either), so that the I/O shell can stop reading a
    /// connection until its next message would be admitted. Exact, as `take`'s wait.
    pub(crate) fn wait(&self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_nanos();
        let refill = elapsed.saturating_mul(self.per_second);
        let nanotokens = self.nanotokens.saturating_add(refill).min(self.capacity);
        let missing = TOKEN.checked_sub(nanotokens).filter(|&m| m > 0)?;
        let wait_ns = missing.div_ceil(self.per_second);
        Some(Duration::from_nanos(
            u64::try_from(wait_ns).unwrap_or(u64::MAX),
        ))
    }

    /// Whether the bucket is full at `now`, as a new one would be.
    pub(crate) fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_nanos();
        let refill = elapsed.saturating_mul(self.per_second);
        self.nanotokens.saturating_add(refill) >= self.capacity
    }

    /// Takes one token at `now` (when the message was read), or says how long after `now`
    /// one is available: exactly, to the nanosecond, never less.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_nanos();
        let refill = elapsed.saturating_mul(self.per_second);
        self.nanotokens = self.nanotokens.saturating_add(refill).min(self.capacity);
        self.updated = self.updated.max(now);
        if self.nanotokens >= TOKEN {
            self.nanotokens -= TOKEN;
            return Ok(());
        }
        let missing = TOKEN - self.nanotokens;
        // The least `wait` with `wait * per_second >= missing`: rounded up.
        let wait_ns = missing.div_ceil(self.per_second);
        // `missing <= 10^9`, so the wait is at most a second: it fits a u64.
        Err(Duration::from_nanos(
            u64::try_from(wait_ns).unwrap_or(u64::MAX),
        ))
    }
}

/// The `retryAfterMs` of a refusal that must wait `wait`: rounded up to the millisecond,
/// so that waiting that long is always enough (`499.9 ms` is `500`, never `499`).
pub(crate) fn retry_after_ms(wait: Duration) -> u64 {
    let ms = wait.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
// Tests pick an arbitrary origin for virtual time.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 3, start);
        assert!(bucket.take(start).is_ok());
        assert!(bucket.take(start).is_ok());
        assert!(bucket.take(start).is_ok());
        assert_eq!(bucket.take(start), Err(Duration::from_millis(100)));
        assert_eq!(
            bucket.take(start + Duration::from_millis(50)),
            Err(Duration::from_millis(50))
        );
        assert!(bucket.take(start + Duration::from_millis(100)).is_ok());
        // Refills never exceed the burst.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(bucket.take(later).is_ok());
        }
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn wait_says_when_the_next_token_is_due_and_takes_nothing() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 2, start);
        assert_eq!(bucket.wait(start), None);
        assert!(bucket.take(start).is_ok());
        assert_eq!(bucket.wait(start), None, "one token left");
        assert!(bucket.take(start).is_ok());
        assert_eq!(bucket.wait(start).map(|w| w.as_millis()), Some(100));
        assert_eq!(
            bucket
                .wait(start + Duration::from_millis(40))
                .map(|w| w.as_millis()),
            Some(60)
        );
        assert_eq!(bucket.wait(start + Duration::from_millis(100)), None);
        // Asking took nothing: the token due at 100 ms is still there to take.
        assert!(bucket.take(start + Duration::from_millis(100)).is_ok());
        assert!(bucket.take(start + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn the_wait_is_exact_to_the_nanosecond() {
        let start = Instant::now();
        // 3 per second: a token every 333,333,333.3 ns.
        let mut bucket = TokenBucket::new(3, 1, start);
        assert!(bucket.take(start).is_ok());
        let wait = bucket.take(start).unwrap_err();
        assert_eq!(wait, Duration::from_nanos(333_333_334));
        assert_eq!(
            bucket.take(start + wait - Duration::from_nanos(1)),
            Err(Duration::from_nanos(1))
        );
        assert_eq!(bucket.take(start + wait), Ok(()));
    }

    #[test]
    fn retry_after_is_rounded_up_to_the_millisecond() {
        let cases = [
            (Duration::from_micros(499_900), 500),
            (Duration::from_millis(500), 500),
            (Duration::from_nanos(500_000_001), 501),
            (Duration::from_nanos(1), 1),
            (Duration::ZERO, 0),
        ];
        for (wait, ms) in cases {
            assert_eq!(retry_after_ms(wait), ms, "{wait:?}");
        }
    }
}
