//! The `[storage]` section: which backend, where, and how durable an acknowledgement is.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where room histories live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backend {
    /// In memory only: a restart starts every room anew (the default).
    #[default]
    Memory,
    /// In `storage.dir`: every operation logged, snapshots, recovery on restart.
    Disk,
}

/// When the disk log is fsynced, which is what an acknowledgement promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SyncPolicy {
    /// Before anyone sees the operation (the writer's ack included), with group commit:
    /// acknowledged means on disk, even across a power cut.
    Always,
    /// Every `storage.sync_interval_ms` (the default): acknowledged means written to the
    /// operating system, so a crash of the process loses nothing and a crash of the machine
    /// at most the interval.
    #[default]
    Interval,
    /// Never explicitly: the operating system writes back when it likes (about 30 s on
    /// Linux). A process crash loses nothing, a machine crash may lose that much.
    Never,
}

/// Where a new in-memory history starts its revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MemoryRevisions {
    /// Above any revision an earlier history of the same room on this server could have
    /// reached: the server's start time in microseconds (the default). See
    /// [`MemoryStorage`](super::MemoryStorage).
    #[default]
    RestartSafe,
    /// At 0, as the protocol's fixtures expect (tests; `serve --test-clock` uses it).
    FromZero,
}

/// The `[storage]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageConfig {
    /// `memory` (the default) or `disk`.
    pub backend: Backend,
    /// The data directory of the `disk` backend (default `deltasync-data`).
    pub dir: PathBuf,
    /// When the log is fsynced (default `interval`).
    pub sync: SyncPolicy,
    /// The fsync period of `sync = "interval"`, in ms (default 100).
    pub sync_interval_ms: u64,
    /// A snapshot is stored every this many operations of a room (default 10,000), so
    /// recovery replays at most that many.
    pub snapshot_every: u64,
    /// A segment of the log is closed and a new one started past this size (default
    /// 16 MiB). Compaction deletes whole segments.
    pub segment_bytes: u64,
    /// Operations kept in the log behind the latest snapshot, beyond what the ring needs
    /// (default 0: segments wholly older than the snapshot and the ring are deleted).
    pub retain_ops: u64,
    /// Where a new in-memory history starts (default `restart-safe`).
    pub memory_revisions: MemoryRevisions,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Memory,
            dir: PathBuf::from("deltasync-data"),
            sync: SyncPolicy::Interval,
            sync_interval_ms: 100,
            snapshot_every: 10_000,
            segment_bytes: 16 << 20,
            retain_ops: 0,
            memory_revisions: MemoryRevisions::RestartSafe,
        }
    }
}

/// The `[cluster]` section: several nodes sharing rooms through a Redis engine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// The engine's URL (`redis://host:port`); `None` (the default): one node, the
    /// `[storage]` backend.
    pub url: Option<String>,
    /// How many times in a row a commit may find that another node took its revision
    /// first before it is refused as retryable (default 64). Each loss means another node
    /// committed, so the room itself always progresses; the bound only keeps one update
    /// from holding its shard through an endless streak of lost races.
    pub commit_retries: u32,
    /// How long a call to the engine may take, connecting included, in ms (default 2000).
    pub timeout_ms: u64,
    /// How long a node's heartbeat key lives in the engine, in ms (default 10,000): a node
    /// refreshes it three times per period, and once it has expired the other nodes take
    /// the node for dead and commit the `leave` of the participants only it held.
    pub node_ttl_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            url: None,
            commit_retries: 64,
            timeout_ms: 2000,
            node_ttl_ms: 10_000,
        }
    }
}

/// A word that is not one of the choices of a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of {choices}")]
pub struct UnknownChoice {
    /// The accepted words, quoted and separated by commas.
    pub choices: &'static str,
}

macro_rules! words {
    ($type:ty, $choices:literal, $($word:literal => $value:path),+ $(,)?) => {
        impl FromStr for $type {
            type Err = UnknownChoice;
            fn from_str(text: &str) -> Result<Self, UnknownChoice> {
                match text {
                    $($word => Ok($value),)+
                    _ => Err(UnknownChoice { choices: $choices }),
                }
            }
        }
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let word = match self {
                    $($value => $word,)+
                };
                f.write_str(word)
            }
        }
    };
}

words!(Backend, r#""memory", "disk""#, "memory" => Backend::Memory, "disk" => Backend::Disk);
words!(
    SyncPolicy,
    r#""always", "interval", "never""#,
    "always" => SyncPolicy::Always,
    "interval" => SyncPolicy::Interval,
    "never" => SyncPolicy::Never,
);
words!(
    MemoryRevisions,
    r#""restart-safe", "from-zero""#,
    "restart-safe" => MemoryRevisions::RestartSafe,
    "from-zero" => MemoryRevisions::FromZero,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_a_typo_lists_the_choices() {
        for policy in [SyncPolicy::Always, SyncPolicy::Interval, SyncPolicy::Never] {
            assert_eq!(policy.to_string().parse(), Ok(policy));
        }
        assert_eq!(
            "Disk".parse::<Backend>().unwrap_err().to_string(),
            r#"must be one of "memory", "disk""#
        );
    }
}
