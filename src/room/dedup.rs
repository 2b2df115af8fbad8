//! The memory of recent `clientReqId`s, so that a resent update is applied at most once.

use std::collections::{HashMap, VecDeque};

/// Remembers the revision each `(actor, clientReqId)` was committed at, for the last
/// `window` commits that had one. Older entries are forgotten first in, first out.
#[derive(Debug, Default)]
pub(super) struct Dedup {
    window: usize,
    revs: HashMap<Box<str>, HashMap<Box<str>, u64>>,
    order: VecDeque<(Box<str>, Box<str>)>,
}

impl Dedup {
    pub(super) fn new(window: usize) -> Self {
        Self {
            window,
            ..Self::default()
        }
    }

    /// The revision `actor`'s `id` was committed at, if it is remembered.
    pub(super) fn get(&self, actor: &str, id: &str) -> Option<u64> {
        self.revs.get(actor)?.get(id).copied()
    }

    /// Records that `actor`'s `id` was committed at `rev`.
    pub(super) fn record(&mut self, actor: &str, id: &str, rev: u64) {
        if self.window == 0 {
            return;
        }
        if self.order.len() == self.window {
            self.forget_oldest();
        }
        self.revs
            .entry(actor.into())
            .or_default()
            .insert(id.into(), rev);
        self.order.push_back((actor.into(), id.into()));
    }

    /// Every remembered entry, oldest first (what a stored snapshot keeps).
    pub(super) fn entries(&self) -> Vec<crate::storage::DedupEntry> {
        self.order
            .iter()
            .filter_map(|(actor, id)| {
                Some(crate::storage::DedupEntry {
                    actor: actor.clone(),
                    client_req_id: id.clone(),
                    rev: self.get(actor, id)?,
                })
            })
            .collect()
    }

    fn forget_oldest(&mut self) {
        let Some((actor, id)) = self.order.pop_front() else {
            return;
        };
        if let Some(ids) = self.revs.get_mut(&actor) {
            ids.remove(&id);
            if ids.is_empty() {
                self.revs.remove(&actor);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_actor_within_the_window() {
        let mut dedup = Dedup::new(2);
        dedup.record("a", "r1", 1);
        dedup.record("b", "r1", 2);
        assert_eq!(dedup.get("a", "r1"), Some(1));
        assert_eq!(dedup.get("b", "r1"), Some(2));
        assert_eq!(dedup.get("a", "r2"), None);
        dedup.record("a", "r2", 3);
        assert_eq!(dedup.get("a", "r1"), None, "the oldest is forgotten");
        assert_eq!(dedup.get("a", "r2"), Some(3));
        assert_eq!(dedup.len(), 2);
    }

    #[test]
    fn window_zero_remembers_nothing() {
        let mut dedup = Dedup::new(0);
        dedup.record("a", "r1", 1);
        assert_eq!(dedup.get("a", "r1"), None);
    }
}
