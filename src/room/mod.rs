//! A room: one document, its revisions, its ring of operations and its snapshot.
//!
//! A [`Room`] is the engine of the protocol for one document. It holds
//!
//! - the model state behind a short commit lock (`parking_lot::Mutex`),
//! - the revision counter and the last `ring_capacity` operations, encoded once, in a
//!   lock-free [`Ring`],
//! - the latest encoded [`Snapshot`], published through `arc-swap`,
//! - the epoch of its history.
//!
//! Writers go through the commit lock, which covers validate, apply, encode, append and
//! publish: one writer at a time, and the revision goes up by exactly one per operation.
//! Readers ([`Room::since`], [`Room::rev`], [`Room::published_snapshot`]) take no lock.
//!
//! # Gaps and snapshots
//!
//! [`Room::since`] answers a client at revision `r` with the operations `(r, head]` as
//! shared bytes, or, when the ring no longer holds them, when `r` is ahead of the room, or
//! when the client's epoch is another history's, with the [`GapInfo`] of a
//! `REVISION_GAP`. The client then needs [`Room::snapshot`], which is encoded at most
//! once per revision however many readers ask at once.
//!
//! ```
//! use std::sync::Arc;
//! use deltasync::clock::ManualClock;
//! use deltasync::model::presence::{Presence, PresenceInput, Patch, Status};
//! use deltasync::room::{Room, RoomConfig};
//!
//! let clock = Arc::new(ManualClock::new(1000));
//! let room = Room::builder("default", Presence::default())
//!     .config(RoomConfig::with_ring_capacity(4).unwrap())
//!     .clock(clock)
//!     .build()
//!     .unwrap();
//! assert_eq!(room.join("user-1", "Alice").unwrap(), Some(1));
//! for i in 0..5 {
//!     let input = PresenceInput { patch: Patch { name: Some(format!("Alice {i}")), ..Patch::default() } };
//!     room.submit("user-1", &input, Some(&format!("req-{i}"))).unwrap();
//! }
//! assert_eq!(room.rev(), 6);
//! // The ring holds revisions 3..=6: a client at 2 or later gets deltas ...
//! let deltas = room.since(4, None).unwrap();
//! assert_eq!((deltas.from, deltas.to, deltas.operations.len()), (4, 6, 2));
//! // ... a client at 1 gets a gap, then a snapshot.
//! let gap = room.since(1, None).unwrap_err();
//! assert_eq!((gap.expected_rev, gap.server_rev, gap.buffer_first_rev, gap.resume_from), (1, 6, 2, 6));
//! assert_eq!(room.snapshot().unwrap().rev(), 6);
//! ```
//!
//! # Lock order
//!
//! `snapshot_encoding` before `committed`, and `attachments` before `committed`; nothing
//! takes them the other way round, and the commit lock is never held while commit
//! listeners run. With storage, `committed` is held while the log appends (the log's own
//! lock, then its syncer's queue), and `snapshot_encoding` while a snapshot waits for its
//! revision to be durable (the visibility's wait lock); the syncer reports durability
//! holding none of them. With a log shared by several nodes, `committed` is also held
//! across the engine's round trip and across a catch-up (the log's connection pool lock
//! inside), and the node's tailer takes `committed` to take in other nodes' records,
//! holding no lock of its own.
//!
//! # Storage
//!
//! A room built with [`RoomBuilder::storage`] starts from what the storage holds (epoch,
//! snapshot, the log's tail refilling the ring) and appends every commit to its log under
//! the commit lock, before applying it: a refused append (a full disk) commits nothing
//! and is an `UNAVAILABLE` rejection. What connections see, [`Room::published_rev`], never
//! passes what the log made durable (under `sync = "always"` that waits for the fsync),
//! while [`Room::rev`] is the committed head. See [`crate::storage`].
//!
//! # Participants and connections
//!
//! A [`Session`](crate::session::Session) tells the room when its connection binds to an
//! actor and when it goes away; [`Room::expire_detached`] commits the `leave` of
//! every actor that has had no connection for a time-to-live, so a reconnect within it
//! changes nothing.

mod attachments;
mod config;
mod dedup;
mod follow;
mod holders;
mod inputs;
mod policy;
mod rebuild;
mod snapshot;
mod visibility;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::clock::{Clock, SystemClock};
use crate::epoch::{EntropyError, Epoch};
use crate::model::{Model, Rejection};
use crate::protocol::{ErrorCode, encode};
use crate::ring::Ring;
use crate::storage::{
    DurableListener, History, Record, RecordRef, Recovered, RoomLog, Storage, StorageError,
    StoredSnapshot,
};
use crate::sync::{ArcSwap, AtomicU64, Mutex, Ordering};

pub use crate::protocol::encode::GapInfo;
pub use config::{DEFAULT_RING_CAPACITY, InvalidValue, RoomConfig, ring_capacity};
pub use follow::IngestError;
pub use inputs::ClientInput;
pub use policy::{FlushPolicy, InputPolicy};
pub use snapshot::Snapshot;

