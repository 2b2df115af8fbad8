//! Fresh `clientReqId`s: `<actor>-<counter>-<suffix>`.
//!
//! The server remembers `(participant, clientReqId)` pairs to apply a resent update at
//! most once, so an id must never be reused by the same participant, including by a new
//! replica after a restart of the program. The counter makes ids unique within one
//! replica; the suffix, random per replica, makes them unique across replicas. The actor
//! part is only for people reading logs and is cut to 32 bytes, so that an id stays far
//! below the server's 128-byte limit (at most 70 bytes with a 16-digit suffix).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// The longest actor prefix in an id, in bytes.
const MAX_ACTOR_BYTES: usize = 32;

/// Makes the ids of one replica.
#[derive(Debug, Clone)]
pub(super) struct ReqIds {
    prefix: String,
    suffix: String,
    counter: u64,
}

impl ReqIds {
    pub(super) fn new(actor: &str, suffix: &str) -> Self {
        Self {
            prefix: cut(actor, MAX_ACTOR_BYTES).to_owned(),
            suffix: suffix.to_owned(),
            counter: 0,
        }
    }

    pub(super) fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("{}-{}-{}", self.prefix, self.counter, self.suffix)
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let end = s
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|&end| end <= max)
        .last()
        .unwrap_or(0);
    &s[..end]
}

/// 64 random bits as 16 hex digits: from the operating system, or, should it fail,
/// from the standard library's per-process random hash keys.
pub(super) fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    let bits = match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => RandomState::new().build_hasher().finish(),
    };
    format!("{bits:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_up_with_the_replica_suffix() {
        let mut ids = ReqIds::new("user-1", "abc");
        assert_eq!(ids.next_id(), "user-1-1-abc");
        assert_eq!(ids.next_id(), "user-1-2-abc");
    }

    #[test]
    fn long_actors_are_cut_on_a_character_boundary() {
        let actor = format!("{}é", "x".repeat(31));
        assert_eq!(cut(&actor, 32), "x".repeat(31));
        assert_eq!(cut("ab", 32), "ab");
        let mut ids = ReqIds::new(&"u".repeat(128), &random_suffix());
        assert!(ids.next_id().len() <= 32 + 1 + 20 + 1 + 16);
    }

    #[test]
    fn suffixes_are_16_hex_digits_and_differ() {
        let (a, b) = (random_suffix(), random_suffix());
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
