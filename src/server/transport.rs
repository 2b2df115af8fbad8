//! What a shard's connection reads and writes: a plain TCP socket (`ws://`), or, with the
//! `tls` feature and a certificate configured, TLS over one (`wss://`).
//!
//! The stream is the library's [`crate::socket::Socket`]; here are what only the server
//! needs of it: the accept step and the shard's certificate. The TLS handshake happens
//! inside the connection's first reads, on the shard, without blocking it: a slow or
//! garbage client costs only its own reads, and the upgrade timeout
//! (`timeouts.handshake_ms`) covers the TLS handshake and the HTTP upgrade together.

use std::io;

use mio::net::TcpStream;

use super::connection::Transport;

/// A connection's byte stream (see [`crate::socket`]).
pub(super) use crate::socket::Socket as Stream;

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

impl Transport for Stream {
    /// TLS: a `close_notify` first, at best (if the socket cannot take it, the peer has
    /// the WebSocket close frame already, and sees the TCP end).
    fn shutdown_write(&mut self) -> io::Result<()> {
        Stream::shutdown_write(self)
    }

    #[inline]
    fn write_held(&mut self) -> io::Result<bool> {
        Stream::write_held(self)
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
