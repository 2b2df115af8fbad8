//! The disk backend: a data directory locked by one server, one folder per room with its
//! epoch, its log segments and its snapshots; recovery reads the newest snapshot and the
//! tail of the log after it.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::epoch::Epoch;

use super::record::{self, Record, RecordRef};
use super::snapfile::{self, StoredSnapshot};
use super::syncer::{SyncStats, Syncer};
use super::{
    BackendDown, DurableListener, History, Opened, Recovered, RoomLog, Storage, StorageConfig,
    StorageError, SyncPolicy,
};

/// Room histories in a data directory. See the [module documentation](super) for the
/// layout and what each sync policy promises.
pub struct DiskStorage {
    dir: PathBuf,
    config: StorageConfig,
    syncer: Arc<Syncer>,
    open_logs: Mutex<HashMap<String, Weak<DiskLog>>>,
    /// Test hook: the next appends fail as a full disk would, after writing half a record.
    fail_writes: Arc<AtomicBool>,
    /// Held for the life of the storage: the OS lock that keeps a second server out.
    _lock: File,
}

impl std::fmt::Debug for DiskStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStorage")
            .field("dir", &self.dir)
            .field("sync", &self.config.sync)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Meta {
    name: String,
    epoch: Epoch,
}

impl DiskStorage {
    /// Creates (if needed) and locks `config.dir`, and starts the syncer thread.
    ///
    /// # Errors
    ///
    /// [`StorageError::Io`] naming the path if the directory cannot be created or written,
    /// [`StorageError::Locked`] if another running server holds it.
    pub fn open(config: &StorageConfig) -> Result<Self, StorageError> {
        let dir = config.dir.clone();
        fs::create_dir_all(dir.join("rooms"))
            .map_err(|e| StorageError::io("create the data directory", &dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StorageError::io("create the lock file", &lock_path, e))?;
        // `fs4` rather than std's `File::try_lock` (Rust 1.89, above our MSRV): an advisory
        // `flock`, released by the kernel when the process dies, SIGKILL included.
        match fs4::FileExt::try_lock(&lock) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                return Err(StorageError::Locked { path: lock_path });
            }
            Err(fs4::TryLockError::Error(e)) => {
                return Err(StorageError::io("lock", lock_path, e));
            }
        }
        // A probe write: a read-only directory fails here, at start, not at the first commit.
        let probe = dir.join("LOCK");
        fs::write(&probe, std::process::id().to_string())
            .map_err(|e| StorageError::io("write in the data directory", &probe, e))?;
        Ok(Self {
            dir,
            config: config.clone(),
            syncer: Syncer::start(config.sync, config.sync_interval_ms),
            open_logs: Mutex::new(HashMap::new()),
            fail_writes: Arc::new(AtomicBool::new(false)),
            _lock: lock,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the syncer did so far (fsync batches, for tests and benchmarks).
    pub fn stats(&self) -> SyncStats {
        self.syncer.stats()
    }

    /// Why an open room log is unusable (a failed fsync), if one is.
    fn failed_log(&self) -> Option<String> {
        let logs: Vec<Arc<DiskLog>> = self
            .open_logs
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        logs.iter().find_map(|log| {
            let reason = log.state.lock().failed.clone()?;
            Some(format!(
                "the log of room {:?} is unusable: {reason}",
                log.room
            ))
        })
    }

    /// Stops the syncer after it has synced and stored everything queued, and says what
    /// it did. (Dropping the storage does the same.)
    pub fn close(self) -> SyncStats {
        self.syncer.stop();
        self.syncer.stats()
    }

    /// Test hook: while `fail` is set, every append writes half its record and then fails
    /// with "No space left on device", as a full disk does.
    #[doc(hidden)]
    pub fn fail_writes(&self, fail: bool) {
        // Relaxed: a test switch, read on its own by each append.
        self.fail_writes.store(fail, Ordering::Relaxed);
    }

    /// Test hook: holds (or releases) the syncer, so that commits pile up in one batch.
    #[doc(hidden)]
    pub fn pause_syncer(&self, paused: bool) {
        self.syncer.pause(paused);
    }

    fn room_dir(&self, name: &str) -> PathBuf {
        self.dir.join("rooms").join(dir_name(name))
    }
}

impl Drop for DiskStorage {
    fn drop(&mut self) {
        self.syncer.stop();
    }
}

/// The folder of a room (and the cluster backend's hash tag): its name in hex (names are request paths, with `/` and more),
/// or, for a long name, a prefix and a hash (the name in `meta.json` tells them apart).
pub(super) fn dir_name(name: &str) -> String {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    if name.len() <= 100 {
        return format!("r{}", hex(name.as_bytes()));
    }
    let hash = (u64::from(crc32c::crc32c(name.as_bytes())) << 32)
        | u64::from(crc32c::crc32c_append(0x5bd1_e995, name.as_bytes()));
    format!("h{}-{hash:016x}", hex(&name.as_bytes()[..60]))
}

impl Storage for DiskStorage {
    fn open(&self, name: &str, ring_capacity: usize) -> Result<Opened, StorageError> {
        let dir = self.room_dir(name);
        let mut open_logs = self.open_logs.lock();
        // A room dropped while idle may still have its log in the syncer's hands (a last
        // fsync, a snapshot and its compaction): wait for that, so that the new instance
        // never reads files the old one is deleting. Bounded: one interval or snapshot.
        for _ in 0..400 {
            if open_logs.get(name).and_then(Weak::upgrade).is_none() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if open_logs.get(name).and_then(Weak::upgrade).is_some() {
            return Err(StorageError::InUse {
                room: name.to_owned(),
            });
        }
        let meta_path = dir.join("meta.json");
        let (history, tail_end, snap_rev) = if meta_path.exists() {
            let recovered = recover(&dir, name, ring_capacity as u64)?;
            let snap_rev = recovered.snapshot.as_ref().map_or(0, |s| s.rev);
            let head = recovered.tail.last().map_or(0, |r| r.rev).max(snap_rev);
            (History::Recovered(recovered), head, snap_rev)
        } else {
            let epoch = create_room(&dir, name)?;
            (
                History::New {
                    epoch,
                    first_rev: 0,
                },
                0,
                0,
            )
        };
        let log = DiskLog::open(self, name, dir, tail_end, ring_capacity as u64)?;
        // The cadence counts from the stored snapshot, not from the restart: a room
        // restarted every few operations still gets its snapshots, and replay stays short.
        log.last_snapshot.store(snap_rev, Ordering::Relaxed);
        open_logs.retain(|_, weak| weak.strong_count() > 0);
        open_logs.insert(name.to_owned(), Arc::downgrade(&log));
        Ok(Opened {
            history,
            log: Some(log),
        })
    }

    fn describe(&self) -> String {
        let sync = match self.config.sync {
            SyncPolicy::Interval => format!("interval, {} ms", self.config.sync_interval_ms),
            other => other.to_string(),
        };
        format!("disk at {} (sync {sync})", self.dir.display())
    }

    /// Down while an open room's log is unusable (a failed fsync leaves its file's state
    /// unknown until a restart).
    fn health(&self) -> Result<(), BackendDown> {
        match self.failed_log() {
            Some(reason) => Err(BackendDown { reason }),
            None => Ok(()),
        }
    }

    fn sync_stats(&self) -> Option<SyncStats> {
        Some(self.syncer.stats())
    }
}

/// Creates a room's folder and its `meta.json` (durably: temporary file, fsync, rename,
/// fsync of the folders), and returns the new history's epoch.
fn create_room(dir: &Path, name: &str) -> Result<Epoch, StorageError> {
    fs::create_dir_all(dir).map_err(|e| StorageError::io("create", dir, e))?;
    let epoch = Epoch::random().map_err(|e| StorageError::Failed {
        room: name.to_owned(),
        reason: e.to_string(),
    })?;
    let meta = Meta {
        name: name.to_owned(),
        epoch: epoch.clone(),
    };
    let json = serde_json::to_vec(&meta).map_err(|e| StorageError::Failed {
        room: name.to_owned(),
        reason: e.to_string(),
    })?;
    write_durably(&dir.join("meta.json"), &json)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(epoch)
}

/// Writes `data` to `path` whole or not at all: a temporary file, fsynced, renamed, and
/// the folder fsynced.
pub(super) fn write_durably(path: &Path, data: &[u8]) -> Result<(), StorageError> {
    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp).map_err(|e| StorageError::io("create", &tmp, e))?;
    file.write_all_at(data, 0)
        .and_then(|()| file.sync_all())
        .map_err(|e| StorageError::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| StorageError::io("rename", &tmp, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("sync", dir, e))
}

/// A segment file: the revision its first record has (its name) and its path.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    pub(super) first_rev: u64,
    pub(super) path: PathBuf,
}

/// The files of a room folder of one kind (`log`, `snap`), by the revision in their
/// names, oldest first. Leftover temporary files are removed.
fn list(dir: &Path, extension: &str) -> Result<Vec<Segment>, StorageError> {
    let mut found = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| StorageError::io("read", dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| StorageError::io("read", dir, e))?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            let _ = fs::remove_file(&path);
            continue;
        }
        if path.extension().is_none_or(|e| e != extension) {
            continue;
        }
        let first_rev = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| StorageError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: "a file name that is not a revision".into(),
            })?;
        found.push(Segment { first_rev, path });
    }
    found.sort_by_key(|s| s.first_rev);
    Ok(found)
}

