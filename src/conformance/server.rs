//! The server side of a fixture run, and its in-process implementation.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::ConformanceModel;
use crate::clock::{Clock, ManualClock};
use crate::epoch::Epoch;
use crate::protocol::Dialect;
use crate::room::{Origin, Room, RoomConfig};
use crate::session::{DeltaCache, Session, SessionConfig};

/// The test clock's time when a fixture starts.
pub const START_MS: u64 = 1000;

/// What the fixture runner asks of the server under test. Clients are named; each has at
/// most one connection at a time.
pub trait FixtureServer<M: ConformanceModel> {
    /// Opens a connection for `client` (closing the one it had, if any).
    ///
    /// # Errors
    ///
    /// A message if the connection cannot be made.
    fn connect(&mut self, client: &str) -> Result<(), String>;

    /// Closes `client`'s connection; what the server had not delivered is lost with it.
    fn disconnect(&mut self, client: &str);

    /// `client` sends one text message.
    ///
    /// # Errors
    ///
    /// A message if the client has no connection or the send fails.
    fn send(&mut self, client: &str, text: &[u8]) -> Result<(), String>;

    /// Whether `client` reads (a client that does not read is a slow socket: the server
    /// cannot write to it).
    fn set_reading(&mut self, client: &str, reading: bool);

    /// Lets the server write everything it has due to every reading client.
    ///
    /// # Errors
    ///
    /// A message if the transport fails.
    fn flush(&mut self) -> Result<(), String>;

    /// The next message the server sent to `client`, if any (waiting for it as long as a
    /// step expecting a message should).
    fn receive(&mut self, client: &str) -> Option<Bytes>;

    /// A message the server sent to `client` that no step expects, if any (waiting only
    /// briefly): the end-of-fixture check.
    fn receive_unexpected(&mut self, client: &str) -> Option<Bytes> {
        self.receive(client)
    }

    /// Sets the test clock.
    ///
    /// # Errors
    ///
    /// If this server's clock cannot be set.
    fn set_clock(&mut self, now_ms: u64) -> Result<(), String>;

    /// Commits `count` background operations.
    ///
    /// # Errors
    ///
    /// If the server cannot, or the model refuses one.
    fn process_operations(&mut self, count: u64) -> Result<(), String>;

    /// Restores the room at `rev` holding `state` with an empty ring, drops every
    /// connection, and, when `bind` is given, connects that client bound to that actor
    /// as if it had joined at `rev`. Returns the epoch of the restored history.
    ///
    /// # Errors
    ///
    /// If this server cannot be restored.
    fn restore(&mut self, rev: u64, state: M, bind: Option<(&str, &str)>) -> Result<Epoch, String>;

    /// The room's revision.
    ///
    /// # Errors
    ///
    /// If it cannot be known.
    fn rev(&self) -> Result<u64, String>;
}

/// The real room and sessions, in this process, on a test clock: the reference run.
pub struct InProcess<M: ConformanceModel> {
    clock: Arc<ManualClock>,
    start: Instant,
    config: RoomConfig,
    room: Arc<Room<M>>,
    cache: DeltaCache,
    connections: BTreeMap<String, Connection<M>>,
    /// Background operations committed so far: `PROCESS_OPERATIONS` takes participants in
    /// turn across steps.
    processed: u64,
}

struct Connection<M: ConformanceModel> {
    session: Session<M>,
    inbox: VecDeque<Bytes>,
    reading: bool,
}

impl<M: ConformanceModel> InProcess<M> {
    /// A fresh room holding `initial`, with the given ring configuration.
    ///
    /// # Errors
    ///
    /// If the room cannot be built.
    pub fn new(initial: M, config: RoomConfig) -> Result<Self, String> {
        let clock = Arc::new(ManualClock::new(START_MS));
        let room = Self::build(initial, &config, &clock, 0)?;
        // Virtual time for sessions: an arbitrary origin plus the test clock.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        Ok(Self {
            clock,
            start,
            config,
            room,
            cache: DeltaCache::new(),
            connections: BTreeMap::new(),
            processed: 0,
        })
    }

    fn build(
        state: M,
        config: &RoomConfig,
        clock: &Arc<ManualClock>,
        rev: u64,
    ) -> Result<Arc<Room<M>>, String> {
        let room = Room::builder("default", state)
            .config(config.clone())
            .clock(Arc::clone(clock) as Arc<dyn Clock>)
            .restored_at(rev)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(room))
    }

    /// The room under test.
    pub fn room(&self) -> &Arc<Room<M>> {
        &self.room
    }

    fn now(&self) -> Instant {
        self.start + Duration::from_millis(self.clock.now_ms().saturating_sub(START_MS))
    }

    fn session(&self) -> Session<M> {
        Session::new(
            Arc::clone(&self.room),
            Dialect::WsKit,
            SessionConfig::default(),
            self.now(),
        )
    }
}

impl<M: ConformanceModel> FixtureServer<M> for InProcess<M> {
    fn connect(&mut self, client: &str) -> Result<(), String> {
        let connection = Connection {
            session: self.session(),
            inbox: VecDeque::new(),
            reading: true,
        };
        self.connections.insert(client.to_owned(), connection);
        Ok(())
    }

    fn disconnect(&mut self, client: &str) {
        self.connections.remove(client);
    }

    fn send(&mut self, client: &str, text: &[u8]) -> Result<(), String> {
        let now = self.now();
        let connection = self
            .connections
            .get_mut(client)
            .ok_or_else(|| format!("client {client:?} has no connection"))?;
        connection.session.handle_message(text, now);
        Ok(())
    }

    fn set_reading(&mut self, client: &str, reading: bool) {
        if let Some(connection) = self.connections.get_mut(client) {
            connection.reading = reading;
        }
    }

    fn flush(&mut self) -> Result<(), String> {
        self.cache.clear();
        let mut out = Vec::new();
        for connection in self.connections.values_mut().filter(|c| c.reading) {
            let _ = connection.session.poll_transmit(&mut self.cache, &mut out);
            connection.inbox.extend(out.drain(..));
        }
        Ok(())
    }

    fn receive(&mut self, client: &str) -> Option<Bytes> {
        self.connections.get_mut(client)?.inbox.pop_front()
    }

    fn set_clock(&mut self, now_ms: u64) -> Result<(), String> {
        self.clock.set(now_ms);
        Ok(())
    }

    fn process_operations(&mut self, count: u64) -> Result<(), String> {
        for _ in 0..count {
            let i = self.processed;
            self.processed += 1;
            let now = self.clock.now_ms();
            let op = self
                .room
                .with_state(|state, _| state.background_op(i, now))
                .ok_or("PROCESS_OPERATIONS: the state has nothing to operate on")?;
            self.room
                .commit(op, Origin::SERVER)
                .map_err(|e| format!("PROCESS_OPERATIONS: {e}"))?;
        }
        Ok(())
    }

    fn restore(&mut self, rev: u64, state: M, bind: Option<(&str, &str)>) -> Result<Epoch, String> {
        self.connections.clear();
        self.processed = 0;
        self.room = Self::build(state, &self.config, &self.clock, rev)?;
        if let Some((client, actor)) = bind {
            self.connect(client)?;
            if let Some(connection) = self.connections.get_mut(client) {
                connection.session.bind(actor, rev);
            }
        }
        Ok(self.room.epoch().clone())
    }

    fn rev(&self) -> Result<u64, String> {
        Ok(self.room.rev())
    }
}
