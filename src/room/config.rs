//! The knobs of one room.

use std::num::NonZeroUsize;

use crate::ring::MAX_CAPACITY;

/// How a room is sized. Part of the server's configuration (`[room]` in the TOML file).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoomConfig {
    /// How many operations the ring keeps (1 ..= 16,777,216; default 1024). A client
    /// that is away for fewer operations than this resumes with deltas; beyond it, with a
    /// snapshot.
    pub ring_capacity: NonZeroUsize,
    /// How many recent `clientReqId`s the room remembers to apply a resent update at most
    /// once (default 65,536; 0 disables deduplication).
    pub dedup_window: usize,
    /// How many revisions a snapshot served to a joining client may lag the head; the
    /// client then gets the missing operations as deltas right after it. 0 (the default)
    /// leaves it to `snapshot_reuse_percent`.
    pub snapshot_max_lag: u64,
    /// A joining client is also served the last encoded snapshot while the operations
    /// committed after it add up to at most this percentage of its size in bytes (and
    /// the ring still holds them); they follow it as deltas. 0 encodes a snapshot at the
    /// head whenever the head moved (unless `snapshot_max_lag` allows it). Default 25.
    pub snapshot_reuse_percent: u32,
}

/// The default [`RoomConfig::snapshot_reuse_percent`]: a joiner gets at most a quarter
/// more bytes than a snapshot at the head would be, and a room encodes a snapshot about
/// once per quarter of its size committed instead of once per join.
const DEFAULT_SNAPSHOT_REUSE_PERCENT: u32 = 25;

/// The default ring capacity.
pub const DEFAULT_RING_CAPACITY: NonZeroUsize = NonZeroUsize::new(1024).unwrap();

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            ring_capacity: DEFAULT_RING_CAPACITY,
            dedup_window: 65_536,
            snapshot_max_lag: 0,
            snapshot_reuse_percent: DEFAULT_SNAPSHOT_REUSE_PERCENT,
        }
    }
}

/// A configuration value is out of its bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value} for `{key}`: {reason}")]
pub struct InvalidValue {
    /// The configuration key, as written in the file.
    pub key: &'static str,
    /// The value given.
    pub value: String,
    /// What the key accepts.
    pub reason: String,
}

impl RoomConfig {
    /// A configuration with this ring capacity and defaults for the rest.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] naming `ring_capacity` if `capacity` is 0 or above 16,777,216.
    pub fn with_ring_capacity(capacity: usize) -> Result<Self, InvalidValue> {
        Ok(Self {
            ring_capacity: ring_capacity(capacity)?,
            ..Self::default()
        })
    }
}

/// Checks a ring capacity.
///
/// # Errors
///
/// [`InvalidValue`] naming `ring_capacity` if `capacity` is 0 or above [`MAX_CAPACITY`].
pub fn ring_capacity(capacity: usize) -> Result<NonZeroUsize, InvalidValue> {
    NonZeroUsize::new(capacity)
        .filter(|c| c.get() <= MAX_CAPACITY)
        .ok_or_else(|| InvalidValue {
            key: "ring_capacity",
            value: capacity.to_string(),
            reason: format!("must be between 1 and {MAX_CAPACITY}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_capacity_is_a_clear_error() {
        let err = RoomConfig::with_ring_capacity(0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value 0 for `ring_capacity`: must be between 1 and 16777216"
        );
        assert!(RoomConfig::with_ring_capacity(MAX_CAPACITY + 1).is_err());
        assert_eq!(
            RoomConfig::with_ring_capacity(1_048_576)
                .unwrap()
                .ring_capacity
                .get(),
            1_048_576
        );
    }
}
