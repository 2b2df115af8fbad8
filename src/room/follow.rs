//! Operations another node committed: how a room whose log is shared takes them in.
//!
//! With a log shared by several nodes (the cluster backend), a record the room did not
//! commit itself reaches it two ways: the node's tailer reads it from the log
//! ([`Room::follow`] registers the room with its log), or the room's own append is
//! refused because another node took that revision first, and the room catches up
//! before deciding again. Both go through [`Room::ingest`]'s path under the commit lock:
//! the operation is decoded and applied to the model, the **same bytes** the committing
//! node encoded go into the ring (encode once, across the cluster), the dedup window
//! learns the record's `(actor, clientReqId)`, and the revision is published like a
//! local commit, so shards fan it out from the ring exactly as they do their own.
//!
//! A record at or below the room's head is already there (the room's own commit coming
//! back through the tailer, or one read by both paths) and is skipped. When the log no
//! longer holds the revision after the head (this node lagged while the log was trimmed
//! behind a newer snapshot), the room is rebuilt in place from the log's snapshot and tail
//! (`rebuild`), under the same epoch, and goes on from there.

use std::sync::{Arc, Weak};

use crate::model::{Model, Rejection};
use crate::protocol::ErrorCode;
use crate::storage::{Follower, Record};

use super::{Committed, Room, decode_op, storage_rejection};

/// Why foreign records could not be taken in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The records skip revisions the log no longer holds (trimmed behind a snapshot), and
    /// the room could not be rebuilt from the log's snapshot.
    #[error("room {room:?} needs revision {expected} but the log holds only from {found} on")]
    Gap {
        /// The room.
        room: String,
        /// The revision the room needs next.
        expected: u64,
        /// The oldest revision the log could give.
        found: u64,
    },
    /// A record does not decode as an operation of this room's model.
    #[error("room {room:?}: the record at revision {rev} does not decode: {reason}")]
    Decode {
        /// The room.
        room: String,
        /// The record's revision.
        rev: u64,
        /// What failed.
        reason: String,
    },
    /// The log could not be read to fill a gap.
    #[error("room {room:?}: the log cannot be read: {reason}")]
    Unavailable {
        /// The room.
        room: String,
        /// The storage's error.
        reason: String,
    },
}

impl<M: Model> Room<M> {
    /// Takes in records another node committed to this room's shared log, oldest first:
    /// applies those above the head, fills a hole from the log, and publishes. Returns the
    /// room's head after them.
    ///
    /// # Errors
    ///
    /// [`IngestError`]; the records before the failing one are in.
    pub fn ingest(&self, records: Vec<Record>) -> Result<u64, IngestError> {
        let head_before = self.ring.head();
        let result = {
            let mut committed = self.committed.lock();
            self.ingest_all_locked(&mut committed, records)
        };
        let head = self.ring.head();
        if head > head_before {
            self.committed(head);
        }
        result.map(|()| head)
    }

    /// Registers this room with its log, when the log is shared with other nodes, so that
    /// the node's tailer brings in what they commit. The server does this for every room
    /// it opens; an embedder building a room on a shared log calls it once, after putting
    /// the room in an `Arc`.
    pub fn follow(self: &Arc<Self>) {
        if let Some(log) = self.log.as_ref().filter(|log| log.is_shared()) {
            log.follow(Arc::new(Tail(Arc::downgrade(self))));
        }
    }

    fn ingest_all_locked(
        &self,
        committed: &mut Committed<M>,
        records: Vec<Record>,
    ) -> Result<(), IngestError> {
        for record in records {
            if record.rev > self.ring.head() + 1 {
                // A hole: read what is missing before going on.
                self.fill_locked(committed)?;
            }
            self.ingest_locked(committed, record)?;
        }
        Ok(())
    }

