//! The rooms of a server, by name: created on first connection up to a maximum, told to
//! expire participants whose time-to-live ran out, dropped once empty for a while and
//! held by nobody else.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::interest::RoomInterest;
use super::shared::Wakers;
use crate::clock::Clock;
use crate::model::Model;
use crate::room::{FlushPolicy, InputPolicy, Room, RoomConfig};
use crate::storage::Storage;

/// Makes the initial state of a new room from its name.
pub type ModelFactory<M> = dyn Fn(&str) -> M + Send + Sync;

/// How the server builds its rooms.
pub(super) struct RoomSetup<M: Model> {
    pub(super) config: RoomConfig,
    /// The most participants a room admits; 0: no limit.
    pub(super) max_participants: usize,
    pub(super) factory: Arc<ModelFactory<M>>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) flush: FlushPolicy,
    pub(super) inputs: InputPolicy,
    /// Where the rooms' histories live; a room is loaded from it on first use.
    pub(super) storage: Arc<dyn Storage>,
}

/// The server's rooms. Lookups happen once per connection, never on the hot path.
///
/// Lock order: `rooms`, then `retired`.
pub(super) struct Registry<M: Model> {
    rooms: Mutex<HashMap<Arc<str>, Entry<M>>>,
    /// What the rooms dropped so far had counted, so that the server's totals never go
    /// down when an idle room goes.
    retired: Mutex<RoomTotals>,
    max_rooms: usize,
    setup: RoomSetup<M>,
    wakers: Arc<Wakers>,
}

struct Entry<M: Model> {
    room: Arc<Room<M>>,
    /// The room's commit listener: which shards hold its connections.
    interest: Arc<RoomInterest>,
    connections: usize,
    /// Since when the room has had no connection.
    empty_since: Option<Instant>,
}

/// What the rooms of a server have done, summed (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct RoomTotals {
    /// Operations committed ([`Room::commits`]).
    pub(super) commits: u64,
    /// Snapshots encoded ([`Room::snapshots_encoded`]).
    pub(super) snapshot_encodings: u64,
}

impl RoomTotals {
    fn add<M: Model>(&mut self, room: &Room<M>) {
        self.commits += room.commits();
        self.snapshot_encodings += room.snapshots_encoded();
    }
}

/// Why a connection cannot have its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RoomRefused {
    /// The room limit is reached and the room does not exist.
    Limit,
    /// The room's stored history cannot be loaded (corrupt, unreadable): it is not served
    /// from part of it.
    Unavailable,
}

impl RoomRefused {
    /// The body of the HTTP refusal.
    pub(super) fn describe(&self, max_rooms: usize) -> String {
        match self {
            Self::Limit => format!("the room limit ({max_rooms}) is reached"),
            Self::Unavailable => "the room's stored history cannot be loaded".into(),
        }
    }
}

