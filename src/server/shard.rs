//! A shard: one event loop (`mio::Poll`) on its own thread, owning its connections for
//! their whole life.
//!
//! Each turn of the loop: handle socket events (read, write), take new connections from
//! the acceptor, flush the connections of every room whose revision moved since the
//! last turn, then read the connections still in their upgrade (established clients
//! first). Commits anywhere wake the shard through its `Waker` at most once per burst
//! (see `ShardWake`), and the delta messages it builds in a turn are shared by all its
//! connections at the same revision (`DeltaCache`). Deadlines (handshake, idle, close) are
//! checked once per tick.
//!
//! ## Fairness
//!
//! One connection gets a bounded share of a turn: at most `READ_BUDGET` bytes and
//! `MESSAGES_PER_TURN` messages (see `connection`); one with more waits in `read_more`
//! for the next turn, after everyone else's events. A connection that spent its message
//! rate is not read at all until its next token is due: it sits in the shard's one timer
//! heap (`resumes`), its events cover writes only, and TCP flow control holds its peer
//! back meanwhile. A connection that trickles (reads of a few bytes that complete no
//! message, four in a row) is left unread for 20 ms the same way, so that a client
//! sending a byte at a time costs one read per pause rather than one event and two
//! system calls per byte.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::connection::{Connection, Next, Scratch, Work};
use super::shared::Shared;
use super::transport::Stream;
use crate::model::Model;
use crate::room::Room;
use crate::session::DeltaCache;

/// The token of the shard's waker.
pub(super) const WAKER: Token = Token(usize::MAX);
/// How often deadlines are checked.
const TICK: Duration = Duration::from_millis(250);
/// How long a stopping shard waits for its connections' close handshakes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// The shard's socket read buffer.
const READ_BUFFER: usize = 64 * 1024;

/// The connections of one room on this shard.
struct RoomConnections<M: Model> {
    room: Arc<Room<M>>,
    tokens: Vec<usize>,
    /// The published revision and rejection count this shard last flushed for.
    flushed: (u64, u64),
}

/// One event loop and its connections.
pub(super) struct Shard<M: Model> {
    index: usize,
    poll: Poll,
    shared: Arc<Shared<M>>,
    incoming: Receiver<(TcpStream, IpAddr)>,
    connections: Slab<Entry<M>>,
    rooms: HashMap<usize, RoomConnections<M>>,
    read_more: Vec<usize>,
    /// Connections paused for their message rate, by the instant they may be read again.
    /// An entry may outlive its connection (the key is then reused or vacant): a resume
    /// is only a read, which finds nothing or a connection still paused.
    resumes: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Connections in their upgrade with something to read, read at the end of the turn.
    upgrades: Vec<usize>,
    scratch: Scratch,
}

struct Entry<M: Model> {
    connection: Connection<M, Stream>,
    /// The client's address, counted against `limits.max_connections_per_ip`.
    peer: IpAddr,
    /// Where the connection sits in its room's `tokens` (when it has a room).
    room_slot: Option<(usize, usize)>,
}

fn room_key<M: Model>(room: &Arc<Room<M>>) -> usize {
    Arc::as_ptr(room) as usize
}

impl<M: Model> Shard<M> {
    pub(super) fn new(
        index: usize,
        poll: Poll,
        shared: Arc<Shared<M>>,
        incoming: Receiver<(TcpStream, IpAddr)>,
    ) -> Self {
        Self {
            index,
            poll,
            shared,
            incoming,
            connections: Slab::new(),
            rooms: HashMap::new(),
            read_more: Vec::new(),
            resumes: BinaryHeap::new(),
            upgrades: Vec::new(),
            scratch: Scratch {
                read: vec![0; READ_BUFFER].into_boxed_slice(),
                work: Work {
                    control: Vec::new(),
                    transmit: Vec::new(),
                    cache: DeltaCache::new(),
                },
            },
        }
    }

