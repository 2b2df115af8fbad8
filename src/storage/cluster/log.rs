//! One room's log in Redis: a stream of records whose ids are their revisions, the head
//! counter the append script checks, and the snapshot keys.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use redis::Value;
use redis::streams::StreamId;

use crate::storage::{DurableListener, snapfile};
use crate::storage::{
    Follower, Record, RecordRef, Recovered, RoomLog, StorageError, StoredSnapshot,
};

use super::{Counters, Shared, liveness};

/// The keys of one room. The room's name is hex-encoded (names are request paths) inside
/// a hash tag, so that every key of a room lands on one shard of a Redis Cluster and the
/// scripts may touch them together.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    /// The stream of records, one entry per revision (id `rev-0`).
    pub(super) log: String,
    /// The last revision appended (what the append script checks).
    pub(super) head: String,
    /// The history's epoch, set once by whichever node opens the room first.
    pub(super) epoch: String,
    /// The latest snapshot (the disk backend's snapshot format).
    pub(super) snap: String,
    /// The latest snapshot's revision.
    pub(super) snap_rev: String,
    /// Which node holds which participant: a set of `"<node id> <participant>"`.
    pub(super) holders: String,
}

impl Keys {
    pub(super) fn new(room: &str) -> Self {
        let tag = crate::storage::disk::dir_name(room);
        let key = |what: &str| format!("deltasync:{{{tag}}}:{what}");
        Self {
            log: key("log"),
            head: key("head"),
            epoch: key("epoch"),
            snap: key("snap"),
            snap_rev: key("snaprev"),
            holders: key("holders"),
        }
    }

    /// The holders key of the room whose stream is `log`.
    pub(super) fn holders_of(log: &str) -> String {
        let room = log.strip_suffix(":log").unwrap_or(log);
        format!("{room}:holders")
    }
}

/// One room's log on the engine.
pub(super) struct RedisLog {
    room: String,
    keys: Keys,
    shared: Arc<Shared>,
    ring_capacity: u64,
    /// The last revision this node appended or found (for `durable_rev`).
    appended: AtomicU64,
    /// The revision of the last snapshot this node stored or found.
    last_snapshot: AtomicU64,
    /// The records a refused append brought back, for the catch-up that follows.
    missed: Mutex<Vec<Record>>,
}

impl RedisLog {
    pub(super) fn new(
        room: &str,
        shared: Arc<Shared>,
        head: u64,
        snap_rev: u64,
        ring_capacity: u64,
    ) -> Self {
        Self {
            room: room.to_owned(),
            keys: Keys::new(room),
            shared,
            ring_capacity,
            appended: AtomicU64::new(head),
            last_snapshot: AtomicU64::new(snap_rev),
            missed: Mutex::new(Vec::new()),
        }
    }
}

impl RedisLog {
    /// The records of a refused append's answer.
    fn records_in(&self, entries: Option<&Value>) -> Result<Vec<Record>, StorageError> {
        let Some(entries) = entries else {
            return Ok(Vec::new());
        };
        let reply: redis::streams::StreamRangeReply =
            redis::from_redis_value(entries).map_err(|e| self.shared.engine.failed(&e))?;
        reply
            .ids
            .iter()
            .map(|entry| record_of(&self.shared.engine.url, entry))
            .collect()
    }

    fn odd_reply(&self, reply: &[Value]) -> StorageError {
        StorageError::Unavailable {
            url: self.shared.engine.url.clone(),
            reason: format!("the append script answered {reply:?}"),
        }
    }

    /// After a lost race, waits a random moment under `JITTER`, so that two nodes that
    /// keep colliding in step fall out of step. The wait does not grow with a streak of
    /// losses: the refused append brought the missed records back, so the loser is as
    /// current as the winners, and a wait that grew with its losses (as a first version
    /// did) made it lose more: 3,000 joins through three nodes had joins lose 65 races in
    /// a row behind nodes that did not wait. Under the room's commit lock: its other local
    /// commits would lose the same race anyway.
    fn back_off(&self) {
        let random = getrandom::u64().unwrap_or(0);
        let micros = random % JITTER.as_micros().max(1) as u64;
        std::thread::sleep(Duration::from_micros(micros));
    }
}

