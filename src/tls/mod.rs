//! TLS (`wss://`) with rustls on the `ring` provider (the `tls` feature): the certificate
//! and key a server loads, the roots a client trusts, and [`TlsStream`], a non-blocking
//! TLS stream over a non-blocking socket for event loops (the server's shards, the load
//! generator).
//!
//! rustls' connection types are sans-IO: they take TLS records in ([`read_tls`]) and
//! give plaintext out, take plaintext in and give records out ([`write_tls`]), and never
//! touch a socket or a clock. [`TlsStream`] moves those bytes between the connection and a
//! socket that says `WouldBlock`, so that to its caller it is one more non-blocking byte
//! stream; see its docs for the one thing a caller must add (writing out
//! [`TlsStream::write_held`] when the socket turns writable).
//!
//! Files are read whole and parsed here, so every failure names the file:
//!
//! ```
//! use std::path::Path;
//!
//! let error = deltasync::tls::server_config(Path::new("/no/cert.pem"), Path::new("/no/key.pem"))
//!     .unwrap_err();
//! assert!(error
//!     .to_string()
//!     .starts_with("cannot read the TLS certificate file /no/cert.pem: "));
//! ```
//!
//! [`read_tls`]: rustls::ConnectionCommon::read_tls
//! [`write_tls`]: rustls::ConnectionCommon::write_tls

mod files;
mod stream;

pub use files::{TlsError, client_config, server_config};
pub use stream::TlsStream;

/// The crypto provider of every configuration made here: `ring` (it builds with a C
/// compiler alone; rustls' default, `aws-lc-rs`, needs cmake), whatever provider the
/// process installed as its default.
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(all(test, not(loom)))]
mod tests;
