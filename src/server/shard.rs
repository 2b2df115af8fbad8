//! A shard: one event loop (`mio::Poll`) on its own thread, owning its connections for
//! their whole life.
//!
//! Each turn of the loop: handle socket events (read, write), take new connections from
//! the acceptor, flush the connections of the rooms that told it they moved (or wait for
//! their flush interval, see `flush_timer`) and of the rooms whose interval is over, then
//! read the connections still in their upgrade (established clients first; at most
//! `UPGRADES_PER_TURN` a turn). A commit wakes only the shards holding connections of its
//! room, at most once per burst (see `interest` and `ShardWake`), and the delta messages a
//! shard builds in a turn are shared by all its connections at the same revision
//! (`DeltaCache`). Deadlines (handshake, idle, close) are checked once per tick.
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
//! system calls per byte. Pauses end on a grid of 10 ms (`RESUME_STEP`), so that
//! connections due within the same step share a wake-up, a turn and their room's
//! fan-out. When a pause ends the connection is read first; its events cover reads again
//! only if it reads freely, so a flooder woken for one token (which it takes from what it
//! already read) or a trickler still trickling costs the wake-up and nothing else.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::connection::{Connection, Next, Scratch, Work};
use super::flush_timer::{Admit, FlushTimer, Pace};
use super::interest::RoomInterest;
use super::shared::Shared;
use super::transport::Stream;
use crate::model::Model;
use crate::room::{FlushPolicy, Room};
use crate::session::DeltaCache;

/// The token of the shard's waker.
pub(super) const WAKER: Token = Token(usize::MAX);
/// How often deadlines are checked.
const TICK: Duration = Duration::from_millis(250);
/// The shard's socket read buffer.
const READ_BUFFER: usize = 64 * 1024;
/// How many connections still in their upgrade are read per turn; the rest wait for the
/// next turn, which polls without waiting. A burst of a thousand slowloris bytes then
/// costs an established client's event at most this many reads of delay, not a thousand.
const UPGRADES_PER_TURN: usize = 64;
/// Paused connections resume on a grid of this step (from the shard's start), so that
/// those due within the same step share one wake-up and one turn: their messages are
/// handled together and their room's connections get one `SYNC.DELTAS` for all of them,
/// not one each. A flooder's message waits up to this much longer than its token; a
/// well-behaved client is never paused.
const RESUME_STEP: Duration = Duration::from_millis(10);

/// The connections of one room on this shard.
struct RoomConnections<M: Model> {
    room: Arc<Room<M>>,
    tokens: Vec<usize>,
    /// The published revision and rejection count this shard last flushed for.
    flushed: (u64, u64),
    /// The room's commit listener, told that this shard holds its connections.
    interest: Option<Arc<RoomInterest>>,
    /// When the room's connections were last written to for a commit (see `flush_timer`).
    pace: Pace,
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
    /// Where the grid of resumes starts (`RESUME_STEP`).
    origin: Instant,
    /// Connections in their upgrade with something to read, read at the end of the turn,
    /// at most `UPGRADES_PER_TURN` a turn, first come first read.
    upgrades: VecDeque<usize>,
    /// The fan-out's latency budget: rooms waiting for their next flush.
    timer: FlushTimer,
    /// Room keys to look at this turn (moved, or due), reused from turn to turn.
    room_keys: Vec<usize>,
    scratch: Scratch,
}

struct Entry<M: Model> {
    connection: Connection<M, Stream>,
    /// The client's address, counted against `limits.max_connections_per_ip`.
    peer: IpAddr,
    /// Where the connection sits in its room's `tokens` (when it has a room).
    room_slot: Option<(usize, usize)>,
    /// Its events cover writes only: it is paused (see `Next::Paused`).
    reads_paused: bool,
}

/// The shards' key for a room: its address, unique while the room is alive.
pub(super) fn room_key<M: Model>(room: &Arc<Room<M>>) -> usize {
    Arc::as_ptr(room) as usize
}

