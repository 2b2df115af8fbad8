//! A graceful stop: what a stopping server tells its clients, how long it may take, and
//! the barrier that keeps commits from following the last flush.
//!
//! Each shard, once it sees the stop (`Wakers::shut_down`):
//!
//! 1. stops handing its clients' input to sessions, and says so here ([`Shutdown::quiesce`]);
//!    it waits, writing but not reading, until every shard has (or the deadline passes), so
//!    that no client's update is committed after the flush of step 2 (an embedder
//!    committing from its own thread still can: its operations reach the clients when they
//!    resume);
//! 2. brings every connection to the room's head (the deltas it is owed, or a gap and a
//!    snapshot) and closes it with `server.shutdown_close_code` (1012 by default: come
//!    back);
//! 3. writes what is left and waits for the clients' side of the close until
//!    `server.shutdown_grace_ms` after the stop; then it drops what remains.
//!
//! The acceptor stops accepting at once (its listener is closed), so clients reconnecting
//! meanwhile are refused by the operating system and retry after their backoff.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;

use crate::config::{Config, ShutdownClose};

/// The stop's settings and the shards' barrier.
pub(super) struct Shutdown {
    /// What clients are told.
    close: ShutdownClose,
    /// How long the stop may take, from the moment a shard sees it.
    pub(super) grace: Duration,
    /// Shards that stopped handing input to sessions.
    quiet_shards: AtomicUsize,
}

impl Shutdown {
    pub(super) fn new(config: &Config) -> Self {
        Self {
            close: config.server.shutdown_close_code,
            grace: config.server.shutdown_grace(),
            quiet_shards: AtomicUsize::new(0),
        }
    }

    /// The close frame's code and reason.
    pub(super) fn close_frame(&self) -> (CloseCode, &'static str) {
        (CloseCode::from(self.close.code()), self.close.reason())
    }

    /// This shard hands no more input to sessions.
    pub(super) fn quiesce(&self) {
        // Release: pairs with the Acquire in `all_quiet`: a shard that sees every shard
        // quiet sees the commits they made before.
        self.quiet_shards.fetch_add(1, Ordering::Release);
    }

    /// Whether all `shards` have quiesced.
    pub(super) fn all_quiet(&self, shards: usize) -> bool {
        // Acquire: pairs with the Release in `quiesce`.
        self.quiet_shards.load(Ordering::Acquire) >= shards
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_close_frame_follows_the_configuration() {
        let mut config = Config::default();
        assert_eq!(
            Shutdown::new(&config).close_frame(),
            (CloseCode::Restart, "server restarting")
        );
        config.server.shutdown_close_code = ShutdownClose::GoingAway;
        assert_eq!(
            Shutdown::new(&config).close_frame(),
            (CloseCode::Away, "server shutting down")
        );
    }

    #[test]
    fn the_barrier_opens_when_every_shard_is_quiet() {
        let shutdown = Shutdown::new(&Config::default());
        assert!(!shutdown.all_quiet(2));
        shutdown.quiesce();
        assert!(!shutdown.all_quiet(2));
        shutdown.quiesce();
        assert!(shutdown.all_quiet(2));
    }
}
