//! The wire protocol: message types, the envelope codec, the two dialects, error codes.
//!
//! Every message is a ws-kit envelope `{"type": T, "meta": {...}, "payload": {...}}`.
//! Server messages are written here directly into byte buffers: an operation is encoded
//! once when it is committed, and a `SYNC.DELTAS` message is framed around the stored
//! bytes of its operations (a prefix, the operations joined by commas, a suffix), never
//! by serializing them again.
//!
//! [`decode`] reads messages back, strictly: client messages for the server's sessions,
//! server messages for the client replica.
//!
//! See `docs/protocol.md` for the contract in full.

mod code;
pub mod decode;
pub mod encode;

pub use code::{ErrorCode, UnknownErrorCode};

/// Which variant of the protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Dialect {
    /// The ws-kit dialect (no subprotocol asked): server payloads carry exactly the
    /// fields of the ws-kit contract, because ws-kit clients reject unknown keys.
    #[default]
    WsKit,
    /// The native dialect (subprotocol `deltasync.v1`): adds `epoch` to `SYNC.SNAPSHOT`
    /// and `REVISION_GAP`, and lets `JOIN` resume with `rev` and `epoch`.
    Native,
}

impl Dialect {
    /// The WebSocket subprotocol that selects the native dialect.
    pub const NATIVE_SUBPROTOCOL: &'static str = "deltasync.v1";

    /// Both dialects, for tables indexed by dialect.
    pub const ALL: [Dialect; 2] = [Dialect::WsKit, Dialect::Native];

    /// A small index (0 or 1) for per-dialect caches.
    pub const fn index(self) -> usize {
        match self {
            Dialect::WsKit => 0,
            Dialect::Native => 1,
        }
    }
}