use attachments::Attachments;
use dedup::Dedup;
use inputs::{InputQueue, RejectionLog};
use visibility::Visibility;

/// One document: its state, revisions, operation ring and snapshot. See the
/// [module documentation](self).
pub struct Room<M: Model> {
    name: Arc<str>,
    epoch: Epoch,
    config: RoomConfig,
    ring: Ring,
    committed: Mutex<Committed<M>>,
    snapshot: ArcSwap<Snapshot>,
    snapshot_encoding: Mutex<()>,
    snapshots_encoded: AtomicU64,
    /// The head when the room was built (loaded from storage or started anew): every
    /// revision after it was committed by this room (see [`Room::commits`]).
    loaded_rev: u64,
    clock: Arc<dyn Clock>,
    attachments: Mutex<Attachments>,
    /// The most participants (actors known to `attachments`) the room admits; 0: no limit.
    max_participants: usize,
    flush: FlushPolicy,
    /// The revision connections are brought to: the head under `Immediate`, the head at
    /// the last `flush` under `Tick`, and never past what storage made durable.
    visibility: Arc<Visibility>,
    /// Where commits are kept (`None`: in memory only).
    log: Option<Arc<dyn RoomLog>>,
    inputs: Option<InputQueue<M::Input>>,
    rejections: RejectionLog,
}

/// How many rejections a room keeps for connections that have not picked theirs up.
const REJECTION_LOG: usize = 4096;

/// What the commit lock guards.
struct Committed<M> {
    model: M,
    dedup: Dedup,
}

impl<M> Committed<M> {
    /// The revision `origin`'s request was already committed at, if it was.
    fn duplicate_of(&self, origin: Origin<'_>) -> Option<u64> {
        self.dedup.get(origin.actor?, origin.client_req_id?)
    }
}

/// Who asks for a commit: the actor (participant) and the client's request id, if any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The participant the connection is bound to; `None` for the server itself.
    pub actor: Option<&'a str>,
    /// The client's `clientReqId`, echoed in the committed operation.
    pub client_req_id: Option<&'a str>,
}

impl Origin<'static> {
    /// An operation the server commits on its own authority.
    pub const SERVER: Origin<'static> = Origin {
        actor: None,
        client_req_id: None,
    };
}

/// What a decision under the commit lock came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decided {
    /// Committed at this revision.
    Committed(u64),
    /// The request was already committed, at this revision.
    Duplicate(u64),
    /// The model decided that nothing changes.
    Nothing,
}

impl Decided {
    fn rev(self) -> Option<u64> {
        match self {
            Self::Committed(rev) => Some(rev),
            Self::Duplicate(_) | Self::Nothing => None,
        }
    }

    /// As a [`Commit`], for `commit` and `submit`, whose decisions always yield an
    /// operation or a rejection.
    fn into_commit(self) -> Result<Commit, Rejection> {
        match self {
            Self::Committed(rev) => Ok(Commit {
                rev,
                duplicate: false,
            }),
            Self::Duplicate(rev) => Ok(Commit {
                rev,
                duplicate: true,
            }),
            Self::Nothing => Err(Rejection::new(
                ErrorCode::Internal,
                "the model decided no operation",
            )),
        }
    }
}

/// Why an append did not commit.
enum Refused {
    /// Another node committed this revision first: catch up and decide again.
    Conflict,
    /// Refused for good (nothing was applied).
    Rejected(Rejection),
}

/// The outcome of an accepted commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// The revision the operation was committed at.
    pub rev: u64,
    /// `true` when this `(actor, clientReqId)` had already been committed: nothing new was
    /// applied, and `rev` is the revision it got the first time.
    pub duplicate: bool,
}

/// The operations after a client's revision, as shared bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deltas {
    /// The client's revision.
    pub from: u64,
    /// The revision after the last operation (the room's head when read).
    pub to: u64,
    /// The encoded operations `from + 1 ..= to`, in order.
    pub operations: Vec<Bytes>,
}

/// Told after each commit, outside the commit lock. Must be cheap and must not commit
/// to the same room (the I/O shell uses it to wake its event loops).
pub trait CommitListener: Send + Sync {
    /// `room` now has revision `rev`.
    fn committed(&self, room: &str, rev: u64);
}

/// Why a room could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No epoch was given and none could be generated.
    #[error(transparent)]
    Entropy(#[from] EntropyError),
    /// The initial state does not serialize.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The room's stored history cannot be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored history does not fit the model (a snapshot or an operation that does
    /// not decode as this model's).
    #[error("room {room:?}: the stored history does not decode at revision {rev}: {reason}")]
    Restore {
        /// The room.
        room: String,
        /// The snapshot's or operation's revision.
        rev: u64,
        /// What failed.
        reason: String,
    },
}

/// The model's state failed to serialize as a snapshot.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the room state does not serialize as a snapshot: {0}")]
pub struct SnapshotError(String);

