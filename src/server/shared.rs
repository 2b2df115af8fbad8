//! What every thread of a server shares: the rooms, the limits, the counters, the wakers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use mio::Waker;
use parking_lot::Mutex;
use tungstenite::protocol::WebSocketConfig;

use super::health::Lifecycle;
use super::interest::MovedRooms;
use super::metrics::ShardCounters;
use super::registry::Registry;
use super::shutdown::Shutdown;
use super::socket_buffers::SocketBuffers;
use super::transport::TlsAcceptor;
use crate::config::{Config, PublicEndpoints};
use crate::model::Model;
use crate::session::SessionConfig;
use crate::sync;

/// tungstenite's own read buffer per connection: small, since the shard reads sockets
/// into one buffer of its own and hands the bytes over.
const WS_READ_BUFFER: usize = 128;

/// One shard's wake-up: a flag so that a burst of commits wakes it once.
///
/// No lost wake-up: a commit published after the shard's `take` either finds the flag
/// clear and wakes the shard's poll, or finds it set by a wake-up the shard has not taken
/// yet, and the shard's next `take` (Acquire) then sees the commit. The waker itself is
/// not relied on to order anything (`src/tests/loom_wake.rs` checks this with a waker
/// that does not).
pub(crate) struct ShardWake {
    waker: sync::Waker,
    pending: sync::AtomicBool,
}

impl ShardWake {
    /// A shard's wake-up through `waker`, with nothing pending.
    pub(crate) fn new(waker: sync::Waker) -> Self {
        Self {
            waker,
            pending: sync::AtomicBool::new(false),
        }
    }

    /// Wakes the shard unless a wake-up is already pending.
    pub(crate) fn wake(&self) {
        // Release: pairs with the Acquire in `take`, so a shard that takes this wake-up (or
        // a later one: each swap continues the release sequence) sees everything committed
        // before it. Nothing is read here that needs an Acquire.
        if !self.pending.swap(true, Ordering::Release) {
            if let Err(e) = self.waker.wake() {
                tracing::error!(error = %e, "cannot wake a shard");
            }
        }
    }

    /// Clears the pending flag before the shard looks at the rooms, so that a commit after
    /// this point wakes it again.
    pub(crate) fn take(&self) -> bool {
        // Acquire: pairs with the Release in `wake`. (Relaxed or Release here loses wake-ups
        // in `src/tests/loom_wake.rs`.)
        self.pending.swap(false, Ordering::Acquire)
    }
}

/// Every wake-up of a server: its shards and its acceptor.
pub(super) struct Wakers {
    pub(super) shards: Vec<ShardWake>,
    /// Per shard: the rooms that moved since it last looked (see `interest`).
    pub(super) moved: Box<[MovedRooms]>,
    pub(super) acceptor: Waker,
    pub(super) shutdown: AtomicBool,
}

impl Wakers {
    pub(super) fn shut_down(&self) {
        // Release: pairs with the Acquire in `is_shutting_down`.
        self.shutdown.store(true, Ordering::Release);
        for shard in &self.shards {
            shard.wake();
        }
        let _ = self.acceptor.wake();
    }

    pub(super) fn is_shutting_down(&self) -> bool {
        // Acquire: pairs with the Release in `shut_down`.
        self.shutdown.load(Ordering::Acquire)
    }
}

/// The state shared by the acceptor and the shards.
pub(super) struct Shared<M: Model> {
    pub(super) registry: Registry<M>,
    pub(super) wakers: Arc<Wakers>,
    pub(super) session: Arc<SessionConfig>,
    pub(super) token: Option<String>,
    pub(super) max_request_bytes: usize,
    pub(super) max_rooms: usize,
    pub(super) max_connections: usize,
    /// Open connections per client address; 0: no limit.
    pub(super) max_connections_per_ip: usize,
    /// New connections per client address per second; 0: no limit (see `accept_rate`).
    pub(super) max_new_connections_per_ip_per_sec: u32,
    pub(super) max_message_bytes: usize,
    pub(super) handshake_timeout: Duration,
    pub(super) participant_ttl: Duration,
    pub(super) room_idle: Duration,
    /// How a stop goes (`server.shutdown_*`), and its barrier.
    pub(super) shutdown: Shutdown,
    pub(super) connections: AtomicUsize,
    /// The fan-out's latency budget (`server.flush_interval_us`, see `flush_timer`).
    pub(super) flush_interval: Duration,
    /// The kernel buffer sizes every client socket gets.
    pub(super) socket_buffers: SocketBuffers,
    /// The certificate of `wss://`; `None`: plain `ws://`.
    pub(super) tls: Option<Arc<TlsAcceptor>>,
    /// Open connections per client address (only kept when there is a limit); an address
    /// with none is removed, so the map holds only addresses connected now.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// What each shard counts, by shard index (read by `/metrics`).
    pub(super) counters: Vec<Arc<ShardCounters>>,
    /// Started or not, shards running (read by `/health` and `/ready`).
    pub(super) lifecycle: Lifecycle,
    /// Which HTTP endpoints the WebSocket port answers.
    pub(super) public_endpoints: PublicEndpoints,
}

