//! Where a room's history lives: one seam the room commits through, and its backends.
//!
//! The engine never knows where history is kept. A [`Storage`] opens a room's history by
//! name and hands back what it found ([`History`]: a new history with its epoch, or a
//! recovered one: epoch, latest snapshot, the tail of the log) and, for a durable backend,
//! a [`RoomLog`] the room appends each commit to. Backends:
//!
//! | backend | keeps | an acknowledged update survives |
//! |---|---|---|
//! | [`MemoryStorage`] | nothing: a restart starts every room anew, under a new epoch | nothing |
//! | [`DiskStorage`] | per room: epoch, checksummed log of every operation, snapshots | see [`SyncPolicy`] |
//! | `RedisStorage` (feature `cluster`) | the same in Redis Streams, shared by several nodes | as the engine's `appendfsync` promises |
//!
//! # The seam
//!
//! [`RoomLog`] is shaped for a distributed log as much as for a file: an append names the
//! revision it expects to write ([`RecordRef::rev`], one more than the log's last; a log
//! that finds another refuses with [`StorageError::Conflict`], which is exactly
//! JetStream's "expected last sequence"), durability is reported asynchronously
//! ([`DurableListener`]: "durable up to revision r"), and recovery is "latest snapshot +
//! the tail after it". Nothing in the trait assumes a local file.
//!
//! # Encode once, off the fan-out path
//!
//! A record holds the operation exactly as the ring holds it: the commit encodes it once,
//! appends those bytes to the log and to the ring, and recovery refills the ring with the
//! same bytes, so what a client gets after a restart is byte for byte what it would have
//! got before. Shards never touch storage: they read only the ring and the published
//! snapshot. Storage sits on the commit path (one `write` per commit, under the room's
//! commit lock) and on the visibility path (see below), never on the read path.
//!
//! # Visibility: nobody sees what is not durable
//!
//! The room assigns the revision, applies, encodes and appends under its commit lock, but
//! connections are brought only up to the *published* revision, and under
//! [`SyncPolicy::Always`] the published revision follows the log's durable revision: the
//! syncer fsyncs a batch and only then reports it durable, the room then publishes it and
//! wakes the shards. So no client, the writer included, sees an operation (its ack, the
//! echoed `clientReqId`) before it is on disk, and every commit that arrived during one
//! fsync rides the next one: group commit, one fsync per batch per room file, however many
//! writers. Snapshots follow the same rule (a snapshot handed to a client is at a durable
//! revision, waiting for the fsync if needed), and a duplicate `clientReqId` is answered
//! with `appliedRev` only once that revision was sent to the client, so the
//! `FAILED_PRECONDITION` answer never acknowledges anything volatile either.
//!
//! Under [`SyncPolicy::Interval`] and [`SyncPolicy::Never`] the record has been handed to
//! the operating system (`write`) before the commit returns, so it is published at once: a
//! crash of the process loses nothing, a crash of the machine loses at most the interval.
//!
//! # Why a segment log of our own
//!
//! The write pattern is per room: sequential appends, group-committed fsyncs, a tail read
//! on recovery, whole-file deletion behind a snapshot. Measured on this machine (2 cores,
//! ext4 on a virtual disk, busy with other builds; 120-byte records, every writer waiting
//! for durability; `/tmp/walbench`, see `docs/benchmarks.md`): a plain appended file with
//! one syncer thread did 451 (1 writer), 4,044 (10) and 9,580 (100 writers) durable
//! appends/s; `redb` (one write transaction per append) 752, 3,456, 1,262; `okaywal` 3,494,
//! 22,507, 44,605. A second run (the plain file preallocated) gave plain 1,025 / 5,970 /
//! 25,052, redb 1,162 / 2,058 / 780, okaywal 1,136 / 6,748 / 42,524: the figures swing 3x
//! with the machine's load, and group commit is what matters, which redb does not do across
//! writers and a syncer thread does. `okaywal` batches well but is one log for everything,
//! replayed in full when opened, with checkpoints meant to move entries into a real store:
//! it would sit in front of the per-room files we need anyway for lazy loading and
//! compaction, doubling the writes. So the log is ours: a few hundred lines of framing,
//! scan and rotation ([`record`] and `disk`), CRC-32C from the `crc32c` crate.
//!
//! # Lazy loading
//!
//! A room is read from disk when it is first used (a connection to it, or
//! [`Server::room`](crate::server::Server::room)), not when the server starts: opening a
//! data directory of 10,000 rooms takes about a millisecond, loading one room about 0.1 ms
//! (60 ms for a room with a full snapshot interval to replay), measured in
//! `docs/benchmarks.md`. Eager loading would make start-up cost the sum of every room and
//! hold every ring in memory for rooms nobody uses; the registry drops idle rooms anyway.
//!
//! # The default policy
//!
//! `interval` (100 ms): the record reaches the kernel before the commit returns, so the
//! failures a server actually meets (a crash, an OOM kill, `kill -9`, a deploy) lose
//! nothing, at memory mode's latency; only a machine crash or power cut loses the last
//! interval. `always` is one setting away for those who need that too, and costs one fsync
//! of latency per delivery.
//!
//! # Layout on disk
//!
//! ```text
//! DIR/LOCK                               held (OS file lock) while a server runs
//! DIR/rooms/<name as hex>/meta.json      {"name", "epoch"} (written once, durably)
//! DIR/rooms/<…>/<first rev:020>.log      segments of records (see `record`)
//! DIR/rooms/<…>/<rev:020>.snap           snapshots (state + dedup window), newest wins
//! ```