/// The first instant at or after `at` on the grid of `step` from `origin`.
fn on_grid(origin: Instant, at: Instant, step: Duration) -> Instant {
    let since = at.saturating_duration_since(origin).as_nanos();
    let step_ns = step.as_nanos().max(1);
    let steps = since.div_ceil(step_ns);
    let offset = steps.saturating_mul(step_ns);
    origin + Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX))
}

impl<M: Model> Shard<M> {
    pub(super) fn new(
        index: usize,
        poll: Poll,
        shared: Arc<Shared<M>>,
        incoming: Receiver<(TcpStream, IpAddr)>,
    ) -> Self {
        let flush_interval = shared.flush_interval;
        Self {
            index,
            poll,
            incoming,
            connections: Slab::new(),
            rooms: HashMap::new(),
            read_more: Vec::new(),
            resumes: BinaryHeap::new(),
            // The shell's clock: the origin of the resume grid.
            #[allow(clippy::disallowed_methods)]
            origin: Instant::now(),
            upgrades: VecDeque::new(),
            timer: FlushTimer::new(flush_interval),
            room_keys: Vec::new(),
            scratch: Scratch {
                read: vec![0; READ_BUFFER].into_boxed_slice(),
                work: Work {
                    control: Vec::new(),
                    transmit: Vec::new(),
                    cache: DeltaCache::new(),
                    counters: Arc::clone(&shared.counters[index]),
                },
            },
            shared,
        }
    }