    /// Runs the loop until the server shuts down.
    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        // The shell's clock: deadlines and sessions' virtual time.
        #[allow(clippy::disallowed_methods)]
        let mut next_tick = Instant::now() + TICK;
        loop {
            let timeout = self.timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!(shard = self.index, error = %e, "poll failed; the shard stops");
                    return;
                }
            }
            #[allow(clippy::disallowed_methods)]
            let now = Instant::now();
            self.scratch.work.cache.clear();
            self.handle_events(&events, now);
            for key in std::mem::take(&mut self.read_more) {
                self.readable(key, now);
            }
            self.resume_due(now);
            self.shared.wakers.shards[self.index].take();
            self.accept(now);
            self.flush_rooms();
            // Upgrades last: what established connections sent is answered first.
            for key in std::mem::take(&mut self.upgrades) {
                self.readable(key, now);
            }
            if now >= next_tick {
                next_tick = now + TICK;
                self.tick(now);
            }
            if self.shared.wakers.is_shutting_down() {
                self.shut_down(now);
                return;
            }
        }
    }

    /// Reads and writes what the events say; reads of connections still in their upgrade
    /// are put off to the end of the turn (`upgrades`), so that a thousand slowloris
    /// connections sending their byte at once do not delay an established client's
    /// answer.
    fn handle_events(&mut self, events: &Events, now: Instant) {
        for event in events.iter() {
            if event.token() == WAKER {
                continue;
            }
            let key = event.token().0;
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                let upgrading = self
                    .connections
                    .get(key)
                    .is_some_and(|entry| entry.connection.is_upgrading());
                if upgrading {
                    self.upgrades.push(key);
                } else {
                    self.readable(key, now);
                }
            }
            if event.is_writable() {
                self.writable(key);
            }
        }
    }

    /// How long the next poll may wait: not at all when connections have input left from
    /// their last turn, else until the next resume or tick.
    fn timeout(&self) -> Duration {
        if !self.read_more.is_empty() {
            return Duration::ZERO;
        }
        match self.resumes.peek() {
            Some(Reverse((at, _))) => {
                #[allow(clippy::disallowed_methods)]
                let now = Instant::now();
                at.saturating_duration_since(now).min(TICK)
            }
            None => TICK,
        }
    }

    /// Reads the connections whose rate pause is over.
    fn resume_due(&mut self, now: Instant) {
        while let Some(&Reverse((at, key))) = self.resumes.peek() {
            if at > now {
                return;
            }
            self.resumes.pop();
            self.listen(key, Interest::READABLE | Interest::WRITABLE);
            self.readable(key, now);
        }
    }

    fn accept(&mut self, now: Instant) {
        while let Ok((stream, peer)) = self.incoming.try_recv() {
            let stream = match Stream::accepted(stream, self.shared.tls.as_deref()) {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start TLS on a connection");
                    self.shared.release(peer);
                    continue;
                }
            };
            let entry = self.connections.vacant_entry();
            let key = entry.key();
            let mut connection = Connection::new(stream, now, self.shared.handshake_timeout);
            let registered = self.poll.registry().register(
                connection.stream_mut(),
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            );
            if let Err(e) = registered {
                tracing::warn!(error = %e, "cannot register a connection");
                self.shared.release(peer);
                continue;
            }
            entry.insert(Entry {
                connection,
                peer,
                room_slot: None,
            });
        }
    }

    fn readable(&mut self, key: usize, now: Instant) {
        let Some(entry) = self.connections.get_mut(key) else {
            return;
        };
        let next = entry
            .connection
            .on_readable(&self.shared, &mut self.scratch, now);
        // Just upgraded: filed under its room, so that room moves flush it.
        if entry.room_slot.is_none() && entry.connection.room().is_some() {
            self.index_room(key);
        }
        match next {
            Next::Keep => {}
            Next::ReadMore => self.read_more.push(key),
            Next::Paused(until) => {
                // Its bytes are not read before `until`: no event needs to say they came.
                self.listen(key, Interest::WRITABLE);
                self.resumes.push(Reverse((until, key)));
            }
            Next::Drop => self.remove(key, now),
        }
    }

    /// Sets what the connection's events are about: writes only while it is paused.
    fn listen(&mut self, key: usize, interest: Interest) {
        if let Some(entry) = self.connections.get_mut(key) {
            let stream = entry.connection.stream_mut();
            if let Err(e) = self
                .poll
                .registry()
                .reregister(stream, Token(key), interest)
            {
                tracing::warn!(error = %e, "cannot change a connection's events");
            }
        }
    }

    fn writable(&mut self, key: usize) {
        let Some(entry) = self.connections.get_mut(key) else {
            return;
        };
        if entry.connection.on_writable(&mut self.scratch.work) == Next::Drop {
            #[allow(clippy::disallowed_methods)]
            self.remove(key, Instant::now());
        }
    }

    /// Files a newly opened connection under its room, so room moves flush it.
    fn index_room(&mut self, key: usize) {
        let Some(entry) = self.connections.get_mut(key) else {
            return;
        };
        let Some(room) = entry.connection.room() else {
            return;
        };
        let room_key = room_key(room);
        let slot = self
            .rooms
            .entry(room_key)
            .or_insert_with(|| RoomConnections {
                room: Arc::clone(room),
                tokens: Vec::new(),
                flushed: (room.published_rev(), room.rejection_seq()),
            });
        entry.room_slot = Some((room_key, slot.tokens.len()));
        slot.tokens.push(key);
    }

    /// Flushes the connections of every room that published or rejected something.
    fn flush_rooms(&mut self) {
        let mut dead = Vec::new();
        for slot in self.rooms.values_mut() {
            // Connections move when the room publishes or its owner rejects an input.
            let activity = (slot.room.published_rev(), slot.room.rejection_seq());
            if activity == slot.flushed {
                continue;
            }
            slot.flushed = activity;
            for &key in &slot.tokens {
                let Some(entry) = self.connections.get_mut(key) else {
                    continue;
                };
                if entry.connection.can_flush()
                    && entry.connection.flush(&mut self.scratch.work) == Next::Drop
                {
                    dead.push(key);
                }
            }
        }
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        for key in dead {
            self.remove(key, now);
        }
    }

    fn tick(&mut self, now: Instant) {
        let mut dead = Vec::new();
        for (key, entry) in &mut self.connections {
            if entry.connection.on_tick(&mut self.scratch.work, now) == Next::Drop {
                dead.push(key);
            }
        }
        for key in dead {
            self.remove(key, now);
        }
    }

    /// Drops a connection: deregisters it, takes it out of its room's list, releases its
    /// session and the server-wide connection count.
    fn remove(&mut self, key: usize, now: Instant) {
        let Some(mut entry) = self.connections.try_remove(key) else {
            return;
        };
        let _ = self
            .poll
            .registry()
            .deregister(entry.connection.stream_mut());
        if let Some((room_key, position)) = entry.room_slot {
            self.unindex(room_key, position);
        }
        if let Some(room) = entry.connection.room() {
            self.shared.registry.disconnect(room.name(), now);
        }
        entry.connection.release();
        self.shared.release(entry.peer);
    }

    fn unindex(&mut self, room_key: usize, position: usize) {
        let Some(slot) = self.rooms.get_mut(&room_key) else {
            return;
        };
        slot.tokens.swap_remove(position);
        if let Some(&moved) = slot.tokens.get(position) {
            if let Some(entry) = self.connections.get_mut(moved) {
                entry.room_slot = Some((room_key, position));
            }
        }
        if slot.tokens.is_empty() {
            self.rooms.remove(&room_key);
        }
    }

    /// Sends close frames (1001) to every connection and waits briefly for them to go.
    fn shut_down(&mut self, now: Instant) {
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            // A paused connection must hear its peer's close too.
            self.listen(key, Interest::READABLE | Interest::WRITABLE);
            let next = match self.connections.get_mut(key) {
                Some(entry) => entry.connection.shut_down(&mut self.scratch.work, now),
                None => continue,
            };
            if next == Next::Drop {
                self.remove(key, now);
            }
        }
        let deadline = now + SHUTDOWN_GRACE;
        let mut events = Events::with_capacity(256);
        #[allow(clippy::disallowed_methods)]
        while !self.connections.is_empty() && Instant::now() < deadline {
            let _ = self.poll.poll(&mut events, Some(Duration::from_millis(50)));
            #[allow(clippy::disallowed_methods)]
            let now = Instant::now();
            for event in events.iter() {
                if event.token() == WAKER {
                    continue;
                }
                let key = event.token().0;
                if event.is_writable() {
                    self.writable(key);
                }
                if event.is_readable() || event.is_read_closed() {
                    self.readable(key, now);
                }
            }
        }
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        for key in keys {
            self.remove(key, now);
        }
    }
}
