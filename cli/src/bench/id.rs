//! The `clientReqId`s of the generator's updates: `b<run>.<writer>.<seq>.<at>`.
//!
//! `run` is a random number (hex) fixed for one run, so that a server that remembers the
//! ids of an earlier run (deduplication) never takes ours for resends of those; `writer`
//! and `seq` name the update; `at` is its scheduled send time, in microseconds since the
//! start of the load. Any receiving client reads the latency of an operation off its id,
//! against the time the update was *scheduled* (not when it was sent), without a shared
//! table.

use std::fmt::Write as _;

/// The parts of one of our ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BenchId {
    pub(crate) run: u32,
    pub(crate) writer: u32,
    pub(crate) seq: u64,
    /// Scheduled send time, µs since the start of the load.
    pub(crate) at_us: u64,
}

impl BenchId {
    /// Appends the id's text to `out`.
    pub(crate) fn write(&self, out: &mut String) {
        let _ = write!(
            out,
            "b{:x}.{}.{}.{}",
            self.run, self.writer, self.seq, self.at_us
        );
    }

    /// Reads an id; `None` for any other text (ids of other clients, other runs' are
    /// read and compared by the caller).
    pub(crate) fn parse(raw: &[u8]) -> Option<Self> {
        let rest = raw.strip_prefix(b"b")?;
        let mut parts = rest.split(|&b| b == b'.');
        let run = parse_num(parts.next()?, 16)?;
        let writer = parse_num(parts.next()?, 10)?;
        let seq = parse_num(parts.next()?, 10)?;
        let at_us = parse_num(parts.next()?, 10)?;
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            run: u32::try_from(run).ok()?,
            writer: u32::try_from(writer).ok()?,
            seq,
            at_us,
        })
    }
}

fn parse_num(digits: &[u8], radix: u32) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in digits {
        let d = u64::from(char::from(b).to_digit(radix)?);
        n = n.checked_mul(u64::from(radix))?.checked_add(d)?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_others_are_not_ours() {
        let id = BenchId {
            run: 0xdead_beef,
            writer: 3,
            seq: 17,
            at_us: 2_000_123,
        };
        let mut text = String::new();
        id.write(&mut text);
        assert_eq!(text, "bdeadbeef.3.17.2000123");
        assert_eq!(BenchId::parse(text.as_bytes()), Some(id));
        for other in [
            &b"req-1"[..],
            b"b1.2.3",
            b"b1.2.3.4.5",
            b"bx.1.2.3",
            b"b1.1.2.-3",
            b"b100000000.1.2.3",
        ] {
            assert_eq!(BenchId::parse(other), None);
        }
    }
}
