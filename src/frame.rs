//! The WebSocket frame codec (RFC 6455 §5.2): headers written and read, masking.
//!
//! One codec for every place that handles frames by hand: the server's outbox (headers of
//! the shared text frames it writes), the load generator and the soak tool (thousands of
//! non-blocking client sockets that may write half a frame), the fuzz targets and the
//! tests. tungstenite stays the reader of what clients send to the server; this module is
//! for the frames we write ourselves and for tools that read a server's.
//!
//! A frame is found in place ([`parse`]): the caller keeps its read buffer and gets the
//! offsets of the payload, so nothing is copied to find one.
//!
//! ```
//! use deltasync::frame::{self, TEXT};
//!
//! let mut wire = Vec::new();
//! frame::put_frame(&mut wire, TEXT, b"hello", Some([1, 2, 3, 4]));
//! let found = frame::parse(&wire, 1 << 20).unwrap().unwrap();
//! assert_eq!((found.opcode, found.payload_len, found.len()), (TEXT, 5, wire.len()));
//! let mut payload = found.payload(&wire).to_vec();
//! frame::apply_mask(&mut payload, found.mask.unwrap());
//! assert_eq!(payload, b"hello");
//! ```

/// The opcode of a continuation frame.
pub const CONTINUATION: u8 = 0x0;
/// The opcode of a text frame.
pub const TEXT: u8 = 0x1;
/// The opcode of a binary frame.
pub const BINARY: u8 = 0x2;
/// The opcode of a close frame.
pub const CLOSE: u8 = 0x8;
/// The opcode of a ping frame.
pub const PING: u8 = 0x9;
/// The opcode of a pong frame.
pub const PONG: u8 = 0xA;

/// The longest header: two bytes, an eight-byte length and a four-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The longest payload a control frame (close, ping, pong) may carry.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// An encoded frame header, ready to be written before its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl Header {
    /// The header of a final frame of `opcode` carrying `len` bytes, masked with `mask`
    /// when given (client frames), the length in its shortest form.
    pub fn new(opcode: u8, len: usize, mask: Option<[u8; 4]>) -> Self {
        Self::with_fin(true, opcode, len, mask)
    }

    /// As [`Header::new`], with the FIN bit as given (`false`: a fragment to be continued).
    pub fn with_fin(fin: bool, opcode: u8, len: usize, mask: Option<[u8; 4]>) -> Self {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        bytes[0] = if fin { 0x80 } else { 0 } | (opcode & 0x0f);
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        let mut at = if len < 126 {
            // Below 126 the length is the byte itself.
            bytes[1] = mask_bit | len as u8;
            2
        } else if let Ok(short) = u16::try_from(len) {
            bytes[1] = mask_bit | 126;
            bytes[2..4].copy_from_slice(&short.to_be_bytes());
            4
        } else {
            bytes[1] = mask_bit | 127;
            bytes[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        if let Some(mask) = mask {
            bytes[at..at + 4].copy_from_slice(&mask);
            at += 4;
        }
        Self {
            bytes,
            len: at as u8,
        }
    }

    /// The header's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Appends a final frame of `opcode` carrying `payload`, masked with `mask` when given
/// (a client frame) or as it is (a server frame).
pub fn put_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    put_fragment(out, true, opcode, payload, mask);
}

/// As [`put_frame`], with the FIN bit as given.
pub fn put_fragment(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    out.extend_from_slice(Header::with_fin(fin, opcode, payload.len(), mask).as_bytes());
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask);
    }
}

/// A final frame of `opcode` carrying `payload`, as a new buffer.
pub fn encode(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_HEADER_LEN + payload.len());
    put_frame(&mut out, opcode, payload, mask);
    out
}

/// XORs `payload` with `mask`; masking and unmasking are the same operation.
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// One whole frame found at the start of a buffer: where its payload is, not a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The FIN bit: the last frame of a message.
    pub fin: bool,
    /// The three reserved bits (RSV1 to RSV3), in the low bits; 0 without extensions.
    pub rsv: u8,
    /// The opcode.
    pub opcode: u8,
    /// Where the payload starts: the header's length.
    pub payload_at: usize,
    /// The payload's length.
    pub payload_len: usize,
    /// The masking key, when the frame is masked (client frames).
    pub mask: Option<[u8; 4]>,
}

impl Frame {
    /// Header and payload together: where the next frame starts.
    pub fn len(&self) -> usize {
        self.payload_at + self.payload_len
    }

    /// Whether the frame carries no payload.
    pub fn is_empty(&self) -> bool {
        self.payload_len == 0
    }