impl From<&SnapshotError> for Rejection {
    fn from(error: &SnapshotError) -> Self {
        Rejection::new(ErrorCode::Internal, error.to_string())
    }
}

/// Builds a [`Room`]: name, initial state, configuration, clock, epoch.
pub struct RoomBuilder<M: Model> {
    name: Arc<str>,
    model: M,
    config: RoomConfig,
    clock: Arc<dyn Clock>,
    epoch: Option<Epoch>,
    rev: u64,
    flush: FlushPolicy,
    inputs: InputPolicy,
    storage: Option<Arc<dyn Storage>>,
    max_participants: usize,
}

impl<M: Model> RoomBuilder<M> {
    /// Keeps the room's history in `storage` (default: in memory only, a new history).
    /// The history found there wins over [`epoch`](Self::epoch) and
    /// [`restored_at`](Self::restored_at); the builder's model is the state of a history
    /// that starts now, and the state at revision 0 of a stored one that has no snapshot
    /// yet (so the model factory must make the same initial state each time).
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// The most participants the room admits at once (default 0: no limit). A participant
    /// counts from its `JOIN` until it leaves or its time-to-live runs out without a
    /// connection; a `JOIN` of a new participant into a full room is refused with
    /// `RESOURCE_EXHAUSTED`.
    pub fn max_participants(mut self, max: usize) -> Self {
        self.max_participants = max;
        self
    }

    /// When connections are brought up to date (default: at every commit).
    pub fn flush_policy(mut self, policy: FlushPolicy) -> Self {
        self.flush = policy;
        self
    }

    /// What happens to clients' inputs (default: the model decides them at once).
    pub fn input_policy(mut self, policy: InputPolicy) -> Self {
        self.inputs = policy;
        self
    }

    /// Sets the ring capacity and the other room knobs.
    pub fn config(mut self, config: RoomConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the wall clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the epoch (default: a new random one, i.e. a new history).
    pub fn epoch(mut self, epoch: Epoch) -> Self {
        self.epoch = Some(epoch);
        self
    }

    /// Starts the room at revision `rev` with the builder's model as the state at that
    /// revision and an empty ring: restoring a room from a snapshot. Only a client at
    /// exactly `rev` (and the same epoch) can then be served by deltas.
    pub fn restored_at(mut self, rev: u64) -> Self {
        self.rev = rev;
        self
    }

    /// Builds the room and encodes its first snapshot.
    ///
    /// # Errors
    ///
    /// [`BuildError`] if no epoch was given and randomness is unavailable, or if the state
    /// does not serialize.
    pub fn build(mut self) -> Result<Room<M>, BuildError> {
        let Some(storage) = self.storage.take() else {
            let epoch = match self.epoch.take() {
                Some(epoch) => epoch,
                None => Epoch::random()?,
            };
            let ring = Ring::starting_at(self.config.ring_capacity, self.rev);
            let dedup = Dedup::new(self.config.dedup_window);
            return self.assemble(epoch, ring, dedup, None);
        };
        let opened = storage.open(&self.name, self.config.ring_capacity.get())?;
        match opened.history {
            History::New { epoch, first_rev } => {
                let ring = Ring::starting_at(self.config.ring_capacity, first_rev);
                let dedup = Dedup::new(self.config.dedup_window);
                self.assemble(epoch, ring, dedup, opened.log)
            }
            History::Recovered(recovered) => self.recover(recovered, opened.log),
        }
    }

    /// Rebuilds the state from a stored history: the snapshot's state and dedup window,
    /// then the operations after it applied in order; the ring refilled with the tail's
    /// bytes as they were sent.
    fn recover(
        mut self,
        recovered: Recovered,
        log: Option<Arc<dyn RoomLog>>,
    ) -> Result<Room<M>, BuildError> {
        let epoch = recovered.epoch.clone();
        let restored = rebuild::restore(self.model.clone(), self.config.dedup_window, recovered)
            .map_err(|(rev, reason)| self.restore_error(rev, &reason))?;
        self.model = restored.model;
        let dedup = restored.dedup;
        let ring = Ring::starting_at(self.config.ring_capacity, restored.base);
        for op in restored.ops {
            ring.append(op);
        }
        self.rev = ring.head();
        // A log shared with other nodes: the present actors may be connected there, and
        // only a node that had them connected may expire them.
        let shared = log.as_ref().is_some_and(|log| log.is_shared());
        let actors = if shared {
            Vec::new()
        } else {
            self.model.present_actors()
        };
        let room = self.assemble(epoch, ring, dedup, log)?;
        // Nobody is connected after a restart: every present actor starts its
        // time-to-live now, as if its connection had just dropped.
        let now = room.clock.now_ms();
        let mut attachments = room.attachments.lock();
        for actor in &actors {
            attachments.attach(actor);
            attachments.detach(actor, now);
        }
        drop(attachments);
        Ok(room)
    }

    fn restore_error(&self, rev: u64, error: &dyn std::fmt::Display) -> BuildError {
        BuildError::Restore {
            room: self.name.to_string(),
            rev,
            reason: error.to_string(),
        }
    }

    /// The room at the ring's head, with its first snapshot encoded.
    fn assemble(
        self,
        epoch: Epoch,
        ring: Ring,
        dedup: Dedup,
        log: Option<Arc<dyn RoomLog>>,
    ) -> Result<Room<M>, BuildError> {
        let head = ring.head();
        let state = encode_state(&self.model)?;
        let snapshot = Snapshot::new(head, epoch.clone(), state);
        let waits = log.as_ref().is_some_and(|log| log.reports_durability());
        let visibility = Arc::new(Visibility::new(Arc::clone(&self.name), head, waits));
        if let Some(log) = &log {
            log.listen(Arc::clone(&visibility) as Arc<dyn DurableListener>);
        }
        Ok(Room {
            name: self.name,
            ring,
            committed: Mutex::new(Committed {
                model: self.model,
                dedup,
            }),
            snapshot: ArcSwap::from_pointee(snapshot),
            snapshot_encoding: Mutex::new(()),
            snapshots_encoded: AtomicU64::new(1),
            loaded_rev: head,
            clock: self.clock,
            attachments: Mutex::new(Attachments::default()),
            max_participants: self.max_participants,
            flush: self.flush,
            visibility,
            log,
            inputs: match self.inputs {
                InputPolicy::Decide => None,
                InputPolicy::Forward { capacity } => Some(InputQueue::new(capacity)),
            },
            rejections: RejectionLog::new(REJECTION_LOG),
            epoch,
            config: self.config,
        })
    }
}

/// The model's operation in a stored record: the record's JSON without the engine's own
/// fields (`rev`, `clientReqId`).
fn decode_op<M: Model>(record: &Record) -> Result<M::Op, serde_json::Error> {
    let mut fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&record.op)?;
    fields.remove("rev");
    fields.remove("clientReqId");
    serde_json::from_value(serde_json::Value::Object(fields))
}

