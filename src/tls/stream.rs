//! [`TlsStream`]: a rustls connection over a non-blocking socket, as a non-blocking byte
//! stream.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

/// A TLS connection over the non-blocking socket `S`: reads give plaintext, writes take
/// plaintext; both say `WouldBlock` as the socket does.
///
/// - [`Read::read`] hands out the plaintext already decrypted, else reads the socket and
///   decrypts, until it has some or the socket would block. The handshake happens inside
///   reads, which write its answers out: a read during it returns `WouldBlock` (or an
///   error for a peer that does not speak TLS, after writing the alert). `Ok(0)` is the peer's `close_notify`; a peer
///   that closes TCP without one is an `UnexpectedEof` error.
/// - [`Write::write_vectored`] encrypts what it takes and writes the records out; when
///   records are still held from an earlier write (the socket was full), it takes
///   nothing and says `WouldBlock`. What it holds is bounded by rustls' buffer limit
///   (64 KiB by default).
/// - The caller must call [`TlsStream::write_held`] (or `flush`) when the socket turns
///   writable: records that the socket could not take when they were made (of a write
///   taken whole, of the handshake) are only sent by it or by the next write.
pub struct TlsStream<S> {
    tls: Connection,
    socket: S,
}

impl<S> TlsStream<S> {
    /// The server side of a new connection on `socket`.
    ///
    /// # Errors
    ///
    /// If rustls refuses `config` (it does not for a configuration of
    /// [`server_config`](super::server_config)).
    pub fn server(config: Arc<ServerConfig>, socket: S) -> Result<Self, rustls::Error> {
        Ok(Self {
            tls: ServerConnection::new(config)?.into(),
            socket,
        })
    }

    /// The client side of a new connection on `socket` to the server called `name`.
    ///
    /// # Errors
    ///
    /// If rustls refuses `config`.
    pub fn client(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        socket: S,
    ) -> Result<Self, rustls::Error> {
        Ok(Self {
            tls: ClientConnection::new(config, name)?.into(),
            socket,
        })
    }

    /// The socket.
    pub fn socket(&self) -> &S {
        &self.socket
    }

    /// The socket, to register it with a poller (never to read or write it).
    pub fn socket_mut(&mut self) -> &mut S {
        &mut self.socket
    }

    /// Whether the handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Queues a `close_notify` alert (written by the next [`TlsStream::write_held`]).
    pub fn send_close_notify(&mut self) {
        self.tls.send_close_notify();
    }
}

impl<S: Write> TlsStream<S> {
    /// Writes out the TLS records held (handshake messages, alerts, records of earlier
    /// writes); `Ok(false)` when the socket would block before all of them went out.
    ///
    /// # Errors
    ///
    /// A socket error other than `WouldBlock` and `Interrupted`.
    pub fn write_held(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

impl<S: Read + Write> Read for TlsStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
            // No plaintext: read records (`WouldBlock` when the socket has none). After
            // the socket's end, the reader says whether a `close_notify` came first.
            match self.tls.read_tls(&mut self.socket) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(error) = self.tls.process_new_packets() {
                // The alert that says why, at best.
                let _ = self.write_held();
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
            // The handshake's answers (and the plaintext written during the handshake,
            // once it ends) go out now, as far as the socket takes them.
            self.write_held()?;
        }
    }
}

impl<S: Write> Write for TlsStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.write_held()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let taken = self.tls.writer().write_vectored(bufs)?;
        if taken == 0 && bufs.iter().any(|buf| !buf.is_empty()) {
            // rustls' buffer is full (plaintext waiting for the handshake's end).
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // What the socket does not take now goes out with the next write or
        // `write_held`.
        self.write_held()?;
        Ok(taken)
    }

    /// Writes the held records out; `WouldBlock` if the socket cannot take them all.
    fn flush(&mut self) -> io::Result<()> {
        if self.write_held()? {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("socket", &self.socket)
            .field("handshaking", &self.tls.is_handshaking())
            .finish_non_exhaustive()
    }
}

impl<S: mio::event::Source> mio::event::Source for TlsStream<S> {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.socket.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.socket.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.socket.deregister(registry)
    }
}