/// Why a new connection is refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Busy {
    /// `limits.max_connections` is reached.
    Server,
    /// `limits.max_connections_per_ip` is reached for the client's address.
    Address,
}

impl<M: Model> Shared<M> {
    pub(super) fn new(config: &Config, registry: Registry<M>, wakers: Arc<Wakers>) -> Self {
        let session = Arc::new(SessionConfig {
            decode: config.decode_limits(),
            messages_per_second: config.limits.messages_per_second,
            message_burst: config.limits.message_burst,
            idle_timeout: config.timeouts.idle(),
            ..SessionConfig::default()
        });
        Self {
            registry,
            session,
            token: config.server.token.clone(),
            max_request_bytes: 8 * 1024,
            max_rooms: config.limits.max_rooms,
            max_connections: config.limits.max_connections,
            max_connections_per_ip: config.limits.max_connections_per_ip,
            max_new_connections_per_ip_per_sec: config.limits.max_new_connections_per_ip_per_sec,
            max_message_bytes: config.limits.max_message_bytes,
            handshake_timeout: config.timeouts.handshake(),
            participant_ttl: config.timeouts.participant_ttl(),
            room_idle: config.timeouts.room_idle(),
            shutdown: Shutdown::new(config),
            connections: AtomicUsize::new(0),
            flush_interval: Duration::from_micros(config.server.flush_interval_us),
            socket_buffers: SocketBuffers {
                send: config.server.send_buffer_bytes,
                recv: config.server.recv_buffer_bytes,
            },
            tls: None,
            per_ip: Mutex::new(HashMap::new()),
            counters: (0..wakers.shards.len()).map(|_| Arc::default()).collect(),
            lifecycle: Lifecycle::new(wakers.shards.len()),
            public_endpoints: config.server.public_endpoints,
            wakers,
        }
    }

    pub(super) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// tungstenite's limits for one connection: the message size limit on messages and
    /// frames, a small read buffer, and no write buffering (we write our own frames).
    pub(super) fn ws_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(Some(self.max_message_bytes))
            .max_frame_size(Some(self.max_message_bytes))
    }

    /// Counts a new connection from `peer` unless a limit is reached.
    pub(super) fn admit(&self, peer: IpAddr) -> Result<(), Busy> {
        // Relaxed: a counter compared to a limit; nothing is published with it.
        let admitted = self
            .connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_connections).then_some(n + 1)
            });
        if admitted.is_err() {
            return Err(Busy::Server);
        }
        if self.max_connections_per_ip == 0 {
            return Ok(());
        }
        let mut per_ip = self.per_ip.lock();
        let count = per_ip.entry(peer).or_insert(0);
        if *count >= self.max_connections_per_ip {
            drop(per_ip);
            // Relaxed: as above.
            self.connections.fetch_sub(1, Ordering::Relaxed);
            return Err(Busy::Address);
        }
        *count += 1;
        Ok(())
    }

    /// A connection from `peer` is gone.
    pub(super) fn release(&self, peer: IpAddr) {
        // Relaxed: as in `admit`.
        self.connections.fetch_sub(1, Ordering::Relaxed);
        if self.max_connections_per_ip == 0 {
            return;
        }
        let mut per_ip = self.per_ip.lock();
        if let Some(count) = per_ip.get_mut(&peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_ip.remove(&peer);
            }
        }
    }
}
