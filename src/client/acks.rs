//! A bounded memory of settled `clientReqId`s (acknowledged, or rejected).

use std::collections::{HashSet, VecDeque};

/// How many acknowledged `clientReqId`s a replica remembers, and how many rejected ones
/// (the oldest are forgotten first).
pub const REMEMBERED_ACKS: usize = 1024;

/// The last `capacity` ids recorded, first in, first out.
#[derive(Debug, Clone)]
pub(super) struct IdMemory {
    capacity: usize,
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl IdMemory {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            order: VecDeque::with_capacity(capacity.min(64)),
            ids: HashSet::new(),
        }
    }

    /// Remembers `id`, forgetting the oldest one when full.
    pub(super) fn record(&mut self, id: &str) {
        if self.capacity == 0 || self.ids.contains(id) {
            return;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
        self.order.push_back(id.to_owned());
        self.ids.insert(id.to_owned());
    }

    pub(super) fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Whether an id longer than `prefix` that starts with it is remembered.
    pub(super) fn contains_longer_with_prefix(&self, prefix: &str) -> bool {
        self.order
            .iter()
            .any(|id| id.len() > prefix.len() && id.starts_with(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let mut acks = IdMemory::new(2);
        acks.record("a");
        acks.record("b");
        acks.record("a");
        assert!(acks.contains("a") && acks.contains("b"));
        acks.record("c");
        assert!(!acks.contains("a"));
        assert!(acks.contains("b") && acks.contains("c"));
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let mut acks = IdMemory::new(0);
        acks.record("a");
        assert!(!acks.contains("a"));
    }
}
