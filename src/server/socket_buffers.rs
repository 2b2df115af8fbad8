//! The kernel's buffers of a client socket (`server.send_buffer_bytes`,
//! `server.recv_buffer_bytes`), set when a connection is accepted.
//!
//! ## Backpressure
//!
//! What a client has not read waits first in the kernel's send buffer of its socket, and
//! only when that is full does the server see the socket blocked and stop writing to it
//! (its deltas then coalesce; past the ring, it gets `REVISION_GAP` and a snapshot). On
//! loopback Linux lets that buffer grow to megabytes, so a stalled client hides behind the
//! kernel for a long time and holds that memory. A smaller send buffer makes the ring's
//! backpressure see a slow client sooner and bounds what each connection can hold in the
//! kernel, at the price of more write calls for large catch-ups. Linux doubles the value
//! asked (for its bookkeeping) and clamps it to `net.core.wmem_max` / `rmem_max`, and a
//! fixed size turns off its automatic tuning for that socket.

use socket2::SockRef;

/// The buffer sizes to ask for; 0 keeps the OS default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SocketBuffers {
    /// `SO_SNDBUF` in bytes; 0: the OS default.
    pub(super) send: usize,
    /// `SO_RCVBUF` in bytes; 0: the OS default.
    pub(super) recv: usize,
}

/// Sets the buffers of `socket`; a refusal is logged and the OS default stays.
pub(super) fn apply<S>(socket: &S, buffers: &SocketBuffers)
where
    for<'s> SockRef<'s>: From<&'s S>,
{
    let socket = SockRef::from(socket);
    if buffers.send > 0 {
        if let Err(e) = socket.set_send_buffer_size(buffers.send) {
            tracing::warn!(error = %e, bytes = buffers.send, "cannot set SO_SNDBUF");
        }
    }
    if buffers.recv > 0 {
        if let Err(e) = socket.set_recv_buffer_size(buffers.recv) {
            tracing::warn!(error = %e, bytes = buffers.recv, "cannot set SO_RCVBUF");
        }
    }
}
