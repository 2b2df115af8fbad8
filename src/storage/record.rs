//! The record format of the disk log: one committed operation per record, length-framed
//! and checksummed, and the scan that reads a segment back, telling a torn tail (a crash
//! mid-write: dropped) from corruption (refused).
//!
//! # Layout
//!
//! ```text
//! record  = len:u32le  len_crc:u32le  payload_crc:u32le  payload[len]
//! payload = rev:u64le  flags:u8  [actor_len:u16le actor]  [req_len:u16le client_req_id]  op
//! ```
//!
//! `len_crc` is the CRC-32C of the four bytes of `len`, `payload_crc` that of the payload;
//! `flags` bit 0 says an actor follows, bit 1 a `clientReqId`. `op` is the operation exactly
//! as the ring holds it (`{"rev":..,"type":..,"payload":..,"clientReqId"?}`), so recovery
//! refills the ring with the very bytes clients were sent.
//!
//! # Torn or corrupt
//!
//! Appends are sequential, so a crash can only leave a *prefix* of the last record (or,
//! on some file systems, zeros where the file was extended). Reading from the start of a
//! segment, the scan stops at the first record that does not check out and decides:
//!
//! - fewer than 12 bytes left, a length that runs past the end of the file, a bad payload
//!   checksum on the record that ends the file, or nothing but zeros from here on: a
//!   **torn tail**, dropped (the caller truncates the file and logs how many bytes);
//! - anything else (a bad header checksum, or a bad payload checksum with more data after
//!   it): **corruption**, refused with the offset of the record, never skipped.
//!
//! The header checksum is what makes the difference reliable: without it a flipped bit in
//! a length field in the middle of a segment would look like a record running past the end,
//! and everything after it would be dropped silently as "torn".

use bytes::Bytes;

/// Bytes before the payload: length, length checksum, payload checksum.
pub(crate) const HEADER: usize = 12;

const HAS_ACTOR: u8 = 1;
const HAS_REQ_ID: u8 = 2;

/// One committed operation as the log stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The revision it was committed at.
    pub rev: u64,
    /// The participant it was committed for, if any.
    pub actor: Option<Box<str>>,
    /// The client's request id, if any (the dedup key, with the actor).
    pub client_req_id: Option<Box<str>>,
    /// The encoded operation, the bytes the ring holds.
    pub op: Bytes,
}

/// A record to append, borrowed from the commit that makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The revision being committed: one more than the log's last.
    pub rev: u64,
    /// The participant it is committed for, if any.
    pub actor: Option<&'a str>,
    /// The client's request id, if any.
    pub client_req_id: Option<&'a str>,
    /// The encoded operation.
    pub op: &'a [u8],
}

/// A field is too long for the record format (an actor or request id over 65,535 bytes,
/// an operation over 4 GiB): the limits of the configuration are far below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a record field is too long to store ({0} bytes)")]
pub struct TooLong(pub usize);

/// Appends the framed `record` to `out`.
///
/// # Errors
///
/// [`TooLong`] if a field exceeds what its length prefix holds; `out` is unchanged.
pub(crate) fn encode(record: &RecordRef<'_>, out: &mut Vec<u8>) -> Result<(), TooLong> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&record.rev.to_le_bytes());
    let flags = u8::from(record.actor.is_some()) * HAS_ACTOR
        + u8::from(record.client_req_id.is_some()) * HAS_REQ_ID;
    out.push(flags);
    for field in [record.actor, record.client_req_id].into_iter().flatten() {
        let Ok(len) = u16::try_from(field.len()) else {
            out.truncate(start);
            return Err(TooLong(field.len()));
        };
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(record.op);
    let Ok(len) = u32::try_from(out.len() - start - HEADER) else {
        let too_long = out.len() - start - HEADER;
        out.truncate(start);
        return Err(TooLong(too_long));
    };
    let len_bytes = len.to_le_bytes();
    let payload_crc = crc32c::crc32c(&out[start + HEADER..]);
    out[start..start + 4].copy_from_slice(&len_bytes);
    out[start + 4..start + 8].copy_from_slice(&crc32c::crc32c(&len_bytes).to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&payload_crc.to_le_bytes());
    Ok(())
}

/// What a scan of a segment found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// The whole records, in order.
    pub(crate) records: Vec<Record>,
    /// The length of the file up to the end of the last whole record.
    pub(crate) valid_len: u64,
    /// Bytes after it that are a torn tail (0 when the file ends cleanly).
    pub(crate) torn: u64,
}

/// A record in the middle of a segment does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt record at offset {offset}: {reason}")]
pub(crate) struct Corrupt {
    /// Where the record starts in the file.
    pub(crate) offset: u64,
    /// What is wrong with it.
    pub(crate) reason: &'static str,
}

/// Reads every record of a segment's bytes; see the [module documentation](self) for
/// what counts as torn and what as corrupt.
///
/// # Errors
///
/// [`Corrupt`] with the offset of the first record that is neither whole nor a torn tail.
pub(crate) fn scan(data: &[u8]) -> Result<Scan, Corrupt> {
    let mut scan = Scan::default();
    let mut pos = 0usize;
    while pos < data.len() {
        match next(data, pos)? {
            Some((record, end)) => {
                scan.records.push(record);
                pos = end;
            }
            None => {
                scan.torn = (data.len() - pos) as u64;
                break;
            }
        }
    }
    scan.valid_len = pos as u64;
    Ok(scan)
}