/// The longest wait after a lost race.
const JITTER: Duration = Duration::from_micros(100);

impl RoomLog for RedisLog {
    fn append(&self, record: &RecordRef<'_>) -> Result<(), StorageError> {
        let engine = &self.shared.engine;
        let mut invocation = engine.append.key(&self.keys.head);
        invocation
            .key(&self.keys.log)
            .arg(record.rev)
            .arg("o")
            .arg(record.op);
        if let Some(actor) = record.actor {
            invocation.arg("a").arg(actor);
        }
        if let Some(id) = record.client_req_id {
            invocation.arg("q").arg(id);
        }
        let reply: Vec<Value> = engine.run(|conn| invocation.invoke(conn))?;
        let head = match reply.first() {
            Some(Value::Int(head)) => u64::try_from(*head).unwrap_or(0),
            _ => return Err(self.odd_reply(&reply)),
        };
        let counters = &self.shared.counters;
        if head + 1 != record.rev {
            Counters::add(&counters.conflicts, 1);
            *self.missed.lock() = self.records_in(reply.get(1))?;
            self.back_off();
            return Err(StorageError::Conflict {
                expected: head + 1,
                found: record.rev,
            });
        }
        Counters::add(&counters.appends, 1);
        // Relaxed: a statistic of this node, read on its own.
        self.appended.fetch_max(record.rev, Ordering::Relaxed);
        Ok(())
    }

    fn durable_rev(&self) -> u64 {
        // Relaxed: as in `append`.
        self.appended.load(Ordering::Relaxed)
    }

    fn reports_durability(&self) -> bool {
        // The engine answers an append once it is as durable as its `appendfsync` says.
        false
    }

    fn listen(&self, _listener: Arc<dyn DurableListener>) {}

    fn snapshot_due(&self, rev: u64) -> bool {
        // Relaxed: only the room's commit path (under its lock) reads and moves it.
        rev >= self.last_snapshot.load(Ordering::Relaxed) + self.shared.snapshot_every
    }

