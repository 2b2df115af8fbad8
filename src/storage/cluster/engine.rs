//! The connection to Redis: a small pool of blocking connections with timeouts, the two
//! Lua scripts that make appends and snapshots atomic, and the engine's health as the
//! node last saw it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use redis::{Client, Connection, RedisError, Script};

use crate::storage::StorageError;

/// Appends one record if the room is at the revision the caller expects.
///
/// `KEYS`: the room's head counter, its stream. `ARGV`: the revision to write, then the
/// entry's field/value pairs. Returns `{head}` with the head the log had: the caller's
/// revision minus one means the entry was added (as id `rev-0`, and the head moved to
/// `rev`). Otherwise another node got there first, and the answer is `{head, entries}`:
/// the entries from the caller's revision on (at most 1024), so that catching up costs no
/// second round trip. One script, so no second writer can ever slip in between the check
/// and the write.
const APPEND: &str = include_str!("append.lua");

/// Stores a snapshot if it is newer than the stored one, and trims the stream behind it.
///
/// `KEYS`: the snapshot, its revision, the stream. `ARGV`: the revision, the encoded
/// snapshot, the oldest revision to keep in the stream (0: trim nothing). Returns 1 if
/// stored.
const SNAPSHOT: &str = r"
local stored = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) <= stored then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
if tonumber(ARGV[3]) > 0 then redis.call('XTRIM', KEYS[3], 'MINID', ARGV[3] .. '-0') end
return 1
";

/// Whether the engine answered the last time this node asked.
///
/// Updated by every append, read and tail of the node; cheap to read (two atomics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineHealth {
    /// `None` while the engine answers; else since when (ms since the Unix epoch) it has
    /// not, and the last error.
    pub down: Option<EngineDown>,
}

/// Since when the engine has not answered, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineDown {
    /// The first failure of this outage, in ms since the Unix epoch.
    pub since_ms: u64,
    /// The last error.
    pub reason: String,
}

/// The pool, the scripts and the health of one node's connection to the engine.
pub(super) struct Engine {
    client: Client,
    /// The address as given, without credentials (for messages).
    pub(super) url: String,
    idle: Mutex<Vec<Connection>>,
    timeout: Duration,
    pub(super) append: Script,
    pub(super) snapshot: Script,
    /// 0 while the engine answers, else the first failure's wall time in ms.
    down_since_ms: AtomicU64,
    last_error: Mutex<String>,
}

/// How many idle connections the pool keeps (more are opened when needed, then closed).
const IDLE_CONNECTIONS: usize = 16;

impl Engine {
    /// Opens the client for `url` and checks that the engine answers a `PING`.
    ///
    /// # Errors
    ///
    /// [`StorageError::Unavailable`] if the URL is not a Redis URL or nothing answers.
    pub(super) fn connect(url: &str, timeout: Duration) -> Result<Self, StorageError> {
        let shown = redact(url);
        let client = Client::open(url).map_err(|e| StorageError::Unavailable {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        let engine = Self {
            client,
            url: shown,
            idle: Mutex::new(Vec::new()),
            timeout,
            append: Script::new(APPEND),
            snapshot: Script::new(SNAPSHOT),
            down_since_ms: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
        };
        engine.run(|conn| redis::cmd("PING").query::<String>(conn))?;
        Ok(engine)
    }

    /// A new connection with this engine's timeouts; `read_timeout` for a blocking read.
    pub(super) fn open(&self, read_timeout: Duration) -> Result<Connection, StorageError> {
        let conn = self
            .client
            .get_connection_with_timeout(self.timeout)
            .and_then(|conn| {
                conn.set_read_timeout(Some(read_timeout))?;
                conn.set_write_timeout(Some(self.timeout))?;
                Ok(conn)
            })
            .map_err(|e| self.failed(&e))?;
        Ok(conn)
    }

    /// Runs `command` on a pooled connection. A connection that failed is closed, never
    /// reused (its stream may hold half an answer).
    ///
    /// # Errors
    ///
    /// [`StorageError::Unavailable`] with the engine's or the network's error.
    ///
    /// A pooled connection that the engine closed (it restarted) is replaced by a new one
    /// and the command sent once more on it. That is safe for every command here: the
    /// reads are reads, and an append that did reach the engine the first time is
    /// refused the second time as a [`StorageError::Conflict`] (its revision is taken),
    /// which the room resolves by catching up and finding its own request in the dedup
    /// window.
    pub(super) fn run<R>(
        &self,
        mut command: impl FnMut(&mut Connection) -> Result<R, RedisError>,
    ) -> Result<R, StorageError> {
        let pooled = self.idle.lock().pop();
        let (mut conn, fresh) = match pooled {
            Some(conn) => (conn, false),
            None => (self.open(self.timeout)?, true),
        };
        let mut result = command(&mut conn);
        if !fresh
            && result
                .as_ref()
                .is_err_and(|e| e.is_connection_dropped() || e.is_io_error())
        {
            conn = self.open(self.timeout)?;
            result = command(&mut conn);
        }
        match result {
            Ok(value) => {
                self.answered();
                let mut idle = self.idle.lock();
                if idle.len() < IDLE_CONNECTIONS {
                    idle.push(conn);
                }
                Ok(value)
            }
            Err(e) => Err(self.failed(&e)),
        }
    }

    /// Notes that the engine answered.
    pub(super) fn answered(&self) {
        // Relaxed: a health flag, read on its own; the error text is under its lock.
        if self.down_since_ms.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!(engine = %self.url, "the cluster engine answers again");
        }
    }

    /// Notes a failure and turns it into the storage error.
    pub(super) fn failed(&self, error: &RedisError) -> StorageError {
        let reason = error.to_string();
        // The reason first: `health` must never see the engine down without it.
        reason.clone_into(&mut self.last_error.lock());
        // Release: publishes the reason written above to `health`'s Acquire load (a
        // reader that sees this failure's instant then locks and finds its reason).
        let first = self
            .down_since_ms
            .compare_exchange(0, now_ms().max(1), Ordering::Release, Ordering::Relaxed)
            .is_ok();
        if first {
            tracing::warn!(engine = %self.url, error = %reason, "the cluster engine does not answer");
            self.idle.lock().clear();
        }
        StorageError::Unavailable {
            url: self.url.clone(),
            reason,
        }
    }

    /// The engine's health as this node last saw it.
    pub(super) fn health(&self) -> EngineHealth {
        // Acquire: pairs with `failed`'s Release, so the reason is there.
        let since_ms = self.down_since_ms.load(Ordering::Acquire);
        EngineHealth {
            down: (since_ms != 0).then(|| EngineDown {
                since_ms,
                reason: self.last_error.lock().clone(),
            }),
        }
    }
}

/// The wall time in ms since the Unix epoch (the storage backends are I/O shell).
fn now_ms() -> u64 {
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `url` without a password (`redis://user:secret@host` becomes `redis://user:***@host`).
pub(super) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://***@{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn a_password_never_shows() {
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redact("redis://app:s3cret@10.0.0.1:6379/0"),
            "redis://app:***@10.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://:s3cret@h:1"), "redis://:***@h:1");
        assert_eq!(redact("redis://token@h:1"), "redis://***@h:1");
    }
}
