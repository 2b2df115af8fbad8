//! # deltasync
//!
//! A delta-sync engine and WebSocket server. The server holds each room's state, a
//! revision counter that goes up by one per operation, a fixed-size ring of the latest
//! operations and a snapshot. A client joins and gets a snapshot; afterwards it gets only
//! the operations since the revision it last got. A client too far behind for the ring
//! gets `REVISION_GAP` and a fresh snapshot.
//!
//! The crate is a pure core inside a thin I/O shell:
//!
//! | module | holds |
//! |---|---|
//! | [`ring`] | the lock-free ring of encoded operations, one revision-stamped slot each |
//! | [`room`] | one document: state behind a commit lock, revisions, ring, shared snapshot, epoch |
//! | [`model`] | the application's state machine; [`model::presence`] is the built-in one |
//! | [`protocol`] | the wire messages, the two dialects, the error codes, strict decoding |
//! | [`session`] | one connection's protocol state, without I/O |
//! | [`client`] | a client's replica of a room: server state, pending updates, visible state |
//! | [`conformance`] | the fixture runner: protocol scenarios as data, executed |
//! | [`game`] | a server-authoritative game loop over the arena model: the embedding demo |
//! | [`frame`] | the WebSocket frame codec: headers, masking, frames found in place |
//! | [`storage`] | where room histories live: memory, or a checksummed log with snapshots on disk |
//! | [`server`] | the WebSocket server: mio acceptor and shards, sharded zero-copy fan-out |
//! | [`socket`] | a non-blocking connection's byte stream for mio loops: plain TCP, or TLS over it |
//! | `tls` | `wss://` (feature `tls`): certificate, key and CA loading; a non-blocking rustls stream |
//! | [`clock`], [`epoch`] | injected wall time; history identifiers |
//! | [`config`] | the server's typed configuration: defaults, TOML file, environment, flags |
//!
//! The core has no sockets and reads no clock of its own; everything that decides
//! something is driven by its inputs, which is what lets tests and fixtures run it
//! deterministically.
//!
//! # Features
//!
//! - `blocking-client` (off by default): [`client::Connector`], a blocking WebSocket
//!   client around the replica, and [`conformance::Remote`], which runs fixtures against
//!   a server over the wire. They open sockets of their own, so they stay out of an
//!   embedder's build unless asked for.
//!
//! - `tls` (off by default): `wss://`. The server serves TLS when `server.tls_cert` and
//!   `server.tls_key` are set, the [`client::Connector`] connects to `wss://` URLs, and
//!   [`tls`] has the loaders and the non-blocking TLS stream they share. It brings in
//!   rustls and ring (C and assembly to build), which an embedder behind a
//!   TLS-terminating proxy does not need.
//!
//! The `deltasync` command (`serve`, `config`, `conformance`, `bench`, `soak`) is a
//! crate of its own (`cli/` in the repository), built only on this crate's public API.
#![deny(unsafe_code)]

pub mod client;
pub mod clock;
pub mod config;
pub mod conformance;
pub mod counters;
pub mod epoch;
pub mod frame;
pub mod game;
pub mod model;
pub mod protocol;
pub mod ring;
pub mod room;
pub mod server;
pub mod session;
pub mod socket;
pub mod storage;
#[cfg(feature = "tls")]
pub mod tls;

mod sync;

#[cfg(test)]
mod tests;
