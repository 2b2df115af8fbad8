//! Many clients on one thread: one `mio::Poll` over their sockets, and the clock they
//! share.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use super::client::Client;

/// The clients of one process, driven by one event loop.
pub(crate) struct Fleet {
    poll: Poll,
    events: Events,
    addr: SocketAddr,
    pub(crate) clients: Vec<Client>,
    /// Clients whose reading is stalled until then.
    stalled: Vec<Option<Instant>>,
    scratch: Vec<u8>,
    started: Instant,
}

impl Fleet {
    pub(crate) fn new(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            addr,
            clients: Vec::new(),
            stalled: Vec::new(),
            scratch: vec![0; 64 * 1024],
            started: Instant::now(),
        })
    }

    /// Adds a client of room `path` acting as `participant` (not connected yet).
    pub(crate) fn add(&mut self, path: &str, participant: &str) -> usize {
        let index = self.clients.len();
        self.clients
            .push(Client::new(Token(index), self.addr, path, participant));
        self.stalled.push(None);
        index
    }

    /// Milliseconds since the fleet started (the replicas' clock).
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Connects client `i`; a failure leaves it disconnected (the caller tries again).
    pub(crate) fn connect(&mut self, i: usize) -> bool {
        let registry = self.poll.registry();
        match self.clients[i].connect(self.addr, registry) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(client = i, error = %e, "connect failed");
                false
            }
        }
    }

    pub(crate) fn drop_connection(&mut self, i: usize) {
        self.clients[i].drop_connection(self.poll.registry());
    }

    pub(crate) fn kill_mid_frame(&mut self, i: usize) {
        let now = self.now_ms();
        self.clients[i].kill_mid_frame(now, self.poll.registry());
    }

    /// Stops reading client `i`'s socket until `until`.
    pub(crate) fn stall(&mut self, i: usize, until: Instant) {
        self.stalled[i] = Some(until);
    }

    pub(crate) fn is_stalled(&self, i: usize) -> bool {
        self.stalled[i].is_some()
    }

    /// Lets every stalled client read again.
    pub(crate) fn unstall_all(&mut self, now: Instant) {
        for i in 0..self.stalled.len() {
            if self.stalled[i].is_some() {
                self.stalled[i] = Some(now);
            }
        }
        self.wake_stalled(now);
    }

    /// One turn: socket events (reads, unless stalled; writes), stalls that end, and the
    /// writes of everything queued since the last turn.
    pub(crate) fn turn(&mut self, timeout: Duration) {
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::error!(error = %e, "poll failed");
            }
        }
        let now_ms = self.now_ms();
        let ready: Vec<(usize, bool)> = self
            .events
            .iter()
            .map(|e| {
                (
                    e.token().0,
                    e.is_readable() || e.is_read_closed() || e.is_error(),
                )
            })
            .collect();
        for (i, readable) in ready {
            let registry = self.poll.registry();
            let client = &mut self.clients[i];
            if readable && self.stalled[i].is_none() {
                client.read(now_ms, registry, &mut self.scratch);
            }
            client.flush(registry);
        }
        let now = Instant::now();
        self.wake_stalled(now);
        let registry = self.poll.registry();
        for client in &mut self.clients {
            client.flush(registry);
        }
    }

    fn wake_stalled(&mut self, now: Instant) {
        let now_ms = self.now_ms();
        for i in 0..self.clients.len() {
            if self.stalled[i].is_some_and(|until| until <= now) {
                self.stalled[i] = None;
                // Edge-triggered: what arrived during the stall gives no new event.
                let registry = self.poll.registry();
                self.clients[i].read(now_ms, registry, &mut self.scratch);
            }
        }
    }
}

/// A small deterministic generator (xorshift64*), so that a run can be repeated with its
/// seed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }
}