    /// The payload (still masked if the frame is) in `buf`, the buffer it was found in.
    ///
    /// # Panics
    ///
    /// If `buf` is shorter than the frame: pass the buffer [`parse`] read it from.
    pub fn payload<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.payload_at..self.len()]
    }

    /// Whether this is a close, ping or pong frame.
    pub fn is_control(&self) -> bool {
        self.opcode >= CLOSE
    }

    /// Checks what a server may send without extensions: a final frame with no reserved
    /// bits, unmasked, its length in the shortest form, a control frame of at most 125
    /// bytes, a known opcode.
    ///
    /// # Errors
    ///
    /// The first rule the frame breaks.
    pub fn check_from_server(&self) -> Result<(), FrameError> {
        if !self.fin || self.rsv != 0 {
            return Err(FrameError::Fragmented);
        }
        if self.mask.is_some() {
            return Err(FrameError::MaskedServerFrame);
        }
        let length_bytes = self.payload_at - 2;
        let shortest = match self.payload_len {
            0..=125 => 0,
            126..=0xffff => 2,
            _ => 8,
        };
        if length_bytes != shortest {
            return Err(FrameError::NotShortestLength);
        }
        if self.is_control() && self.payload_len > MAX_CONTROL_PAYLOAD {
            return Err(FrameError::ControlTooLong(self.payload_len));
        }
        match self.opcode {
            CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG => Ok(()),
            other => Err(FrameError::UnknownOpcode(other)),
        }
    }
}

/// A frame that cannot be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The payload is longer than the reader accepts.
    #[error("a frame of {0} bytes, more than accepted")]
    TooLarge(u64),
    /// A fragment, or reserved bits set without an extension that defines them.
    #[error("a fragmented frame or reserved bits")]
    Fragmented,
    /// A server frame with a mask (RFC 6455 §5.1: servers must not mask).
    #[error("a masked server frame")]
    MaskedServerFrame,
    /// A length not written in its shortest form.
    #[error("a length not in its shortest form")]
    NotShortestLength,
    /// A control frame longer than 125 bytes.
    #[error("a control frame of {0} bytes")]
    ControlTooLong(usize),
    /// A close frame whose payload is one byte: too short for a code.
    #[error("a close frame with a 1-byte payload")]
    OneByteClose,
    /// An opcode RFC 6455 reserves.
    #[error("a frame of reserved opcode {0:#x}")]
    UnknownOpcode(u8),
}

/// Finds the frame at the start of `buf`: `Ok(None)` while it is not all there.
///
/// # Errors
///
/// [`FrameError::TooLarge`] when the payload is longer than `max_payload`; nothing else
/// (what a frame may contain is for [`Frame::check_from_server`] or the caller to judge).
pub fn parse(buf: &[u8], max_payload: usize) -> Result<Option<Frame>, FrameError> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    let Some((len, mut at)) = declared_len(buf) else {
        return Ok(None);
    };
    let payload_len = usize::try_from(len)
        .ok()
        .filter(|&n| n <= max_payload)
        .ok_or(FrameError::TooLarge(len))?;
    let mask = if second & 0x80 != 0 {
        let Some(key) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([key[0], key[1], key[2], key[3]])
    } else {
        None
    };
    if buf.len() - at < payload_len {
        return Ok(None);
    }
    Ok(Some(Frame {
        fin: first & 0x80 != 0,
        rsv: (first >> 4) & 0x07,
        opcode: first & 0x0f,
        payload_at: at,
        payload_len,
        mask,
    }))
}

/// The length of the header and the declared length of the payload of the frame at the
/// start of `buf`, once its header (mask key included) is all there: how much a reader
/// holding the frame's first bytes will need in all.
pub fn lengths(buf: &[u8]) -> Option<(usize, u64)> {
    let (len, at) = declared_len(buf)?;
    let masked = buf.get(1).is_some_and(|second| second & 0x80 != 0);
    let header = if masked { at + 4 } else { at };
    (buf.len() >= header).then_some((header, len))
}

/// The payload length a frame's header declares, and where the header goes on after it
/// (at the mask key, if any); `None` while those bytes are not all there.
fn declared_len(buf: &[u8]) -> Option<(u64, usize)> {
    let [_, second, ..] = *buf else {
        return None;
    };
    match second & 0x7f {
        126 => {
            let ext = buf.get(2..4)?;
            Some((u64::from(u16::from_be_bytes([ext[0], ext[1]])), 4))
        }
        127 => {
            let mut be = [0u8; 8];
            be.copy_from_slice(buf.get(2..10)?);
            Some((u64::from_be_bytes(be), 10))
        }
        n => Some((u64::from(n), 2)),
    }
}

