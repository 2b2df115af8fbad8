//! New connections per client address per second
//! (`limits.max_new_connections_per_ip_per_sec`): the acceptor's answer to connection
//! churn.
//!
//! The per-address connection limit bounds how many connections one address *holds*; a
//! client that opens a connection, gets it closed and opens the next one (the 1 GiB
//! header attacker of `deltasync soak --bad-actors`: upgrade, refused at its first frame
//! header, again) holds one at a time and costs the server a whole accept, upgrade and
//! close each time, as fast as it can go. This limit gives each address a token bucket
//! of `N` new connections a second (a burst of `N`); a connection over it is refused at
//! accept with `429` and `Retry-After`, before its request is read or a shard sees it.
//!
//! Owned by the acceptor's thread alone (it is the only one that accepts): no lock. An
//! address is forgotten once its bucket is full again, so the map holds only the
//! addresses that connected within about the last second.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::session::rate::TokenBucket;

/// The buckets of the addresses that connected lately.
#[derive(Debug)]
pub(super) struct AcceptRate {
    /// New connections a second per address (and the burst); 0: no limit.
    per_second: u32,
    buckets: HashMap<IpAddr, TokenBucket>,
}

impl AcceptRate {
    /// A limit of `per_second` new connections per address (0: none).
    pub(super) fn new(per_second: u32) -> Self {
        Self {
            per_second,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for a new connection from `ip` at `now`, or says how long after
    /// `now` the next one is due.
    pub(super) fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_second == 0 {
            return Ok(());
        }
        let per_second = self.per_second;
        self.buckets
            .entry(ip)
            .or_insert_with(|| TokenBucket::new(per_second, per_second, now))
            .take(now)
    }

    /// Forgets the addresses whose bucket is full again at `now` (a fresh bucket is the
    /// same), so that the map does not grow with every address ever seen.
    pub(super) fn forget_full(&mut self, now: Instant) {
        self.buckets.retain(|_, bucket| !bucket.is_full(now));
    }

    /// How many addresses it remembers.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
// Tests pick an arbitrary origin for virtual time.
#[allow(clippy::disallowed_methods)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

    #[test]
    fn each_address_gets_its_rate_and_no_more() {
        let t0 = Instant::now();
        let mut rate = AcceptRate::new(4);
        for _ in 0..4 {
            assert_eq!(rate.admit(A, t0), Ok(()));
        }
        assert_eq!(rate.admit(A, t0), Err(Duration::from_millis(250)));
        // Another address is not held back by the first.
        assert_eq!(rate.admit(B, t0), Ok(()));
        assert_eq!(
            rate.admit(A, t0 + Duration::from_millis(100)),
            Err(Duration::from_millis(150))
        );
        assert_eq!(rate.admit(A, t0 + Duration::from_millis(250)), Ok(()));
    }

    #[test]
    fn zero_is_no_limit_and_remembers_nothing() {
        let t0 = Instant::now();
        let mut rate = AcceptRate::new(0);
        for _ in 0..10_000 {
            assert_eq!(rate.admit(A, t0), Ok(()));
        }
        assert_eq!(rate.remembered(), 0);
    }

    #[test]
    fn an_address_is_forgotten_once_its_bucket_is_full_again() {
        let t0 = Instant::now();
        let mut rate = AcceptRate::new(10);
        assert_eq!(rate.admit(A, t0), Ok(()));
        for _ in 0..10 {
            let _ = rate.admit(B, t0);
        }
        // A's token is back after 100 ms, B's ten after a second.
        rate.forget_full(t0 + Duration::from_millis(100));
        assert_eq!(rate.remembered(), 1);
        assert_eq!(rate.admit(B, t0 + Duration::from_millis(100)), Ok(()));
        rate.forget_full(t0 + Duration::from_millis(1099));
        assert_eq!(rate.remembered(), 1, "B took a token at 100 ms");
        rate.forget_full(t0 + Duration::from_millis(1100));
        assert_eq!(rate.remembered(), 0);
    }
}
