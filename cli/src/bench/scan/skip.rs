//! Skipping an object or array the scanner does not look into, 64 bytes at a time.
//!
//! [`container_end`] finds where the container that starts at a given `{` or `[` ends,
//! with exactly the result of the byte walk it replaces ([`walk`], also its fallback):
//! the same end, or the same error at the same offset ("unterminated object or array",
//! "unterminated string", "control character in a string"). It is the load generator's
//! hottest loop in a join storm: a joiner's snapshot holds every participant before it
//! (up to about 1 MB), and the byte walk over them, stopping at every quote, was 37.5% of
//! the generator's samples.
//!
//! ## A block
//!
//! Eight `u64` words are classified with exact per-byte equality (word arithmetic, no
//! `unsafe`, no `std::arch`), and each class's high bits gathered into a 64-bit mask by
//! a multiplication, bit `i` for byte `i`: quotes, and brackets (`{`, `[`, `}`, `]`).
//! The prefix XOR of the quotes, carried from the block before, marks the bytes inside
//! strings (an opening quote and what follows it, up to and without the closing
//! quote). The brackets outside strings are then taken in order, each moving the depth
//! by one, until it reaches zero: a block holds one or two of them in a snapshot or a
//! payload, so this costs less than two popcounts (baseline x86-64 has no `popcnt`
//! instruction, and `count_ones` is then a dozen instructions).
//!
//! ## The fallback
//!
//! Marking strings by quotes alone is exact as long as no string holds a backslash (an
//! escaped quote does not end it) and no control character (an error, to be reported
//! where it is). A block where one of those sits inside a string is handed, from its
//! first byte, to the byte walk, which knows escapes; the walk stops at the first byte
//! past the block that is outside a string, and the blocks go on from there. The load
//! generator's ids and names never need escaping, so this is rare, and the mask of
//! backslashes and control characters is only gathered when the block has one at all.
//! The last block of the bytes is copied into one padded with zero bytes: a string
//! still open there meets them as control characters and goes to the walk, which
//! reports it.
//!
//! ## What it costs
//!
//! Under callgrind (`docs/benchmarks.md`, "A faster container skip"), in a join storm,
//! the skips take 0.09x the byte walk's mispredicted branches and 0.93x its
//! instructions: reading a snapshot 0.76x, an operation 1.17x (its payload, a
//! participant of 100 to 150 bytes, is classified as whole blocks, however early it
//! ends in the last one).

use super::{Result, fail, splat, string_end};

/// Bytes per block: eight words.
const BLOCK: usize = 64;

/// The bytes the byte walk stops at: quotes and brackets.
static SKIP_STOPS: [bool; 256] = {
    let mut stops = [false; 256];
    stops[b'"' as usize] = true;
    stops[b'{' as usize] = true;
    stops[b'}' as usize] = true;
    stops[b'[' as usize] = true;
    stops[b']' as usize] = true;
    stops
};

/// Where a skip stands between two bytes: the next byte to look at, how many brackets
/// are open, whether that byte is inside a string (never right after a backslash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    at: usize,
    depth: usize,
    in_string: bool,
}

/// How far the byte walk went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// The container ended; the index just past its closing bracket.
    Closed(usize),
    /// The walk reached its limit outside a string; the skip goes on from here.
    Paused(State),
}

/// What one block did to the skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The container ends in this block; the offset just past its closing bracket.
    Closed(usize),
    /// The container is still open after this block.
    Open { depth: usize, in_string: bool },
    /// A backslash or a control character is inside a string: the byte walk takes it.
    Irregular,
}

/// The index just past the bracket that closes the object or array starting at
/// `bytes[start]` (which must be `{` or `[`): strings are honoured (a bracket inside one
/// does not count), the rest of the inside is not validated.
///
/// # Errors
///
/// "unterminated object or array" or "unterminated string" at `bytes.len()`, "control
/// character in a string" at that character: the byte walk's errors, at its offsets.
pub(super) fn container_end(bytes: &[u8], start: usize) -> Result<usize> {
    let state = State {
        at: start,
        depth: 0,
        in_string: false,
    };
    blocks(bytes, state)
}

/// [`container_end`] by the byte walk alone, the skip as it was before blocks: cheaper
/// for a container of a hundred bytes or so (an operation's payload), which blocks
/// classify whole. It is also the reference the blocks are tested against.
///
/// # Errors
///
/// As [`container_end`].
pub(super) fn small_container_end(bytes: &[u8], start: usize) -> Result<usize> {
    let mut at = start;
    let mut depth = 0usize;
    loop {
        while at < bytes.len() && !SKIP_STOPS[usize::from(bytes[at])] {
            at += 1;
        }
        at = past_stop(bytes, at, &mut depth)?;
        if depth == 0 {
            return Ok(at);
        }
    }
}