#[cfg(feature = "cluster")]
pub mod cluster;
mod config;
mod disk;
mod memory;
pub mod record;
mod snapfile;
mod syncer;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::clock::Clock;
use crate::epoch::Epoch;

#[cfg(feature = "cluster")]
pub use cluster::RedisStorage;
pub use config::{
    Backend, ClusterConfig, MemoryRevisions, StorageConfig, SyncPolicy, UnknownChoice,
};
pub use disk::DiskStorage;
pub use memory::MemoryStorage;
pub use record::{Record, RecordRef};
pub use snapfile::{DedupEntry, StoredSnapshot};
pub use syncer::SyncStats;

/// Opens room histories. One per server, shared by every room.
pub trait Storage: Send + Sync + 'static {
    /// Opens the history of the room called `name`: a new one (with its epoch, now kept)
    /// or the one found, and the log to append to (`None` when nothing is kept). The tail
    /// recovered reaches back `ring_capacity` operations, to refill the room's ring.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the history cannot be read or is corrupt: the room must not
    /// be served from part of it.
    fn open(&self, name: &str, ring_capacity: usize) -> Result<Opened, StorageError>;

    /// One line for the startup message: `memory (nothing is kept across restarts)`.
    fn describe(&self) -> String;

    /// Whether the backend can keep commits now: the server's `/health` and `/ready`
    /// answer 503 with the reason while it cannot. Called at each probe, off the hot path.
    /// The default: always up.
    ///
    /// # Errors
    ///
    /// [`BackendDown`] with a one-line reason while the backend is down.
    fn health(&self) -> Result<(), BackendDown> {
        Ok(())
    }

    /// What the backend's syncer has done (fsyncs and their latency), for `/metrics`;
    /// `None` (the default) for a backend without one.
    fn sync_stats(&self) -> Option<SyncStats> {
        None
    }

    /// What this node's shared log did (the cluster backend: appends, appends lost to
    /// another node and decided again, records tailed), for `/metrics`; `None` (the
    /// default) for a backend alone on its history.
    #[cfg(feature = "cluster")]
    fn cluster_stats(&self) -> Option<cluster::ClusterStats> {
        None
    }
}

/// A storage backend cannot keep commits now (see [`Storage::health`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct BackendDown {
    /// What is wrong, in one line.
    pub reason: String,
}

/// What [`Storage::open`] found.
pub struct Opened {
    /// The history to start the room from.
    pub history: History,
    /// Where commits go; `None` for a backend that keeps nothing.
    pub log: Option<Arc<dyn RoomLog>>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("history", &self.history)
            .field("log", &self.log.is_some())
            .finish()
    }
}