    /// Runs the loop until the server shuts down.
    pub(super) fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        // However the loop ends, `/health` then counts this shard as stopped.
        let _running = shared.lifecycle.shard_running();
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
            self.flush_rooms(now);
            // Upgrades last: what established connections sent is answered first.
            for _ in 0..UPGRADES_PER_TURN {
                let Some(key) = self.upgrades.pop_front() else {
                    break;
                };
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
                    self.upgrades.push_back(key);
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
    /// their last turn or upgrades wait to be read, else until the next resume, waiting
    /// room or tick.
    fn timeout(&self) -> Duration {
        if !self.read_more.is_empty() || !self.upgrades.is_empty() {
            return Duration::ZERO;
        }
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let limit = self.timer.poll_timeout(now, TICK);
        match self.resumes.peek() {
            Some(Reverse((at, _))) => at.saturating_duration_since(now).min(limit),
            None => limit,
        }
    }

    /// Reads the connections whose pause is over. A connection is read before its events
    /// cover reads again: one that pauses again at once (a flooder with one token, which
    /// it takes from what it already read; a trickler still trickling) costs no change of
    /// its events (`readable`).
    fn resume_due(&mut self, now: Instant) {
        while let Some(&Reverse((at, key))) = self.resumes.peek() {
            if at > now {
                return;
            }
            self.resumes.pop();
            self.readable(key, now);
        }
    }

    fn accept(&mut self, now: Instant) {
        let mut accepted = false;
        while let Ok((stream, peer)) = self.incoming.try_recv() {
            accepted = true;
            super::socket_buffers::apply(&stream, &self.shared.socket_buffers);
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
                reads_paused: false,
            });
        }
        if accepted {
            self.count_connections();
        }
    }

    /// Updates the shard's gauges (connections, rooms) for `/metrics`.
    fn count_connections(&self) {
        let counters = &self.scratch.work.counters;
        counters.connections.set(self.connections.len() as u64);
        counters.rooms.set(self.rooms.len() as u64);
    }

    fn readable(&mut self, key: usize, now: Instant) {
        let Some(entry) = self.connections.get_mut(key) else {
            return;
        };
        let next = entry
            .connection
            .on_readable(&self.shared, &mut self.scratch, now);
        let still_paused = entry.connection.is_reading_paused(now);
        // Just upgraded: filed under its room, so that room moves flush it.
        if entry.room_slot.is_none() && entry.connection.room().is_some() && self.index_room(key) {
            // The shard's first connection of the room: commits wake the shard from now
            // on; one made before that is seen here (see `interest`).
            self.flush_one(key);
        }
        match next {
            Next::Keep | Next::ReadMore if still_paused => {}
            Next::Keep => self.listen(key, true),
            Next::ReadMore => {
                self.listen(key, true);
                self.read_more.push(key);
            }
            Next::Paused(until) => {
                // Its bytes are not read before `until`: no event needs to say they came.
                self.listen(key, false);
                let at = on_grid(self.origin, until, RESUME_STEP);
                self.resumes.push(Reverse((at, key)));
            }
            Next::Drop => self.remove(key, now),
        }
    }

    /// Sets what the connection's events are about: reads and writes, or writes only while
    /// it is paused. Changes them (a system call) only when they change: after reading the
    /// socket, which is safe with edge-triggered events (re-registering reports input that
    /// came meanwhile).
    fn listen(&mut self, key: usize, reads: bool) {
        let Some(entry) = self.connections.get_mut(key) else {
            return;
        };
        let paused = !reads;
        if entry.reads_paused == paused {
            return;
        }
        entry.reads_paused = paused;
        let interest = if reads {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::WRITABLE
        };
        let stream = entry.connection.stream_mut();
        if let Err(e) = self
            .poll
            .registry()
            .reregister(stream, Token(key), interest)
        {
            tracing::warn!(error = %e, "cannot change a connection's events");
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

    /// Files a newly opened connection under its room, so room moves flush it. Returns
    /// whether it is the shard's first connection of that room.
    fn index_room(&mut self, key: usize) -> bool {
        let Some(entry) = self.connections.get_mut(key) else {
            return false;
        };
        let Some(room) = entry.connection.room() else {
            return false;
        };
        let room_key = room_key(room);
        let mut first = false;
        let slot = self.rooms.entry(room_key).or_insert_with(|| {
            first = true;
            let interest = self.shared.registry.interest(room);
            match &interest {
                Some(interest) => interest.set_interested(self.index, true),
                None => tracing::warn!(room = room.name(), "a room the registry does not hold"),
            }
            RoomConnections {
                room: Arc::clone(room),
                tokens: Vec::new(),
                flushed: (room.published_rev(), room.rejection_seq()),
                interest,
                pace: Pace::default(),
            }
        });
        entry.room_slot = Some((room_key, slot.tokens.len()));
        slot.tokens.push(key);
        self.count_connections();
        first
    }

    /// Flushes one connection if its socket can take bytes; drops it if that fails.
    fn flush_one(&mut self, key: usize) {
        let Some(entry) = self.connections.get_mut(key) else {
            return;
        };
        if entry.connection.can_flush()
            && entry.connection.flush(&mut self.scratch.work) == Next::Drop
        {
            #[allow(clippy::disallowed_methods)]
            self.remove(key, Instant::now());
        }
    }

    /// Flushes the connections of the rooms that published or rejected something (now, or
    /// when their flush interval is over), and of the rooms whose interval is over.
    fn flush_rooms(&mut self, now: Instant) {
        let mut keys = std::mem::take(&mut self.room_keys);
        self.shared.wakers.moved[self.index].take(&mut keys);
        for &key in &keys {
            self.room_moved(key, now);
        }
        keys.clear();
        self.timer.take_due(now, &mut keys);
        for &key in &keys {
            self.flush_room(key, now);
        }
        keys.clear();
        self.room_keys = keys;
    }

    /// A room told this shard it moved: flush it now or let it wait for its interval.
    fn room_moved(&mut self, key: usize, now: Instant) {
        let Some(slot) = self.rooms.get_mut(&key) else {
            return;
        };
        if let Some(interest) = &slot.interest {
            interest.taken(self.index);
        }
        let paced = slot.room.flush_policy() == FlushPolicy::Immediate;
        if self.timer.admit(key, &mut slot.pace, paced, now) == Admit::Now {
            self.flush_room(key, now);
        }
    }

    /// Flushes every connection of a room, if the room has something new for them.
    fn flush_room(&mut self, key: usize, now: Instant) {
        let Some(slot) = self.rooms.get_mut(&key) else {
            return;
        };
        // Connections move when the room publishes or its owner rejects an input.
        let activity = (slot.room.published_rev(), slot.room.rejection_seq());
        if activity == slot.flushed {
            FlushTimer::nothing_new(&mut slot.pace);
            return;
        }
        slot.flushed = activity;
        let started = clock();
        let mut dead = Vec::new();
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
        FlushTimer::flushed(
            &mut slot.pace,
            now,
            clock().saturating_duration_since(started),
        );
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
        self.count_connections();
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
            if let Some(interest) = &slot.interest {
                interest.set_interested(self.index, false);
            }
            self.rooms.remove(&room_key);
        }
    }

    /// Stops gracefully (see `shutdown`): waits for every shard to stop taking input,
    /// closes every connection after what it is owed, and waits for the clients' side of
    /// the close until the grace deadline; then drops what remains.
    fn shut_down(&mut self, now: Instant) {
        let deadline = now + self.shared.shutdown.grace;
        self.shared.shutdown.quiesce();
        let shards = self.shared.wakers.shards.len();
        while !self.shared.shutdown.all_quiet(shards) && clock() < deadline {
            self.write_only(Duration::from_millis(5));
        }
        let close = self.shared.shutdown.close_frame();
        let now = clock();
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            // A paused connection must hear its peer's close too.
            self.listen(key, true);
            let next = match self.connections.get_mut(key) {
                Some(entry) => entry
                    .connection
                    .shut_down(close, &mut self.scratch.work, now),
                None => continue,
            };
            if next == Next::Drop {
                self.remove(key, now);
            }
        }
        self.linger(deadline);
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        let now = clock();
        for key in keys {
            self.remove(key, now);
        }
    }

    /// Waits up to `timeout` for events and writes to the connections that can take
    /// bytes; reads nothing (no input is handed to sessions while the shards quiesce).
    fn write_only(&mut self, timeout: Duration) {
        let mut events = Events::with_capacity(256);
        let _ = self.poll.poll(&mut events, Some(timeout));
        for event in events.iter() {
            if event.token() != WAKER && event.is_writable() {
                self.writable(event.token().0);
            }
        }
    }

    /// Writes what closing connections still owe and reads their peers' closes, until
    /// every connection is gone or `deadline` passes.
    fn linger(&mut self, deadline: Instant) {
        let mut events = Events::with_capacity(256);
        while !self.connections.is_empty() && clock() < deadline {
            let left = deadline.saturating_duration_since(clock());
            let _ = self
                .poll
                .poll(&mut events, Some(left.min(Duration::from_millis(50))));
            let now = clock();
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
    }
}

/// The shell's clock.
fn clock() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Resumes due within one step share one wake-up of the shard.
    #[test]
    fn resumes_fall_on_the_grid_at_or_after_their_instant() {
        // Tests pick an arbitrary origin for the shell's clock.
        #[allow(clippy::disallowed_methods)]
        let origin = Instant::now();
        let step = Duration::from_millis(10);
        let ms = |n: u64| origin + Duration::from_millis(n);
        assert_eq!(on_grid(origin, ms(0), step), ms(0));
        assert_eq!(on_grid(origin, ms(1), step), ms(10));
        assert_eq!(on_grid(origin, ms(7), step), ms(10));
        assert_eq!(on_grid(origin, ms(10), step), ms(10));
        assert_eq!(
            on_grid(origin, ms(10) + Duration::from_nanos(1), step),
            ms(20)
        );
        assert_eq!(on_grid(origin, ms(1234), step), ms(1240));
        // Before the origin (cannot happen: pauses end after the shard started).
        assert_eq!(on_grid(ms(5), ms(0), step), ms(5));
    }
}
