//! Bytes on a plain TCP socket: HTTP requests the WebSocket client would never send, and
//! WebSocket frames built and read by hand.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};

use super::WAIT;

/// A valid upgrade request for `path` with extra header lines (each ending in `\r\n`).
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A loopback connection with a read timeout of `WAIT`.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("TCP connects");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Sends `request` on a new connection and returns everything the server sends until it
/// closes the connection.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.write_all(request).unwrap();
    read_to_close(&mut stream)
}

/// Reads until the peer closes; a reset after some bytes counts as the end too, but a
/// reset before any byte panics (the answer was lost).
pub fn read_to_close(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "connection failed after {:?}: {e}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// Whether the server has closed `stream` (EOF or reset) rather than left it open.
pub fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
        ),
    }
}

/// A WebSocket connection driven by hand: any bytes out, server frames parsed on the way in.
pub struct RawWs {
    pub stream: TcpStream,
    /// The server's `101` response, headers included.
    pub response: String,
}

impl RawWs {
    /// Upgrades a new connection to `path` and reads the `101` response.
    pub fn connect(addr: SocketAddr, path: &str) -> Self {
        Self::connect_with(addr, path, "")
    }

    pub fn connect_with(addr: SocketAddr, path: &str, extra_headers: &str) -> Self {
        let mut stream = connect(addr);
        stream
            .write_all(upgrade_request(path, extra_headers).as_bytes())
            .unwrap();
        let mut raw = Self::from_stream(stream);
        raw.read_response();
        raw
    }

    /// A connection whose upgrade request the caller writes.
    pub fn from_stream(stream: TcpStream) -> Self {
        Self {
            stream,
            response: String::new(),
        }
    }

    /// Reads the answer to the upgrade request and expects a `101`.
    pub fn read_response(&mut self) {
        let mut response = Vec::new();
        let mut byte = [0u8; 1];
        while !response.ends_with(b"\r\n\r\n") {
            assert_eq!(
                self.stream.read(&mut byte).unwrap(),
                1,
                "upgrade response cut"
            );
            response.push(byte[0]);
        }
        self.response = String::from_utf8(response).unwrap();
        assert!(
            self.response
                .starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{}",
            self.response
        );
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a masked text frame of `payload` (any bytes, valid UTF-8 or not).
    pub fn send_text(&mut self, payload: &[u8]) {
        self.write(&frame(0x1, true, payload));
    }

    /// Reads one whole server frame: its opcode and payload.
    pub fn read_frame(&mut self) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head).expect("frame header");
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] & 0x7f {
            126 => {
                let mut ext = [0u8; 2];
                self.stream.read_exact(&mut ext).unwrap();
                u64::from(u16::from_be_bytes(ext))
            }
            127 => {
                let mut ext = [0u8; 8];
                self.stream.read_exact(&mut ext).unwrap();
                u64::from_be_bytes(ext)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).unwrap()];
        self.stream.read_exact(&mut payload).expect("frame payload");
        assert_eq!(head[0] & 0x80, 0x80, "server frames are not fragmented");
        (head[0] & 0x0f, payload)
    }

    /// Reads the next frame and expects a close frame; returns its code and reason.
    pub fn read_close(&mut self) -> (u16, String) {
        let (opcode, payload) = self.read_frame();
        assert_eq!(
            opcode, 0x8,
            "expected a close frame, got opcode {opcode:#x}"
        );
        let code = u16::from_be_bytes([payload[0], payload[1]]);
        (code, String::from_utf8(payload[2..].to_vec()).unwrap())
    }

    /// After a close frame: the server ends the TCP connection (no more bytes).
    pub fn expect_eof(&mut self) {
        let mut rest = Vec::new();
        match self.stream.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "bytes after the close: {rest:?}"),
            Err(e) => panic!("expected an orderly end, got {e}"),
        }
    }

    pub fn shutdown_write(&mut self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }
}

/// A client frame (masked, as RFC 6455 requires of clients) with `opcode` and `payload`.
pub fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame_with(opcode, fin, Some([0x37, 0xfa, 0x21, 0x3d]), payload)
}

/// A frame with the given mask (`None`: unmasked, which a server must refuse).
pub fn frame_with(opcode: u8, fin: bool, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    deltasync::frame::put_fragment(&mut out, fin, opcode, payload, mask);
    out
}
