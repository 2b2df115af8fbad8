//! The cluster backend: several nodes share rooms through Redis Streams.
//!
//! Each room's history is one Redis stream whose entry ids are the revisions (`rev-0`),
//! beside a head counter, the epoch and the latest snapshot (see `docs/cluster.md` for the
//! picture and the failure table). Every node keeps its own replica of each room it has
//! clients in (model, ring, snapshot) and fans out to its own clients from its own ring,
//! exactly as one node does; only the commit path and the tailer talk to the engine.
//!
//! # Commits: optimistic, against the log
//!
//! A node decides an operation against its replica at revision `N` and appends it with
//! "the room is at `N`": one Lua script checks the head counter and adds the entry at
//! `N+1` atomically, so no two nodes can ever write the same revision. When another node
//! got there first the append is refused ([`StorageError::Conflict`]); the room reads
//! the records it missed, applies them, checks the dedup window again (the other node may
//! have committed this very `clientReqId`: then the answer is "duplicate, applied at
//! `appliedRev`"), decides again and retries, a bounded number of times
//! (`cluster.commit_retries`). No lease, no owner: a node that dies holds nothing that
//! others wait for, and a room with one busy writer pays one round trip per commit.
//!
//! # Tailing
//!
//! One thread per node (`tailer`) reads every followed room's stream from the room's
//! head and hands the records to the room, which applies them and puts **the bytes the
//! committing node encoded** into its ring: encode once, across the cluster.
//!
//! A node that lagged until the engine trimmed the revisions it still needed (behind a
//! newer stored snapshot) rebuilds the room in place from the snapshot and the tail
//! (`RoomLog::reload`, see `room::rebuild`), under the same epoch.
//!
//! # Participants of a node that dies
//!
//! Each node heartbeats a key with a time-to-live and records which participants it holds
//! beside each room's log; a live node commits the `leave` of present participants no
//! live node holds (`liveness`).
//!
//! # Epoch
//!
//! The first node to open a room stores a random epoch with `SET NX`; every node reads
//! that one. A client may therefore reconnect to any node and resume with deltas.
//!
//! # Outage
//!
//! Every engine call has a timeout (`cluster.timeout_ms`). While the engine does not
//! answer, commits are refused with `UNAVAILABLE` before anything is applied; reads,
//! resumes within the ring and connected clients go on from the node's replica. When it
//! answers again the tailer catches up and commits resume. [`RedisStorage::health`] says
//! whether it answered last time, and since when not.
//!
//! # What an acknowledgement promises
//!
//! The engine answers an append once it is as durable as its own settings make it:
//! with `appendonly yes` and `appendfsync always` the entry is fsynced on the engine's
//! disk before any client sees it; `everysec` may lose the last second if the engine's
//! machine dies; replicas only help with `WAIT` (not used here), since Redis replicates
//! asynchronously.

mod engine;
mod liveness;
mod log;
mod tailer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::epoch::Epoch;

use super::{
    BackendDown, ClusterConfig, History, Opened, Recovered, Storage, StorageConfig, StorageError,
    snapfile,
};

use engine::Engine;
pub use engine::{EngineDown, EngineHealth};
use log::{Keys, RedisLog};
use tailer::Followed;

/// What this node's logs did so far (for metrics, tests and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Appends the engine accepted.
    pub appends: u64,
    /// Appends refused because another node had taken the revision (each one a catch-up
    /// and a new decision).
    pub conflicts: u64,
    /// Records other nodes committed, read by the tailer.
    pub tailed: u64,
}

/// The counters behind [`ClusterStats`].
#[derive(Default)]
struct Counters {
    appends: AtomicU64,
    conflicts: AtomicU64,
    tailed: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        // Relaxed: statistics, each read on its own.
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn read(&self) -> ClusterStats {
        // Relaxed: see `add`.
        ClusterStats {
            appends: self.appends.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            tailed: self.tailed.load(Ordering::Relaxed),
        }
    }
}

/// What every room's log of one node shares.
pub(super) struct Shared {
    engine: Engine,
    tailer: Followed,
    counters: Counters,
    timeout: Duration,
    commit_retries: u32,
    snapshot_every: u64,
    retain_ops: u64,
    /// This node's random id (its heartbeat key and its entries in rooms' holders).
    node_id: String,
    /// The heartbeat's time-to-live (`cluster.node_ttl_ms`).
    node_ttl_ms: u64,
}

/// Room histories in Redis Streams, shared by every node configured with the same
/// engine. See the [module documentation](self).
pub struct RedisStorage {
    shared: Arc<Shared>,
    tailer: Option<JoinHandle<()>>,
    liveness: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStorage")
            .field("url", &self.shared.engine.url)
            .finish_non_exhaustive()
    }
}

impl RedisStorage {
    /// Connects to the engine at `cluster.url` (checking that it answers) and starts the
    /// node's tailer. `storage` gives the snapshot cadence and the retention behind it.
    ///
    /// # Errors
    ///
    /// [`StorageError::Unavailable`] if no URL is set, it is not a Redis URL, or the
    /// engine does not answer within `cluster.timeout_ms`.
    pub fn connect(cluster: &ClusterConfig, storage: &StorageConfig) -> Result<Self, StorageError> {
        let url = cluster.url.as_deref().unwrap_or_default();
        let timeout = Duration::from_millis(cluster.timeout_ms);
        let shared = Arc::new(Shared {
            engine: Engine::connect(url, timeout)?,
            tailer: Followed::default(),
            counters: Counters::default(),
            timeout,
            commit_retries: cluster.commit_retries,
            snapshot_every: storage.snapshot_every,
            retain_ops: storage.retain_ops,
            node_id: liveness::new_node_id()?,
            node_ttl_ms: cluster.node_ttl_ms,
        });
        // Alive before holding anyone: no node ever sees this node's holders without it.
        liveness::heartbeat(&shared)?;
        let mut storage = Self {
            shared,
            tailer: None,
            liveness: None,
        };
        storage.tailer = Some(storage.spawn("deltasync-tailer", tailer::run)?);
        storage.liveness = Some(storage.spawn("deltasync-liveness", liveness::run)?);
        Ok(storage)
    }

