//! Arena: a small game model of entities moving on a grid, the second model of the crate.
//!
//! It is what a game server embedding deltasync looks like (`examples/game_server.rs`,
//! `docs/embedding.md`), and what the bench's tick scenario drives. The state is a map of
//! entities `{id, x, y, owner?}`; operations are `entity.spawned`, `entity.moved` and
//! `entity.despawned`. A client's input is `{"move": {"dx", "dy"}}` for its own avatar,
//! at most [`MAX_STEP`] in each direction; a player's avatar spawns when it joins and
//! despawns when it leaves. Bots are entities without an owner that the game moves.
//!
//! # Arithmetic on client numbers
//!
//! Every number in an input comes from a remote client, so no arithmetic on it may
//! overflow: a panic kills the thread that runs the room, and a wrapped value passes the
//! checks it was meant to fail. The bounds are checked with ranges, never `abs` (which
//! overflows on `i32::MIN`), positions are summed with `saturating_add` before they are
//! clamped, and ids never overflow. Any input is either rejected with a [`Rejection`] or
//! applied within the rules: every entity inside the bounds, at most one avatar per player.
//! `fuzz/fuzz_targets/models.rs` checks this with arbitrary inputs.
//!
//! ```
//! use deltasync::model::Model;
//! use deltasync::model::arena::{Arena, ArenaInput, Step};
//!
//! let mut arena = Arena::default();
//! let spawned = arena.join("p1", "Player one", 0).unwrap().unwrap();
//! arena.apply(&spawned);
//! let input = ArenaInput { step: Step { dx: 1, dy: -2 } };
//! let moved = arena.decide("p1", &input, 0).unwrap();
//! assert_eq!(
//!     serde_json::to_string(&moved).unwrap(),
//!     r#"{"type":"entity.moved","payload":{"id":1,"x":1,"y":-2}}"#
//! );
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Model, Rejection};

/// The farthest an entity may be from the origin on each axis.
pub const BOUND: i32 = 1000;
/// The longest move a client may ask for on each axis.
pub const MAX_STEP: i32 = 4;

/// One entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entity {
    /// Its id.
    pub id: u32,
    /// Position on the x axis (`-BOUND..=BOUND`).
    pub x: i32,
    /// Position on the y axis (`-BOUND..=BOUND`).
    pub y: i32,
    /// The player it belongs to; `None` for bots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A position change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Moved {
    /// Which entity.
    pub id: u32,
    /// The new x.
    pub x: i32,
    /// The new y.
    pub y: i32,
}

/// The payload of `entity.despawned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Despawned {
    /// Which entity.
    pub id: u32,
}

/// A committed arena operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum ArenaOp {
    /// An entity appears.
    #[serde(rename = "entity.spawned")]
    Spawned(Entity),
    /// An entity moves.
    #[serde(rename = "entity.moved")]
    Moved(Moved),
    /// An entity disappears.
    #[serde(rename = "entity.despawned")]
    Despawned(Despawned),
}

/// How far to move, on each axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Along x.
    pub dx: i32,
    /// Along y.
    pub dy: i32,
}

/// A client's `UPDATE` payload in the arena: `{"move": {"dx": 1, "dy": 0}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArenaInput {
    /// The move of the sender's avatar.
    #[serde(rename = "move")]
    pub step: Step,
}

/// The arena's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arena {
    entities: BTreeMap<u32, Entity>,
}

impl Arena {
    /// An arena holding exactly `entities`.
    pub fn from_entities(entities: impl IntoIterator<Item = Entity>) -> Self {
        Self {
            entities: entities.into_iter().map(|e| (e.id, e)).collect(),
        }
    }

    /// Every entity, by id.
    pub fn entities(&self) -> &BTreeMap<u32, Entity> {
        &self.entities
    }

    /// The avatar of `player`, if it has one.
    pub fn avatar(&self, player: &str) -> Option<&Entity> {
        self.entities
            .values()
            .find(|e| e.owner.as_deref() == Some(player))
    }

    /// The id the next spawned entity gets: one past the highest, or, once the highest is
    /// `u32::MAX`, the lowest free id from 1 (an arena cannot hold 2^32 entities).
    pub fn next_id(&self) -> u32 {
        let Some(&last) = self.entities.keys().next_back() else {
            return 1;
        };
        last.checked_add(1).unwrap_or_else(|| self.lowest_free_id())
    }

    /// The lowest id from 1 that no entity has.
    fn lowest_free_id(&self) -> u32 {
        let mut candidate: u32 = 1;
        for &id in self.entities.keys().skip_while(|&&id| id < 1) {
            if id != candidate {
                break;
            }
            candidate = candidate.saturating_add(1);
        }
        candidate
    }

    /// A bot (no owner) at `(x, y)`, with the next id.
    pub fn spawn_bot(&self, x: i32, y: i32) -> ArenaOp {
        ArenaOp::Spawned(Entity {
            id: self.next_id(),
            x,
            y,
            owner: None,
        })
    }

