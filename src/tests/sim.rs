//! A simulated network: one room, N sessions and N client replicas linked by message
//! queues with latency, on a virtual clock, with connections that drop (losing what was
//! in flight) and come back (resuming and resending). No sockets, no sleeps: a scenario is
//! a sequence of `step`s, and `drive_bounded` fails instead of hanging.
//!
//! Each direction of a connection is a FIFO (TCP keeps order); a message is due at
//! `max(now + latency, the previous message's due time)`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::client::{Replica, ReplicaEvent};
use crate::clock::{Clock, ManualClock};
use crate::conformance::ConformanceModel;
use crate::protocol::Dialect;
use crate::room::{Room, RoomConfig};
use crate::session::{DeltaCache, Session, SessionConfig};

/// A small deterministic generator (xorshift64*), so a failing seed replays exactly.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `per_mille / 1000`.
    pub(crate) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// How hostile the network is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Faults {
    /// Latency of each message, uniformly in this range (ms).
    pub(crate) latency_ms: (u64, u64),
    /// Chance per step and connected client of losing the connection, per mille.
    pub(crate) disconnect_per_mille: u64,
    /// Chance per step and disconnected client of coming back, per mille.
    pub(crate) reconnect_per_mille: u64,
}

impl Faults {
    /// A perfect network with a fixed latency.
    pub(crate) fn none() -> Self {
        Self {
            latency_ms: (1, 1),
            disconnect_per_mille: 0,
            reconnect_per_mille: 1000,
        }
    }
}

struct Client<M: ConformanceModel> {
    actor: String,
    session: Option<Session<M>>,
    replica: Replica<M>,
    up: VecDeque<(u64, Bytes)>,
    down: VecDeque<(u64, Bytes)>,
    joined: bool,
}

/// The network, its room and its clients.
pub(crate) struct Network<M: ConformanceModel> {
    room: Arc<Room<M>>,
    clock: Arc<ManualClock>,
    start: Instant,
    now_ms: u64,
    cache: DeltaCache,
    clients: Vec<Client<M>>,
    rng: Rng,
    faults: Faults,
    /// How each `clientReqId` ended: acknowledgements and rejections seen by its client.
    outcomes: HashMap<String, (u32, u32)>,
    /// Protocol violations any replica reported (must stay empty).
    violations: Vec<String>,
    /// How many connections were dropped.
    drops: u64,
}

impl<M: ConformanceModel> Network<M> {
    pub(crate) fn new(
        initial: M,
        ring_capacity: usize,
        clients: usize,
        faults: Faults,
        seed: u64,
    ) -> Self {
        let clock = Arc::new(ManualClock::new(1000));
        let room = Room::builder("sim", initial)
            .config(RoomConfig::with_ring_capacity(ring_capacity).expect("a valid capacity"))
            .clock(Arc::clone(&clock) as Arc<dyn Clock>)
            .build()
            .expect("a room");
        // Virtual time for sessions: an arbitrary origin plus the virtual clock.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        let clients = (0..clients)
            .map(|i| {
                let actor = format!("c{i}");
                Client {
                    replica: Replica::with_id_suffix(&actor, &format!("s{seed}")),
                    actor,
                    session: None,
                    up: VecDeque::new(),
                    down: VecDeque::new(),
                    joined: false,
                }
            })
            .collect();
        Self {
            room: Arc::new(room),
            clock,
            start,
            now_ms: 0,
            cache: DeltaCache::new(),
            clients,
            rng: Rng::new(seed),
            faults,
            outcomes: HashMap::new(),
            violations: Vec::new(),
            drops: 0,
        }
    }

    pub(crate) fn room(&self) -> &Arc<Room<M>> {
        &self.room
    }

    pub(crate) fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    pub(crate) fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    pub(crate) fn replica(&self, client: usize) -> &Replica<M> {
        &self.clients[client].replica
    }

    pub(crate) fn violations(&self) -> &[String] {
        &self.violations
    }

    pub(crate) fn outcomes(&self) -> &HashMap<String, (u32, u32)> {
        &self.outcomes
    }

    /// How many connections were dropped so far.
    pub(crate) fn drops(&self) -> u64 {
        self.drops
    }

    fn instant(&self) -> Instant {
        self.start + Duration::from_millis(self.now_ms)
    }

    fn latency(&mut self) -> u64 {
        let (low, high) = self.faults.latency_ms;
        low + self.rng.below(high - low + 1)
    }

    fn send_up(&mut self, client: usize, message: Bytes) {
        let due = self.now_ms + self.latency();
        let queue = &mut self.clients[client].up;
        let due = queue.back().map_or(due, |(last, _)| due.max(*last));
        queue.push_back((due, message));
    }

    /// Connects `client`: a new session; the replica joins (or resumes) and resends.
    pub(crate) fn connect(&mut self, client: usize) {
        let session = Session::new(
            Arc::clone(&self.room),
            Dialect::Native,
            SessionConfig {
                messages_per_second: 1_000_000,
                message_burst: 1_000_000,
                ..SessionConfig::default()
            },
            self.instant(),
        );
        let c = &mut self.clients[client];
        c.session = Some(session);
        c.joined = true;
        let mut messages = vec![c.replica.join_message(&c.actor, &c.actor, Dialect::Native)];
        messages.extend(c.replica.resend_messages());
        for message in messages {
            self.send_up(client, message);
        }
    }

