//! A generator connection's socket: the library's [`Stream`] (plain TCP for `ws://`, or
//! its non-blocking [`TlsStream`] over it for `wss://`), so that one event loop drives
//! both alike.

use std::io;
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

/// One connection's byte stream: the library's, which the server's shards use too.
pub(crate) use deltasync::socket::Socket as Stream;

/// `socket`, as is or as the client side of TLS.
pub(crate) fn open(socket: TcpStream, tls: Option<&TlsTarget>) -> io::Result<Stream> {
    match tls {
        None => Ok(Stream::Plain(socket)),
        Some(target) => TlsStream::client(Arc::clone(&target.config), target.name.clone(), socket)
            .map(|stream| Stream::Tls(Box::new(stream)))
            .map_err(io::Error::other),
    }
}
