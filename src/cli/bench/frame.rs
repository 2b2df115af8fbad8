//! WebSocket framing (RFC 6455 §5) and the HTTP upgrade, as small as the load generator
//! and the ceiling server need: whole frames parsed in place from a read buffer, client
//! frames written masked, server frames unmasked.

use std::fmt::Write as _;

/// Text frame opcode.
pub(crate) const TEXT: u8 = 0x1;
/// Continuation frame opcode.
pub(crate) const CONTINUATION: u8 = 0x0;
/// Close frame opcode.
pub(crate) const CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub(crate) const PING: u8 = 0x9;

/// One frame found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) fin: bool,
    pub(crate) opcode: u8,
    /// Where the payload starts in the buffer.
    pub(crate) payload_at: usize,
    pub(crate) payload_len: usize,
    /// The masking key, when the frame is masked (client frames).
    pub(crate) mask: Option<[u8; 4]>,
}

impl Frame {
    /// Header and payload together.
    pub(crate) fn len(&self) -> usize {
        self.payload_at + self.payload_len
    }
}

/// A frame announces a payload larger than the generator accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge(pub(crate) u64);

/// Reads the frame at the start of `buf`: `Ok(None)` while it is incomplete.
///
/// # Errors
///
/// [`TooLarge`] when the payload is longer than `max_payload`.
pub(crate) fn parse(buf: &[u8], max_payload: usize) -> Result<Option<Frame>, TooLarge> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    let masked = second & 0x80 != 0;
    let (len, mut at) = match second & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (u64::from_be_bytes(b.try_into().unwrap_or([0xff; 8])), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let payload_len = usize::try_from(len)
        .ok()
        .filter(|&n| n <= max_payload)
        .ok_or(TooLarge(len))?;
    let mask = if masked {
        match buf.get(at..at + 4) {
            Some(key) => {
                at += 4;
                Some([key[0], key[1], key[2], key[3]])
            }
            None => return Ok(None),
        }
    } else {
        None
    };
    if buf.len() < at + payload_len {
        return Ok(None);
    }
    Ok(Some(Frame {
        fin: first & 0x80 != 0,
        opcode: first & 0x0f,
        payload_at: at,
        payload_len,
        mask,
    }))
}

/// XORs `payload` with `mask` (masking and unmasking are the same operation).
pub(crate) fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Appends the header of a final frame of `opcode` carrying `len` bytes; `mask` is
/// written after the length when given (client frames).
pub(crate) fn put_header(out: &mut Vec<u8>, opcode: u8, len: usize, mask: Option<[u8; 4]>) {
    out.push(0x80 | opcode);
    let bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(bit | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(bit | 126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
}

/// Appends a masked client frame carrying `payload`.
pub(crate) fn put_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    put_header(out, opcode, payload.len(), Some(mask));
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// The HTTP request that asks `host` to upgrade `path` to a WebSocket.
pub(crate) fn upgrade_request(host: &str, path: &str, key: &str, protocol: Option<&str>) -> String {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(protocol) = protocol {
        let _ = write!(request, "Sec-WebSocket-Protocol: {protocol}\r\n");
    }
    request.push_str("\r\n");
    request
}

/// How an upgrade response ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Upgraded {
    /// Not all of the response has arrived.
    Partial,
    /// `101` with the right accept key; the response used this many bytes.
    Done(usize),
    /// Anything else, with the status line or the reason.
    Refused(String),
}

/// Reads the server's answer to [`upgrade_request`] with key `key`.
pub(crate) fn upgrade_response(buf: &[u8], key: &str) -> Upgraded {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let used = match response.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Upgraded::Partial,
        Err(e) => return Upgraded::Refused(format!("malformed HTTP response: {e}")),
    };
    if response.code != Some(101) {
        return Upgraded::Refused(format!(
            "HTTP {} {}",
            response.code.unwrap_or(0),
            response.reason.unwrap_or("")
        ));
    }
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let accept = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Accept"));
    match accept {
        Some(h) if h.value == expected.as_bytes() => Upgraded::Done(used),
        _ => Upgraded::Refused("wrong Sec-WebSocket-Accept".into()),
    }
}