    fn spawn(&self, name: &str, run: fn(&Shared)) -> Result<JoinHandle<()>, StorageError> {
        let shared = Arc::clone(&self.shared);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(&shared))
            .map_err(|e| StorageError::Unavailable {
                url: self.shared.engine.url.clone(),
                reason: format!("cannot start the {name} thread: {e}"),
            })
    }

    /// This node's id in the engine (its heartbeat key is `deltasync:node:<id>`).
    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    /// Whether the engine answered this node the last time it asked (an append, a read,
    /// or the tailer's read or ping, at least every 100 ms plus the timeout), and since
    /// when not. Cheap (two atomic loads, a lock only while it is down): for a health
    /// endpoint. [`Storage::health`] (what `/health` asks) says the same in one line.
    pub fn engine_health(&self) -> EngineHealth {
        self.shared.engine.health()
    }

    /// What this node's logs did so far.
    pub fn stats(&self) -> ClusterStats {
        self.shared.counters.read()
    }
}

impl Storage for RedisStorage {
    fn open(&self, name: &str, ring_capacity: usize) -> Result<Opened, StorageError> {
        let ring_capacity = ring_capacity as u64;
        let (recovered, head) = load_twice(&self.shared, name, ring_capacity)?;
        let snap_rev = recovered.snapshot.as_ref().map_or(0, |s| s.rev);
        let log = RedisLog::new(
            name,
            Arc::clone(&self.shared),
            head,
            snap_rev,
            ring_capacity,
        );
        Ok(Opened {
            history: History::Recovered(recovered),
            log: Some(Arc::new(log)),
        })
    }

    /// Down while the engine does not answer this node: commits are refused
    /// (`UNAVAILABLE`) until it does, so `/health` says 503 with the engine's last error.
    fn health(&self) -> Result<(), BackendDown> {
        match self.engine_health().down {
            None => Ok(()),
            Some(down) => Err(BackendDown {
                reason: format!(
                    "the cluster engine at {} does not answer: {}",
                    self.shared.engine.url, down.reason
                ),
            }),
        }
    }

    fn cluster_stats(&self) -> Option<ClusterStats> {
        Some(self.stats())
    }

    fn describe(&self) -> String {
        format!(
            "cluster on redis at {} (shared by every node on it; an update is as durable as the engine's appendfsync)",
            self.shared.engine.url
        )
    }
}

/// Reads what the engine holds of `name`: epoch (stored now if the room is new),
/// snapshot, and the records after `snapshot - ring_capacity`; and the head. A snapshot
/// stored (and the stream trimmed) between the two reads is [`StorageError::Corrupt`]:
/// read again.
pub(super) fn load(
    shared: &Shared,
    name: &str,
    ring_capacity: u64,
) -> Result<(Recovered, u64), StorageError> {
    let keys = Keys::new(name);
    let fresh = Epoch::random().map_err(|e| StorageError::Failed {
        room: name.to_owned(),
        reason: e.to_string(),
    })?;
    let (epoch, snap): (String, Option<Vec<u8>>) = shared.engine.run(|conn| {
        redis::pipe()
            .cmd("SET")
            .arg(&keys.epoch)
            .arg(fresh.as_str())
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&keys.epoch)
            .cmd("GET")
            .arg(&keys.snap)
            .query(conn)
    })?;
    let corrupt = |what: &str, reason: String| StorageError::Corrupt {
        path: format!("{} {what}", shared.engine.url).into(),
        offset: 0,
        reason,
    };
    let epoch = Epoch::new(&epoch).map_err(|e| corrupt(&keys.epoch, e.to_string()))?;
    let snapshot = match snap {
        Some(bytes) => Some(snapfile::decode(&bytes).ok_or_else(|| {
            corrupt(
                &keys.snap,
                "the snapshot does not match its checksum".into(),
            )
        })?),
        None => None,
    };
    let snap_rev = snapshot.as_ref().map_or(0, |s| s.rev);
    let records = log::read_range(shared, &keys.log, snap_rev.saturating_sub(ring_capacity))?;
    if records.first().is_some_and(|r| r.rev > snap_rev + 1) {
        return Err(corrupt(
            &keys.log,
            format!("the stream starts after the snapshot at {snap_rev}"),
        ));
    }
    let head = records.last().map_or(snap_rev, |r| r.rev).max(snap_rev);
    let keep_after = snap_rev.min(head.saturating_sub(ring_capacity));
    let tail = records.into_iter().filter(|r| r.rev > keep_after).collect();
    Ok((
        Recovered {
            epoch,
            snapshot,
            tail,
        },
        head,
    ))
}

/// [`load`], once more if a snapshot was stored between its reads.
pub(super) fn load_twice(
    shared: &Shared,
    name: &str,
    ring_capacity: u64,
) -> Result<(Recovered, u64), StorageError> {
    match load(shared, name, ring_capacity) {
        Err(StorageError::Corrupt { .. }) => load(shared, name, ring_capacity),
        other => other,
    }
}

impl Drop for RedisStorage {
    fn drop(&mut self) {
        self.shared.tailer.stop();
        for thread in [self.tailer.take(), self.liveness.take()]
            .into_iter()
            .flatten()
        {
            let _ = thread.join();
        }
    }
}