/// The code of a close frame's payload (1005, "no status", when it is empty).
///
/// # Errors
///
/// A one-byte payload, which RFC 6455 §5.5.1 does not allow.
pub fn close_code(payload: &[u8]) -> Result<u16, FrameError> {
    match payload {
        [] => Ok(1005),
        [_] => Err(FrameError::OneByteClose),
        [high, low, ..] => Ok(u16::from_be_bytes([*high, *low])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_rfc_6455_length_encoding() {
        assert_eq!(Header::new(TEXT, 0, None).as_bytes(), [0x81, 0]);
        assert_eq!(Header::new(TEXT, 125, None).as_bytes(), [0x81, 125]);
        assert_eq!(Header::new(TEXT, 126, None).as_bytes(), [0x81, 126, 0, 126]);
        assert_eq!(
            Header::new(TEXT, 65535, None).as_bytes(),
            [0x81, 126, 0xff, 0xff]
        );
        assert_eq!(
            Header::new(TEXT, 65536, None).as_bytes(),
            [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
        assert_eq!(
            Header::new(CLOSE, 2, Some([9, 8, 7, 6])).as_bytes(),
            [0x88, 0x82, 9, 8, 7, 6]
        );
        assert_eq!(Header::with_fin(false, TEXT, 1, None).as_bytes(), [0x01, 1]);
    }

    #[test]
    fn frames_round_trip_at_every_length_encoding_masked_or_not() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for mask in [None, Some([0x37, 0xfa, 0x21, 0x3d])] {
                let wire = encode(BINARY, &payload, mask);
                let found = parse(&wire, 1 << 20).unwrap().unwrap();
                assert_eq!(found.len(), wire.len(), "len {len}");
                assert_eq!((found.fin, found.rsv, found.opcode), (true, 0, BINARY));
                assert_eq!(found.mask, mask);
                let mut got = found.payload(&wire).to_vec();
                if let Some(mask) = found.mask {
                    apply_mask(&mut got, mask);
                }
                assert_eq!(got, payload, "len {len}");
                // The whole length is known as soon as the header is there.
                assert_eq!(
                    lengths(&wire[..found.payload_at]),
                    Some((found.payload_at, len as u64)),
                    "len {len}"
                );
                assert_eq!(lengths(&wire[..found.payload_at - 1]), None, "len {len}");
                // Every proper prefix is incomplete, never an error or a wrong frame.
                for cut in [0, 1, found.payload_at - 1, wire.len() - 1] {
                    if cut < wire.len() {
                        assert_eq!(parse(&wire[..cut], 1 << 20), Ok(None), "cut {cut}");
                    }
                }
                assert_eq!(
                    found.check_from_server().is_ok(),
                    mask.is_none(),
                    "len {len}"
                );
            }
        }
    }

    #[test]
    fn sizes_are_bounded_before_the_payload_arrives() {
        let wire = Header::new(TEXT, 1 << 30, None);
        assert_eq!(
            parse(wire.as_bytes(), 1 << 20),
            Err(FrameError::TooLarge(1 << 30))
        );
        let huge = [0x81, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            parse(&huge, usize::MAX),
            if usize::BITS == 64 {
                Ok(None)
            } else {
                Err(FrameError::TooLarge(u64::MAX))
            }
        );
    }

    #[test]
    fn what_a_server_must_not_send_is_named() {
        let check = |wire: &[u8]| parse(wire, 1 << 20).unwrap().unwrap().check_from_server();
        assert_eq!(check(&[0x01, 0]), Err(FrameError::Fragmented));
        assert_eq!(check(&[0xc1, 0]), Err(FrameError::Fragmented));
        assert_eq!(
            check(&encode(TEXT, b"x", Some([1, 1, 1, 1]))),
            Err(FrameError::MaskedServerFrame)
        );
        assert_eq!(
            check(&[0x81, 126, 0, 5, 1, 2, 3, 4, 5]),
            Err(FrameError::NotShortestLength)
        );
        assert_eq!(
            check(&encode(PING, &[0; 126], None)),
            Err(FrameError::ControlTooLong(126))
        );
        assert_eq!(check(&[0x83, 0]), Err(FrameError::UnknownOpcode(3)));
        assert_eq!(check(&encode(PONG, b"p", None)), Ok(()));
    }

    #[test]
    fn close_codes_are_read_from_the_payload() {
        assert_eq!(close_code(&[]), Ok(1005));
        assert_eq!(close_code(&[0x03, 0xe9, b'b', b'y']), Ok(1001));
        assert_eq!(close_code(&[3]), Err(FrameError::OneByteClose));
    }
}
