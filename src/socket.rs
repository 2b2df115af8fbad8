//! A non-blocking connection's byte stream for a mio event loop: a plain TCP socket
//! (`ws://`), or, with the `tls` feature, TLS over one (`wss://`, see `tls::TlsStream`).
//!
//! The server's shards and the load generator of `deltasync bench` both drive their
//! connections through it, so that one event loop reads and writes both kinds alike.
//!
//! An enum, not a second monomorphization of the event loop: a server has one listener,
//! so every connection of a shard is of the same kind and the branch per read or write is
//! predicted every time; the plain path is the socket's own calls behind an inlined match
//! (`docs/benchmarks.md`, "TLS", has the instructions of the plain path before and after).

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;

/// A connection's byte stream: plain TCP, or TLS over it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Socket {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`: the TLS handshake runs inside the first reads and writes.
    #[cfg(feature = "tls")]
    Tls(Box<crate::tls::TlsStream<TcpStream>>),
}

impl Socket {
    /// The TCP socket under the stream.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(socket) => socket,
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.socket(),
        }
    }

    /// The TCP socket under the stream, mutably (to register it with a poll).
    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Self::Plain(socket) => socket,
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.socket_mut(),
        }
    }

    /// Writes out what TLS holds (records the socket could not take yet); whether
    /// nothing is held any more. A plain socket holds nothing.
    ///
    /// # Errors
    ///
    /// The socket's error, `WouldBlock` included.
    #[inline]
    pub fn write_held(&mut self) -> io::Result<bool> {
        match self {
            Self::Plain(_) => Ok(true),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.write_held(),
        }
    }

    /// Ends our side of the stream after the last bytes: for TLS a `close_notify` first,
    /// at best (if the socket cannot take it, the peer sees the TCP end anyway), then
    /// `shutdown(Write)`.
    ///
    /// # Errors
    ///
    /// The socket's error.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
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
}

impl Read for Socket {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.read(buf),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for Socket {
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

    /// TLS: writes out the records held (`WouldBlock` while the socket cannot take them).
    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(socket) => socket.flush(),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.flush(),
        }
    }
}

impl mio::event::Source for Socket {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.tcp_mut().register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.tcp_mut().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.tcp_mut().deregister(registry)
    }
}