    /// Reads every record after the head from the log and takes them in. The commit path
    /// calls this when its append found that another node got there first.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the log cannot be read or skips revisions; nothing was applied
    /// beyond the records that could be taken in.
    pub(super) fn catch_up_locked(&self, committed: &mut Committed<M>) -> Result<(), Rejection> {
        let before = self.ring.head();
        self.fill_locked(committed)
            .map_err(|e| Rejection::new(ErrorCode::Unavailable, format!("{e}; try again")))?;
        if self.ring.head() == before {
            return Err(Rejection::new(
                ErrorCode::Unavailable,
                format!(
                    "room {:?}: the log refused revision {} but holds nothing after {before}; try again",
                    &*self.name,
                    before + 1
                ),
            ));
        }
        Ok(())
    }

    /// With a shared log, takes in whatever other nodes committed since the head; whether
    /// anything came (a failed read is nothing: the caller's answer stands).
    pub(super) fn refresh_locked(&self, committed: &mut Committed<M>) -> bool {
        if !self.log.as_ref().is_some_and(|log| log.is_shared()) {
            return false;
        }
        let before = self.ring.head();
        let _ = self.fill_locked(committed);
        self.ring.head() > before
    }

    /// Reads every record after the head from the log and takes them in; when the log no
    /// longer holds the next revision (trimmed behind a stored snapshot while this node
    /// lagged), rebuilds the room in place from the snapshot and tail (see `rebuild`).
    fn fill_locked(&self, committed: &mut Committed<M>) -> Result<(), IngestError> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let records = log
            .read_after(self.ring.head())
            .map_err(|e| IngestError::Unavailable {
                room: self.name.to_string(),
                reason: storage_rejection(&e).message,
            })?;
        for record in records {
            match self.ingest_locked(committed, record) {
                Ok(()) => {}
                Err(gap @ IngestError::Gap { .. }) => return self.rebuild_locked(committed, gap),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Applies one record if it is the next revision; skips it if the room has it.
    pub(super) fn ingest_locked(
        &self,
        committed: &mut Committed<M>,
        record: Record,
    ) -> Result<(), IngestError> {
        let head = self.ring.head();
        if record.rev <= head {
            return Ok(());
        }
        if record.rev != head + 1 {
            return Err(IngestError::Gap {
                room: self.name.to_string(),
                expected: head + 1,
                found: record.rev,
            });
        }
        let op = decode_op::<M>(&record).map_err(|e| IngestError::Decode {
            room: self.name.to_string(),
            rev: record.rev,
            reason: e.to_string(),
        })?;
        committed.model.apply(&op);
        if let (Some(actor), Some(id)) = (&record.actor, &record.client_req_id) {
            committed.dedup.record(actor, id, record.rev);
        }
        self.ring.append(record.op);
        Ok(())
    }
}

/// The room as its log's tailer sees it; lets go once the room is dropped.
struct Tail<M: Model>(Weak<Room<M>>);

impl<M: Model> Follower for Tail<M> {
    fn head(&self) -> Option<u64> {
        self.0.upgrade().map(|room| room.rev())
    }

    fn ingest(&self, records: Vec<Record>) {
        let Some(room) = self.0.upgrade() else {
            return;
        };
        if let Err(e) = room.ingest(records) {
            tracing::error!(error = %e, "cannot take in another node's commits");
        }
    }

    fn present(&self) -> Vec<String> {
        self.0
            .upgrade()
            .map_or_else(Vec::new, |room| room.present_actors())
    }

    fn reconcile_holds(&self, held: &[String]) {
        if let Some(room) = self.0.upgrade() {
            room.reconcile_holds(held);
        }
    }

    fn expire_unheld(&self, actors: &[String]) {
        let Some(room) = self.0.upgrade() else {
            return;
        };
        if let Err(e) = room.expire_unheld(actors) {
            tracing::warn!(room = room.name(), error = %e.message, "cannot expire the participants of a dead node");
        }
    }
}

// Rooms use loom atomics under `cfg(loom)`; only the loom models run there.
#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;

    use crate::clock::ManualClock;
    use crate::epoch::Epoch;
    use crate::model::presence::{Patch, Presence, PresenceInput};
    use crate::room::{Commit, Room};
    use crate::storage::{
        DurableListener, Follower, History, Opened, Record, RecordRef, Recovered, RoomLog, Storage,
        StorageError, StoredSnapshot,
    };

    /// A log shared by every room opened on it, as the cluster's engine is by nodes: an
    /// append must name the next revision of the shared list.
    #[derive(Default)]
    struct SharedLog {
        records: Mutex<Vec<Record>>,
        followers: Mutex<Vec<Arc<dyn Follower>>>,
        /// A snapshot stored by `trim_behind`, as the engine keeps one.
        snapshot: Mutex<Option<StoredSnapshot>>,
        /// The actors some live node holds.
        held: Mutex<Vec<String>>,
    }

    impl SharedLog {
        /// Stores `room`'s state as the snapshot and drops the records up to `keep_after`.
        fn trim_behind(&self, room: &Room<Presence>, keep_after: u64) {
            let committed = room.committed.lock();
            *self.snapshot.lock() = Some(StoredSnapshot {
                rev: room.rev(),
                state: super::super::encode_state(&committed.model).unwrap(),
                dedup: committed.dedup.entries(),
            });
            self.records.lock().retain(|r| r.rev > keep_after);
        }
    }

    impl RoomLog for SharedLog {
        fn append(&self, record: &RecordRef<'_>) -> Result<(), StorageError> {
            let mut records = self.records.lock();
            let expected = records.last().map_or(0, |r| r.rev) + 1;
            if record.rev != expected {
                return Err(StorageError::Conflict {
                    expected,
                    found: record.rev,
                });
            }
            records.push(Record {
                rev: record.rev,
                actor: record.actor.map(Into::into),
                client_req_id: record.client_req_id.map(Into::into),
                op: bytes::Bytes::copy_from_slice(record.op),
            });
            Ok(())
        }
        fn durable_rev(&self) -> u64 {
            self.records.lock().len() as u64
        }
        fn reports_durability(&self) -> bool {
            false
        }
        fn listen(&self, _: Arc<dyn DurableListener>) {}
        fn snapshot_due(&self, _: u64) -> bool {
            false
        }
        fn save_snapshot(&self, _: StoredSnapshot) {}
        fn is_shared(&self) -> bool {
            true
        }
        fn conflict_retries(&self) -> u32 {
            2
        }
        fn read_after(&self, rev: u64) -> Result<Vec<Record>, StorageError> {
            let records = self.records.lock();
            Ok(records.iter().filter(|r| r.rev > rev).cloned().collect())
        }
        fn follow(&self, follower: Arc<dyn Follower>) {
            self.followers.lock().push(follower);
        }
        fn hold(&self, actor: &str) -> Result<(), StorageError> {
            self.held.lock().push(actor.to_owned());
            Ok(())
        }
        fn let_go(&self, actor: &str) -> Result<(), StorageError> {
            self.held.lock().retain(|a| a != actor);
            Ok(())
        }
        fn held_by_a_live_node(&self, actor: &str) -> Result<bool, StorageError> {
            Ok(self.held.lock().iter().any(|a| a == actor))
        }
        fn reload(&self) -> Result<Option<Recovered>, StorageError> {
            Ok(Some(Recovered {
                epoch: Epoch::new("shared").unwrap(),
                snapshot: self.snapshot.lock().clone(),
                tail: self.read_after(0)?,
            }))
        }
    }

    struct Engine(Arc<SharedLog>);

    impl Storage for Engine {
        fn open(&self, _: &str, _: usize) -> Result<Opened, StorageError> {
            Ok(Opened {
                history: History::Recovered(Recovered {
                    epoch: Epoch::new("shared").unwrap(),
                    snapshot: None,
                    tail: self.0.read_after(0)?,
                }),
                log: Some(Arc::clone(&self.0) as Arc<dyn RoomLog>),
            })
        }
        fn describe(&self) -> String {
            "shared".into()
        }
    }

    /// Two "nodes": two rooms on one shared log.
    fn two_nodes() -> (Arc<SharedLog>, Arc<Room<Presence>>, Arc<Room<Presence>>) {
        let log = Arc::new(SharedLog::default());
        let node = || {
            let room = Room::builder("doc", Presence::default())
                .clock(Arc::new(ManualClock::new(1000)))
                .storage(Arc::new(Engine(Arc::clone(&log))))
                .build()
                .unwrap();
            let room = Arc::new(room);
            room.follow();
            room
        };
        let (a, b) = (node(), node());
        (log, a, b)
    }

    fn rename(name: &str) -> PresenceInput {
        PresenceInput {
            patch: Patch {
                name: Some(name.into()),
                ..Patch::default()
            },
        }
    }

    #[test]
    fn a_commit_that_lost_its_revision_catches_up_and_commits_next() {
        let (log, a, b) = two_nodes();
        assert_eq!(a.join("alice", "Alice").unwrap(), Some(1));
        // b has not seen revision 1: its join of bob conflicts, catches up, commits at 2.
        assert_eq!(b.rev(), 0);
        assert_eq!(b.join("bob", "Bob").unwrap(), Some(2));
        assert_eq!(b.rev(), 2);
        assert_eq!(
            b.published_rev(),
            2,
            "what it caught up on is published too"
        );
        // The very bytes a encoded are in b's ring.
        assert_eq!(
            b.since(0, None).unwrap().operations[0],
            log.records.lock()[0].op
        );
        // a takes in bob's join through its tailer.
        let follower = Arc::clone(&log.followers.lock()[0]);
        assert_eq!(follower.head(), Some(1));
        follower.ingest(log.read_after(1).unwrap());
        assert_eq!(a.rev(), 2);
        let state = |room: &Room<Presence>| room.with_state(|m, rev| (m.clone(), rev));
        assert_eq!(state(&a), state(&b));
    }

    #[test]
    fn a_request_another_node_committed_is_a_duplicate_after_the_catch_up() {
        let (_log, a, b) = two_nodes();
        a.join("alice", "Alice").unwrap();
        assert_eq!(
            a.submit("alice", &rename("A1"), Some("req-1")).unwrap(),
            Commit {
                rev: 2,
                duplicate: false
            }
        );
        // The client retries req-1 on node b, which has seen nothing yet: against its
        // replica alice is unknown, so b reads the log before refusing, and finds req-1.
        assert_eq!(
            b.submit("alice", &rename("A1"), Some("req-1")).unwrap(),
            Commit {
                rev: 2,
                duplicate: true
            }
        );
        assert_eq!(b.rev(), 2, "nothing applied twice");
    }

    #[test]
    fn records_already_held_are_skipped_and_a_hole_is_filled_from_the_log() {
        let (log, a, b) = two_nodes();
        a.join("alice", "Alice").unwrap();
        a.submit("alice", &rename("A1"), Some("r1")).unwrap();
        a.submit("alice", &rename("A2"), Some("r2")).unwrap();
        let records = log.read_after(0).unwrap();
        // Only revision 3 arrives: 1 and 2 are read from the log first.
        assert_eq!(b.ingest(records[2..].to_vec()), Ok(3));
        // Everything again: nothing changes.
        assert_eq!(b.ingest(records), Ok(3));
        assert_eq!(b.applied_rev("alice", "r2"), Some(3));
    }

    /// Alice joined on `a` and `b` saw it; then `a` committed renames up to 10, stored a
    /// snapshot at 10 and trimmed the log to 9 and 10 while `b` saw nothing.
    fn b_behind_a_trimmed_log() -> (Arc<SharedLog>, Arc<Room<Presence>>, Arc<Room<Presence>>) {
        let (log, a, b) = two_nodes();
        a.join("alice", "Alice").unwrap();
        assert_eq!(b.ingest(log.read_after(0).unwrap()), Ok(1));
        for i in 2..=10 {
            a.submit("alice", &rename(&format!("A{i}")), Some(&format!("r{i}")))
                .unwrap();
        }
        log.trim_behind(&a, 8);
        (log, a, b)
    }

    fn state(room: &Room<Presence>) -> (Presence, u64) {
        room.with_state(|m, rev| (m.clone(), rev))
    }

    #[test]
    fn a_room_the_tailer_finds_behind_a_trimmed_log_is_rebuilt_in_place() {
        let (log, a, b) = b_behind_a_trimmed_log();
        // The tailer reads from b's head: revisions 9 and 10, and 2..=8 are gone.
        let follower = Arc::clone(&log.followers.lock()[1]);
        follower.ingest(log.read_after(1).unwrap());
        assert_eq!(state(&b), state(&a));
        assert_eq!(
            (b.rev(), b.published_rev(), b.buffer_first_rev()),
            (10, 10, 8)
        );
        assert_eq!(b.epoch().as_str(), "shared", "the same history");
        // A client at 1 is behind the ring: a gap, as for any client behind it.
        let gap = b.since(1, Some("shared")).unwrap_err();
        assert_eq!(
            (
                gap.expected_rev,
                gap.server_rev,
                gap.buffer_first_rev,
                gap.resume_from
            ),
            (1, 10, 8, 10)
        );
        assert_eq!(b.snapshot().unwrap().rev(), 10);
        // Within the tail: deltas, the bytes a encoded.
        assert_eq!(
            b.since(8, None).unwrap().operations,
            a.since(8, None).unwrap().operations
        );
        // The dedup window came with the snapshot.
        assert_eq!(b.applied_rev("alice", "r5"), Some(5));
        // Commits go on from the new head.
        assert_eq!(
            b.submit("alice", &rename("B"), Some("r11")).unwrap(),
            Commit {
                rev: 11,
                duplicate: false
            }
        );
    }

    #[test]
    fn a_commit_that_finds_its_room_behind_a_trimmed_log_rebuilds_it_and_commits_next() {
        let (_log, a, b) = b_behind_a_trimmed_log();
        // b's append at 2 is refused; the catch-up finds 9 and 10 only.
        assert_eq!(
            b.submit("alice", &rename("B"), Some("b1")).unwrap(),
            Commit {
                rev: 11,
                duplicate: false
            }
        );
        assert_eq!((b.rev(), b.buffer_first_rev()), (11, 8));
        // A retry of a request a committed before the trim is a duplicate on b.
        assert_eq!(
            b.submit("alice", &rename("A3"), Some("r3")).unwrap(),
            Commit {
                rev: 3,
                duplicate: true
            }
        );
        assert_eq!(a.rev(), 10);
    }

    #[test]
    fn a_participant_no_live_node_holds_leaves_once_however_many_nodes_sweep() {
        let (log, a, b) = two_nodes();
        let c = {
            let room = Room::builder("doc", Presence::default())
                .clock(Arc::new(ManualClock::new(1000)))
                .storage(Arc::new(Engine(Arc::clone(&log))))
                .build()
                .unwrap();
            Arc::new(room)
        };
        assert_eq!(a.join("alice", "Alice").unwrap(), Some(1));
        assert_eq!(a.join("carol", "Carol").unwrap(), Some(2));
        assert_eq!(b.join_attached("bob", "Bob").unwrap(), Some(3));
        assert_eq!(
            *log.held.lock(),
            ["alice", "carol", "bob"],
            "held before the joins"
        );
        // a dies: alice is held by nobody (carol stays held, as if by another node).
        log.held.lock().retain(|actor| actor != "alice");
        let everyone = ["alice", "bob", "carol"].map(String::from);
        assert_eq!(b.expire_unheld(&everyone), Ok(vec![4]));
        // c's tailer had brought it to 3 (alice present): its leave loses revision 4 to
        // b's, it catches up, and alice is gone.
        assert_eq!(c.ingest(log.read_after(0).unwrap()[..3].to_vec()), Ok(3));
        assert_eq!(c.expire_unheld(&everyone), Ok(vec![]));
        assert_eq!(c.rev(), 4);
        // bob has a connection on b: b never expires him, even unheld.
        log.held.lock().retain(|actor| actor != "bob");
        assert_eq!(b.expire_unheld(&everyone), Ok(vec![]));
        let present = |room: &Room<Presence>| room.present_actors();
        assert_eq!(present(&c), ["bob", "carol"]);
        assert_eq!(log.records.lock().len(), 4, "one leave, once");
        // b's sweep holds bob again; a let-go that failed is repaired.
        log.held.lock().push("alice".into());
        b.reconcile_holds(&["alice".to_owned()]);
        assert_eq!(*log.held.lock(), ["carol", "bob"]);
    }
}