/// The record at `pos` and where the next one starts, or `None` for a torn tail.
fn next(data: &[u8], pos: usize) -> Result<Option<(Record, usize)>, Corrupt> {
    let rest = &data[pos..];
    let corrupt = |reason| Corrupt {
        offset: pos as u64,
        reason,
    };
    if rest.len() < HEADER || rest.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let len_bytes: [u8; 4] = [rest[0], rest[1], rest[2], rest[3]];
    if crc32c::crc32c(&len_bytes) != le32(&rest[4..8]) {
        return Err(corrupt("bad length checksum"));
    }
    let len = u32::from_le_bytes(len_bytes) as usize;
    let Some(payload) = rest.get(HEADER..HEADER + len) else {
        return Ok(None);
    };
    let end = pos + HEADER + len;
    if crc32c::crc32c(payload) != le32(&rest[8..12]) {
        let after_is_empty = data[end..].iter().all(|&b| b == 0);
        return if after_is_empty {
            Ok(None)
        } else {
            Err(corrupt("bad payload checksum"))
        };
    }
    let record = decode_payload(payload).ok_or_else(|| corrupt("malformed payload"))?;
    Ok(Some((record, end)))
}

fn le32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// The fields of a payload whose checksum matched; `None` if it does not parse.
fn decode_payload(payload: &[u8]) -> Option<Record> {
    let rev = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let flags = *payload.get(8)?;
    let mut rest = &payload[9..];
    let mut field = |present: bool| -> Option<Option<Box<str>>> {
        if !present {
            return Some(None);
        }
        let len = usize::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?));
        let text = std::str::from_utf8(rest.get(2..2 + len)?).ok()?;
        rest = &rest[2 + len..];
        Some(Some(text.into()))
    };
    let actor = field(flags & HAS_ACTOR != 0)?;
    let client_req_id = field(flags & HAS_REQ_ID != 0)?;
    Some(Record {
        rev,
        actor,
        client_req_id,
        op: Bytes::copy_from_slice(rest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(rev: u64, actor: Option<&str>, id: Option<&str>, op: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let record = RecordRef {
            rev,
            actor,
            client_req_id: id,
            op: op.as_bytes(),
        };
        encode(&record, &mut out).unwrap();
        out
    }

    fn three_records() -> (Vec<u8>, usize) {
        let mut data = framed(1, Some("u1"), Some("r1"), r#"{"rev":1}"#);
        data.extend(framed(2, None, None, r#"{"rev":2}"#));
        let last = data.len();
        data.extend(framed(3, Some("u2"), None, r#"{"rev":3,"x":"y"}"#));
        (data, last)
    }

    #[test]
    fn records_round_trip_with_their_fields() {
        let (data, _) = three_records();
        let scan = scan(&data).unwrap();
        assert_eq!((scan.valid_len, scan.torn), (data.len() as u64, 0));
        assert_eq!(
            scan.records[0],
            Record {
                rev: 1,
                actor: Some("u1".into()),
                client_req_id: Some("r1".into()),
                op: Bytes::from_static(br#"{"rev":1}"#),
            }
        );
        assert_eq!(scan.records[1].actor, None);
        assert_eq!(scan.records[2].client_req_id, None);
        assert_eq!(&scan.records[2].op[..], br#"{"rev":3,"x":"y"}"#);
    }

    #[test]
    fn a_torn_last_record_at_every_byte_offset_drops_only_it() {
        let (data, last) = three_records();
        for cut in last..data.len() {
            let scan = scan(&data[..cut]).unwrap();
            assert_eq!(scan.records.len(), 2, "cut at {cut}");
            assert_eq!(scan.valid_len, last as u64, "cut at {cut}");
            assert_eq!(scan.torn, (cut - last) as u64, "cut at {cut}");
        }
    }

    #[test]
    fn a_zero_filled_tail_is_torn_not_corrupt() {
        let (mut data, _) = three_records();
        let whole = data.len();
        data.extend([0u8; 100]);
        let scan = scan(&data).unwrap();
        assert_eq!(
            (scan.records.len(), scan.valid_len, scan.torn),
            (3, whole as u64, 100)
        );
    }

    #[test]
    fn a_bad_last_payload_is_torn_but_a_bad_middle_one_is_corrupt() {
        let (data, last) = three_records();
        let mut tail = data.clone();
        *tail.last_mut().unwrap() ^= 1;
        assert_eq!(scan(&tail).unwrap().records.len(), 2);
        let mut middle = data.clone();
        let second = framed(1, Some("u1"), Some("r1"), r#"{"rev":1}"#).len();
        middle[last - 1] ^= 1;
        assert_eq!(
            scan(&middle).unwrap_err(),
            Corrupt {
                offset: second as u64,
                reason: "bad payload checksum"
            }
        );
    }

    #[test]
    fn a_flipped_length_in_the_middle_is_corrupt_not_torn() {
        let (mut data, last) = three_records();
        data[last] ^= 0x40;
        assert_eq!(
            scan(&data).unwrap_err(),
            Corrupt {
                offset: last as u64,
                reason: "bad length checksum"
            }
        );
    }

    #[test]
    fn an_overlong_field_is_refused_and_leaves_the_buffer_alone() {
        let long = "a".repeat(70_000);
        let mut out = vec![9u8];
        let record = RecordRef {
            rev: 1,
            actor: Some(&long),
            client_req_id: None,
            op: b"{}",
        };
        assert_eq!(encode(&record, &mut out), Err(TooLong(70_000)));
        assert_eq!(out, [9u8]);
    }
}