/// Moves past the stop at `at` (a quote, a bracket, or the end of the bytes), a whole
/// string for a quote, counting brackets in `depth`; the index after it. Both byte walks
/// take their stops through it.
#[inline(always)]
fn past_stop(bytes: &[u8], at: usize, depth: &mut usize) -> Result<usize> {
    match bytes.get(at) {
        None => return fail(at, "unterminated object or array"),
        Some(b'"') => return Ok(string_end(bytes, at + 1)? + 1),
        Some(b'{' | b'[') => *depth += 1,
        Some(_) => *depth -= 1,
    }
    Ok(at + 1)
}

/// The skip from `state` on, a block at a time (the last one padded with zero bytes).
fn blocks(bytes: &[u8], mut state: State) -> Result<usize> {
    let mut padded = [0; BLOCK];
    loop {
        let rest = bytes.get(state.at..).unwrap_or_default();
        let block = match rest.first_chunk::<BLOCK>() {
            Some(block) => block,
            None if rest.is_empty() => break,
            None => {
                padded[..rest.len()].copy_from_slice(rest);
                &padded
            }
        };
        state = match block_step(block, state.depth, state.in_string) {
            Step::Closed(offset) => return Ok(state.at + offset),
            Step::Open { depth, in_string } => State {
                at: bytes.len().min(state.at + BLOCK),
                depth,
                in_string,
            },
            Step::Irregular => match walk(bytes, state, state.at + BLOCK)? {
                Walk::Closed(end) => return Ok(end),
                Walk::Paused(next) => next,
            },
        };
    }
    // The bytes ran out with the container open. A padded block ending inside a string
    // would have had zero bytes (control characters) in it and gone to the walk, so
    // only a full last block can leave a string open here.
    match state.in_string {
        true => fail(bytes.len(), "unterminated string"),
        false => fail(bytes.len(), "unterminated object or array"),
    }
}

/// The eight little-endian words of a block.
fn words_of(block: &[u8; BLOCK]) -> [u64; 8] {
    let mut words = [0; 8];
    for (i, word) in words.iter_mut().enumerate() {
        let mut eight = [0; 8];
        eight.copy_from_slice(&block[8 * i..8 * i + 8]);
        *word = u64::from_le_bytes(eight);
    }
    words
}

/// One block of the skip, at `depth` brackets open, its first byte inside a string or
/// not.
fn block_step(block: &[u8; BLOCK], depth: usize, in_string: bool) -> Step {
    let words = words_of(block);
    let classes = Classes::of(&words);
    let strings = prefix_xor(classes.quotes) ^ 0u64.wrapping_sub(u64::from(in_string));
    if classes.any_special && Classes::specials(&words) & strings != 0 {
        return Step::Irregular;
    }
    let mut depth = depth;
    let mut brackets = classes.brackets & !strings;
    while brackets != 0 {
        let at = brackets.trailing_zeros() as usize;
        brackets &= brackets - 1;
        // `{` and `[` have 0x02 set, `}` and `]` do not.
        if block[at] & 0x02 != 0 {
            depth += 1;
        } else {
            depth -= 1;
            if depth == 0 {
                return Step::Closed(at + 1);
            }
        }
    }
    Step::Open {
        depth,
        in_string: strings >> 63 == 1,
    }
}

/// The bytes of one block by class, bit `i` for byte `i`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Classes {
    quotes: u64,
    /// `{`, `[`, `}` and `]`.
    brackets: u64,
    /// Whether a backslash or a control character (below 0x20) is anywhere in the
    /// block: rare, so their mask is only made then ([`Classes::specials`]).
    any_special: bool,
}

impl Classes {
    fn of(words: &[u64; 8]) -> Self {
        let (mut quotes, mut brackets, mut specials) = (0, 0, 0);
        for (i, &word) in words.iter().enumerate() {
            let (low7, ascii) = (word & splat(0x7f), !word & splat(0x80));
            // `{`/`[` and `}`/`]` differ only in 0x20: set it, compare twice.
            let bracket = low7 | splat(0x20);
            let either = equal(bracket, ascii, b'{') | equal(bracket, ascii, b'}');
            quotes |= gather(equal(low7, ascii, b'"')) << (8 * i);
            brackets |= gather(either) << (8 * i);
            specials |= special(low7, ascii);
        }
        Self {
            quotes,
            brackets,
            any_special: specials != 0,
        }
    }

    /// The backslashes and control characters of a block, bit `i` for byte `i`.
    fn specials(words: &[u64; 8]) -> u64 {
        words.iter().enumerate().fold(0, |mask, (i, &word)| {
            let (low7, ascii) = (word & splat(0x7f), !word & splat(0x80));
            mask | gather(special(low7, ascii)) << (8 * i)
        })
    }
}

