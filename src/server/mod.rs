//! The WebSocket server: a thin I/O shell around rooms and sessions.
//!
//! One acceptor thread and N shard threads (default: one per core), each with its own
//! `mio::Poll`; a connection lives on one shard for its life. The request path selects the
//! room (`/` is `default`, `/rooms/{name}` is `name`, any other path is the room of that
//! name); rooms are created on first connection up to `limits.max_rooms` and dropped after
//! `timeouts.room_idle_ms` without a connection, unless an embedder holds them (see
//! [`Server::room`]).
//!
//! # Fan-out
//!
//! A commit wakes, once per burst, the shards that hold connections of its room, and
//! names the room. A shard then flushes each connection of the rooms that moved (at once,
//! or, when it wrote them less than `server.flush_interval_us` ago, when that interval is
//! over, so that the commits in between share the write): a connection whose socket can
//! take bytes gets one `SYNC.DELTAS`
//! covering everything since the revision it last got, built once per shard and shared
//! by every connection at the same revision, and written with one `writev`. A connection
//! whose socket is full gets nothing until it drains; by then its deltas have coalesced,
//! or, if the ring moved past it, it gets `REVISION_GAP` and a snapshot. No connection
//! holds a queue of operations.
//!
//! # Health and metrics
//!
//! A plain HTTP `GET` (no `Upgrade`) of `/health`, `/ready` or `/metrics` on the server's
//! port is answered and the connection closed (`server.public_endpoints` says which), and
//! `server.admin_listen` opens a second address that answers only those; see
//! `docs/operations.md` for what each reports and every metric.
//!
//! ```no_run
//! use deltasync::config::Config;
//! use deltasync::server::Server;
//!
//! let server = Server::presence(Config::default()).start()?;
//! println!("listening on ws://{}", server.local_addr());
//! server.join();
//! # Ok::<(), std::io::Error>(())
//! ```

mod accept_rate;
mod acceptor;
mod admin;
mod connection;
mod endpoints;
mod flush_timer;
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
mod health;
mod interest;
mod metrics;
mod outbox;
mod registry;
mod shard;
mod shared;
mod shutdown;
mod socket_buffers;
mod transport;
mod ws_io;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use mio::{Poll, Waker};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::model::Model;
use crate::model::presence::Presence;
use crate::room::{FlushPolicy, InputPolicy, Room};
use crate::storage::Storage;

use acceptor::Acceptor;
use interest::MovedRooms;
pub use registry::ModelFactory;
use registry::{Registry, RoomSetup};
use shard::Shard;
use shared::{Shared, Wakers};

/// A shard's wake-up; reachable from the crate for its loom model (`src/tests/loom_wake.rs`).
pub(crate) use shared::ShardWake;

/// Configures and starts a [`Server`].
pub struct ServerBuilder<M: Model> {
    config: Config,
    factory: Arc<ModelFactory<M>>,
    clock: Arc<dyn Clock>,
    flush: FlushPolicy,
    inputs: InputPolicy,
    storage: Option<Arc<dyn Storage>>,
}

/// A running server. Dropping it does not stop it; call [`Server::shutdown`] or
/// [`ServerHandle::shutdown`].
pub struct Server<M: Model> {
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shared: Arc<Shared<M>>,
    threads: Vec<JoinHandle<()>>,
}

/// Stops a server from anywhere (a signal handler, another thread).
#[derive(Clone)]
pub struct ServerHandle {
    wakers: Arc<Wakers>,
    /// Only read by `reload_tls`, which needs the `tls` feature.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    tls: Option<Arc<transport::TlsAcceptor>>,
}

impl ServerHandle {
    /// Stops the server gracefully: it stops accepting, brings every client to the head of
    /// its room, closes each with `server.shutdown_close_code` (1012 Service Restart by
    /// default, or 1001 Going Away), and its threads end within
    /// `server.shutdown_grace_ms`. Returns at once; [`Server::join`] waits for the end.
    pub fn shutdown(&self) {
        self.wakers.shut_down();
    }

