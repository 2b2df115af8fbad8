//! A token bucket: the per-connection message rate limit.

use std::time::{Duration, Instant};

/// Allows `burst` messages at once and `per_second` on average; time comes from outside.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            per_second: f64::from(per_second.max(1)),
            burst,
            tokens: burst,
            updated: now,
        }
    }

    /// How long until a token is available at `now`: `None` when one is. Takes nothing,
    /// so that the I/O shell can stop reading a connection until its next message would
    /// be admitted.
    pub(crate) fn wait(&self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        let tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        (tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - tokens) / self.per_second))
    }

    /// Takes one token, or says how long until one is available.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        }
    }
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
        let wait = bucket.take(start).unwrap_err();
        assert_eq!(wait.as_millis(), 100);
        assert!(bucket.take(start + Duration::from_millis(50)).is_err());
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
}