/// What the ceiling server needs of an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// The path (with its query), which names the room.
    pub(crate) path: String,
    /// The `101` response to send.
    pub(crate) response: Vec<u8>,
}

/// Reads an upgrade request (for the ceiling server): `Ok(None)` while incomplete.
///
/// # Errors
///
/// A reason when the request is malformed or not an upgrade.
pub(crate) fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let used = match request.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed HTTP request: {e}")),
    };
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let key = header("Sec-WebSocket-Key").ok_or("no Sec-WebSocket-Key")?;
    let native = header("Sec-WebSocket-Protocol").is_some_and(|v| {
        v.split(|&b| b == b',')
            .any(|p| p.trim_ascii() == b"deltasync.v1")
    });
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        tungstenite::handshake::derive_accept_key(key)
    );
    if native {
        response.push_str("Sec-WebSocket-Protocol: deltasync.v1\r\n");
    }
    response.push_str("\r\n");
    let path = request.path.unwrap_or("/").to_owned();
    Ok(Some((
        Request {
            path,
            response: response.into_bytes(),
        },
        used,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_round_trip_at_every_length_encoding() {
        for len in [0, 5, 125, 126, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            put_client_frame(&mut out, TEXT, &payload, [1, 2, 3, 4]);
            for cut in [0, 1, out.len() / 2, out.len() - 1] {
                if cut < out.len() {
                    assert_eq!(parse(&out[..cut], 1 << 20), Ok(None), "len {len} cut {cut}");
                }
            }
            let frame = parse(&out, 1 << 20).unwrap().unwrap();
            assert_eq!(
                (frame.fin, frame.opcode, frame.len()),
                (true, TEXT, out.len())
            );
            assert_eq!(frame.mask, Some([1, 2, 3, 4]));
            let body = &mut out[frame.payload_at..frame.len()];
            apply_mask(body, [1, 2, 3, 4]);
            assert_eq!(body, &payload[..]);
        }
    }

    #[test]
    fn server_frames_are_unmasked_and_sizes_are_bounded() {
        let mut out = Vec::new();
        put_header(&mut out, TEXT, 300, None);
        out.extend_from_slice(&[b'x'; 300]);
        let frame = parse(&out, 1000).unwrap().unwrap();
        assert_eq!(
            (frame.payload_at, frame.payload_len, frame.mask),
            (4, 300, None)
        );
        assert_eq!(parse(&out, 299), Err(TooLarge(300)));
    }

    #[test]
    fn the_upgrade_is_checked_both_ways() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let request = upgrade_request("h:1", "/rooms/a?x=1", key, Some("deltasync.v1"));
        let (parsed, used) = parse_request(request.as_bytes()).unwrap().unwrap();
        assert_eq!(
            (parsed.path.as_str(), used),
            ("/rooms/a?x=1", request.len())
        );
        let response = String::from_utf8(parsed.response.clone()).unwrap();
        assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(response.contains("Sec-WebSocket-Protocol: deltasync.v1\r\n"));
        let mut answer = parsed.response.clone();
        answer.extend_from_slice(b"\x81\x00");
        assert_eq!(
            upgrade_response(&answer, key),
            Upgraded::Done(parsed.response.len())
        );
        assert_eq!(upgrade_response(&answer[..10], key), Upgraded::Partial);
        assert_eq!(
            upgrade_response(&answer, "another key"),
            Upgraded::Refused("wrong Sec-WebSocket-Accept".into())
        );
        let refused = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            upgrade_response(refused, key),
            Upgraded::Refused("HTTP 503 Service Unavailable".into())
        );
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n"), Ok(None));
        assert!(parse_request(b"GET / HTTP/1.1\r\n\r\n").is_err());
    }
}
