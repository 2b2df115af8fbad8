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
    /// read and compared by the caller). One pass over the bytes: every client reads
    /// every operation's id, a million a second at the default load.
    pub(crate) fn parse(raw: &[u8]) -> Option<Self> {
        let rest = raw.strip_prefix(b"b")?;
        let (run, rest) = number(rest, 16)?;
        let (writer, rest) = number(rest.strip_prefix(b".")?, 10)?;
        let (seq, rest) = number(rest.strip_prefix(b".")?, 10)?;
        let (at_us, rest) = number(rest.strip_prefix(b".")?, 10)?;
        if !rest.is_empty() {
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

/// The number at the start of `text` in `radix` (10 or 16) and what follows it; `None`
/// when there is no digit or it overflows.
fn number(text: &[u8], radix: u8) -> Option<(u64, &[u8])> {
    let (mut n, mut len) = (0u64, 0);
    while let Some(digit) = text.get(len).and_then(|&b| digit(b, radix)) {
        // Wraps only past 15 digits, which are then read again with checks.
        n = n
            .wrapping_mul(u64::from(radix))
            .wrapping_add(u64::from(digit));
        len += 1;
    }
    if len > 15 {
        n = text[..len].iter().try_fold(0u64, |n, &b| {
            n.checked_mul(u64::from(radix))?
                .checked_add(u64::from(digit(b, radix)?))
        })?;
    }
    (len > 0).then(|| (n, &text[len..]))
}

/// The value of one digit in `radix` (10 or 16).
fn digit(b: u8, radix: u8) -> Option<u8> {
    let value = match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => return None,
    };
    (value < radix).then_some(value)
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
        let longest = BenchId::parse(b"bffffffff.4294967295.18446744073709551615.0");
        assert_eq!(
            longest,
            Some(BenchId {
                run: u32::MAX,
                writer: u32::MAX,
                seq: u64::MAX,
                at_us: 0
            })
        );
        for other in [
            &b"req-1"[..],
            b"b1.2.3",
            b"b1.2.3.4.5",
            b"bx.1.2.3",
            b"b1.1.2.-3",
            b"b100000000.1.2.3",
            b"b1.2a.3.4",
            b"b1.2.3.99999999999999999999",
            b"b1..3.4",
            b"b1.2.3.18446744073709551616",
            b"b10000000000000000.1.2.3",
        ] {
            assert_eq!(BenchId::parse(other), None);
        }
    }
}
