//! Presence: the built-in model of the protocol.
//!
//! A room holds participants `{id, name, status, lastActive}`. Operations:
//!
//! | type | payload |
//! |---|---|
//! | `participant.joined` | the whole participant |
//! | `participant.updated` | `id` plus the fields it sets |
//! | `participant.left` | `{id}` |
//!
//! A client's `UPDATE` carries `{"patch": {"name"?, "status"?}}` and may only change its
//! own participant. `status` is one of `online`, `away`, `offline`; `lastActive` comes
//! from the server's clock, never from a client.
//!
//! ```
//! use deltasync::model::Model;
//! use deltasync::model::presence::{Patch, Presence, PresenceInput, Status};
//!
//! let mut room = Presence::default();
//! let joined = room.join("user-1", "Alice", 1000).unwrap().unwrap();
//! room.apply(&joined);
//! let input = PresenceInput { patch: Patch { status: Some(Status::Away), ..Patch::default() } };
//! let update = room.decide("user-1", &input, 2000).unwrap();
//! room.apply(&update);
//! assert_eq!(room.participant("user-1").unwrap().status, Status::Away);
//! assert_eq!(
//!     serde_json::to_string(&update).unwrap(),
//!     r#"{"type":"participant.updated","payload":{"id":"user-1","status":"away"}}"#
//! );
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Model, Rejection};

/// Bounds on what clients may put in a participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceLimits {
    /// Longest display name, in characters.
    pub max_name_chars: usize,
    /// Longest participant id, in bytes.
    pub max_id_bytes: usize,
}

impl Default for PresenceLimits {
    fn default() -> Self {
        Self {
            max_name_chars: 64,
            max_id_bytes: 128,
        }
    }
}

/// A participant's availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Connected and active.
    Online,
    /// Connected, not at the keyboard.
    Away,
    /// Not connected (or says so).
    Offline,
}

/// One participant of a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Participant {
    /// The participant's id (the `participantId` it joined with).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Availability.
    pub status: Status,
    /// When the server last saw the participant act, in ms since the Unix epoch.
    #[serde(rename = "lastActive")]
    pub last_active: u64,
}

/// The fields a `participant.updated` operation sets, beside the `id`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantChange {
    /// Whose fields change.
    pub id: String,
    /// A new display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A new status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// A new `lastActive` (set by the server only).
    #[serde(
        default,
        rename = "lastActive",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_active: Option<u64>,
}

/// The payload of `participant.left`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantRef {
    /// Who left.
    pub id: String,
}

/// A committed presence operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum PresenceOp {
    /// A participant arrived.
    #[serde(rename = "participant.joined")]
    Joined(Participant),
    /// Some fields of a participant changed.
    #[serde(rename = "participant.updated")]
    Updated(ParticipantChange),
    /// A participant left.
    #[serde(rename = "participant.left")]
    Left(ParticipantRef),
}

/// The fields a client may change on its own participant.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    /// Whose participant the patch is for; when given it must be the sender's own
    /// (`PERMISSION_DENIED` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A new display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A new status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

/// A client's `UPDATE` payload in the presence model: `{"patch": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceInput {
    /// What to change.
    pub patch: Patch,
}

/// The presence state of one room.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presence {
    participants: BTreeMap<String, Participant>,
    #[serde(skip)]
    limits: PresenceLimits,
}

impl PartialEq for Presence {
    /// Two presence states are equal when they hold the same participants (limits are
    /// configuration, not state).
    fn eq(&self, other: &Self) -> bool {
        self.participants == other.participants
    }
}

impl Presence {
    /// An empty room with the given limits.
    pub fn with_limits(limits: PresenceLimits) -> Self {
        Self {
            participants: BTreeMap::new(),
            limits,
        }
    }

    /// A room holding exactly `participants` (a restored state).
    pub fn from_participants(
        participants: impl IntoIterator<Item = Participant>,
        limits: PresenceLimits,
    ) -> Self {
        Self {
            participants: participants
                .into_iter()
                .map(|p| (p.id.clone(), p))
                .collect(),
            limits,
        }
    }

    /// The limits this state enforces.
    pub fn limits(&self) -> PresenceLimits {
        self.limits
    }

    /// Replaces the limits (a client replica receives state without them).
    pub fn set_limits(&mut self, limits: PresenceLimits) {
        self.limits = limits;
    }

    /// The participant with this id.
    pub fn participant(&self, id: &str) -> Option<&Participant> {
        self.participants.get(id)
    }

    /// Every participant, by id.
    pub fn participants(&self) -> &BTreeMap<String, Participant> {
        &self.participants
    }

    /// The server-side operation that marks `id` as active at `now_ms` and changes
    /// nothing else (what the fixtures' `PROCESS_OPERATIONS` commits).
    pub fn touch(id: &str, now_ms: u64) -> PresenceOp {
        PresenceOp::Updated(ParticipantChange {
            id: id.to_owned(),
            last_active: Some(now_ms),
            ..ParticipantChange::default()
        })
    }

