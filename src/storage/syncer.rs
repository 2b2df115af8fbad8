//! The syncer: one thread per data directory that fsyncs the logs commits have written
//! to (group commit), stores snapshots and compacts the logs behind them.
//!
//! Under `sync = "always"` a commit queues its room's log and wakes the syncer; the syncer
//! takes every queued log at once, and for each reads the last revision written, fsyncs
//! the file and reports that revision durable. Every commit that arrived while the
//! previous fsync ran is in the next batch: one fsync per room file per batch, never one
//! per operation. Under `interval` it does the same every `sync_interval_ms`, and under
//! `never` it only stores snapshots.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::SyncPolicy;
use super::disk::{self, DiskLog};
use super::snapfile::{self, StoredSnapshot};
use crate::counters::{Histogram, HistogramCounts, LATENCY_NS};

/// What a syncer has done, for tests, benchmarks and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncStats {
    /// Log fsyncs.
    pub fsyncs: u64,
    /// Batches of queued logs taken at once.
    pub batches: u64,
    /// Snapshots stored.
    pub snapshots: u64,
    /// Log segments deleted behind a snapshot.
    pub compacted_segments: u64,
    /// How long the syncer's fsyncs took, in nanoseconds (its count is `fsyncs` and the
    /// fsyncs that failed).
    pub fsync_latency: HistogramCounts,
}

impl Default for SyncStats {
    fn default() -> Self {
        Self {
            fsyncs: 0,
            batches: 0,
            snapshots: 0,
            compacted_segments: 0,
            fsync_latency: HistogramCounts::empty(&LATENCY_NS),
        }
    }
}

pub(super) struct Syncer {
    policy: SyncPolicy,
    interval: Duration,
    queue: Mutex<Queue>,
    wake: Condvar,
    fsyncs: AtomicU64,
    batches: AtomicU64,
    snapshots: AtomicU64,
    compacted: AtomicU64,
    /// Written by the syncer thread only (see [`crate::counters`]).
    fsync_latency: Histogram,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The logs to fsync, the snapshots to store, and whether to stop after them.
type Batch = (Vec<Arc<DiskLog>>, Vec<(Arc<DiskLog>, StoredSnapshot)>, bool);

#[derive(Default)]
struct Queue {
    dirty: Vec<Arc<DiskLog>>,
    snapshots: Vec<(Arc<DiskLog>, StoredSnapshot)>,
    paused: bool,
    stop: bool,
}

impl Syncer {
    pub(super) fn start(policy: SyncPolicy, interval_ms: u64) -> Arc<Self> {
        let syncer = Arc::new(Self {
            policy,
            interval: Duration::from_millis(interval_ms.max(1)),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            fsyncs: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            compacted: AtomicU64::new(0),
            fsync_latency: Histogram::new(&LATENCY_NS),
            thread: Mutex::new(None),
        });
        let worker = Arc::clone(&syncer);
        let handle = std::thread::Builder::new()
            .name("deltasync-syncer".into())
            .spawn(move || worker.run());
        match handle {
            Ok(handle) => *syncer.thread.lock() = Some(handle),
            Err(e) => tracing::error!(error = %e, "cannot start the syncer thread"),
        }
        syncer
    }

    pub(super) fn stats(&self) -> SyncStats {
        // Relaxed: statistics, each read on its own.
        SyncStats {
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            snapshots: self.snapshots.load(Ordering::Relaxed),
            compacted_segments: self.compacted.load(Ordering::Relaxed),
            fsync_latency: self.fsync_latency.read(),
        }
    }

    /// Queues `log` for the next fsync (once, however many commits it had since).
    pub(super) fn dirty(&self, log: Arc<DiskLog>) {
        // SeqCst: with the store of `written` before it in `append`, and the reset of
        // `queued` then the load of `written` in `sync`, a Dekker pair: either the syncer
        // reads this append's revision, or this swap sees `false` and queues the log again.
        if log.queued.swap(true, Ordering::SeqCst) {
            return;
        }
        self.queue.lock().dirty.push(log);
        if self.policy == SyncPolicy::Always {
            self.wake.notify_one();
        }
    }

    pub(super) fn snapshot(&self, log: Arc<DiskLog>, snapshot: StoredSnapshot) {
        self.queue.lock().snapshots.push((log, snapshot));
        self.wake.notify_one();
    }

    pub(super) fn pause(&self, paused: bool) {
        self.queue.lock().paused = paused;
        self.wake.notify_one();
    }

    /// Stops the thread after it has synced everything queued.
    pub(super) fn stop(&self) {
        let mut queue = self.queue.lock();
        queue.stop = true;
        queue.paused = false;
        drop(queue);
        self.wake.notify_one();
        if let Some(handle) = self.thread.lock().take() {
            let _ = handle.join();
        }
    }

