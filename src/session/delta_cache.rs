//! Shared `SYNC.DELTAS` messages: built once per event loop and flush, shared by every
//! connection at the same revision.

use std::collections::HashMap;

use bytes::Bytes;

use crate::model::Model;
use crate::protocol::encode::{self, GapInfo};
use crate::room::Room;

/// Caches the `SYNC.DELTAS` message for `(room, from)` up to the room's head, so that the
/// thousands of connections of one room that are all at `from` share one buffer: in the
/// common case a flush produces no byte per connection.
///
/// One cache belongs to one event loop; call [`DeltaCache::clear`] at the start of each
/// flush so that it holds only messages for current heads.
#[derive(Debug, Default)]
pub struct DeltaCache {
    messages: HashMap<(usize, u64), (u64, Bytes)>,
    scratch: Vec<Bytes>,
    built: u64,
}

impl DeltaCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets every cached message.
    pub fn clear(&mut self) {
        self.messages.clear();
    }

    /// How many messages this cache has built (for tests and metrics).
    pub fn built(&self) -> u64 {
        self.built
    }

    /// The `SYNC.DELTAS` message from `from` to the room's head and the revision it
    /// reaches, shared with every other caller at `from` since the last clear (as long as
    /// the head has not moved).
    ///
    /// # Errors
    ///
    /// The gap when the ring no longer holds `(from, head]`.
    pub fn deltas<M: Model>(&mut self, room: &Room<M>, from: u64) -> Result<(u64, Bytes), GapInfo> {
        let key = (std::ptr::from_ref(room) as usize, from);
        let head = room.published_rev();
        if let Some((to, message)) = self.messages.get(&key) {
            if *to == head {
                return Ok((*to, message.clone()));
            }
        }
        self.scratch.clear();
        let to = room.since_into(from, None, &mut self.scratch)?;
        let message = encode::deltas(from, to, &self.scratch);
        self.scratch.clear();
        self.built += 1;
        self.messages.insert(key, (to, message.clone()));
        Ok((to, message))
    }
}
