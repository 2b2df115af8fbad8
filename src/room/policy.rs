//! How a room publishes its commits and what it does with clients' inputs.

/// When the connections of a room are brought up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushPolicy {
    /// Every commit is published at once: each connection behind the head gets it on its
    /// next write (commits in a burst coalesce in that write). The default.
    #[default]
    Immediate,
    /// Commits are published when the owner calls [`Room::flush`](super::Room::flush),
    /// once per tick of its loop: every connection behind gets one frame holding all of
    /// that tick's operations, so a client receives at most one frame per tick however
    /// busy the room is.
    Tick,
}

/// What a room does with the `UPDATE`s of its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputPolicy {
    /// The model decides each input at once ([`Model::decide`](crate::model::Model::decide))
    /// and the room commits the result. The default.
    #[default]
    Decide,
    /// Inputs wait in a queue of at most `capacity` entries that the owner drains
    /// ([`Room::drain_inputs`](super::Room::drain_inputs)), typically once per tick; it
    /// commits what they lead to with their actor and `clientReqId` (the commit is the
    /// client's acknowledgement) or rejects them ([`Room::reject`](super::Room::reject)).
    /// A client whose input finds the queue full gets `RESOURCE_EXHAUSTED`.
    Forward {
        /// The most inputs waiting at once.
        capacity: usize,
    },
}