    /// Drops `client`'s connection and everything in flight on it.
    pub(crate) fn disconnect(&mut self, client: usize) {
        self.drops += 1;
        let c = &mut self.clients[client];
        c.session = None;
        c.up.clear();
        c.down.clear();
        c.replica.disconnected();
    }

    /// `client` makes a local change (sent if connected, pending either way).
    pub(crate) fn update(&mut self, client: usize, input: M::Input) {
        let now = self.now_ms;
        let (id, message) = self.clients[client].replica.update(input, now);
        self.outcomes.entry(id).or_insert((0, 0));
        if self.clients[client].session.is_some() {
            self.send_up(client, message);
        }
    }

    /// Whether `client` has a server state yet.
    pub(crate) fn has_state(&self, client: usize) -> bool {
        self.clients[client].replica.server_state().is_some()
    }

    /// One millisecond of virtual time: faults, deliveries both ways, server writes.
    pub(crate) fn step(&mut self) {
        self.now_ms += 1;
        self.clock.advance(1);
        for client in 0..self.clients.len() {
            self.faults_for(client);
            self.deliver_up(client);
        }
        self.cache.clear();
        for client in 0..self.clients.len() {
            self.transmit(client);
            self.deliver_down(client);
        }
    }

    fn faults_for(&mut self, client: usize) {
        let connected = self.clients[client].session.is_some();
        if connected && self.rng.chance(self.faults.disconnect_per_mille) {
            self.disconnect(client);
        } else if !connected
            && self.clients[client].joined
            && self.rng.chance(self.faults.reconnect_per_mille)
        {
            self.connect(client);
        }
    }

    fn deliver_up(&mut self, client: usize) {
        let now = self.now_ms;
        let instant = self.instant();
        let c = &mut self.clients[client];
        while c.up.front().is_some_and(|(due, _)| *due <= now) {
            let Some((_, message)) = c.up.pop_front() else {
                break;
            };
            if let Some(session) = &mut c.session {
                session.handle_message(&message, instant);
            }
        }
    }

    fn transmit(&mut self, client: usize) {
        let mut out = Vec::new();
        if let Some(session) = &mut self.clients[client].session {
            let _ = session.poll_transmit(&mut self.cache, &mut out);
        }
        for message in out {
            let due = self.now_ms + self.latency();
            let queue = &mut self.clients[client].down;
            let due = queue.back().map_or(due, |(last, _)| due.max(*last));
            queue.push_back((due, message));
        }
    }

    fn deliver_down(&mut self, client: usize) {
        let now = self.now_ms;
        while self.clients[client]
            .down
            .front()
            .is_some_and(|(due, _)| *due <= now)
        {
            let Some((_, message)) = self.clients[client].down.pop_front() else {
                break;
            };
            let result = self.clients[client].replica.handle_text(&message, now);
            match result {
                Ok(events) => self.record(client, &events),
                Err(error) => {
                    self.violations.push(format!("client {client}: {error}"));
                    // Resume, as a connector does.
                    let c = &self.clients[client];
                    let join = c.replica.join_message(&c.actor, &c.actor, Dialect::Native);
                    self.send_up(client, join);
                }
            }
        }
    }

    fn record(&mut self, client: usize, events: &[ReplicaEvent]) {
        for event in events {
            match event {
                ReplicaEvent::Acked { client_req_id, .. } => {
                    self.outcomes.entry(client_req_id.clone()).or_default().0 += 1;
                }
                ReplicaEvent::Rejected { client_req_id, .. } => {
                    self.outcomes.entry(client_req_id.clone()).or_default().1 += 1;
                }
                ReplicaEvent::Snapshot { .. } => {
                    for message in self.clients[client].replica.resend_messages() {
                        self.send_up(client, message);
                    }
                }
                _ => {}
            }
        }
    }

    /// Nothing in flight, nothing pending, every connected client at the published head.
    pub(crate) fn quiescent(&self) -> bool {
        let head = self.room.published_rev();
        self.clients.iter().all(|c| {
            c.session.is_some()
                && c.up.is_empty()
                && c.down.is_empty()
                && c.replica.pending().is_empty()
                && c.replica.server_rev() == head
                && !c.session.as_ref().is_some_and(Session::wants_transmit)
        })
    }

    /// Steps until `done` holds, at most `max_steps` times.
    ///
    /// # Errors
    ///
    /// A message saying it did not converge, instead of hanging.
    pub(crate) fn drive_bounded(
        &mut self,
        max_steps: usize,
        done: impl Fn(&Self) -> bool,
    ) -> Result<usize, String> {
        for steps in 0..max_steps {
            if done(self) {
                return Ok(steps);
            }
            self.step();
        }
        if done(self) {
            Ok(max_steps)
        } else {
            Err(format!("not done after {max_steps} steps"))
        }
    }
}
