//! The acceptor: takes new TCP connections, refuses those over the connection limit with
//! a plain `503` (and those over the per-address limit, or over the address's rate of new
//! connections (see `accept_rate`), with a `429`), and hands the others, with their
//! client's address, to the shards in turn. It also runs the registry's
//! once-a-second housekeeping (participant time-to-live, idle rooms).

use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::accept_rate::AcceptRate;
use super::handshake;
use super::shared::{Busy, Shared};
use crate::model::Model;

const LISTENER: Token = Token(0);
/// The token of the acceptor's waker.
pub(super) const WAKER: Token = Token(1);
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// How soon accepting is tried again after it failed (out of file descriptors, most
/// likely): connections still wait in the backlog, and the listener, edge-triggered,
/// says nothing more about them.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The accepting side of a server.
pub(super) struct Acceptor<M: Model> {
    pub(super) poll: Poll,
    pub(super) listener: TcpListener,
    pub(super) shared: Arc<Shared<M>>,
    pub(super) shards: Vec<Sender<(TcpStream, IpAddr)>>,
    /// `limits.max_new_connections_per_ip_per_sec`.
    pub(super) accept_rate: AcceptRate,
}

impl<M: Model> Acceptor<M> {
    /// Registers the listener; call before `run`.
    pub(super) fn register(&mut self) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut self.listener, LISTENER, Interest::READABLE)
    }

    /// Runs until the server shuts down.
    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(128);
        let mut next_shard = 0;
        #[allow(clippy::disallowed_methods)]
        let mut next_housekeeping = Instant::now() + HOUSEKEEPING;
        let mut backlog_left = false;
        loop {
            let timeout = if backlog_left {
                ACCEPT_RETRY
            } else {
                HOUSEKEEPING
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "acceptor poll failed; no new connections");
                    return;
                }
            }
            if self.shared.wakers.is_shutting_down() {
                return;
            }
            if backlog_left || events.iter().any(|e| e.token() == LISTENER) {
                backlog_left = !self.accept_all(&mut next_shard);
            }
            #[allow(clippy::disallowed_methods)]
            let now = Instant::now();
            if now >= next_housekeeping {
                next_housekeeping = now + HOUSEKEEPING;
                self.shared
                    .registry
                    .reap(now, self.shared.participant_ttl, self.shared.room_idle);
                self.accept_rate.forget_full(now);
            }
        }
    }

    /// Accepts every connection waiting; returns false when accepting failed with some
    /// still waiting.
    fn accept_all(&mut self, next_shard: &mut usize) -> bool {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    // An IPv4 client of a dual-stack listener counts as its IPv4 address.
                    let ip = peer.ip().to_canonical();
                    // The shell's clock: the address's rate of new connections.
                    #[allow(clippy::disallowed_methods)]
                    let now = Instant::now();
                    if let Err(wait) = self.accept_rate.admit(ip, now) {
                        tracing::debug!(%peer, "new connections per address over the rate; refused");
                        refuse_churn(stream, wait, &self.shared);
                        continue;
                    }
                    if let Err(busy) = self.shared.admit(ip) {
                        tracing::debug!(%peer, ?busy, "connection limit reached; refused");
                        refuse_busy(stream, busy, &self.shared);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let shard = *next_shard % self.shards.len();
                    *next_shard = next_shard.wrapping_add(1);
                    if self.shards[shard].send((stream, ip)).is_err() {
                        self.shared.release(ip);
                        continue;
                    }
                    self.shared.wakers.shards[shard].wake();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of file descriptors, most likely: say so and try again soon.
                    tracing::warn!(error = %e, "accept failed");
                    return false;
                }
            }
        }
    }
}

/// Answers `429` to a connection over its address's rate of new connections, with the
/// whole seconds until the next is admitted (at least 1) in `Retry-After`.
fn refuse_churn<M: Model>(mut stream: TcpStream, wait: Duration, shared: &Shared<M>) {
    let limit = shared.max_new_connections_per_ip_per_sec;
    let body = format!(
        "the limit of {limit} new connections a second per client address is reached; try again later"
    );
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let retry = seconds.max(1).to_string();
    let refusal = handshake::refusal(429, &body, &[("Retry-After", &retry)]);
    let _ = stream.write_all(&refusal.response);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Answers `503` (the server is full) or `429` (this address has its share) on a fresh
/// socket; the write of a few bytes to a new socket does not block in practice, and if it
/// does the client just sees the connection close.
fn refuse_busy<M: Model>(mut stream: TcpStream, busy: Busy, shared: &Shared<M>) {
    let refusal = match busy {
        Busy::Server => {
            let limit = shared.max_connections;
            let body = format!("the connection limit ({limit}) is reached; try again later");
            handshake::refusal(503, &body, &[("Retry-After", "5")])
        }
        Busy::Address => {
            let limit = shared.max_connections_per_ip;
            let body = format!(
                "the limit of {limit} connections per client address is reached; close one first"
            );
            handshake::refusal(429, &body, &[("Retry-After", "5")])
        }
    };
    let _ = stream.write_all(&refusal.response);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}
