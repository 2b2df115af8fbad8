//! The stream tungstenite sees: reads come from bytes the shard already read from the
//! socket, writes (pongs, close frames) are kept for the connection's outbox.
//!
//! The shard reads each socket into one buffer it owns (so an idle connection holds no
//! read buffer of its own beyond tungstenite's small one) and hands the bytes to the
//! connection's `WebSocketContext` through this adapter. tungstenite's own writes must not
//! reach the socket directly, where they could cut into a frame the outbox is halfway
//! through; they are collected here and queued whole.

use std::io::{self, Read, Write};

/// Input already read from the socket, and the frames tungstenite wants to send.
pub(super) struct WsIo<'a> {
    input: &'a [u8],
    control: &'a mut Vec<u8>,
}

impl<'a> WsIo<'a> {
    pub(super) fn new(input: &'a [u8], control: &'a mut Vec<u8>) -> Self {
        Self { input, control }
    }

    /// The input tungstenite has not taken yet.
    pub(super) fn rest(&self) -> &'a [u8] {
        self.input
    }
}

impl Read for WsIo<'_> {
    /// Gives what is left of the input; `WouldBlock` once it is used up, so tungstenite
    /// keeps a partial frame and returns.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.input.read(buf)?;
        Ok(n)
    }
}

impl Write for WsIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.control.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_input_then_would_block_and_keeps_writes() {
        let mut control = Vec::new();
        let mut io = WsIo::new(b"abcdef", &mut control);
        let mut buf = [0u8; 4];
        assert_eq!(io.read(&mut buf).unwrap(), 4);
        assert_eq!(io.rest(), b"ef");
        assert_eq!(io.read(&mut buf).unwrap(), 2);
        assert_eq!(io.rest(), b"");
        assert_eq!(
            io.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        io.write_all(b"pong").unwrap();
        assert_eq!(control, b"pong");
    }
}
