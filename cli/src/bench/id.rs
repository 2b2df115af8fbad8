//! The `clientReqId`s of the generator's updates: `b<run>.<writer>.<seq>.<at>`.
//!
//! `run` is a random number (hex) fixed for one run, so that a server that remembers the
//! ids of an earlier run (deduplication) never takes ours for resends of those; `writer`
//! and `seq` name the update; `at` is its scheduled send time, in microseconds since the
//! start of the load. Any receiving client reads the latency of an operation off its id,
//! against the time the update was *scheduled* (not when it was sent), without a shared
//! table.

use std::fmt::Write as _;

use super::scan::leading_digits;

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
        let (run, rest) = hex(rest)?;
        let (writer, rest) = decimal(rest.strip_prefix(b".")?)?;
        let (seq, rest) = decimal(rest.strip_prefix(b".")?)?;
        let (at_us, rest) = decimal(rest.strip_prefix(b".")?)?;
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

/// The decimal number at the start of `text` and what follows it; `None` when there is
/// no digit or it overflows.
fn decimal(text: &[u8]) -> Option<(u64, &[u8])> {
    let (n, len) = leading_digits(text);
    let n = if len < 20 {
        n
    } else {
        checked(&text[..len], 10)?
    };
    (len > 0).then(|| (n, &text[len..]))
}

/// Each byte's value as a hexadecimal digit, 16 for any other byte.
static HEX: [u8; 256] = {
    let mut values = [16; 256];
    let mut i = 0;
    while i < 10 {
        values[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        values[b'a' as usize + i] = 10 + i as u8;
        values[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    values
};

/// The hexadecimal number at the start of `text` and what follows it; `None` when there
/// is no digit or it overflows.
fn hex(text: &[u8]) -> Option<(u64, &[u8])> {
    let (mut n, mut len) = (0u64, 0);
    while let Some(&value) = text.get(len).map(|&b| &HEX[usize::from(b)]) {
        if value == 16 {
            break;
        }
        // Loses digits only past 16, which are then read again with checks.
        n = n << 4 | u64::from(value);
        len += 1;
    }
    if len > 16 {
        n = checked(&text[..len], 16)?;
    }
    (len > 0).then(|| (n, &text[len..]))
}

/// The value of `digits` in `radix`, `None` when it overflows.
fn checked(digits: &[u8], radix: u8) -> Option<u64> {
    digits.iter().try_fold(0u64, |n, &b| {
        n.checked_mul(u64::from(radix))?
            .checked_add(u64::from(digit(b, radix)?))
    })
}

/// The value of one digit in `radix` (10 or 16).
fn digit(b: u8, radix: u8) -> Option<u8> {
    let value = HEX[usize::from(b)];
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
        assert_eq!(BenchId::parse(b"bDEADBEEF.3.17.2000123"), Some(id));
        let padded = BenchId::parse(b"b000000000000000000ff.1.0002.3").map(|id| (id.run, id.seq));
        assert_eq!(padded, Some((0xff, 2)));
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
            b"bg.1.2.3",
        ] {
            assert_eq!(BenchId::parse(other), None);
        }
    }
}