    fn check_name(&self, name: &str) -> Result<(), Rejection> {
        if name.trim().is_empty() {
            return Err(Rejection::invalid("name must not be empty"));
        }
        let chars = name.chars().count();
        if chars > self.limits.max_name_chars {
            return Err(Rejection::invalid(format!(
                "name is {chars} characters long; the limit is {}",
                self.limits.max_name_chars
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(Rejection::invalid(
                "name must not contain control characters",
            ));
        }
        Ok(())
    }

    fn check_id(&self, id: &str) -> Result<(), Rejection> {
        if id.is_empty() {
            return Err(Rejection::invalid("participantId must not be empty"));
        }
        if id.len() > self.limits.max_id_bytes {
            return Err(Rejection::invalid(format!(
                "participantId is {} bytes long; the limit is {}",
                id.len(),
                self.limits.max_id_bytes
            )));
        }
        Ok(())
    }

    fn check_present(&self, id: &str) -> Result<&Participant, Rejection> {
        self.participants
            .get(id)
            .ok_or_else(|| Rejection::not_found(format!("participant {id:?} is not in the room")))
    }
}

impl Model for Presence {
    type Op = PresenceOp;
    type Input = PresenceInput;

    fn present_actors(&self) -> Vec<String> {
        self.participants.keys().cloned().collect()
    }

    fn decide(
        &self,
        actor: &str,
        input: &PresenceInput,
        _now_ms: u64,
    ) -> Result<PresenceOp, Rejection> {
        let Patch { id, name, status } = &input.patch;
        if let Some(id) = id.as_deref().filter(|id| *id != actor) {
            return Err(Rejection::denied(format!(
                "participant {actor:?} may not update participant {id:?}"
            )));
        }
        self.check_present(actor)?;
        if name.is_none() && status.is_none() {
            return Err(Rejection::invalid("patch must set name or status"));
        }
        if let Some(name) = name {
            self.check_name(name)?;
        }
        Ok(PresenceOp::Updated(ParticipantChange {
            id: actor.to_owned(),
            name: name.clone(),
            status: *status,
            last_active: None,
        }))
    }

    fn check(&self, op: &PresenceOp) -> Result<(), Rejection> {
        match op {
            PresenceOp::Joined(participant) => {
                self.check_id(&participant.id)?;
                self.check_name(&participant.name)?;
                if self.participants.contains_key(&participant.id) {
                    return Err(Rejection::precondition(format!(
                        "participant {:?} is already in the room",
                        participant.id
                    )));
                }
                Ok(())
            }
            PresenceOp::Updated(change) => {
                self.check_present(&change.id)?;
                if let Some(name) = &change.name {
                    self.check_name(name)?;
                }
                Ok(())
            }
            PresenceOp::Left(left) => self.check_present(&left.id).map(drop),
        }
    }

    fn apply(&mut self, op: &PresenceOp) {
        match op {
            PresenceOp::Joined(participant) => {
                self.participants
                    .insert(participant.id.clone(), participant.clone());
            }
            PresenceOp::Updated(change) => {
                if let Some(participant) = self.participants.get_mut(&change.id) {
                    if let Some(name) = &change.name {
                        participant.name.clone_from(name);
                    }
                    if let Some(status) = change.status {
                        participant.status = status;
                    }
                    if let Some(last_active) = change.last_active {
                        participant.last_active = last_active;
                    }
                }
            }
            PresenceOp::Left(left) => {
                self.participants.remove(&left.id);
            }
        }
    }

    /// A new participant joins online at `now_ms`. A participant already present gets its
    /// new name, and `online` if it was `offline`; if neither changes, nothing is
    /// committed (a resume never moves the revision by itself, and `lastActive` is not
    /// refreshed by a reconnect).
    fn join(&self, actor: &str, name: &str, now_ms: u64) -> Result<Option<PresenceOp>, Rejection> {
        self.check_id(actor)?;
        self.check_name(name)?;
        let Some(present) = self.participants.get(actor) else {
            return Ok(Some(PresenceOp::Joined(Participant {
                id: actor.to_owned(),
                name: name.to_owned(),
                status: Status::Online,
                last_active: now_ms,
            })));
        };
        let change = ParticipantChange {
            id: actor.to_owned(),
            name: (present.name != name).then(|| name.to_owned()),
            status: (present.status == Status::Offline).then_some(Status::Online),
            last_active: None,
        };
        Ok((change.name.is_some() || change.status.is_some())
            .then_some(PresenceOp::Updated(change)))
    }

    fn leave(&self, actor: &str, _now_ms: u64) -> Option<PresenceOp> {
        self.participants.contains_key(actor).then(|| {
            PresenceOp::Left(ParticipantRef {
                id: actor.to_owned(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;
    use serde_json::json;

    fn alice() -> Presence {
        let mut room = Presence::default();
        let op = room.join("user-1", "Alice", 1000).unwrap().unwrap();
        room.check(&op).unwrap();
        room.apply(&op);
        room
    }

    fn patch(name: Option<&str>, status: Option<Status>) -> PresenceInput {
        PresenceInput {
            patch: Patch {
                id: None,
                name: name.map(str::to_owned),
                status,
            },
        }
    }

    #[test]
    fn operations_have_the_wire_shape() {
        let room = alice();
        assert_eq!(
            serde_json::to_value(&room).unwrap(),
            json!({"participants": {"user-1": {
                "id": "user-1", "name": "Alice", "status": "online", "lastActive": 1000}}})
        );
        let left = room.leave("user-1", 0).unwrap();
        assert_eq!(
            serde_json::to_value(&left).unwrap(),
            json!({"type": "participant.left", "payload": {"id": "user-1"}})
        );
        assert_eq!(
            serde_json::to_value(Presence::touch("user-1", 2000)).unwrap(),
            json!({"type": "participant.updated", "payload": {"id": "user-1", "lastActive": 2000}})
        );
    }

    #[test]
    fn rejoining_changes_nothing_unless_something_visible_changes() {
        let mut room = alice();
        assert_eq!(room.join("user-1", "Alice", 5000), Ok(None));
        let rename = room.join("user-1", "Alicia", 5000).unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&rename).unwrap(),
            json!({"type": "participant.updated", "payload": {"id": "user-1", "name": "Alicia"}})
        );
        room.apply(
            &room
                .decide("user-1", &patch(None, Some(Status::Offline)), 0)
                .unwrap(),
        );
        let back = room.join("user-1", "Alice", 5000).unwrap().unwrap();
        room.apply(&back);
        let p = room.participant("user-1").unwrap();
        assert_eq!(
            (p.name.as_str(), p.status, p.last_active),
            ("Alice", Status::Online, 1000)
        );
    }

    #[test]
    fn bad_inputs_are_rejected_with_a_reason() {
        let room = alice();
        let cases = [
            (
                room.decide("user-1", &patch(None, None), 0),
                ErrorCode::InvalidArgument,
                "patch must set name or status",
            ),
            (
                room.decide("user-1", &patch(Some(""), None), 0),
                ErrorCode::InvalidArgument,
                "name must not be empty",
            ),
            (
                room.decide("user-1", &patch(Some(&"x".repeat(65)), None), 0),
                ErrorCode::InvalidArgument,
                "name is 65 characters long; the limit is 64",
            ),
            (
                room.decide("user-1", &patch(Some("a\u{7}"), None), 0),
                ErrorCode::InvalidArgument,
                "name must not contain control characters",
            ),
            (
                room.decide("ghost", &patch(None, Some(Status::Away)), 0),
                ErrorCode::NotFound,
                "participant \"ghost\" is not in the room",
            ),
        ];
        for (result, code, message) in cases {
            assert_eq!(result, Err(Rejection::new(code, message)));
        }
        let other = PresenceInput {
            patch: Patch {
                id: Some("user-2".into()),
                ..patch(None, Some(Status::Away)).patch
            },
        };
        assert_eq!(
            room.decide("user-1", &other, 0),
            Err(Rejection::denied(
                "participant \"user-1\" may not update participant \"user-2\""
            ))
        );
        let own = PresenceInput {
            patch: Patch {
                id: Some("user-1".into()),
                ..patch(None, Some(Status::Away)).patch
            },
        };
        assert!(room.decide("user-1", &own, 0).is_ok());
        assert_eq!(
            room.join("", "Bob", 0),
            Err(Rejection::invalid("participantId must not be empty"))
        );
        assert_eq!(
            room.check(&PresenceOp::Joined(
                room.participant("user-1").unwrap().clone()
            )),
            Err(Rejection::precondition(
                "participant \"user-1\" is already in the room"
            ))
        );
    }

    #[test]
    fn statuses_outside_the_set_do_not_parse() {
        let bad: Result<PresenceInput, _> =
            serde_json::from_value(json!({"patch": {"status": "busy"}}));
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("unknown variant `busy`")
        );
        let extra: Result<PresenceInput, _> =
            serde_json::from_value(json!({"patch": {"status": "away", "lastActive": 5}}));
        assert!(
            extra
                .unwrap_err()
                .to_string()
                .contains("unknown field `lastActive`")
        );
    }

    #[test]
    fn name_limit_is_configurable() {
        let mut room = Presence::with_limits(PresenceLimits {
            max_name_chars: 3,
            max_id_bytes: 8,
        });
        assert!(room.join("u", "Bob", 0).is_ok());
        assert_eq!(
            room.join("u", "Bobby", 0),
            Err(Rejection::invalid(
                "name is 5 characters long; the limit is 3"
            ))
        );
        assert_eq!(
            room.join("123456789", "Bob", 0),
            Err(Rejection::invalid(
                "participantId is 9 bytes long; the limit is 8"
            ))
        );
        room.set_limits(PresenceLimits::default());
        assert!(room.join("u", "Bobby", 0).is_ok());
    }
}