/// A room's history as storage has it.
#[derive(Debug)]
#[non_exhaustive]
pub enum History {
    /// Nothing was stored: the history starts now, at `first_rev`, under `epoch`.
    New {
        /// The new history's epoch (already stored by a durable backend).
        epoch: Epoch,
        /// The revision the history starts at (0 on disk; see [`MemoryStorage`] for why
        /// memory may start higher).
        first_rev: u64,
    },
    /// A stored history.
    Recovered(Recovered),
}

/// A stored history: the epoch, the latest snapshot, and the records after
/// `head - ring capacity` (to refill the ring) or after the snapshot, whichever is older.
#[derive(Debug)]
pub struct Recovered {
    /// The history's epoch, as first stored.
    pub epoch: Epoch,
    /// The latest snapshot, if one was taken.
    pub snapshot: Option<StoredSnapshot>,
    /// Consecutive records, oldest first, ending at the head.
    pub tail: Vec<Record>,
}

/// A room's append-only log of committed operations.
pub trait RoomLog: Send + Sync {
    /// Appends one committed operation. `record.rev` must be one more than the last
    /// revision appended (or than the history's start). The room calls this under its
    /// commit lock, before it applies the operation, so a refused append commits nothing.
    ///
    /// # Errors
    ///
    /// [`StorageError::Conflict`] for an unexpected revision; [`StorageError::Io`] if the
    /// write failed (a full disk): nothing of the record is kept, and a later append may
    /// succeed; [`StorageError::Failed`] once the log is unusable until a restart.
    fn append(&self, record: &RecordRef<'_>) -> Result<(), StorageError>;

    /// The highest revision that is as durable as the sync policy promises. Revisions
    /// above it must not be shown to anyone.
    fn durable_rev(&self) -> u64;

    /// Whether the durable revision may lag appends (the room must then wait for
    /// [`DurableListener::durable`] before publishing).
    fn reports_durability(&self) -> bool;

    /// Tells `listener` each time the durable revision moves. Set once, before the first
    /// append.
    fn listen(&self, listener: Arc<dyn DurableListener>);

    /// Whether a snapshot at `rev` is due (the snapshot cadence).
    fn snapshot_due(&self, rev: u64) -> bool;

    /// Stores `snapshot` (in the background: after the log is durable up to its revision),
    /// then drops what it makes unnecessary (compaction).
    fn save_snapshot(&self, snapshot: StoredSnapshot);

    /// Whether other nodes append to this log too (the cluster backend): the room then
    /// follows it ([`RoomLog::follow`]), catches up on a [`StorageError::Conflict`], and
    /// leaves the expiry of participants it did not see connect to the nodes that did.
    fn is_shared(&self) -> bool {
        false
    }

    /// How many times in a row a commit may find that another node took its revision
    /// first (catching up and deciding again each time) before it is refused as
    /// retryable. 0 (the default): a conflict is refused at once.
    fn conflict_retries(&self) -> u32 {
        0
    }

    /// The records after revision `rev`, oldest first, as far as the log goes (a shared
    /// log: what other nodes committed). The default, for a log only this room writes:
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the log cannot be read.
    fn read_after(&self, rev: u64) -> Result<Vec<Record>, StorageError> {
        let _ = rev;
        Ok(Vec::new())
    }

    /// Hands what other nodes commit to `follower` from now on (a shared log; the
    /// default does nothing).
    fn follow(&self, follower: Arc<dyn Follower>) {
        let _ = follower;
    }

    /// The history as a node opening the room now would find it (epoch, latest snapshot,
    /// the tail after it): for a room that fell behind a shared log's retention, whose
    /// next revision the log no longer holds, to rebuild in place. The default, for a log
    /// only this room writes (it never falls behind): `None`.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the log cannot be read.
    fn reload(&self) -> Result<Option<Recovered>, StorageError> {
        Ok(None)
    }

    /// Tells the other nodes of a shared log that this node holds `actor` (a connection
    /// is, or is about to be, bound to it here): called before its join is committed, so
    /// that no node ever finds it present and held by no live node. The default: nothing.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the log cannot be written (the node's liveness sweep tries
    /// again).
    fn hold(&self, actor: &str) -> Result<(), StorageError> {
        let _ = actor;
        Ok(())
    }

    /// This node no longer holds `actor` (it left, or its time-to-live ran out here).
    /// The default: nothing.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the log cannot be written (the node's liveness sweep tries
    /// again).
    fn let_go(&self, actor: &str) -> Result<(), StorageError> {
        let _ = actor;
        Ok(())
    }

    /// Whether some live node holds `actor` (a shared log: the participants of a node
    /// that died are held by no live node, and leave). The default: `true`.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the log cannot be read.
    fn held_by_a_live_node(&self, actor: &str) -> Result<bool, StorageError> {
        let _ = actor;
        Ok(true)
    }
}

/// A room as the tailer of a shared log sees it (see [`RoomLog::follow`]).
pub trait Follower: Send + Sync {
    /// The room's head, or `None` once the room is gone (the tailer then lets go).
    fn head(&self) -> Option<u64>;

