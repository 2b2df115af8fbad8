//! Whether the server serves (`/health`) and wants new clients (`/ready`), with a
//! one-line reason when it does not.
//!
//! | probe | 200 | 503 |
//! |---|---|---|
//! | `/health` | serving | shutting down; a shard's event loop stopped; the storage is down ([`Storage::health`](crate::storage::Storage::health)) |
//! | `/ready` | started and healthy, with room for a connection | starting; anything `/health` reports; `limits.max_connections` reached |
//!
//! `/health` is a liveness probe: a 503 there means the process cannot do its job and
//! needs a restart or an operator. `/ready` is for load balancers: a 503 there may pass
//! by itself (a full server, a stop in progress).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::shared::Shared;
use crate::model::Model;

/// Where the server is in its life: started or not, and how many shards still run.
#[derive(Debug)]
pub(super) struct Lifecycle {
    /// Every thread was started.
    started: AtomicBool,
    /// Shards whose event loop has not returned.
    shards_running: AtomicUsize,
    /// Shards in all.
    shards: usize,
}

/// Counts a shard as stopped when dropped (however its loop returns).
pub(super) struct ShardRunning<'a>(&'a Lifecycle);

impl Drop for ShardRunning<'_> {
    fn drop(&mut self) {
        // Relaxed: a count read by probes, which order nothing by it.
        self.0.shards_running.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Lifecycle {
    /// A server of `shards` shards, none started.
    pub(super) fn new(shards: usize) -> Self {
        Self {
            started: AtomicBool::new(false),
            shards_running: AtomicUsize::new(shards),
            shards,
        }
    }

    /// Every thread was started: the server is ready once healthy.
    pub(super) fn started(&self) {
        // Relaxed: a flag read by probes, which order nothing by it.
        self.started.store(true, Ordering::Relaxed);
    }

    /// Called by a shard when its loop begins; the guard marks it stopped.
    pub(super) fn shard_running(&self) -> ShardRunning<'_> {
        ShardRunning(self)
    }

    /// Whether every shard has stopped (the admin address then stops too).
    pub(super) fn all_shards_stopped(&self) -> bool {
        // Relaxed: as in `ShardRunning::drop`.
        self.shards_running.load(Ordering::Relaxed) == 0
    }

    fn stopped_shards(&self) -> usize {
        // Relaxed: as in `ShardRunning::drop`.
        self.shards - self.shards_running.load(Ordering::Relaxed)
    }

    fn is_started(&self) -> bool {
        // Relaxed: as in `started`.
        self.started.load(Ordering::Relaxed)
    }
}

impl<M: Model> Shared<M> {
    /// `Ok` while the server serves; else why not, in one line.
    pub(super) fn health(&self) -> Result<(), String> {
        if self.wakers.is_shutting_down() {
            return Err("shutting down".into());
        }
        let stopped = self.lifecycle.stopped_shards();
        if stopped > 0 {
            return Err(format!(
                "{stopped} of {} event loops stopped",
                self.lifecycle.shards
            ));
        }
        self.registry
            .storage()
            .health()
            .map_err(|down| format!("storage is down: {down}"))
    }

    /// `Ok` while the server wants new clients; else why not, in one line.
    pub(super) fn readiness(&self) -> Result<(), String> {
        if !self.lifecycle.is_started() && !self.wakers.is_shutting_down() {
            return Err("starting".into());
        }
        self.health()?;
        // Relaxed: a statistic compared to a limit.
        if self.connections.load(Ordering::Relaxed) >= self.max_connections {
            return Err(format!(
                "the connection limit ({}) is reached",
                self.max_connections
            ));
        }
        Ok(())
    }
}