/// The high bit of each byte of a word that is a backslash or a control character.
const fn special(low7: u64, ascii: u64) -> u64 {
    equal(low7, ascii, b'\\') | ascii & !low7.wrapping_add(splat(0x60))
}

/// The high bit of each byte of a word equal to `byte` (below 0x80), exactly: `low7` is
/// the word's low seven bits of each byte, `ascii` the high bit of each byte whose high
/// bit is clear. A byte's low bits XOR `byte` plus 0x7f sets its high bit unless they
/// were equal, and cannot carry into the next byte (0x7f + 0x7f = 0xfe).
const fn equal(low7: u64, ascii: u64, byte: u8) -> u64 {
    ascii & !(low7 ^ splat(byte)).wrapping_add(splat(0x7f))
}

/// The high bits of the eight bytes of `high` (nothing else set) as one byte, bit `k`
/// for byte `k`: the multiplication moves bit `8k + 7` to bit `56 + k`, and its other
/// products land below bit 56 without colliding (so without carries) or past bit 63.
const fn gather(high: u64) -> u64 {
    high.wrapping_mul(0x0002_0408_1020_4081) >> 56
}

/// Bit `i` is the XOR of bits `0..=i`: set from an opening quote up to, and without,
/// the closing one.
const fn prefix_xor(mut bits: u64) -> u64 {
    bits ^= bits << 1;
    bits ^= bits << 2;
    bits ^= bits << 4;
    bits ^= bits << 8;
    bits ^= bits << 16;
    bits ^= bits << 32;
    bits
}

