//! What a shard's connection reads and writes: a plain TCP socket (`ws://`), or, with the
//! `tls` feature and a certificate configured, TLS over one (`wss://`).
//!
//! An enum, not a second monomorphization of the shard: a server has one listener, so
//! every connection of a shard is of the same kind, and the branch per read or write is
//! predicted every time; the plain path is the socket's own calls, as before, behind an
//! inlined match (`docs/benchmarks.md` has the figures with TLS on and off, and the
//! instructions of the plain path before and after). The TLS handshake happens
//! inside the connection's first reads, on the shard, without blocking it: a slow or
//! garbage client costs only its own reads, and the upgrade timeout
//! (`timeouts.handshake_ms`) covers the TLS handshake and the HTTP upgrade together.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;

use super::connection::Transport;

/// A connection's byte stream.
pub(super) enum Stream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    #[cfg(feature = "tls")]
    Tls(Box<crate::tls::TlsStream<TcpStream>>),
}

impl Stream {
    /// The stream of a connection just accepted: plain, or the server side of TLS with
    /// the server's current certificate.
    pub(super) fn accepted(socket: TcpStream, tls: Option<&TlsAcceptor>) -> io::Result<Self> {
        match tls {
            None => Ok(Self::Plain(socket)),
            #[cfg(feature = "tls")]
            Some(acceptor) => {
                let stream = crate::tls::TlsStream::server(acceptor.config.load_full(), socket)
                    .map_err(io::Error::other)?;
                Ok(Self::Tls(Box::new(stream)))
            }
            #[cfg(not(feature = "tls"))]
            Some(never) => match *never {},
        }
    }
}

impl Read for Stream {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.read(buf),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for Stream {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.write(buf),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.write(buf),
        }
    }

    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.write_vectored(bufs),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.write_vectored(bufs),
        }
    }

    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(socket) => socket.flush(),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.flush(),
        }
    }
}

impl Transport for Stream {
    /// TLS: a `close_notify` first, at best (if the socket cannot take it, the peer has
    /// the WebSocket close frame already, and sees the TCP end).
    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(socket) => socket.shutdown(Shutdown::Write),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => {
                stream.send_close_notify();
                let _ = stream.write_held();
                stream.socket().shutdown(Shutdown::Write)
            }
        }
    }

    #[inline]
    fn write_held(&mut self) -> io::Result<bool> {
        match self {
            Self::Plain(_) => Ok(true),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.write_held(),
        }
    }
}

impl mio::event::Source for Stream {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.socket_mut().register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.socket_mut().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.socket_mut().deregister(registry)
    }
}

impl Stream {
    fn socket_mut(&mut self) -> &mut TcpStream {
        match self {
            Self::Plain(socket) => socket,
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.socket_mut(),
        }
    }
}

/// The server's TLS certificate: new connections take the current one; a reload swaps it
/// without touching connections already open.
#[cfg(feature = "tls")]
pub(super) struct TlsAcceptor {
    config: arc_swap::ArcSwap<rustls::ServerConfig>,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

/// Without the `tls` feature there is no TLS acceptor.
#[cfg(not(feature = "tls"))]
pub(super) enum TlsAcceptor {}

impl TlsAcceptor {
    /// The acceptor of `server.tls_cert` and `server.tls_key`, when they are set.
    ///
    /// # Errors
    ///
    /// One of the two set without the other; a file that cannot be read or used (the
    /// message names it); either set in a build without the `tls` feature.
    pub(super) fn from_config(server: &crate::config::ServerConfig) -> io::Result<Option<Self>> {
        let (cert, key) = match (&server.tls_cert, &server.tls_key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => return Err(io::Error::other(MISSING_KEY)),
            (None, Some(_)) => return Err(io::Error::other(MISSING_CERT)),
        };
        Self::load(cert, key).map(Some)
    }

    #[cfg(feature = "tls")]
    fn load(cert: &std::path::Path, key: &std::path::Path) -> io::Result<Self> {
        let config = crate::tls::server_config(cert, key).map_err(io::Error::other)?;
        Ok(Self {
            config: arc_swap::ArcSwap::new(config),
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    #[cfg(not(feature = "tls"))]
    fn load(_cert: &std::path::Path, _key: &std::path::Path) -> io::Result<Self> {
        Err(io::Error::other(
            "server.tls_cert is set, but this build of deltasync has no TLS (its `tls` feature)",
        ))
    }

    /// Reads the certificate and key files again; new connections use them, open ones
    /// keep theirs.
    ///
    /// # Errors
    ///
    /// As [`crate::tls::server_config`]; the certificate in use stays.
    #[cfg(feature = "tls")]
    pub(super) fn reload(&self) -> Result<(), crate::tls::TlsError> {
        let config = crate::tls::server_config(&self.cert, &self.key)?;
        self.config.store(config);
        Ok(())
    }
}

const MISSING_KEY: &str = "server.tls_cert is set without server.tls_key (TLS needs both)";
const MISSING_CERT: &str = "server.tls_key is set without server.tls_cert (TLS needs both)";