pub(super) fn segment_path(dir: &Path, first_rev: u64) -> PathBuf {
    dir.join(format!("{first_rev:020}.log"))
}

pub(super) fn snapshot_path(dir: &Path, rev: u64) -> PathBuf {
    dir.join(format!("{rev:020}.snap"))
}

/// Reads a room's history: `meta.json`, the newest snapshot, and the records needed to
/// replay after it and to refill a ring of `ring_capacity`. A torn tail of the last
/// segment is truncated (one warning); anything else that does not check out is an error.
fn recover(dir: &Path, name: &str, ring_capacity: u64) -> Result<Recovered, StorageError> {
    let meta_path = dir.join("meta.json");
    let meta_bytes = fs::read(&meta_path).map_err(|e| StorageError::io("read", &meta_path, e))?;
    let meta: Meta = serde_json::from_slice(&meta_bytes).map_err(|e| StorageError::Corrupt {
        path: meta_path.clone(),
        offset: 0,
        reason: e.to_string(),
    })?;
    if meta.name != name {
        return Err(StorageError::Corrupt {
            path: meta_path,
            offset: 0,
            reason: format!("the folder belongs to room {:?}", meta.name),
        });
    }
    let snapshot = newest_snapshot(dir)?;
    let snap_rev = snapshot.as_ref().map_or(0, |s| s.rev);
    let from = snap_rev.saturating_sub(ring_capacity);
    let records = read_segments(dir, from)?;
    let head = records.last().map_or(snap_rev, |r| r.rev).max(snap_rev);
    check_continuity(dir, &records, snap_rev)?;
    let keep_after = snap_rev.min(head.saturating_sub(ring_capacity));
    let tail = records.into_iter().filter(|r| r.rev > keep_after).collect();
    Ok(Recovered {
        epoch: meta.epoch,
        snapshot,
        tail,
    })
}

