//! The format of a stored snapshot: the model state at one revision and the dedup window
//! at that revision, checksummed as a whole. A snapshot file is written to a temporary
//! name, fsynced and renamed into place, so it is either whole or absent; a checksum
//! mismatch therefore means real corruption and is refused, never skipped.
//!
//! ```text
//! snapshot = "DSNAP001" rev:u64le count:u32le entry*count state_len:u64le state crc:u32le
//! entry    = actor_len:u16le actor req_len:u16le client_req_id rev:u64le
//! ```

use bytes::Bytes;

use super::record::TooLong;

const MAGIC: &[u8; 8] = b"DSNAP001";

/// One remembered `(actor, clientReqId)` and the revision it was committed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupEntry {
    /// The participant.
    pub actor: Box<str>,
    /// Its request id.
    pub client_req_id: Box<str>,
    /// The revision it was committed at.
    pub rev: u64,
}

/// A room's state at one revision, as storage keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// The revision the state is at.
    pub rev: u64,
    /// The model's state as JSON (the `SYNC.SNAPSHOT` fields).
    pub state: Bytes,
    /// The dedup window at `rev`, oldest first.
    pub dedup: Vec<DedupEntry>,
}

/// Encodes `snapshot` with its checksum.
///
/// # Errors
///
/// [`TooLong`] if an actor or request id exceeds 65,535 bytes.
pub(crate) fn encode(snapshot: &StoredSnapshot) -> Result<Vec<u8>, TooLong> {
    let mut out = Vec::with_capacity(snapshot.state.len() + 64 * snapshot.dedup.len() + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&snapshot.rev.to_le_bytes());
    let count = u32::try_from(snapshot.dedup.len()).map_err(|_| TooLong(snapshot.dedup.len()))?;
    out.extend_from_slice(&count.to_le_bytes());
    for entry in &snapshot.dedup {
        for text in [&entry.actor, &entry.client_req_id] {
            let len = u16::try_from(text.len()).map_err(|_| TooLong(text.len()))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(&entry.rev.to_le_bytes());
    }
    out.extend_from_slice(&(snapshot.state.len() as u64).to_le_bytes());
    out.extend_from_slice(&snapshot.state);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Decodes a snapshot file; `None` if its checksum or layout is wrong.
pub(crate) fn decode(data: &[u8]) -> Option<StoredSnapshot> {
    let (body, crc) = data.split_at_checked(data.len().checked_sub(4)?)?;
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut reader = Reader(body.strip_prefix(MAGIC)?);
    let rev = reader.u64()?;
    let count = reader.u32()?;
    let mut dedup = Vec::with_capacity((count as usize).min(1 << 20));
    for _ in 0..count {
        let actor = reader.text()?;
        let client_req_id = reader.text()?;
        let rev = reader.u64()?;
        dedup.push(DedupEntry {
            actor,
            client_req_id,
            rev,
        });
    }
    let len = usize::try_from(reader.u64()?).ok()?;
    let state = Bytes::copy_from_slice(reader.take(len)?);
    reader
        .0
        .is_empty()
        .then_some(StoredSnapshot { rev, state, dedup })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn text(&mut self) -> Option<Box<str>> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
        std::str::from_utf8(self.take(usize::from(len))?)
            .ok()
            .map(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_and_any_flipped_byte_is_refused() {
        let snapshot = StoredSnapshot {
            rev: 42,
            state: Bytes::from_static(br#"{"participants":{}}"#),
            dedup: vec![DedupEntry {
                actor: "u1".into(),
                client_req_id: "r9".into(),
                rev: 40,
            }],
        };
        let data = encode(&snapshot).unwrap();
        assert_eq!(decode(&data), Some(snapshot));
        for i in 0..data.len() {
            let mut bad = data.clone();
            bad[i] ^= 0x10;
            assert_eq!(decode(&bad), None, "flipped byte {i}");
        }
        assert_eq!(decode(&data[..data.len() - 1]), None);
    }
}