    fn run(&self) {
        loop {
            let (dirty, snapshots, stop) = self.next_batch();
            if !dirty.is_empty() {
                // Relaxed: a statistic.
                self.batches.fetch_add(1, Ordering::Relaxed);
            }
            for log in &dirty {
                self.sync(log);
            }
            for (log, snapshot) in snapshots {
                self.store_snapshot(&log, &snapshot);
            }
            if stop {
                return;
            }
        }
    }

    /// Waits for work: at once under `always`, every interval otherwise (snapshots wake it
    /// at once in every mode).
    fn next_batch(&self) -> Batch {
        let mut queue = self.queue.lock();
        loop {
            if queue.stop {
                break;
            }
            let work = !queue.dirty.is_empty() || !queue.snapshots.is_empty();
            if !queue.paused && work && self.policy == SyncPolicy::Always {
                break;
            }
            if !queue.paused && !queue.snapshots.is_empty() {
                break;
            }
            if self.policy == SyncPolicy::Always || queue.paused {
                self.wake.wait(&mut queue);
            } else {
                let timed_out = self.wake.wait_for(&mut queue, self.interval).timed_out();
                if timed_out && !queue.paused {
                    break;
                }
            }
        }
        let dirty = std::mem::take(&mut queue.dirty);
        let snapshots = std::mem::take(&mut queue.snapshots);
        (dirty, snapshots, queue.stop)
    }

    /// Fsyncs `log` and reports what is durable.
    fn sync(&self, log: &DiskLog) {
        // SeqCst: see `dirty`.
        log.queued.store(false, Ordering::SeqCst);
        let written = log.written.load(Ordering::SeqCst);
        // Read after `written`: a record at or below it is in this file or in an older
        // segment, fsynced when it was closed (`rotate`).
        let (file, path) = {
            let state = log.state.lock();
            if state.failed.is_some() {
                return;
            }
            (Arc::clone(&state.file), state.path.clone())
        };
        // The syncer is I/O, not the core: it times its own fsyncs.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        let synced = file.sync_data();
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.fsync_latency.observe(took);
        if let Err(e) = synced {
            log.fail(format!("fsync of {} failed: {e}", path.display()));
            return;
        }
        // Relaxed: a statistic.
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        // Release: pairs with the Acquire in `durable_rev`.
        let before = log.durable.fetch_max(written, Ordering::Release);
        if before < written {
            if let Some(listener) = log.listener.get() {
                listener.durable(written);
            }
        }
    }

    /// Stores `snapshot` once the log is on disk up to it, then compacts.
    fn store_snapshot(&self, log: &DiskLog, snapshot: &StoredSnapshot) {
        self.sync(log);
        let path = disk::snapshot_path(&log.dir, snapshot.rev);
        let stored = snapfile::encode(snapshot)
            .map_err(|e| e.to_string())
            .and_then(|data| disk::write_durably(&path, &data).map_err(|e| e.to_string()));
        if let Err(error) = stored {
            // The log still holds everything; the next snapshot tries again.
            tracing::warn!(room = %log.room, %error, "cannot store a snapshot");
            return;
        }
        // Relaxed: a statistic.
        self.snapshots.fetch_add(1, Ordering::Relaxed);
        self.compact(log, snapshot.rev);
    }

    /// Deletes the snapshots older than `rev` and the segments whose every record is at
    /// or below `rev - max(ring capacity, retain_ops)`: recovery needs neither.
    fn compact(&self, log: &DiskLog, rev: u64) {
        if let Ok(entries) = fs::read_dir(&log.dir) {
            for path in entries.flatten().map(|e| e.path()) {
                let older = path.extension().is_some_and(|e| e == "snap")
                    && path
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .and_then(|s| s.parse::<u64>().ok())
                        .is_some_and(|r| r < rev);
                if older {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let keep_after = rev.saturating_sub(log.ring_capacity.max(log.retain_ops));
        let doomed: Vec<_> = {
            let mut state = log.state.lock();
            let whole = state
                .segments
                .windows(2)
                .take_while(|pair| pair[1].first_rev <= keep_after + 1)
                .count();
            state.segments.drain(..whole).collect()
        };
        for segment in &doomed {
            if let Err(e) = fs::remove_file(&segment.path) {
                tracing::warn!(file = %segment.path.display(), error = %e, "cannot delete a compacted segment");
            }
        }
        if !doomed.is_empty() {
            // Relaxed: a statistic.
            self.compacted
                .fetch_add(doomed.len() as u64, Ordering::Relaxed);
            let _ = disk::sync_dir(&log.dir);
        }
    }
}