    /// Moves entity `id` by `(dx, dy)`, held inside the bounds (a game's own move, with no
    /// limit on the step: any `i32` is fine, the sum saturates before it is clamped).
    pub fn step(&self, id: u32, dx: i32, dy: i32) -> Option<ArenaOp> {
        let entity = self.entities.get(&id)?;
        Some(ArenaOp::Moved(Moved {
            id,
            x: entity.x.saturating_add(dx).clamp(-BOUND, BOUND),
            y: entity.y.saturating_add(dy).clamp(-BOUND, BOUND),
        }))
    }
}

/// Whether `v` is a coordinate inside the arena. A range check, not `abs`, which
/// overflows on `i32::MIN` (a panic in debug builds, a negative number in release).
fn inside(v: i32) -> bool {
    (-BOUND..=BOUND).contains(&v)
}

/// Whether `d` is a step a client may ask for on one axis (same reason: no `abs`).
fn short_step(d: i32) -> bool {
    (-MAX_STEP..=MAX_STEP).contains(&d)
}

fn within(x: i32, y: i32) -> Result<(), Rejection> {
    if !inside(x) || !inside(y) {
        return Err(Rejection::invalid(format!(
            "({x}, {y}) is outside the arena (-{BOUND}..={BOUND} on each axis)"
        )));
    }
    Ok(())
}

impl Model for Arena {
    type Op = ArenaOp;
    type Input = ArenaInput;

    fn decide(&self, actor: &str, input: &ArenaInput, _now_ms: u64) -> Result<ArenaOp, Rejection> {
        let Step { dx, dy } = input.step;
        if !short_step(dx) || !short_step(dy) {
            return Err(Rejection::invalid(format!(
                "a move is at most {MAX_STEP} in each direction, not ({dx}, {dy})"
            )));
        }
        let avatar = self.avatar(actor).ok_or_else(|| {
            Rejection::precondition(format!("{actor:?} has no avatar: JOIN first"))
        })?;
        self.step(avatar.id, dx, dy)
            .ok_or_else(|| Rejection::precondition("the avatar is gone"))
    }

    fn check(&self, op: &ArenaOp) -> Result<(), Rejection> {
        match op {
            ArenaOp::Spawned(entity) => {
                if self.entities.contains_key(&entity.id) {
                    return Err(Rejection::precondition(format!(
                        "entity {} already exists",
                        entity.id
                    )));
                }
                if let Some(owner) = &entity.owner {
                    if self.avatar(owner).is_some() {
                        return Err(Rejection::precondition(format!(
                            "{owner:?} already has an avatar"
                        )));
                    }
                }
                within(entity.x, entity.y)
            }
            ArenaOp::Moved(moved) => {
                if !self.entities.contains_key(&moved.id) {
                    return Err(Rejection::not_found(format!("no entity {}", moved.id)));
                }
                within(moved.x, moved.y)
            }
            ArenaOp::Despawned(gone) => match self.entities.contains_key(&gone.id) {
                true => Ok(()),
                false => Err(Rejection::not_found(format!("no entity {}", gone.id))),
            },
        }
    }

    fn apply(&mut self, op: &ArenaOp) {
        match op {
            ArenaOp::Spawned(entity) => {
                self.entities.insert(entity.id, entity.clone());
            }
            ArenaOp::Moved(moved) => {
                if let Some(entity) = self.entities.get_mut(&moved.id) {
                    entity.x = moved.x;
                    entity.y = moved.y;
                }
            }
            ArenaOp::Despawned(gone) => {
                self.entities.remove(&gone.id);
            }
        }
    }

    /// A player without an avatar gets one at the origin; a player who has one (a
    /// reconnect) changes nothing.
    fn join(&self, actor: &str, _name: &str, _now_ms: u64) -> Result<Option<ArenaOp>, Rejection> {
        if actor.is_empty() {
            return Err(Rejection::invalid("participantId must not be empty"));
        }
        if self.avatar(actor).is_some() {
            return Ok(None);
        }
        Ok(Some(ArenaOp::Spawned(Entity {
            id: self.next_id(),
            x: 0,
            y: 0,
            owner: Some(actor.to_owned()),
        })))
    }