    /// Reads the TLS certificate and key files (`server.tls_cert`, `server.tls_key`)
    /// again: connections accepted from now on present the new certificate; open ones
    /// are not touched. Returns false when the server does not serve TLS.
    ///
    /// # Errors
    ///
    /// A file that cannot be read or used, as at start; the certificate in use stays.
    #[cfg(feature = "tls")]
    pub fn reload_tls(&self) -> Result<bool, crate::tls::TlsError> {
        match &self.tls {
            Some(tls) => tls.reload().map(|()| true),
            None => Ok(false),
        }
    }
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle").finish_non_exhaustive()
    }
}

impl Server<Presence> {
    /// A server of presence rooms (the protocol's built-in model) with `config`.
    pub fn presence(config: Config) -> ServerBuilder<Presence> {
        let limits = config.presence;
        ServerBuilder::new(config, move |_room: &str| Presence::with_limits(limits))
    }
}

impl<M: Model> ServerBuilder<M> {
    /// A server whose new rooms start with the state `factory` makes from their name.
    pub fn new(config: Config, factory: impl Fn(&str) -> M + Send + Sync + 'static) -> Self {
        Self {
            config,
            factory: Arc::new(factory),
            clock: Arc::new(SystemClock),
            flush: FlushPolicy::default(),
            inputs: InputPolicy::default(),
            storage: None,
        }
    }

    /// Keeps the rooms' histories in `storage` (default: what `config.storage` says,
    /// opened by [`start`](Self::start)). Rooms are loaded from it lazily, when first
    /// used.
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// When the server's rooms bring connections up to date (default: at every commit;
    /// `Tick`: when the owner calls [`Room::flush`]).
    pub fn flush_policy(mut self, policy: FlushPolicy) -> Self {
        self.flush = policy;
        self
    }

    /// What the server's rooms do with clients' inputs (default: the model decides them;
    /// `Forward`: the owner drains them with [`Room::drain_inputs`]).
    pub fn input_policy(mut self, policy: InputPolicy) -> Self {
        self.inputs = policy;
        self
    }

    /// Sets the wall clock rooms use (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Binds the listening socket and starts the threads.
    ///
    /// # Errors
    ///
    /// If the address cannot be bound, a thread or poller cannot be created, the
    /// storage of `config.storage` cannot be opened (a data directory that cannot be
    /// created or written, or is locked by another server: the message names the path),
    /// or `server.tls_cert` / `server.tls_key` cannot be used (one without the other, a
    /// file missing, unreadable or not PEM, a key that is not the certificate's: the
    /// message names the file; either set in a build without the `tls` feature).
    pub fn start(self) -> io::Result<Server<M>> {
        let tls = transport::TlsAcceptor::from_config(&self.config.server)?.map(Arc::new);
        let storage = match self.storage {
            Some(storage) => storage,
            None => crate::storage::open(&self.config.storage, &*self.clock)
                .map_err(io::Error::other)?,
        };
        let shards = match self.config.server.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let listener = mio::net::TcpListener::bind(self.config.server.listen)?;
        let local_addr = listener.local_addr()?;
        let admin_listener = self
            .config
            .server
            .admin_listen
            .map(admin::bind)
            .transpose()?;
        let mut polls = Vec::with_capacity(shards);
        let mut shard_wakes = Vec::with_capacity(shards);
        for _ in 0..shards {
            let poll = Poll::new()?;
            let waker = crate::sync::Waker::new(poll.registry(), shard::WAKER)?;
            shard_wakes.push(ShardWake::new(waker));
            polls.push(poll);
        }
        let acceptor_poll = Poll::new()?;
        let wakers = Arc::new(Wakers {
            shards: shard_wakes,
            acceptor: Waker::new(acceptor_poll.registry(), acceptor::WAKER)?,
            moved: (0..shards).map(|_| MovedRooms::default()).collect(),
            shutdown: AtomicBool::new(false),
        });
        let setup = RoomSetup {
            config: self.config.room.clone(),
            max_participants: self.config.limits.max_participants_per_room,
            factory: self.factory,
            clock: self.clock,
            flush: self.flush,
            inputs: self.inputs,
            storage,
        };
        let registry = Registry::new(self.config.limits.max_rooms, setup, Arc::clone(&wakers));
        let mut shared = Shared::new(&self.config, registry, wakers);
        shared.tls = tls;
        let shared = Arc::new(shared);
        let mut threads = Vec::with_capacity(shards + 1);
        let mut senders = Vec::with_capacity(shards);
        for (index, poll) in polls.into_iter().enumerate() {
            let (sender, receiver) = crossbeam_channel::unbounded();
            senders.push(sender);
            let shard = Shard::new(index, poll, Arc::clone(&shared), receiver);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("deltasync-shard-{index}"))
                    .spawn(move || shard.run())?,
            );
        }
        let mut acceptor = Acceptor {
            poll: acceptor_poll,
            listener,
            shared: Arc::clone(&shared),
            shards: senders,
            accept_rate: accept_rate::AcceptRate::new(
                self.config.limits.max_new_connections_per_ip_per_sec,
            ),
        };
        acceptor.register()?;
        threads.push(
            std::thread::Builder::new()
                .name("deltasync-acceptor".into())
                .spawn(move || acceptor.run())?,
        );
        let admin_addr = match admin_listener {
            Some(listener) => Some(start_admin(listener, &shared, &mut threads)?),
            None => None,
        };
        shared.lifecycle.started();
        tracing::info!(%local_addr, shards, admin = ?admin_addr, "listening");
        Ok(Server {
            local_addr,
            admin_addr,
            shared,
            threads,
        })
    }
}