/// The byte walk from `state`, stopping at quotes and brackets and skipping strings
/// with [`string_end`] (which knows escapes): until the container closes, or until it
/// is at or past `until` outside a string. It is the skip as it was before blocks,
/// made to start and stop between any two blocks.
fn walk(bytes: &[u8], state: State, until: usize) -> Result<Walk> {
    let State {
        mut at, mut depth, ..
    } = state;
    if state.in_string {
        at = string_end(bytes, at)? + 1;
    }
    let limit = until.min(bytes.len());
    loop {
        while at < limit && !SKIP_STOPS[usize::from(bytes[at])] {
            at += 1;
        }
        if at >= until {
            let in_string = false;
            return Ok(Walk::Paused(State {
                at,
                depth,
                in_string,
            }));
        }
        at = past_stop(bytes, at, &mut depth)?;
        if depth == 0 {
            return Ok(Walk::Closed(at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ScanError;
    use super::*;
    use proptest::prelude::*;

    /// The skip as it was before blocks (commit 49deed8's `Cursor::container`), the
    /// reference the blocks must agree with.
    fn reference(bytes: &[u8], start: usize) -> Result<usize> {
        small_container_end(bytes, start)
    }

    /// The skip at `start`, checked against the reference.
    fn skip(bytes: &[u8], start: usize) -> Result<usize> {
        let expected = reference(bytes, start);
        let text = String::from_utf8_lossy(bytes);
        assert_eq!(container_end(bytes, start), expected, "at {start}: {text}");
        expected
    }

    fn refused(at: usize, what: &'static str) -> Result<usize> {
        Err(ScanError { at, what })
    }

    #[test]
    fn gather_moves_each_high_bit_to_its_byte_index() {
        for byte in 0..=255u64 {
            let spread = (0..8)
                .filter(|k| byte >> k & 1 == 1)
                .fold(0, |word, k| word | 0x80 << (8 * k));
            assert_eq!(gather(spread), byte, "{byte:#010b}");
        }
    }

    #[test]
    fn classes_are_exact_in_every_byte() {
        // Every byte value at every position of a word, among bytes of every class
        // (the `below` trick's upper bits would be wrong after a match).
        for value in 0..=255u8 {
            for k in 0..8 {
                let mut text = *br#""\{}[]"a"#;
                text[k] = value;
                let mut words = [splat(b'a'); 8];
                words[3] = u64::from_le_bytes(text);
                let bits = |of: fn(u8) -> bool| {
                    (0..8)
                        .filter(|&i| of(text[i]))
                        .fold(0u64, |mask, i| mask | 1 << (24 + i))
                };
                let specials = bits(|b| b == b'\\' || b < 0x20);
                assert_eq!(Classes::specials(&words), specials, "{value:#04x} at {k}");
                let classes = Classes::of(&words);
                let expected = Classes {
                    quotes: bits(|b| b == b'"'),
                    brackets: bits(|b| b"{}[]".contains(&b)),
                    any_special: specials != 0,
                };
                assert_eq!(classes, expected, "{value:#04x} at {k}");
            }
        }
    }

    #[test]
    fn prefix_xor_marks_the_inside_of_strings() {
        // `a"bc"d"e`: quotes at 1, 4 and 6.
        assert_eq!(prefix_xor(0b101_0010), 0xffff_ffff_ffff_ffc0 | 0b00_1110);
        assert_eq!(prefix_xor(0), 0);
    }

    #[test]
    fn ends_past_the_closing_bracket_in_any_block() {
        for len in [0, 1, 62, 63, 64, 65, 126, 127, 128, 129, 500] {
            let filler = "a".repeat(len);
            let text = format!(r#"x{{"k":"{filler}","l":[1,{{"m":"]}}"}}]}},"tail"#);
            let end = text.len() - ",\"tail".len();
            assert_eq!(skip(text.as_bytes(), 1), Ok(end), "{text}");
        }
    }

    #[test]
    fn escapes_and_control_characters_in_strings_at_block_boundaries() {
        for pad in 0..140 {
            let filler = "a".repeat(pad);
            // An escaped quote, a backslash before the closing quote, and both.
            for inside in [r#"\""#, r#"\\"#, r#"\\\""#, r#"x\"}]"#] {
                let text = format!(r#"{{"{filler}{inside}":{{"a":"}}"}}}},"#);
                assert_eq!(skip(text.as_bytes(), 0), Ok(text.len() - 1), "{text}");
            }
            let text = format!("{{\"{filler}\n\"}}");
            assert_eq!(
                skip(text.as_bytes(), 0),
                refused(pad + 2, "control character in a string")
            );
            // Outside strings a control character is only a byte.
            let text = format!("{{\"{filler}\"\n}}");
            assert_eq!(skip(text.as_bytes(), 0), Ok(text.len()));
        }
    }

    #[test]
    fn an_unterminated_string_or_container_is_reported_at_the_end() {
        for pad in 0..140 {
            let filler = "b".repeat(pad);
            let open = format!(r#"{{"a":["{filler}"#);
            assert_eq!(
                skip(open.as_bytes(), 0),
                refused(open.len(), "unterminated string")
            );
            let escaped = format!(r#"{{"a":"{filler}\"#);
            assert_eq!(
                skip(escaped.as_bytes(), 0),
                refused(escaped.len(), "unterminated string")
            );
            let unclosed = format!(r#"{{"a":["{filler}"]"#);
            assert_eq!(
                skip(unclosed.as_bytes(), 0),
                refused(unclosed.len(), "unterminated object or array")
            );
        }
    }

    /// One piece of a generated text: mostly JSON-like, with the faults the skip must
    /// report as the byte walk does.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => Just("{".to_owned()),
            4 => Just("}".to_owned()),
            2 => Just("[".to_owned()),
            2 => Just("]".to_owned()),
            3 => Just(r#"""#.to_owned()),
            2 => Just(r#"\""#.to_owned()),
            1 => Just(r#"\\"#.to_owned()),
            1 => Just(r#"\\\""#.to_owned()),
            1 => Just("\\".to_owned()),
            1 => Just("\n".to_owned()),
            1 => Just("\u{1}".to_owned()),
            1 => Just("\u{e9}".to_owned()),
            2 => Just(":".to_owned()),
            2 => Just(",".to_owned()),
            6 => "[a-z0-9 ]{1,70}",
        ]
    }

    /// A well-formed value of a few levels: what the skip sees almost always.
    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            "[0-9]{1,16}",
            r#""([a-z. ]|\\"|\\\\){0,40}""#,
            Just("true".to_owned())
        ];
        leaf.prop_recursive(4, 200, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                prop::collection::vec((r#"[a-z{}\[\]"]{0,12}"#, inner), 0..8).prop_map(|fields| {
                    let fields: Vec<_> = fields
                        .iter()
                        .map(|(key, value)| format!("{key:?}:{value}"))
                        .collect();
                    format!("{{{}}}", fields.join(","))
                }),
            ]
        })
    }

    /// `prefix`, then an opening bracket, then `rest`: the skip starts at the bracket.
    fn check(prefix: usize, opening: u8, rest: &[u8]) {
        let mut bytes = vec![b' '; prefix];
        bytes.push(opening);
        bytes.extend_from_slice(rest);
        skip(&bytes, prefix).ok();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn blocks_agree_with_the_byte_walk_on_any_text(
            prefix in 0..70usize,
            opening in prop::sample::select(vec![b'{', b'[']),
            pieces in prop::collection::vec(piece(), 0..60),
        ) {
            check(prefix, opening, pieces.concat().as_bytes());
        }

        #[test]
        fn blocks_agree_with_the_byte_walk_on_json(
            prefix in 0..70usize,
            values in prop::collection::vec(value(), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            // Values in an array, whole and cut short anywhere.
            let text = format!("{}]", values.join(","));
            check(prefix, b'[', text.as_bytes());
            check(prefix, b'[', &text.as_bytes()[..cut.index(text.len())]);
        }
    }
}
