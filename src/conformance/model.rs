//! What the fixture runner needs from a model beyond [`Model`].

use serde_json::{Map, Value};

use crate::model::Model;
use crate::model::arena::{Arena, Entity};
use crate::model::presence::{Participant, Presence, PresenceLimits};

/// A model the fixtures can drive: restore a stated state, view the state as fixtures
/// write it, and produce the background operations of `PROCESS_OPERATIONS`.
pub trait ConformanceModel: Model + PartialEq {
    /// The state a `STATE` step describes; `state` holds the step's keys other than
    /// `actor`, `action`, `client` and `serverRev` (presence: `participants`).
    ///
    /// # Errors
    ///
    /// A message naming what is wrong with the stated state.
    fn from_fixture(state: &Map<String, Value>) -> Result<Self, String>;

    /// The state as fixtures write it in `OPTIMISTIC_APPLY` and `client.state.*`
    /// assertions (presence: the participants map).
    fn fixture_view(&self) -> Value;

    /// The actors of the state with their display names: a `STATE` step that names
    /// exactly one binds the client to it, and a reconnect joins again under that name.
    fn actors(&self) -> Vec<(String, String)>;

    /// The `i`-th operation of a `PROCESS_OPERATIONS` step, at the test clock's `now_ms`.
    fn background_op(&self, i: u64, now_ms: u64) -> Option<Self::Op>;
}

impl ConformanceModel for Presence {
    fn from_fixture(state: &Map<String, Value>) -> Result<Self, String> {
        let mut state = state.clone();
        let participants = state
            .remove("participants")
            .ok_or("STATE needs \"participants\"")?;
        if let Some(key) = state.keys().next() {
            return Err(format!("unknown key {key:?} in STATE"));
        }
        let participants: std::collections::BTreeMap<String, Participant> =
            serde_json::from_value(participants).map_err(|e| format!("STATE participants: {e}"))?;
        if let Some((key, p)) = participants.iter().find(|(key, p)| **key != p.id) {
            return Err(format!("STATE participant {key:?} has id {:?}", p.id));
        }
        Ok(Presence::from_participants(
            participants.into_values(),
            PresenceLimits::default(),
        ))
    }

    fn fixture_view(&self) -> Value {
        serde_json::to_value(self.participants()).unwrap_or(Value::Null)
    }

    fn actors(&self) -> Vec<(String, String)> {
        self.participants()
            .values()
            .map(|p| (p.id.clone(), p.name.clone()))
            .collect()
    }

    /// A `participant.updated` setting `lastActive` of each participant in turn (in id
    /// order) to the clock's time, changing nothing else.
    fn background_op(&self, i: u64, now_ms: u64) -> Option<Self::Op> {
        let count = self.participants().len() as u64;
        let index = usize::try_from(i.checked_rem(count)?).ok()?;
        let id = self.participants().keys().nth(index)?;
        Some(Presence::touch(id, now_ms))
    }
}

impl ConformanceModel for Arena {
    fn from_fixture(state: &Map<String, Value>) -> Result<Self, String> {
        let mut state = state.clone();
        let entities = state.remove("entities").ok_or("STATE needs \"entities\"")?;
        if let Some(key) = state.keys().next() {
            return Err(format!("unknown key {key:?} in STATE"));
        }
        let entities: std::collections::BTreeMap<String, Entity> =
            serde_json::from_value(entities).map_err(|e| format!("STATE entities: {e}"))?;
        if let Some((key, e)) = entities.iter().find(|(key, e)| **key != e.id.to_string()) {
            return Err(format!("STATE entity {key:?} has id {}", e.id));
        }
        Ok(Arena::from_entities(entities.into_values()))
    }

    fn fixture_view(&self) -> Value {
        serde_json::to_value(self.entities()).unwrap_or(Value::Null)
    }

    fn actors(&self) -> Vec<(String, String)> {
        self.entities()
            .values()
            .filter_map(|e| e.owner.clone())
            .map(|owner| (owner.clone(), owner))
            .collect()
    }

    /// Moves the entities in turn (in id order) one step along x.
    fn background_op(&self, i: u64, _now_ms: u64) -> Option<Self::Op> {
        let count = self.entities().len() as u64;
        let index = usize::try_from(i.checked_rem(count)?).ok()?;
        let id = *self.entities().keys().nth(index)?;
        self.step(id, 1, 0)
    }
}