impl<M: Model> Server<M> {
    /// The address the server listens on (with the port chosen when `:0` was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin address (`server.admin_listen`, with the port chosen when `:0` was
    /// asked), if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The `/metrics` page as a scrape would get it now (Prometheus text format), for an
    /// embedder that serves it its own way.
    pub fn metrics(&self) -> String {
        metrics::render(&self.shared)
    }

    /// A handle that stops the server.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            wakers: Arc::clone(&self.shared.wakers),
            tls: self.shared.tls.clone(),
        }
    }

    /// The room called `name`, created if it does not exist yet (an embedder's way to
    /// commit to a room from its own loop). The server does not drop the room while the
    /// handle returned, or a clone of it, is alive, so connections keep reaching the room
    /// the embedder commits to.
    ///
    /// # Errors
    ///
    /// If the room does not exist and the room limit is reached.
    pub fn room(&self, name: &str) -> Result<Arc<Room<M>>, RoomLimitReached> {
        self.shared
            .registry
            .room(name)
            .map_err(|_| RoomLimitReached)
    }

    /// How many connections are open (including those still upgrading).
    pub fn connections(&self) -> usize {
        // Relaxed: a statistic.
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// How many rooms exist.
    pub fn rooms(&self) -> usize {
        self.shared.registry.len()
    }

    /// Waits until the server has stopped.
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }

    /// Stops the server and waits for its threads.
    pub fn shutdown(self) {
        self.handle().shutdown();
        self.join();
    }
}

/// Starts the admin address's thread; returns the address bound.
fn start_admin<M: Model>(
    listener: mio::net::TcpListener,
    shared: &Arc<Shared<M>>,
    threads: &mut Vec<JoinHandle<()>>,
) -> io::Result<SocketAddr> {
    let admin = admin::Admin::new(listener, Arc::clone(shared))?;
    let bound = admin.local_addr()?;
    threads.push(
        std::thread::Builder::new()
            .name("deltasync-admin".into())
            .spawn(move || admin.run())?,
    );
    Ok(bound)
}

/// The room limit (`limits.max_rooms`) is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the room limit is reached")]
pub struct RoomLimitReached;