fn newest_snapshot(dir: &Path) -> Result<Option<StoredSnapshot>, StorageError> {
    let Some(newest) = list(dir, "snap")?.pop() else {
        return Ok(None);
    };
    let data = fs::read(&newest.path).map_err(|e| StorageError::io("read", &newest.path, e))?;
    match snapfile::decode(&data) {
        Some(snapshot) if snapshot.rev == newest.first_rev => Ok(Some(snapshot)),
        _ => Err(StorageError::Corrupt {
            path: newest.path,
            offset: 0,
            reason: "the snapshot does not match its checksum".into(),
        }),
    }
}

/// The records of every segment that may hold a revision after `from`, in order.
fn read_segments(dir: &Path, from: u64) -> Result<Vec<Record>, StorageError> {
    let segments = list(dir, "log")?;
    let mut records = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if segments
            .get(i + 1)
            .is_some_and(|next| next.first_rev <= from + 1)
        {
            continue;
        }
        let data =
            fs::read(&segment.path).map_err(|e| StorageError::io("read", &segment.path, e))?;
        let scan = record::scan(&data).map_err(|c| StorageError::Corrupt {
            path: segment.path.clone(),
            offset: c.offset,
            reason: c.reason.into(),
        })?;
        if scan.torn > 0 {
            if !last {
                return Err(StorageError::Corrupt {
                    path: segment.path.clone(),
                    offset: scan.valid_len,
                    reason: "a truncated record before the last segment".into(),
                });
            }
            truncate_torn(&segment.path, scan.valid_len, scan.torn)?;
        }
        if let Some(first) = scan.records.first().filter(|r| r.rev != segment.first_rev) {
            return Err(StorageError::Corrupt {
                path: segment.path.clone(),
                offset: 0,
                reason: format!("the segment starts at revision {}", first.rev),
            });
        }
        records.extend(scan.records.into_iter().filter(|r| r.rev > from));
    }
    Ok(records)
}