/// How long a snapshot waits for storage to make its revision durable before giving up.
const DURABLE_WAIT: Duration = Duration::from_secs(10);

/// A commit the storage refused: retryable, nothing was applied.
fn storage_rejection(error: &StorageError) -> Rejection {
    Rejection::new(
        ErrorCode::Unavailable,
        format!("the update was not stored ({error}); nothing was applied, try again"),
    )
}

fn encode_state<M: Model>(model: &M) -> Result<Bytes, SnapshotError> {
    let json = serde_json::to_vec(model).map_err(|e| SnapshotError(e.to_string()))?;
    if json.first() != Some(&b'{') {
        return Err(SnapshotError("the state is not a JSON object".into()));
    }
    Ok(Bytes::from(json))
}

impl<M: Model> Room<M> {
    /// Starts building a room named `name` whose state starts as `model`.
    pub fn builder(name: &str, model: M) -> RoomBuilder<M> {
        RoomBuilder {
            name: name.into(),
            model,
            config: RoomConfig::default(),
            clock: Arc::new(SystemClock),
            epoch: None,
            rev: 0,
            flush: FlushPolicy::default(),
            inputs: InputPolicy::default(),
            storage: None,
            max_participants: 0,
        }
    }

    /// The room's name (the request path that selects it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The epoch of the room's history.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// The room's configuration.
    pub fn config(&self) -> &RoomConfig {
        &self.config
    }

    /// The current revision (the newest committed operation; with storage that syncs
    /// before showing, possibly not yet durable nor shown: see [`Room::published_rev`]).
    /// Lock-free.
    pub fn rev(&self) -> u64 {
        self.ring.head()
    }

    /// The revision connections are brought to: [`Room::rev`] under the `Immediate`
    /// flush policy, the revision of the last [`Room::flush`] under `Tick`. Lock-free.
    pub fn published_rev(&self) -> u64 {
        self.visibility.published()
    }

    /// The room's flush policy.
    pub fn flush_policy(&self) -> FlushPolicy {
        self.flush
    }

    /// Publishes every commit so far (the `Tick` policy's once-per-tick call): every
    /// connection behind gets one frame with all of them. Returns the published revision.
    /// Under `Immediate` commits are already published and this does nothing.
    /// With storage that syncs before showing (`sync = "always"`), the published revision
    /// reaches the flushed head once it is durable.
    pub fn flush(&self) -> u64 {
        let head = self.ring.head();
        self.visibility.want(head);
        head
    }

    /// Whether clients' inputs are forwarded to the owner rather than decided at once.
    pub(crate) fn forwards_inputs(&self) -> bool {
        self.inputs.is_some()
    }

    /// Queues a client's input for the owner (under [`InputPolicy::Forward`]).
    ///
    /// # Errors
    ///
    /// `RESOURCE_EXHAUSTED` when the queue is full, `FAILED_PRECONDITION` when the room
    /// decides inputs itself.
    pub(crate) fn forward(&self, input: ClientInput<M::Input>) -> Result<(), Rejection> {
        let Some(queue) = &self.inputs else {
            return Err(Rejection::precondition("this room decides inputs itself"));
        };
        queue.push(input).map_err(|_| {
            Rejection::new(
                ErrorCode::ResourceExhausted,
                "the room's input queue is full; try again",
            )
        })
    }

