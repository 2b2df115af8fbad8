//! A generator connection's socket: plain TCP (`ws://`), or TLS over it (`wss://`) with
//! the library's non-blocking [`TlsStream`], so that one event loop drives both alike.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use deltasync::tls::TlsStream;
use mio::net::TcpStream;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;

/// How the generator's connections start TLS: the roots they trust and the name they ask
/// the server for.
#[derive(Debug, Clone)]
pub(crate) struct TlsTarget {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) name: ServerName<'static>,
}

/// One connection's byte stream.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// `socket`, as is or as the client side of TLS.
    pub(crate) fn new(socket: TcpStream, tls: Option<&TlsTarget>) -> io::Result<Self> {
        match tls {
            None => Ok(Self::Plain(socket)),
            Some(target) => {
                TlsStream::client(Arc::clone(&target.config), target.name.clone(), socket)
                    .map(|stream| Self::Tls(Box::new(stream)))
                    .map_err(io::Error::other)
            }
        }
    }

    /// The TCP socket.
    pub(crate) fn socket(&self) -> &TcpStream {
        match self {
            Self::Plain(socket) => socket,
            Self::Tls(stream) => stream.socket(),
        }
    }

    fn socket_mut(&mut self) -> &mut TcpStream {
        match self {
            Self::Plain(socket) => socket,
            Self::Tls(stream) => stream.socket_mut(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.read(buf),
            Self::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.write(buf),
            Self::Tls(stream) => stream.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.write_vectored(bufs),
            Self::Tls(stream) => stream.write_vectored(bufs),
        }
    }

    /// TLS: writes out the records held (`WouldBlock` while the socket cannot take them).
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(socket) => socket.flush(),
            Self::Tls(stream) => stream.flush(),
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