    fn save_snapshot(&self, snapshot: StoredSnapshot) {
        // Relaxed: as in `snapshot_due`.
        self.last_snapshot
            .fetch_max(snapshot.rev, Ordering::Relaxed);
        let keep_from = snapshot
            .rev
            .saturating_sub(self.ring_capacity + self.shared.retain_ops);
        let shared = Arc::clone(&self.shared);
        let keys = self.keys.clone();
        let room = self.room.clone();
        // Off the commit path: a snapshot may be megabytes, and the commit lock is held.
        std::thread::spawn(move || store_snapshot(&shared, &keys, &room, &snapshot, keep_from));
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn conflict_retries(&self) -> u32 {
        self.shared.commit_retries
    }

    fn read_after(&self, rev: u64) -> Result<Vec<Record>, StorageError> {
        // What the refused append brought back, if it is what the room asks for.
        let missed = std::mem::take(&mut *self.missed.lock());
        if missed.first().is_some_and(|first| first.rev == rev + 1) {
            return Ok(missed);
        }
        read_range(&self.shared, &self.keys.log, rev)
    }

    fn follow(&self, follower: Arc<dyn Follower>) {
        self.shared.tailer.follow(self.keys.log.clone(), follower);
    }

    fn hold(&self, actor: &str) -> Result<(), StorageError> {
        let member = liveness::member(&self.shared.node_id, actor);
        self.shared.engine.run(|conn| {
            redis::cmd("SADD")
                .arg(&self.keys.holders)
                .arg(&member)
                .query::<()>(conn)
        })
    }

    fn let_go(&self, actor: &str) -> Result<(), StorageError> {
        let member = liveness::member(&self.shared.node_id, actor);
        self.shared.engine.run(|conn| {
            redis::cmd("SREM")
                .arg(&self.keys.holders)
                .arg(&member)
                .query::<()>(conn)
        })
    }

    fn held_by_a_live_node(&self, actor: &str) -> Result<bool, StorageError> {
        let members = liveness::holders(&self.shared, &self.keys.holders)?;
        let nodes: Vec<&str> = members
            .iter()
            .filter(|(_, a)| a == actor)
            .map(|(node, _)| node.as_str())
            .collect();
        liveness::any_alive(&self.shared, &nodes)
    }

    fn reload(&self) -> Result<Option<Recovered>, StorageError> {
        let (recovered, head) = super::load_twice(&self.shared, &self.room, self.ring_capacity)?;
        let snap_rev = recovered.snapshot.as_ref().map_or(0, |s| s.rev);
        // Relaxed: as in `append` and `snapshot_due`.
        self.appended.fetch_max(head, Ordering::Relaxed);
        self.last_snapshot.fetch_max(snap_rev, Ordering::Relaxed);
        Ok(Some(recovered))
    }
}

/// Stores `snapshot` if no newer one is stored, and trims the stream before `keep_from`.
fn store_snapshot(
    shared: &Shared,
    keys: &Keys,
    room: &str,
    snapshot: &StoredSnapshot,
    keep_from: u64,
) {
    let encoded = match snapfile::encode(snapshot) {
        Ok(encoded) => encoded,
        Err(e) => {
            tracing::warn!(room, error = %e, "cannot encode a snapshot");
            return;
        }
    };
    let mut invocation = shared.engine.snapshot.key(&keys.snap);
    invocation
        .key(&keys.snap_rev)
        .key(&keys.log)
        .arg(snapshot.rev)
        .arg(encoded)
        .arg(keep_from);
    if let Err(e) = shared.engine.run(|conn| invocation.invoke::<i64>(conn)) {
        tracing::warn!(room, rev = snapshot.rev, error = %e, "cannot store a snapshot");
    }
}

/// Every record of the stream `log` after revision `after`, oldest first.
pub(super) fn read_range(
    shared: &Shared,
    log: &str,
    after: u64,
) -> Result<Vec<Record>, StorageError> {
    let reply: redis::streams::StreamRangeReply = shared.engine.run(|conn| {
        redis::cmd("XRANGE")
            .arg(log)
            .arg(format!("{}-0", after + 1))
            .arg("+")
            .query(conn)
    })?;
    reply
        .ids
        .iter()
        .map(|entry| record_of(&shared.engine.url, entry))
        .collect()
}

/// A stream entry as a record: its id's revision and its fields `o`, `a`, `q`.
pub(super) fn record_of(url: &str, entry: &StreamId) -> Result<Record, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        path: url.into(),
        offset: 0,
        reason: format!("stream entry {}: {reason}", entry.id),
    };
    let rev = entry
        .id
        .split_once('-')
        .and_then(|(rev, _)| rev.parse().ok())
        .ok_or_else(|| corrupt("an id that is not a revision".into()))?;
    let op = bytes_of(&entry.map, "o").ok_or_else(|| corrupt("no operation".into()))?;
    let text = |field: &str| -> Result<Option<Box<str>>, StorageError> {
        bytes_of(&entry.map, field)
            .map(|bytes| {
                String::from_utf8(bytes.to_vec())
                    .map(String::into_boxed_str)
                    .map_err(|_| corrupt(format!("field {field} is not UTF-8")))
            })
            .transpose()
    };
    Ok(Record {
        rev,
        actor: text("a")?,
        client_req_id: text("q")?,
        op: Bytes::from(op.to_vec()),
    })
}

fn bytes_of<'a>(map: &'a HashMap<String, Value>, field: &str) -> Option<&'a [u8]> {
    match map.get(field)? {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}