    /// Takes every input waiting for the owner, oldest first (under
    /// [`InputPolicy::Forward`]; nothing otherwise).
    pub fn drain_inputs(&self, out: &mut Vec<ClientInput<M::Input>>) {
        if let Some(queue) = &self.inputs {
            queue.drain_into(out);
        }
    }

    /// Rejects a forwarded input: its sender gets `ERROR` with `rejection`'s code and
    /// message and `details.clientReqId`, and drops it from its pending updates.
    pub fn reject(&self, input: &ClientInput<M::Input>, rejection: &Rejection) {
        let mut details = serde_json::Map::new();
        details.insert("clientReqId".into(), input.client_req_id.clone().into());
        let message = encode::error(&encode::ErrorMessage {
            details: Some(&details),
            ..encode::ErrorMessage::new(rejection.code, &rejection.message)
        });
        self.rejections.push(&input.actor, message);
        self.visibility.notify(self.published_rev());
    }

    /// The sequence number of the newest rejection (changes when there is a new one).
    pub(crate) fn rejection_seq(&self) -> u64 {
        self.rejections.seq()
    }

    /// Appends the rejections for `actor` newer than `seen`; returns the newest number.
    pub(crate) fn rejections_for(&self, actor: &str, seen: u64, out: &mut Vec<Bytes>) -> u64 {
        self.rejections.for_actor(actor, seen, out)
    }

    /// The revision `actor`'s `client_req_id` was committed at, if the room remembers it.
    pub fn applied_rev(&self, actor: &str, client_req_id: &str) -> Option<u64> {
        self.committed.lock().dedup.get(actor, client_req_id)
    }

    /// The oldest revision a client may hold and still be served by deltas.
    pub fn buffer_first_rev(&self) -> u64 {
        self.ring.buffer_first_rev()
    }

    /// The room's wall clock, in ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// How many snapshots this room has encoded (for tests and metrics: at most one per
    /// revision that anyone asked for).
    pub fn snapshots_encoded(&self) -> u64 {
        // Relaxed: a statistic, read on its own.
        self.snapshots_encoded.load(Ordering::Relaxed)
    }

    /// How many operations this room has committed since it was built (for metrics: the
    /// revisions after the one it was loaded or started at). Lock-free, and free for the
    /// commit path: it is read off the head.
    pub fn commits(&self) -> u64 {
        self.rev() - self.loaded_rev
    }

    /// Calls `listener` after every commit from now on.
    pub fn subscribe(&self, listener: Arc<dyn CommitListener>) {
        self.visibility.listeners.rcu(|current| {
            let mut next = Vec::clone(current);
            next.push(Arc::clone(&listener));
            next
        });
    }

    /// Reads the state and its revision under the commit lock. Keep `read` short: commits
    /// wait for it.
    pub fn with_state<R>(&self, read: impl FnOnce(&M, u64) -> R) -> R {
        let committed = self.committed.lock();
        read(&committed.model, self.ring.head())
    }

    /// Commits an operation on the server's authority or on behalf of `origin`: checks it
    /// against the state, applies it, encodes it once, appends it to the ring and tells the
    /// listeners. Returns the revision it got.
    ///
    /// When `origin` names an actor and a `clientReqId` already committed, nothing is
    /// applied and the earlier revision is returned with `duplicate: true`.
    ///
    /// # Errors
    ///
    /// The model's [`Rejection`]; nothing is committed.
    pub fn commit(&self, op: M::Op, origin: Origin<'_>) -> Result<Commit, Rejection> {
        let decided = self.decide_and_commit(origin, |model| {
            model.check(&op)?;
            Ok(Some(Cow::Borrowed(&op)))
        })?;
        decided.into_commit()
    }

    /// Commits what `actor`'s `input` decides (the `UPDATE` of a client): the model
    /// decides the operation against the current state at the room's clock. Duplicates
    /// are answered as in [`Room::commit`].
    ///
    /// # Errors
    ///
    /// The model's [`Rejection`]; nothing is committed.
    pub fn submit(
        &self,
        actor: &str,
        input: &M::Input,
        client_req_id: Option<&str>,
    ) -> Result<Commit, Rejection> {
        let origin = Origin {
            actor: Some(actor),
            client_req_id,
        };
        let decided = self.decide_and_commit(origin, |model| {
            let op = model.decide(actor, input, self.clock.now_ms())?;
            Ok(Some(Cow::Owned(op)))
        })?;
        decided.into_commit()
    }