fn truncate_torn(path: &Path, valid_len: u64, torn: u64) -> Result<(), StorageError> {
    tracing::warn!(
        file = %path.display(),
        offset = valid_len,
        dropped_bytes = torn,
        "dropped a torn record at the end of the log (a crash mid-write)"
    );
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(valid_len).and_then(|()| f.sync_all()))
        .map_err(|e| StorageError::io("truncate", path, e))
}

/// The records must be consecutive and must start no later than right after the snapshot.
fn check_continuity(dir: &Path, records: &[Record], snap_rev: u64) -> Result<(), StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        path: dir.to_owned(),
        offset: 0,
        reason,
    };
    if let Some(first) = records.first() {
        if first.rev > snap_rev + 1 {
            return Err(corrupt(format!(
                "the log starts at revision {} but the newest snapshot is at {snap_rev}",
                first.rev
            )));
        }
    }
    for pair in records.windows(2) {
        if pair[1].rev != pair[0].rev + 1 {
            return Err(corrupt(format!(
                "revision {} follows revision {}",
                pair[1].rev, pair[0].rev
            )));
        }
    }
    Ok(())
}

/// One room's log: the open segment, and what the syncer needs.
pub(super) struct DiskLog {
    pub(super) room: String,
    pub(super) dir: PathBuf,
    policy: SyncPolicy,
    segment_bytes: u64,
    snapshot_every: u64,
    pub(super) retain_ops: u64,
    /// The room's ring capacity: the log keeps that many operations for recovery.
    pub(super) ring_capacity: u64,
    pub(super) state: Mutex<LogState>,
    /// The last revision handed to the operating system.
    pub(super) written: AtomicU64,
    /// The last revision as durable as the policy promises.
    pub(super) durable: AtomicU64,
    /// The revision of the last snapshot asked for.
    last_snapshot: AtomicU64,
    /// Whether the log waits in the syncer's dirty list.
    pub(super) queued: AtomicBool,
    pub(super) listener: OnceLock<Arc<dyn DurableListener>>,
    syncer: Arc<Syncer>,
    fail_writes: Arc<AtomicBool>,
    me: Weak<DiskLog>,
}

/// What the log's lock guards.
pub(super) struct LogState {
    /// The segment being appended to.
    pub(super) file: Arc<File>,
    pub(super) path: PathBuf,
    len: u64,
    last_rev: u64,
    /// Every segment, oldest first (the last is `file`).
    pub(super) segments: Vec<Segment>,
    buf: Vec<u8>,
    /// Why the log is unusable, once it is.
    pub(super) failed: Option<String>,
}

impl DiskLog {
    fn open(
        storage: &DiskStorage,
        name: &str,
        dir: PathBuf,
        head: u64,
        ring_capacity: u64,
    ) -> Result<Arc<Self>, StorageError> {
        let mut segments = list(&dir, "log")?;
        let reuse = segments.last().filter(|s| s.first_rev <= head + 1).cloned();
        let (segment, fresh) = match reuse {
            Some(segment) => (segment, false),
            None => {
                let segment = Segment {
                    first_rev: head + 1,
                    path: segment_path(&dir, head + 1),
                };
                segments.push(segment.clone());
                (segment, true)
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&segment.path)
            .map_err(|e| StorageError::io("open", &segment.path, e))?;
        if fresh {
            sync_dir(&dir)?;
        }
        let len = file
            .metadata()
            .map_err(|e| StorageError::io("read", &segment.path, e))?
            .len();
        let config = &storage.config;
        Ok(Arc::new_cyclic(|me| Self {
            room: name.to_owned(),
            dir,
            policy: config.sync,
            segment_bytes: config.segment_bytes,
            snapshot_every: config.snapshot_every,
            retain_ops: config.retain_ops,
            ring_capacity,
            state: Mutex::new(LogState {
                file: Arc::new(file),
                path: segment.path,
                len,
                last_rev: head,
                segments,
                buf: Vec::with_capacity(256),
                failed: None,
            }),
            written: AtomicU64::new(head),
            durable: AtomicU64::new(head),
            last_snapshot: AtomicU64::new(head),
            queued: AtomicBool::new(false),
            listener: OnceLock::new(),
            syncer: Arc::clone(&storage.syncer),
            fail_writes: Arc::clone(&storage.fail_writes),
            me: me.clone(),
        }))
    }

    /// Marks the log unusable (a failed fsync or truncate: what is on disk is unknown).
    pub(super) fn fail(&self, reason: String) {
        tracing::error!(room = %self.room, %reason, "the room's log is unusable until restart");
        self.state.lock().failed.get_or_insert(reason);
    }

    /// Starts a new segment at `rev` once the current one is full; the old one is fsynced
    /// first, so that only the last segment can ever end torn.
    fn rotate(&self, state: &mut LogState, rev: u64) -> Result<(), StorageError> {
        state
            .file
            .sync_data()
            .map_err(|e| StorageError::io("sync", &state.path, e))?;
        let path = segment_path(&self.dir, rev);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StorageError::io("create", &path, e))?;
        sync_dir(&self.dir)?;
        state.file = Arc::new(file);
        state.path.clone_from(&path);
        state.len = 0;
        state.segments.push(Segment {
            first_rev: rev,
            path,
        });
        Ok(())
    }

