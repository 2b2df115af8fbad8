//! Wall-clock time, injected.
//!
//! The core never reads a clock of its own: a room takes an `Arc<dyn Clock>` and asks it
//! for the time when an operation needs one (`lastActive`), so tests and fixtures run on
//! a [`ManualClock`] and are deterministic. Servers use [`SystemClock`].

use std::sync::atomic::{AtomicU64, Ordering};

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// The current time, in milliseconds since 1970-01-01T00:00:00Z.
    fn now_ms(&self) -> u64;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // The one place outside the I/O shell that reads the wall clock: it *is* the shell's
        // clock, handed to the core by whoever builds a room.
        #[allow(clippy::disallowed_methods)]
        let now = std::time::SystemTime::now();
        now.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| {
                u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
            })
    }
}

/// A clock that only moves when told to: the test clock of the fixtures.
///
/// ```
/// use deltasync::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new(1000);
/// assert_eq!(clock.now_ms(), 1000);
/// clock.set(2000);
/// assert_eq!(clock.now_ms(), 2000);
/// ```
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    /// A clock showing `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self {
            now_ms: AtomicU64::new(now_ms),
        }
    }

    /// Sets the time to `now_ms`.
    pub fn set(&self, now_ms: u64) {
        // Relaxed: the clock's value is a plain datum; nothing else is published with it.
        self.now_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: u64) {
        // Relaxed: as in `set`.
        self.now_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        // Relaxed: as in `set`.
        self.now_ms.load(Ordering::Relaxed)
    }
}