impl<M: Model> Registry<M> {
    pub(super) fn new(max_rooms: usize, setup: RoomSetup<M>, wakers: Arc<Wakers>) -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            retired: Mutex::new(RoomTotals::default()),
            max_rooms,
            setup,
            wakers,
        }
    }

    /// The room called `name`, created if needed (up to the maximum).
    pub(super) fn room(&self, name: &str) -> Result<Arc<Room<M>>, RoomRefused> {
        let mut rooms = self.rooms.lock();
        self.entry(&mut rooms, name)
            .map(|entry| Arc::clone(&entry.room))
    }

    /// A connection to `name` begins: the room is created if needed and counted as used.
    pub(super) fn connect(&self, name: &str) -> Result<Arc<Room<M>>, RoomRefused> {
        let mut rooms = self.rooms.lock();
        let entry = self.entry(&mut rooms, name)?;
        entry.connections += 1;
        entry.empty_since = None;
        Ok(Arc::clone(&entry.room))
    }

    /// The commit listener of `room`, which the shards tell whether they hold its
    /// connections. `None` when the room is not (or no longer) the registry's.
    pub(super) fn interest(&self, room: &Arc<Room<M>>) -> Option<Arc<RoomInterest>> {
        let rooms = self.rooms.lock();
        let entry = rooms.get(room.name())?;
        Arc::ptr_eq(&entry.room, room).then(|| Arc::clone(&entry.interest))
    }

    /// A connection to `name` ended.
    pub(super) fn disconnect(&self, name: &str, now: Instant) {
        if let Some(entry) = self.rooms.lock().get_mut(name) {
            entry.connections = entry.connections.saturating_sub(1);
            if entry.connections == 0 {
                entry.empty_since = Some(now);
            }
        }
    }

    fn entry<'a>(
        &self,
        rooms: &'a mut HashMap<Arc<str>, Entry<M>>,
        name: &str,
    ) -> Result<&'a mut Entry<M>, RoomRefused> {
        if !rooms.contains_key(name) {
            if rooms.len() >= self.max_rooms {
                return Err(RoomRefused::Limit);
            }
            let setup = &self.setup;
            let room = Room::builder(name, (setup.factory)(name))
                .config(setup.config.clone())
                .max_participants(setup.max_participants)
                .clock(Arc::clone(&setup.clock))
                .flush_policy(setup.flush)
                .input_policy(setup.inputs)
                .storage(Arc::clone(&setup.storage))
                .build()
                .map_err(|e| {
                    tracing::error!(room = name, error = %e, "cannot load the room");
                    RoomRefused::Unavailable
                })?;
            let room = Arc::new(room);
            let key = super::shard::room_key(&room);
            let interest = Arc::new(RoomInterest::new(key, Arc::clone(&self.wakers)));
            room.subscribe(Arc::clone(&interest) as Arc<dyn crate::room::CommitListener>);
            tracing::debug!(room = name, epoch = %room.epoch(), rev = room.rev(), "room loaded");
            // A log shared with other nodes: take in what they commit from now on.
            room.follow();
            rooms.insert(
                name.into(),
                Entry {
                    room,
                    interest,
                    connections: 0,
                    empty_since: None,
                },
            );
        }
        rooms.get_mut(name).ok_or(RoomRefused::Limit)
    }

    /// Commits the `leave` of participants without a connection for `ttl`, and drops rooms
    /// that have had no connection (and no participant waiting out its time-to-live) for
    /// `room_idle`, unless something besides the registry still holds them (an embedder
    /// committing from its own loop). Called about once a second.
    pub(super) fn reap(&self, now: Instant, ttl: Duration, room_idle: Duration) {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let rooms: Vec<Arc<Room<M>>> = self
            .rooms
            .lock()
            .values()
            .map(|e| Arc::clone(&e.room))
            .collect();
        for room in &rooms {
            if let Err(e) = room.expire_detached(ttl_ms) {
                tracing::error!(room = room.name(), error = %e, "cannot expire participants");
            }
        }
        // Our own handles must not count as someone else's below.
        drop(rooms);
        let mut rooms = self.rooms.lock();
        let mut retired = self.retired.lock();
        rooms.retain(|name, entry| {
            let idle = entry
                .empty_since
                .is_some_and(|since| now.saturating_duration_since(since) >= room_idle);
            // Every handle but the registry's comes from it, under this lock, or from
            // another handle: a count of one means nobody else can reach the room.
            let held_elsewhere = Arc::strong_count(&entry.room) > 1;
            let keep = !(idle && entry.room.is_unattached()) || held_elsewhere;
            if !keep {
                tracing::debug!(room = &**name, rev = entry.room.rev(), "idle room dropped");
                retired.add(&entry.room);
            }
            keep
        });
    }

    /// What every room, held now or dropped, has done.
    pub(super) fn totals(&self) -> RoomTotals {
        let rooms = self.rooms.lock();
        let mut totals = *self.retired.lock();
        for entry in rooms.values() {
            totals.add(&entry.room);
        }
        totals
    }

    /// Where the rooms' histories live.
    pub(super) fn storage(&self) -> &Arc<dyn Storage> {
        &self.setup.storage
    }

    /// How many rooms exist.
    pub(super) fn len(&self) -> usize {
        self.rooms.lock().len()
    }
}