    /// Binds `actor` to the room (a `JOIN`): commits what the model's `join` decides.
    /// Returns the revision committed, or `None` when nothing visible changed.
    ///
    /// # Errors
    ///
    /// `RESOURCE_EXHAUSTED` if `actor` is new and the room is full (see
    /// [`RoomBuilder::max_participants`]), or the model's [`Rejection`]; nothing is
    /// committed.
    pub fn join(&self, actor: &str, name: &str) -> Result<Option<u64>, Rejection> {
        let attachments = self.attachments.lock();
        self.check_capacity(&attachments, actor)?;
        self.hold_new(false, actor);
        // Lock order: attachments, then committed.
        self.join_locked(actor, name)
    }

    /// [`Room::join`] and [`Room::attach`] at once, so that two new participants racing
    /// for the last place of a full room cannot both take it.
    ///
    /// # Errors
    ///
    /// As [`Room::join`]; nothing is committed or attached.
    pub(crate) fn join_attached(&self, actor: &str, name: &str) -> Result<Option<u64>, Rejection> {
        let mut attachments = self.attachments.lock();
        self.check_capacity(&attachments, actor)?;
        self.hold_new(attachments.contains(actor), actor);
        let rev = self.join_locked(actor, name)?;
        attachments.attach(actor);
        Ok(rev)
    }

    /// Refuses a new actor when the room is full.
    fn check_capacity(&self, attachments: &Attachments, actor: &str) -> Result<(), Rejection> {
        let max = self.max_participants;
        if max == 0 || attachments.contains(actor) || attachments.len() < max {
            return Ok(());
        }
        Err(Rejection::new(
            ErrorCode::ResourceExhausted,
            format!(
                "room {:?} is full: it admits {max} participants at most",
                &*self.name
            ),
        ))
    }

    fn join_locked(&self, actor: &str, name: &str) -> Result<Option<u64>, Rejection> {
        let decided = self.decide_and_commit(Origin::SERVER, |model| {
            Ok(model
                .join(actor, name, self.clock.now_ms())?
                .map(Cow::Owned))
        })?;
        Ok(decided.rev())
    }

    /// `actor` leaves: commits what the model's `leave` decides, and no longer counts
    /// against the room's participant limit once it has no connection. Returns the
    /// revision committed, or `None` when there was nothing to commit.
    ///
    /// # Errors
    ///
    /// An `INTERNAL` [`Rejection`] if the model's operation does not encode.
    pub fn leave(&self, actor: &str) -> Result<Option<u64>, Rejection> {
        let mut attachments = self.attachments.lock();
        attachments.forget_unattached(actor);
        // Lock order: attachments, then committed.
        let rev = self.leave_locked(actor)?;
        if !attachments.contains(actor) {
            self.let_go_of(actor);
        }
        Ok(rev)
    }

    fn leave_locked(&self, actor: &str) -> Result<Option<u64>, Rejection> {
        let decided = self.decide_and_commit(Origin::SERVER, |model| {
            Ok(model.leave(actor, self.clock.now_ms()).map(Cow::Owned))
        })?;
        Ok(decided.rev())
    }

    /// A connection is now bound to `actor`.
    pub(crate) fn attach(&self, actor: &str) {
        let mut attachments = self.attachments.lock();
        self.hold_new(attachments.contains(actor), actor);
        attachments.attach(actor);
    }

    /// A connection bound to `actor` went away (or left).
    pub(crate) fn detach(&self, actor: &str) {
        let now = self.clock.now_ms();
        self.attachments.lock().detach(actor, now);
    }

