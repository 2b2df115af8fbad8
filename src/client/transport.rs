//! The [`Connector`](super::Connector)'s socket: plain TCP for `ws://`, TLS over TCP for
//! `wss://` (with the `tls` feature), blocking, with a read timeout for polls.
//!
//! `wss://` trusts the system's roots, or only the CA of
//! [`ConnectorOptions::ca_file`](super::ConnectorOptions::ca_file) when one is given (a
//! test server's own CA).

use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use super::ConnectorError;

/// A connector's byte stream.
pub(super) enum Stream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

/// Where a URL says to connect, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// The host, without brackets for an IPv6 address.
    pub(super) host: String,
    /// The port (default 80 for `ws://`, 443 for `wss://`).
    pub(super) port: u16,
    /// `wss://`.
    pub(super) tls: bool,
}

impl Target {
    /// The target of `uri` (`ws://` or `wss://`).
    ///
    /// # Errors
    ///
    /// Another scheme, or no host; the reason.
    pub(super) fn of(uri: &tungstenite::http::Uri) -> Result<Self, String> {
        let tls = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            other => return Err(format!("the scheme must be ws or wss, not {other:?}")),
        };
        let host = uri.host().ok_or("no host")?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self { host, port, tls })
    }
}

/// Opens a TCP connection to `target` and, for `wss://`, starts TLS trusting `ca_file`
/// (or the system's roots). The TLS handshake completes with the first write.
///
/// # Errors
///
/// [`ConnectorError::Connect`] when TCP fails; [`ConnectorError::Tls`] when the CA file
/// cannot be used or the host is not a valid server name; [`ConnectorError::Url`] for
/// `wss://` in a build without the `tls` feature.
pub(super) fn connect(
    url: &str,
    target: &Target,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<Stream, ConnectorError> {
    let socket = tcp_connect(target, timeout)?;
    let _ = socket.set_nodelay(true);
    if !target.tls {
        return Ok(Stream::Plain(socket));
    }
    tls(url, target, ca_file, socket)
}

/// Connects to the first of the host's addresses that answers within `timeout` each.
fn tcp_connect(target: &Target, timeout: Duration) -> Result<TcpStream, ConnectorError> {
    let address = format!("{}:{}", target.host, target.port);
    let failed = |source| ConnectorError::Connect {
        address: address.clone(),
        source,
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    for socket_addr in (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(failed)?
    {
        match TcpStream::connect_timeout(&socket_addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(failed(last))
}

#[cfg(feature = "tls")]
fn tls(
    _url: &str,
    target: &Target,
    ca_file: Option<&Path>,
    socket: TcpStream,
) -> Result<Stream, ConnectorError> {
    let config =
        crate::tls::client_config(ca_file).map_err(|e| ConnectorError::Tls(e.to_string()))?;
    let name = rustls::pki_types::ServerName::try_from(target.host.clone())
        .map_err(|e| ConnectorError::Tls(format!("{}: {e}", target.host)))?;
    let connection = rustls::ClientConnection::new(config, name)
        .map_err(|e| ConnectorError::Tls(e.to_string()))?;
    Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(
        connection, socket,
    ))))
}

#[cfg(not(feature = "tls"))]
fn tls(
    url: &str,
    _target: &Target,
    _ca_file: Option<&Path>,
    _socket: TcpStream,
) -> Result<Stream, ConnectorError> {
    Err(ConnectorError::Url {
        url: url.to_owned(),
        reason: "wss:// needs the `tls` feature of deltasync".into(),
    })
}

impl Stream {
    /// Sets how long a read waits (`WouldBlock` or `TimedOut` after it).
    pub(super) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket().set_read_timeout(timeout)
    }

    fn socket(&self) -> &TcpStream {
        match self {
            Self::Plain(socket) => socket,
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.read(buf),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.write(buf),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.write_vectored(bufs),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(socket) => socket.flush(),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Result<Target, String> {
        Target::of(&url.parse().unwrap())
    }

    #[test]
    fn urls_give_host_port_and_scheme() {
        let expect = |host: &str, port, tls| {
            Ok(Target {
                host: host.into(),
                port,
                tls,
            })
        };
        assert_eq!(
            target("ws://127.0.0.1:7373/"),
            expect("127.0.0.1", 7373, false)
        );
        assert_eq!(
            target("wss://localhost/rooms/a"),
            expect("localhost", 443, true)
        );
        assert_eq!(
            target("ws://example.test/"),
            expect("example.test", 80, false)
        );
        assert_eq!(target("wss://[::1]:9000/"), expect("::1", 9000, true));
        assert_eq!(
            target("http://localhost/"),
            Err(r#"the scheme must be ws or wss, not Some("http")"#.into())
        );
    }
}
