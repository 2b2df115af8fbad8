//! The client side of the wire, by hand: the upgrade request, masked client frames, and
//! an incremental reader of the server's response and frames. The soak drives thousands
//! of non-blocking sockets from one thread, and must be able to write half a frame. The
//! frames go through the library's codec (`deltasync::frame`).

use deltasync::frame;

/// The upgrade request for `path` on `host`, asking for the native dialect.
pub(crate) fn upgrade_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: deltasync.v1\r\n\r\n"
    )
    .into_bytes()
}

/// A masked client frame of `opcode` carrying `payload`.
pub(crate) fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    frame::encode(opcode, payload, Some(mask))
}

/// A masked text frame.
pub(crate) fn text_frame(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    client_frame(frame::TEXT, payload, mask)
}

/// One frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A text message.
    Text(Vec<u8>),
    /// A ping, to be answered with a pong of the same payload.
    Ping(Vec<u8>),
    /// A close frame and its code (1005 when none).
    Close(u16),
    /// Anything else (pongs).
    Other,
}

/// Reads the server's `101` response, then its frames, from bytes as they arrive.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    buf: Vec<u8>,
    upgraded: bool,
}

impl Reader {
    /// Appends bytes read from the socket.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if one is there.
    ///
    /// # Errors
    ///
    /// A response other than `101`, or a frame a server must not send (masked, reserved
    /// bits, fragmented).
    pub(crate) fn next(&mut self) -> Result<Option<Frame>, String> {
        if !self.upgraded {
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Ok(None);
            };
            if !self.buf.starts_with(b"HTTP/1.1 101 ") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                return Err(format!("upgrade refused: {head}"));
            }
            self.buf.drain(..end + 4);
            self.upgraded = true;
        }
        let Some(found) = frame::parse(&self.buf, usize::MAX).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        found
            .check_from_server()
            .map_err(|e| format!("a frame a server must not send: {e}"))?;
        let payload = found.payload(&self.buf).to_vec();
        self.buf.drain(..found.len());
        if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
            // A big snapshot went through: give its buffer back.
            self.buf = Vec::new();
        }
        Ok(Some(match found.opcode {
            frame::TEXT => Frame::Text(payload),
            frame::PING => Frame::Ping(payload),
            frame::CLOSE => Frame::Close(frame::close_code(&payload).map_err(|e| e.to_string())?),
            _ => Frame::Other,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_reader_in_any_pieces() {
        let mut bytes = b"HTTP/1.1 101 Switching Protocols\r\nX: y\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[0x81, 2, b'h', b'i']);
        bytes.extend_from_slice(&[0x81, 126, 0, 200]);
        bytes.extend_from_slice(&[b'x'; 200]);
        bytes.extend_from_slice(&[0x88, 2, 0x03, 0xe8]);
        let mut reader = Reader::default();
        let mut frames = Vec::new();
        for byte in bytes {
            reader.push(&[byte]);
            while let Some(frame) = reader.next().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(
            frames,
            [
                Frame::Text(b"hi".to_vec()),
                Frame::Text(vec![b'x'; 200]),
                Frame::Close(1000)
            ]
        );
        let mut refused = Reader::default();
        refused.push(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert!(refused.next().is_err());
    }

    #[test]
    fn client_frames_are_masked() {
        assert_eq!(
            text_frame(b"ab", [1, 2, 3, 4]),
            [0x81, 0x82, 1, 2, 3, 4, b'a' ^ 1, b'b' ^ 2]
        );
        assert_eq!(&text_frame(&[0; 300], [0; 4])[..4], &[0x81, 0xfe, 1, 44]);
    }
}