    /// Records read from the log after the head, oldest first.
    fn ingest(&self, records: Vec<Record>);

    /// The participants the room's state holds as present.
    fn present(&self) -> Vec<String> {
        Vec::new()
    }

    /// Makes the log's record of what this node holds match the room's attachments:
    /// `held` is what the log says this node holds; [`RoomLog::hold`] what is missing,
    /// [`RoomLog::let_go`] what is no longer attached.
    fn reconcile_holds(&self, held: &[String]) {
        let _ = held;
    }

    /// Commits the `leave` of each of `actors` that is still present, has no connection
    /// here, and that no live node holds ([`RoomLog::held_by_a_live_node`], asked again
    /// against the log's head).
    fn expire_unheld(&self, actors: &[String]) {
        let _ = actors;
    }
}

/// Told when a log's durable revision moves.
pub trait DurableListener: Send + Sync {
    /// Every revision up to `rev` is now durable.
    fn durable(&self, rev: u64);
}

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`write`, `create`, `read`).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Another running server holds the data directory.
    #[error("the data directory {path} is locked by another running deltasync server")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// Stored data does not check out: the room is not served from part of it.
    #[error("corrupt data in {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the bad record starts (0 for a whole file).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An append named another revision than the log expects next.
    #[error("the log expects revision {expected}, not {found}")]
    Conflict {
        /// The revision the log would accept.
        expected: u64,
        /// The revision the append named.
        found: u64,
    },
    /// The log cannot be used any more (a failed fsync leaves the file's state unknown);
    /// the server must be restarted to recover it from what is on disk.
    #[error("the log of room {room:?} is unusable until restart: {reason}")]
    Failed {
        /// The room.
        room: String,
        /// What failed first.
        reason: String,
    },
    /// The room's log is still open in this process (another instance of the room, or the
    /// previous one still closing).
    #[error("room {room:?} is still open in this process; try again")]
    InUse {
        /// The room.
        room: String,
    },
    /// The cluster's engine cannot be reached, or answered with an error: nothing was
    /// stored (or, when its answer was lost, the append may have been stored: a retry of
    /// the same `clientReqId` is then answered as a duplicate).
    #[error("the cluster engine at {url} is unavailable: {reason}")]
    Unavailable {
        /// The engine's address, without credentials.
        url: String,
        /// What failed.
        reason: String,
    },
    /// A record field is over the format's limits.
    #[error(transparent)]
    TooLong(#[from] record::TooLong),
}

impl StorageError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The storage `config` asks for, opened (a data directory is created and locked here).
/// `clock` dates the start of in-memory histories (see [`MemoryStorage`]).
///
/// # Errors
///
/// [`StorageError`] if the data directory cannot be created, is not writable, or is
/// locked by another running server.
pub fn open(config: &StorageConfig, clock: &dyn Clock) -> Result<Arc<dyn Storage>, StorageError> {
    Ok(match config.backend {
        Backend::Memory => Arc::new(MemoryStorage::new(config.memory_revisions, clock)),
        Backend::Disk => Arc::new(DiskStorage::open(config)?),
    })
}

// Rooms use loom atomics under `cfg(loom)`; only the loom models run there.
#[cfg(all(test, not(loom)))]
mod tests;