    /// How many connections are bound to `actor` (for the room's tests, which do not run
    /// under loom).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn connections(&self, actor: &str) -> usize {
        self.attachments.lock().connections(actor)
    }

    /// Whether no actor has a connection or waits for its time-to-live (the room may be
    /// dropped once it has been so for a while).
    pub(crate) fn is_unattached(&self) -> bool {
        self.attachments.lock().is_empty()
    }

    /// Commits the `leave` of every actor that has had no connection for `ttl_ms`, and
    /// returns the revisions committed.
    ///
    /// # Errors
    ///
    /// An `INTERNAL` [`Rejection`] if an operation does not encode; the actors before it
    /// have left.
    pub fn expire_detached(&self, ttl_ms: u64) -> Result<Vec<u64>, Rejection> {
        // Held across the leaves so that no connection attaches to an actor between its
        // expiry and its `participant.left` (lock order: attachments, then committed).
        let mut attachments = self.attachments.lock();
        let expired = attachments.take_expired(self.clock.now_ms(), ttl_ms);
        let mut revs = Vec::new();
        for actor in expired {
            revs.extend(self.leave_locked(&actor)?);
            self.let_go_of(&actor);
        }
        Ok(revs)
    }

    /// Decides an operation under the commit lock and commits it, then publishes. With a
    /// log shared by several nodes the append may find that another node committed first
    /// ([`StorageError::Conflict`]): the room then catches up with the log, checks the
    /// request against the dedup window again (the other node may have committed this
    /// very request), decides again against the new state, and retries, at most
    /// [`RoomLog::conflict_retries`] times.
    fn decide_and_commit<'o>(
        &self,
        origin: Origin<'_>,
        mut decide: impl FnMut(&M) -> Result<Option<Cow<'o, M::Op>>, Rejection>,
    ) -> Result<Decided, Rejection>
    where
        M::Op: 'o,
    {
        let head_before = self.ring.head();
        let decided = {
            let mut committed = self.committed.lock();
            self.decide_locked(&mut committed, origin, &mut decide)
        };
        // Publishes this commit and whatever a catch-up brought in, even when refused.
        let head = self.ring.head();
        if head > head_before {
            self.committed(head);
        }
        decided
    }

    fn decide_locked<'o>(
        &self,
        committed: &mut Committed<M>,
        origin: Origin<'_>,
        decide: &mut impl FnMut(&M) -> Result<Option<Cow<'o, M::Op>>, Rejection>,
    ) -> Result<Decided, Rejection>
    where
        M::Op: 'o,
    {
        let retries = self.log.as_ref().map_or(0, |log| log.conflict_retries());
        let mut refreshed = false;
        for _ in 0..=retries {
            if let Some(rev) = committed.duplicate_of(origin) {
                return Ok(Decided::Duplicate(rev));
            }
            let op = match decide(&committed.model) {
                Ok(Some(op)) => op,
                Ok(None) => return Ok(Decided::Nothing),
                // The replica may be behind the shared log (the participant joined on
                // another node a moment ago): refuse only what the log's head refuses.
                Err(_) if !refreshed && self.refresh_locked(committed) => {
                    refreshed = true;
                    continue;
                }
                Err(rejection) => return Err(rejection),
            };
            match self.commit_locked(committed, &op, origin) {
                Ok(rev) => return Ok(Decided::Committed(rev)),
                Err(Refused::Conflict) => self.catch_up_locked(committed)?,
                Err(Refused::Rejected(rejection)) => return Err(rejection),
            }
        }
        Err(Rejection::new(
            ErrorCode::Unavailable,
            format!(
                "other nodes committed to room {:?} first {} times in a row; nothing was applied, try again",
                &*self.name,
                retries + 1
            ),
        ))
    }

    /// Encodes, applies and appends a decided operation; the caller holds the commit lock.
    /// Encoding comes first so that an operation that cannot be encoded changes nothing.
    fn commit_locked(
        &self,
        committed: &mut Committed<M>,
        op: &M::Op,
        origin: Origin<'_>,
    ) -> Result<u64, Refused> {
        let rev = self.ring.head() + 1;
        let bytes = encode::operation(rev, op, origin.client_req_id)
            .map_err(|e| Refused::Rejected(Rejection::new(ErrorCode::Internal, e.to_string())))?;
        if let Some(log) = &self.log {
            let record = RecordRef {
                rev,
                actor: origin.actor,
                client_req_id: origin.client_req_id,
                op: &bytes,
            };
            match log.append(&record) {
                Ok(()) => {}
                Err(StorageError::Conflict { .. }) if log.conflict_retries() > 0 => {
                    return Err(Refused::Conflict);
                }
                Err(e) => return Err(Refused::Rejected(storage_rejection(&e))),
            }
        }
        committed.model.apply(op);
        self.ring.append(bytes);
        if let (Some(actor), Some(id)) = (origin.actor, origin.client_req_id) {
            committed.dedup.record(actor, id, rev);
        }
        if let Some(log) = self.log.as_ref().filter(|log| log.snapshot_due(rev)) {
            match encode_state(&committed.model) {
                Ok(state) => log.save_snapshot(StoredSnapshot {
                    rev,
                    state,
                    dedup: committed.dedup.entries(),
                }),
                Err(e) => tracing::warn!(room = %self.name, error = %e, "cannot store a snapshot"),
            }
        }
        Ok(rev)
    }

    /// After a commit: publish it (under `Immediate`; once durable, with storage that
    /// syncs first) and tell the listeners.
    fn committed(&self, rev: u64) {
        if self.flush == FlushPolicy::Immediate {
            self.visibility.want(rev);
        }
    }

    /// The operations after revision `rev` up to the published revision, or the gap if they
    /// cannot be served. `epoch`, when given, must be this room's: another history's revisions mean
    /// nothing here. Lock-free.
    ///
    /// # Errors
    ///
    /// [`GapInfo`] when `rev` is older than [`Room::buffer_first_rev`], newer than the
    /// head, or of another epoch; the client needs [`Room::snapshot`].
    pub fn since(&self, rev: u64, epoch: Option<&str>) -> Result<Deltas, GapInfo> {
        let mut operations = Vec::new();
        let to = self.since_into(rev, epoch, &mut operations)?;
        Ok(Deltas {
            from: rev,
            to,
            operations,
        })
    }

    /// Like [`Room::since`], appending the operations to `out` (to reuse a buffer) and
    /// returning the revision they reach.
    ///
    /// # Errors
    ///
    /// As [`Room::since`]; `out` is left as it was.
    pub(crate) fn since_into(
        &self,
        rev: u64,
        epoch: Option<&str>,
        out: &mut Vec<Bytes>,
    ) -> Result<u64, GapInfo> {
        // Up to the published revision; a client already past it (it got a snapshot at the
        // head before a flush) is served up to where it is: nothing.
        let to = self.published_rev().max(rev.min(self.ring.head()));
        let same_history = epoch.is_none_or(|e| e == self.epoch.as_str());
        if same_history && self.ring.read_range(rev, to, out).is_ok() {
            return Ok(to);
        }
        Err(self.gap(rev))
    }

    /// The `REVISION_GAP` for a client at `rev`, as of now.
    pub(crate) fn gap(&self, rev: u64) -> GapInfo {
        let server_rev = self.published_rev();
        GapInfo {
            expected_rev: rev,
            server_rev,
            buffer_first_rev: self.ring.buffer_first_rev(),
            resume_from: server_rev,
        }
    }

    /// The last snapshot published, without encoding a new one: it may lag the head (a
    /// reader can catch up with [`Room::since`] from its revision). Lock-free.
    pub fn published_snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// A snapshot at the current head, encoded now if no reader asked for this revision
    /// before; concurrent callers wait for one encoding and share it.
    ///
    /// # Errors
    ///
    /// [`SnapshotError`] if the model does not serialize.
    pub fn snapshot(&self) -> Result<Arc<Snapshot>, SnapshotError> {
        self.snapshot_within(0)
    }

    /// A snapshot at most `max_lag` revisions behind the head (and still within reach of
    /// the ring, so the reader can catch up by deltas), encoding a new one only when the
    /// published one is older than that.
    ///
    /// # Errors
    ///
    /// [`SnapshotError`] if the model does not serialize.
    pub fn snapshot_within(&self, max_lag: u64) -> Result<Arc<Snapshot>, SnapshotError> {
        self.snapshot_where(|snapshot, head| snapshot.rev() + max_lag >= head)
    }

    /// The snapshot a joining client is served: the published one while it lags the head
    /// by at most [`RoomConfig::snapshot_max_lag`] revisions, or while the operations
    /// committed after it add up to at most [`RoomConfig::snapshot_reuse_percent`] of its
    /// size; else one encoded at the head. The client gets those operations as deltas
    /// right after it, so a join storm shares one encoding among many joiners instead of
    /// encoding everyone for each.
    ///
    /// # Errors
    ///
    /// [`SnapshotError`] if the model does not serialize.
    pub fn snapshot_for_join(&self) -> Result<Arc<Snapshot>, SnapshotError> {
        let max_lag = self.config.snapshot_max_lag;
        let percent = self.config.snapshot_reuse_percent as usize;
        self.snapshot_where(|snapshot, head| {
            let budget = snapshot.state_json().len().saturating_mul(percent) / 100;
            snapshot.rev() + max_lag >= head
                || (budget > 0
                    && snapshot.tail_within(head, budget, |rev| {
                        self.ring.get(rev).ok().map(|op| op.len())
                    }))
        })
    }

    /// The published snapshot if `fits(snapshot, head)` says it will do and the ring
    /// still holds what follows it, else one encoded at the head.
    fn snapshot_where(
        &self,
        fits: impl Fn(&Snapshot, u64) -> bool,
    ) -> Result<Arc<Snapshot>, SnapshotError> {
        let fresh_enough = |snapshot: &Snapshot| {
            let head = self.ring.head();
            snapshot.rev() >= self.ring.buffer_first_rev() && fits(snapshot, head)
        };
        let published = self.snapshot.load_full();
        if fresh_enough(&published) {
            return Ok(published);
        }
        let _encoding = self.snapshot_encoding.lock();
        let published = self.snapshot.load_full();
        if fresh_enough(&published) {
            return Ok(published);
        }
        // A copy of the state is taken under the commit lock and encoded outside it: a
        // join storm's snapshots (each of every participant) then hold commits up for a
        // copy, not for the JSON encoding.
        let (rev, model) = {
            let committed = self.committed.lock();
            (self.ring.head(), committed.model.clone())
        };
        let state = encode_state(&model)?;
        // Nobody sees state that storage has not made durable (`sync = "always"`): the
        // snapshot waits for its revision, at most one fsync batch away.
        if !self.visibility.wait_durable(rev, DURABLE_WAIT) {
            return Err(SnapshotError(format!(
                "storage has not made revision {rev} durable; try again"
            )));
        }
        let snapshot = Arc::new(Snapshot::new(rev, self.epoch.clone(), state));
        self.snapshot.store(Arc::clone(&snapshot));
        // Relaxed: a statistic.
        self.snapshots_encoded.fetch_add(1, Ordering::Relaxed);
        Ok(snapshot)
    }
}

impl<M: Model> fmt::Debug for Room<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Room")
            .field("name", &self.name)
            .field("epoch", &self.epoch)
            .field("rev", &self.rev())
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}

// The ring uses loom atomics under `cfg(loom)`; only the loom models run there.
#[cfg(all(test, not(loom)))]
mod tests;