    fn write(&self, state: &LogState) -> io::Result<()> {
        // Relaxed: a test switch.
        if self.fail_writes.load(Ordering::Relaxed) {
            let half = state.buf.len() / 2;
            let _ = state.file.write_all_at(&state.buf[..half], state.len);
            return Err(io::Error::from_raw_os_error(28));
        }
        state.file.write_all_at(&state.buf, state.len)
    }

    /// Undoes a failed write: the file is cut back to its last whole record, so nothing
    /// stored is damaged and the next append starts clean. If even that fails, the log is
    /// unusable.
    fn undo(&self, state: &mut LogState) {
        if let Err(e) = state.file.set_len(state.len) {
            let reason = format!(
                "cannot truncate {} after a failed write: {e}",
                state.path.display()
            );
            tracing::error!(room = %self.room, %reason, "the room's log is unusable until restart");
            state.failed.get_or_insert(reason);
        }
    }

    fn arc(&self) -> Option<Arc<Self>> {
        self.me.upgrade()
    }
}

impl RoomLog for DiskLog {
    fn append(&self, record: &RecordRef<'_>) -> Result<(), StorageError> {
        let mut state = self.state.lock();
        if let Some(reason) = &state.failed {
            return Err(StorageError::Failed {
                room: self.room.clone(),
                reason: reason.clone(),
            });
        }
        if record.rev != state.last_rev + 1 {
            return Err(StorageError::Conflict {
                expected: state.last_rev + 1,
                found: record.rev,
            });
        }
        if state.len >= self.segment_bytes {
            self.rotate(&mut state, record.rev)?;
        }
        state.buf.clear();
        record::encode(record, &mut state.buf)?;
        if let Err(e) = self.write(&state) {
            self.undo(&mut state);
            return Err(StorageError::io("write", &state.path, e));
        }
        state.len += state.buf.len() as u64;
        state.last_rev = record.rev;
        // Release: pairs with the Acquire in the syncer's `sync`: the revision it reads
        // was written to the file it then fsyncs.
        self.written.store(record.rev, Ordering::Release);
        drop(state);
        match self.policy {
            SyncPolicy::Always => {
                if let Some(me) = self.arc() {
                    self.syncer.dirty(me);
                }
            }
            SyncPolicy::Interval => {
                // Release: pairs with the Acquire in `durable_rev`.
                self.durable.fetch_max(record.rev, Ordering::Release);
                if let Some(me) = self.arc() {
                    self.syncer.dirty(me);
                }
            }
            SyncPolicy::Never => {
                self.durable.fetch_max(record.rev, Ordering::Release);
            }
        }
        Ok(())
    }

    fn durable_rev(&self) -> u64 {
        // Acquire: pairs with the Release stores after a write or an fsync.
        self.durable.load(Ordering::Acquire)
    }

    fn reports_durability(&self) -> bool {
        self.policy == SyncPolicy::Always
    }

    fn listen(&self, listener: Arc<dyn DurableListener>) {
        let _ = self.listener.set(listener);
    }

    fn snapshot_due(&self, rev: u64) -> bool {
        // Relaxed: only the room's commit path (under its lock) reads and moves it.
        rev >= self.last_snapshot.load(Ordering::Relaxed) + self.snapshot_every
    }

    fn save_snapshot(&self, snapshot: StoredSnapshot) {
        // Relaxed: as in `snapshot_due`.
        self.last_snapshot
            .fetch_max(snapshot.rev, Ordering::Relaxed);
        if let Some(me) = self.arc() {
            self.syncer.snapshot(me, snapshot);
        }
    }
}