    fn leave(&self, actor: &str, _now_ms: u64) -> Option<ArenaOp> {
        let avatar = self.avatar(actor)?;
        Some(ArenaOp::Despawned(Despawned { id: avatar.id }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    fn joined() -> Arena {
        let mut arena = Arena::default();
        arena.apply(&arena.spawn_bot(5, 5));
        let op = arena.join("p1", "P", 0).unwrap().unwrap();
        arena.check(&op).unwrap();
        arena.apply(&op);
        arena
    }

    #[test]
    fn players_spawn_once_move_within_limits_and_despawn() {
        let mut arena = joined();
        assert_eq!(arena.avatar("p1").map(|e| e.id), Some(2));
        assert_eq!(arena.join("p1", "P", 0), Ok(None));
        let input = |dx, dy| ArenaInput {
            step: Step { dx, dy },
        };
        let op = arena.decide("p1", &input(4, -4), 0).unwrap();
        arena.apply(&op);
        assert_eq!(arena.avatar("p1").map(|e| (e.x, e.y)), Some((4, -4)));
        let too_far = arena.decide("p1", &input(5, 0), 0).unwrap_err();
        assert_eq!(
            too_far,
            Rejection::invalid("a move is at most 4 in each direction, not (5, 0)")
        );
        assert_eq!(
            arena.decide("p2", &input(1, 0), 0).unwrap_err().code,
            ErrorCode::FailedPrecondition
        );
        let gone = arena.leave("p1", 0).unwrap();
        arena.apply(&gone);
        assert!(arena.avatar("p1").is_none());
        assert_eq!(arena.entities().len(), 1);
    }

    fn input(dx: i32, dy: i32) -> ArenaInput {
        ArenaInput {
            step: Step { dx, dy },
        }
    }

    /// `i32::abs(i32::MIN)` overflows: it panicked in debug builds and, in release, wrapped
    /// to a negative number that passed the step check and teleported the avatar.
    #[test]
    fn extreme_moves_are_rejected_whole() {
        let arena = joined();
        for (dx, dy) in [
            (i32::MIN, 0),
            (0, i32::MIN),
            (i32::MIN, i32::MIN),
            (i32::MAX, 0),
            (0, i32::MAX),
            (-5, 0),
        ] {
            assert_eq!(
                arena.decide("p1", &input(dx, dy), 0),
                Err(Rejection::invalid(format!(
                    "a move is at most 4 in each direction, not ({dx}, {dy})"
                )))
            );
        }
        assert_eq!(
            arena.decide("p1", &input(-4, 4), 0),
            Ok(ArenaOp::Moved(Moved { id: 2, x: -4, y: 4 }))
        );
    }

    #[test]
    fn extreme_positions_are_rejected_and_extreme_game_steps_held_inside() {
        let arena = joined();
        for (x, y) in [(i32::MIN, 0), (0, i32::MIN), (i32::MAX, i32::MAX)] {
            let moved = ArenaOp::Moved(Moved { id: 1, x, y });
            assert_eq!(
                arena.check(&moved),
                Err(Rejection::invalid(format!(
                    "({x}, {y}) is outside the arena (-1000..=1000 on each axis)"
                )))
            );
            let spawned = ArenaOp::Spawned(Entity {
                id: 9,
                x,
                y,
                owner: None,
            });
            assert_eq!(
                arena.check(&spawned).unwrap_err().code,
                ErrorCode::InvalidArgument
            );
        }
        let corner = |x, y| Some(ArenaOp::Moved(Moved { id: 1, x, y }));
        assert_eq!(arena.step(1, i32::MAX, i32::MIN), corner(BOUND, -BOUND));
        assert_eq!(arena.step(1, i32::MIN, i32::MAX), corner(-BOUND, BOUND));
        // An entity restored outside the bounds is brought back inside by its next step.
        let stray = Arena::from_entities([Entity {
            id: 1,
            x: i32::MAX,
            y: i32::MIN,
            owner: None,
        }]);
        assert_eq!(stray.step(1, i32::MAX, i32::MIN), corner(BOUND, -BOUND));
    }

    #[test]
    fn ids_do_not_overflow_and_each_player_has_one_avatar() {
        let mut arena = Arena::from_entities([
            Entity {
                id: 1,
                x: 0,
                y: 0,
                owner: None,
            },
            Entity {
                id: u32::MAX,
                x: 0,
                y: 0,
                owner: None,
            },
        ]);
        assert_eq!(arena.next_id(), 2);
        let joined = arena.join("p1", "P", 0).unwrap().unwrap();
        assert_eq!(arena.check(&joined), Ok(()));
        arena.apply(&joined);
        assert_eq!(arena.avatar("p1").map(|e| e.id), Some(2));
        assert_eq!(arena.next_id(), 3);
        let twin = ArenaOp::Spawned(Entity {
            id: 7,
            x: 0,
            y: 0,
            owner: Some("p1".into()),
        });
        assert_eq!(
            arena.check(&twin),
            Err(Rejection::precondition("\"p1\" already has an avatar"))
        );
    }

    #[test]
    fn the_game_moves_are_held_inside_the_bounds_and_checked() {
        let arena = joined();
        assert_eq!(
            arena.step(1, 5000, -5000),
            Some(ArenaOp::Moved(Moved {
                id: 1,
                x: BOUND,
                y: -BOUND
            }))
        );
        let outside = ArenaOp::Moved(Moved {
            id: 1,
            x: BOUND + 1,
            y: 0,
        });
        assert_eq!(
            arena.check(&outside).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        let ghost = ArenaOp::Despawned(Despawned { id: 99 });
        assert_eq!(arena.check(&ghost).unwrap_err().code, ErrorCode::NotFound);
        assert_eq!(
            serde_json::to_value(&arena).unwrap(),
            serde_json::json!({"entities": {
                "1": {"id": 1, "x": 5, "y": 5},
                "2": {"id": 2, "x": 0, "y": 0, "owner": "p1"}}})
        );
    }
}
