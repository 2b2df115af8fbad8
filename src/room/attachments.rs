//! Which actors have connections, and since when the others have none.
//!
//! A participant stays in its room while its connections come and go (a reconnect must
//! not look like leaving); once it has had no connection for the configured time-to-live
//! the room commits its `leave`.

use std::collections::HashMap;

/// Connection counts per actor.
#[derive(Debug, Default)]
pub(super) struct Attachments {
    actors: HashMap<String, Attachment>,
}

#[derive(Debug, Clone, Copy)]
struct Attachment {
    connections: usize,
    /// When the last connection went away (ms since the Unix epoch), while there is none.
    detached_at_ms: Option<u64>,
}

impl Attachments {
    pub(super) fn attach(&mut self, actor: &str) {
        let attachment = self.actors.entry(actor.to_owned()).or_insert(Attachment {
            connections: 0,
            detached_at_ms: None,
        });
        attachment.connections += 1;
        attachment.detached_at_ms = None;
    }

    pub(super) fn detach(&mut self, actor: &str, now_ms: u64) {
        if let Some(attachment) = self.actors.get_mut(actor) {
            attachment.connections = attachment.connections.saturating_sub(1);
            if attachment.connections == 0 {
                attachment.detached_at_ms = Some(now_ms);
            }
        }
    }

    #[cfg(test)]
    pub(super) fn connections(&self, actor: &str) -> usize {
        self.actors.get(actor).map_or(0, |a| a.connections)
    }

    /// Removes and returns the actors without a connection for at least `ttl_ms`.
    pub(super) fn take_expired(&mut self, now_ms: u64, ttl_ms: u64) -> Vec<String> {
        let expired: Vec<String> = self
            .actors
            .iter()
            .filter(|(_, a)| {
                a.detached_at_ms
                    .is_some_and(|at| now_ms.saturating_sub(at) >= ttl_ms)
            })
            .map(|(actor, _)| actor.clone())
            .collect();
        for actor in &expired {
            self.actors.remove(actor);
        }
        expired
    }

    /// Whether `actor` is known: it has a connection or waits for its time-to-live.
    pub(super) fn contains(&self, actor: &str) -> bool {
        self.actors.contains_key(actor)
    }

    /// The known actors (see [`Attachments::contains`]).
    pub(super) fn actors(&self) -> impl Iterator<Item = &str> {
        self.actors.keys().map(String::as_str)
    }

    /// How many actors are known (see [`Attachments::contains`]).
    pub(super) fn len(&self) -> usize {
        self.actors.len()
    }

    /// Forgets `actor` if it has no connection: it left, so it no longer counts.
    pub(super) fn forget_unattached(&mut self, actor: &str) {
        if self.actors.get(actor).is_some_and(|a| a.connections == 0) {
            self.actors.remove(actor);
        }
    }

    /// Whether any actor still has a connection or waits for its time-to-live.
    pub(super) fn is_empty(&self) -> bool {
        self.actors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_only_after_the_last_connection_and_the_ttl() {
        let mut attachments = Attachments::default();
        attachments.attach("a");
        attachments.attach("a");
        attachments.detach("a", 1000);
        assert_eq!(attachments.connections("a"), 1);
        assert!(attachments.take_expired(99_999, 10).is_empty());
        attachments.detach("a", 2000);
        assert!(attachments.take_expired(2009, 10).is_empty());
        attachments.attach("a");
        attachments.detach("a", 3000);
        assert_eq!(attachments.take_expired(3010, 10), ["a"]);
        assert!(attachments.is_empty());
    }

    #[test]
    fn a_known_actor_is_forgotten_when_it_leaves_without_a_connection() {
        let mut attachments = Attachments::default();
        attachments.attach("a");
        attachments.attach("b");
        attachments.detach("b", 1000);
        assert_eq!(attachments.len(), 2);
        assert!(attachments.contains("b"), "b waits for its time-to-live");
        attachments.forget_unattached("a");
        attachments.forget_unattached("b");
        assert_eq!(attachments.len(), 1);
        assert!(attachments.contains("a"), "a still has a connection");
        assert!(!attachments.contains("b"));
    }
}
