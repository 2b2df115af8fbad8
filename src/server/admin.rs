//! The admin address (`server.admin_listen`): a thread of its own that answers only the
//! plain HTTP endpoints (`/health`, `/ready`, `/metrics`; every other path `404`), on an
//! address the operator keeps internal.
//!
//! It outlives the shards: while the server stops, `/health` and `/ready` here answer
//! `503 shutting down` until the last shard has closed its connections, then the thread
//! ends. Requests are served one at a time, each with a short deadline: a probe or a
//! scrape is a few hundred bytes each way, and a client that stalls holds the address for
//! at most `REQUEST_DEADLINE`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use super::endpoints::{Endpoints, Port};
use super::handshake::{self, Refusal};
use super::shared::Shared;
use crate::model::Model;

const LISTENER: Token = Token(0);
/// How often the thread looks whether the server has stopped.
const STOP_CHECK: Duration = Duration::from_millis(50);
/// How long one request may take to arrive and its answer to leave.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// The longest request read.
const MAX_REQUEST: usize = 8 * 1024;

/// The admin listener, bound and registered, ready to [`run`](Admin::run).
pub(super) struct Admin<M: Model> {
    poll: Poll,
    listener: TcpListener,
    shared: Arc<Shared<M>>,
}

/// Binds the admin address, before the server starts anything: an address that cannot
/// be had fails the start.
///
/// # Errors
///
/// If the address cannot be bound; the message names `server.admin_listen`.
pub(super) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on server.admin_listen {addr}: {e}"),
        )
    })
}

impl<M: Model> Admin<M> {
    /// The admin thread for `listener` (from [`bind`]).
    ///
    /// # Errors
    ///
    /// If the poller cannot be created.
    pub(super) fn new(mut listener: TcpListener, shared: Arc<Shared<M>>) -> io::Result<Self> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Self {
            poll,
            listener,
            shared,
        })
    }

    /// The address bound (with the port chosen when `:0` was asked).
    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers requests until the server has stopped and every shard with it.
    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(16);
        loop {
            if let Err(e) = self.poll.poll(&mut events, Some(STOP_CHECK)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "admin poll failed; the admin address stops");
                    return;
                }
            }
            if self.shared.wakers.is_shutting_down() && self.shared.lifecycle.all_shards_stopped() {
                return;
            }
            self.accept_all();
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = self.serve(std::net::TcpStream::from(stream)) {
                        tracing::debug!(error = %e, "admin request failed");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    return;
                }
            }
        }
    }

    /// Reads one request and answers it; the connection then closes.
    fn serve(&self, mut stream: std::net::TcpStream) -> io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(REQUEST_DEADLINE))?;
        stream.set_write_timeout(Some(REQUEST_DEADLINE))?;
        let answer = self.answer(&mut stream)?;
        stream.write_all(&answer.response)?;
        stream.shutdown(Shutdown::Write)
    }

    fn answer(&self, stream: &mut std::net::TcpStream) -> io::Result<Refusal> {
        let mut request = Vec::with_capacity(512);
        let mut chunk = [0; 1024];
        loop {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            request.extend_from_slice(&chunk[..n]);
            if let Some(answer) = route(&self.shared, &request) {
                return Ok(answer);
            }
        }
    }
}

/// The answer to `request` if it is complete (or malformed, or too long); `None` while
/// it is partial.
fn route<M: Model>(shared: &Shared<M>, request: &[u8]) -> Option<Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(request) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) if request.len() <= MAX_REQUEST => return None,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Some(handshake::refusal(431, "request headers too large", &[]));
        }
        Err(e) => {
            return Some(handshake::refusal(
                400,
                &format!("malformed HTTP request: {e}"),
                &[],
            ));
        }
    }
    let method = parsed.method.unwrap_or("GET");
    let path = parsed.path.unwrap_or("/").split('?').next().unwrap_or("/");
    let answer = shared.answer(Port::Admin, method, path);
    Some(answer.unwrap_or_else(|| handshake::refusal(404, "no such endpoint", &[])))
}
