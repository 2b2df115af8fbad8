//! The node's tailer: one thread that reads every open room's stream from the room's head
//! and hands what other nodes committed to the room.
//!
//! # One thread per node, not one per room
//!
//! One blocking `XREAD BLOCK .. STREAMS k1 k2 .. id1 id2 ..` waits on every followed room
//! at once: one connection and one wake-up per batch, however many rooms, and each batch
//! carries everything that arrived for every room since the last one. A thread per room
//! would hold a connection and a stack per room (thousands of idle rooms, thousands of
//! blocked connections on the engine) to save nothing: ingesting is a decode and an apply
//! under the room's lock, microseconds, far below the round trip. The read position of a
//! room is its head, asked afresh before each read, so the node's own commits (already at
//! the head) are never read back, and a room that caught up on its own (a conflict on its
//! commit path) is not read twice.
//!
//! The block is short (`BLOCK_MS`): a room opened while the tailer waits is followed from
//! the next read on, and a stopped node's thread ends within it. With no room open the
//! thread pings the engine as often, so the node's health (`RedisStorage::health`) is
//! never older than that.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use redis::Connection;
use redis::streams::StreamReadReply;

use crate::storage::{Follower, Record, StorageError};

use super::log::record_of;
use super::{Counters, Shared};

/// How long one read waits for new entries, in ms.
const BLOCK_MS: u64 = 100;
/// The most entries one read takes per room.
const BATCH: usize = 1024;
/// How long the tailer waits before reconnecting after a failure.
const RETRY: Duration = Duration::from_millis(200);

/// The rooms the tailer follows, by stream key.
#[derive(Default)]
pub(super) struct Followed {
    rooms: Mutex<HashMap<String, Arc<dyn Follower>>>,
    stop: AtomicBool,
}

impl Followed {
    /// Follows the stream `log` for `follower` (replacing an earlier instance of the room).
    pub(super) fn follow(&self, log: String, follower: Arc<dyn Follower>) {
        self.rooms.lock().insert(log, follower);
    }

    /// Asks the thread to end (within one read).
    pub(super) fn stop(&self) {
        // Relaxed: a flag polled by the tailer's loop; nothing else is published with it.
        self.stop.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        // Relaxed: see `stop`.
        self.stop.load(Ordering::Relaxed)
    }

    /// The rooms followed, by stream key (the liveness sweep's list).
    pub(super) fn rooms(&self) -> Vec<(String, Arc<dyn Follower>)> {
        let rooms = self.rooms.lock();
        rooms
            .iter()
            .map(|(log, follower)| (log.clone(), Arc::clone(follower)))
            .collect()
    }

    /// Whether the node is stopping.
    pub(super) fn is_stopped(&self) -> bool {
        self.stopped()
    }

    /// The rooms still open, with their heads; forgets the dropped ones.
    fn positions(&self) -> Vec<(String, u64, Arc<dyn Follower>)> {
        let mut rooms = self.rooms.lock();
        let mut positions = Vec::with_capacity(rooms.len());
        rooms.retain(|log, follower| match follower.head() {
            Some(head) => {
                positions.push((log.clone(), head, Arc::clone(follower)));
                true
            }
            None => false,
        });
        positions
    }
}

/// The tailer's loop: until stopped, read, hand out, repeat; reconnect after a failure.
pub(super) fn run(shared: &Shared) {
    let followed = &shared.tailer;
    let mut conn: Option<Connection> = None;
    while !followed.stopped() {
        let positions = followed.positions();
        if positions.is_empty() {
            // Nothing to read: a ping keeps the node's view of the engine's health fresh.
            let _ = shared
                .engine
                .run(|conn| redis::cmd("PING").query::<String>(conn));
            std::thread::sleep(Duration::from_millis(BLOCK_MS));
            continue;
        }
        let connection = match conn.take() {
            Some(connection) => connection,
            None => match shared
                .engine
                .open(shared.timeout + Duration::from_millis(BLOCK_MS))
            {
                Ok(connection) => connection,
                Err(_) => {
                    std::thread::sleep(RETRY);
                    continue;
                }
            },
        };
        match read_once(shared, connection, &positions) {
            Ok(connection) => conn = Some(connection),
            Err(e) => {
                tracing::debug!(error = %e, "the tailer cannot read the engine");
                std::thread::sleep(RETRY);
            }
        }
    }
}

/// One blocking read over every followed stream; hands each room its records.
fn read_once(
    shared: &Shared,
    mut conn: Connection,
    positions: &[(String, u64, Arc<dyn Follower>)],
) -> Result<Connection, StorageError> {
    let mut command = redis::cmd("XREAD");
    command
        .arg("COUNT")
        .arg(BATCH)
        .arg("BLOCK")
        .arg(BLOCK_MS)
        .arg("STREAMS");
    for (log, _, _) in positions {
        command.arg(log);
    }
    for (_, head, _) in positions {
        command.arg(format!("{head}-0"));
    }
    let reply: Option<StreamReadReply> = command
        .query(&mut conn)
        .map_err(|e| shared.engine.failed(&e))?;
    shared.engine.answered();
    for stream in reply.map(|r| r.keys).unwrap_or_default() {
        let Some((_, _, follower)) = positions.iter().find(|(log, _, _)| *log == stream.key) else {
            continue;
        };
        let records: Result<Vec<Record>, StorageError> = stream
            .ids
            .iter()
            .map(|entry| record_of(&shared.engine.url, entry))
            .collect();
        match records {
            Ok(records) => {
                Counters::add(&shared.counters.tailed, records.len() as u64);
                follower.ingest(records);
            }
            Err(e) => tracing::error!(stream = %stream.key, error = %e, "a record does not read"),
        }
    }
    Ok(conn)
}
