//! The epoch: which history a revision belongs to.
//!
//! Revisions alone are ambiguous across a restart without persistence: a room that
//! started again at 0 may reach revision 500 with a different history. Each history gets
//! a random epoch when it starts; a client resuming with another epoch gets a snapshot,
//! never deltas of a foreign history.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest epoch accepted from a peer, in bytes.
pub const MAX_EPOCH_LEN: usize = 64;

/// An opaque identifier of one room history (32 hex digits when generated here).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Epoch(Arc<str>);

/// The operating system could not provide randomness for a new epoch.
#[derive(Debug, thiserror::Error)]
#[error("no randomness available for a new epoch: {0}")]
pub struct EntropyError(String);

/// An epoch string received from a peer or a file is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an epoch must be 1 to {MAX_EPOCH_LEN} bytes long")]
pub struct InvalidEpoch;

impl Epoch {
    /// A fresh random epoch (128 bits, hex).
    ///
    /// # Errors
    ///
    /// If the operating system's random source fails.
    pub fn random() -> Result<Self, EntropyError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| EntropyError(e.to_string()))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self(hex.into()))
    }

    /// An epoch with a given value (a persisted history, a peer's claim, a test).
    ///
    /// # Errors
    ///
    /// [`InvalidEpoch`] if `value` is empty or longer than [`MAX_EPOCH_LEN`] bytes.
    pub fn new(value: &str) -> Result<Self, InvalidEpoch> {
        if value.is_empty() || value.len() > MAX_EPOCH_LEN {
            return Err(InvalidEpoch);
        }
        Ok(Self(value.into()))
    }

    /// The epoch as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Epoch({})", self.0)
    }
}

impl Serialize for Epoch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Epoch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Epoch::new(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_epochs_are_32_hex_digits_and_differ() {
        let a = Epoch::random().unwrap();
        let b = Epoch::random().unwrap();
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn peer_epochs_are_bounded() {
        assert_eq!(Epoch::new(""), Err(InvalidEpoch));
        assert_eq!(Epoch::new(&"x".repeat(65)), Err(InvalidEpoch));
        assert_eq!(Epoch::new("abc").unwrap().as_str(), "abc");
        let parsed: Result<Epoch, _> = serde_json::from_str("\"\"");
        assert!(parsed.is_err());
    }
}
