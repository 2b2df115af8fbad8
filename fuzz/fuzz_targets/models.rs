//! The crate's two models, `arena` and `presence`, driven through the `Model` trait
//! (`join`, `decide`, `leave`, `check`, `apply`, `predict`) with arbitrary inputs, as a
//! room would drive them, with the state's rules asserted after every step.
//!
//! Each input is one model's scenario: a sequence of joins, leaves, client inputs (built
//! from fuzzed fields, or decoded from raw bytes as the server decodes an `UPDATE`),
//! operations the server commits on its own authority (built from fuzzed fields, checked
//! first) and, for the arena, the game's own steps. Numbers are any `i32`/`u32`, with the
//! extremes (`MIN`, `MAX`) reached often. Asserted:
//!
//! - nothing panics (built with `cargo fuzz run -a`, an overflow panics; without overflow
//!   checks a wrapped number shows as a broken rule below, e.g. a move past `MAX_STEP`);
//! - an operation the model decided (`decide`, `join`, `leave`) passes its `check`;
//! - only checked operations are applied, and after each one the state keeps its rules:
//!   - arena: every entity inside `-BOUND..=BOUND` on both axes, filed under its own id,
//!     at most one avatar per player; a client's move changes only its avatar, by at most
//!     `MAX_STEP` on each axis; a join leaves the player with an avatar, a leave without;
//!   - presence: every participant filed under its id, the id non-empty and within
//!     `max_id_bytes`, the name non-blank, within `max_name_chars`, free of control
//!     characters; a decided update changes only its actor;
//! - `predict` (the client's optimistic apply) ends in the same state as `decide` then
//!   `apply` when the input is accepted, and changes nothing when it is refused.
#![no_main]

use std::collections::BTreeSet;

use arbitrary::Arbitrary;
use deltasync::model::Model;
use deltasync::model::arena::{
    Arena, ArenaInput, ArenaOp, BOUND, Despawned, Entity, MAX_STEP, Moved, Step as Move,
};
use deltasync::model::presence::{
    Participant, ParticipantChange, ParticipantRef, Patch, Presence, PresenceInput, PresenceLimits,
    PresenceOp, Status,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Scenario {
    Arena(Vec<ArenaStep>),
    Presence {
        max_name_chars: u8,
        max_id_bytes: u8,
        steps: Vec<PresenceStep>,
    },
}

/// An `i32` with its extremes made likely.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Num {
    Small(i8),
    Any(i32),
    Min,
    Max,
    MinPlusOne,
}

impl Num {
    fn get(self) -> i32 {
        match self {
            Num::Small(n) => i32::from(n),
            Num::Any(n) => n,
            Num::Min => i32::MIN,
            Num::Max => i32::MAX,
            Num::MinPlusOne => i32::MIN + 1,
        }
    }
}

/// A `u32` id with its extremes made likely.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Id {
    Small(u8),
    Any(u32),
    Max,
}

impl Id {
    fn get(self) -> u32 {
        match self {
            Id::Small(n) => u32::from(n),
            Id::Any(n) => n,
            Id::Max => u32::MAX,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum ArenaStep {
    Join {
        player: u8,
    },
    Leave {
        player: u8,
    },
    Move {
        player: u8,
        dx: Num,
        dy: Num,
    },
    /// An `UPDATE` payload as raw bytes, decoded as the server decodes the model's input.
    RawInput {
        player: u8,
        bytes: Vec<u8>,
    },
    GameStep {
        id: Id,
        dx: Num,
        dy: Num,
    },
    SpawnBot {
        x: Num,
        y: Num,
    },
    Spawned {
        id: Id,
        x: Num,
        y: Num,
        owner: Option<u8>,
    },
    Moved {
        id: Id,
        x: Num,
        y: Num,
    },
    Despawned {
        id: Id,
    },
}

#[derive(Arbitrary, Debug)]
enum PresenceStep {
    Join {
        who: Who,
        name: String,
    },
    Leave {
        who: Who,
    },
    Update {
        who: Who,
        patch: FuzzPatch,
    },
    /// An `UPDATE` payload as raw bytes, decoded as the server decodes the model's input.
    RawInput {
        who: Who,
        bytes: Vec<u8>,
    },
    Joined {
        who: Who,
        name: String,
        status: u8,
        last_active: u64,
    },
    Updated {
        who: Who,
        name: Option<String>,
        status: Option<u8>,
        last_active: Option<u64>,
    },
    Left {
        who: Who,
    },
}

/// A participant id: one of a few, so that steps meet, or any string.
#[derive(Arbitrary, Debug, Clone)]
enum Who {
    Known(u8),
    Any(String),
}

impl Who {
    fn id(&self) -> String {
        match self {
            Who::Known(n) => format!("p{}", n % 4),
            Who::Any(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct FuzzPatch {
    id: Option<Who>,
    name: Option<String>,
    status: Option<u8>,
}

fn player(n: u8) -> String {
    format!("p{}", n % 4)
}

fn status(n: u8) -> Status {
    match n % 3 {
        0 => Status::Online,
        1 => Status::Away,
        _ => Status::Offline,
    }
}

fuzz_target!(|scenario: Scenario| match scenario {
    Scenario::Arena(steps) => {
        let mut arena = Arena::default();
        for step in steps.iter().take(256) {
            arena_step(&mut arena, step);
            assert_arena_rules(&arena);
        }
    }
    Scenario::Presence {
        max_name_chars,
        max_id_bytes,
        steps,
    } => {
        let limits = PresenceLimits {
            max_name_chars: 1 + usize::from(max_name_chars % 16),
            max_id_bytes: 1 + usize::from(max_id_bytes % 16),
        };
        let mut presence = Presence::with_limits(limits);
        for step in steps.iter().take(256) {
            presence_step(&mut presence, step);
            assert_presence_rules(&presence);
        }
    }
});

/// Applies `op` if the model's `check` accepts it; a decided operation must be accepted.
fn commit<M: Model>(state: &mut M, op: &M::Op, decided: bool) {
    match state.check(op) {
        Ok(()) => state.apply(op),
        Err(rejection) => assert!(
            !decided,
            "a decided operation fails its check: {op:?}: {rejection}"
        ),
    }
}

/// A client's input, as the room handles it: decided, checked, applied; and `predict`
/// (the client's optimistic apply) must end in the same state.
fn client_input<M: Model + PartialEq>(
    state: &mut M,
    actor: &str,
    input: &M::Input,
) -> Option<M::Op> {
    let mut predicted = state.clone();
    predicted.predict(actor, input, 1000);
    match state.decide(actor, input, 1000) {
        Ok(op) => {
            commit(state, &op, true);
            assert!(
                predicted == *state,
                "predict and decide+apply differ for {input:?}"
            );
            Some(op)
        }
        Err(_) => {
            assert!(
                predicted == *state,
                "predict changed the state on a refused {input:?}"
            );
            None
        }
    }
}

fn arena_step(arena: &mut Arena, step: &ArenaStep) {
    match step {
        ArenaStep::Join { player: n } => {
            let who = player(*n);
            if let Ok(Some(op)) = arena.join(&who, "name", 1000) {
                commit(arena, &op, true);
            }
            assert!(
                arena.avatar(&who).is_some(),
                "{who} joined without an avatar"
            );
        }
        ArenaStep::Leave { player: n } => {
            let who = player(*n);
            if let Some(op) = arena.leave(&who, 1000) {
                commit(arena, &op, true);
            }
            assert!(
                arena.avatar(&who).is_none(),
                "{who} left and kept an avatar"
            );
        }
        ArenaStep::Move { player: n, dx, dy } => {
            let input = ArenaInput {
                step: Move {
                    dx: dx.get(),
                    dy: dy.get(),
                },
            };
            arena_move(arena, &player(*n), &input);
        }
        ArenaStep::RawInput { player: n, bytes } => {
            if let Ok(input) = serde_json::from_slice::<ArenaInput>(bytes) {
                arena_move(arena, &player(*n), &input);
            }
        }
        ArenaStep::GameStep { id, dx, dy } => {
            if let Some(op) = arena.step(id.get(), dx.get(), dy.get()) {
                commit(arena, &op, true);
            }
        }
        ArenaStep::SpawnBot { x, y } => {
            let op = arena.spawn_bot(x.get(), y.get());
            let inside = (-BOUND..=BOUND).contains(&x.get()) && (-BOUND..=BOUND).contains(&y.get());
            commit(arena, &op, inside);
        }
        ArenaStep::Spawned { id, x, y, owner } => {
            let entity = Entity {
                id: id.get(),
                x: x.get(),
                y: y.get(),
                owner: owner.map(player),
            };
            commit(arena, &ArenaOp::Spawned(entity), false);
        }
        ArenaStep::Moved { id, x, y } => {
            let moved = Moved {
                id: id.get(),
                x: x.get(),
                y: y.get(),
            };
            commit(arena, &ArenaOp::Moved(moved), false);
        }
        ArenaStep::Despawned { id } => {
            commit(
                arena,
                &ArenaOp::Despawned(Despawned { id: id.get() }),
                false,
            );
        }
    }
}

/// A client's move: only its avatar moves, by at most `MAX_STEP` on each axis.
fn arena_move(arena: &mut Arena, who: &str, input: &ArenaInput) {
    let before = arena.clone();
    if client_input(arena, who, input).is_none() {
        return;
    }
    let (old, new) = (
        before.avatar(who).expect("moved an avatar"),
        arena.avatar(who).expect("kept it"),
    );
    assert_eq!(old.id, new.id);
    assert!(
        (i64::from(new.x) - i64::from(old.x)).abs() <= i64::from(MAX_STEP),
        "{input:?}"
    );
    assert!(
        (i64::from(new.y) - i64::from(old.y)).abs() <= i64::from(MAX_STEP),
        "{input:?}"
    );
    for (id, entity) in before.entities() {
        if *id != old.id {
            assert_eq!(
                arena.entities().get(id),
                Some(entity),
                "a move changed another entity"
            );
        }
    }
}

fn assert_arena_rules(arena: &Arena) {
    let mut owners = BTreeSet::new();
    for (id, entity) in arena.entities() {
        assert_eq!(*id, entity.id, "an entity filed under another id");
        assert!(
            (-BOUND..=BOUND).contains(&entity.x) && (-BOUND..=BOUND).contains(&entity.y),
            "an entity outside the arena: {entity:?}"
        );
        if let Some(owner) = &entity.owner {
            assert!(owners.insert(owner.clone()), "two avatars for {owner}");
        }
    }
    assert!(
        !arena.entities().contains_key(&arena.next_id()),
        "next_id is taken"
    );
}

fn presence_step(presence: &mut Presence, step: &PresenceStep) {
    match step {
        PresenceStep::Join { who, name } => {
            let id = who.id();
            if let Ok(joined) = presence.join(&id, name, 1000) {
                if let Some(op) = joined {
                    commit(presence, &op, true);
                }
                // A rejoin keeps `away`; it brings an `offline` participant back online.
                let participant = presence.participant(&id).expect("joined");
                assert_eq!(participant.name, *name);
                assert_ne!(participant.status, Status::Offline);
            }
        }
        PresenceStep::Leave { who } => {
            let id = who.id();
            if let Some(op) = presence.leave(&id, 1000) {
                commit(presence, &op, true);
            }
            assert!(
                presence.participant(&id).is_none(),
                "{id:?} left and is still there"
            );
        }
        PresenceStep::Update { who, patch } => {
            let input = PresenceInput {
                patch: Patch {
                    id: patch.id.as_ref().map(Who::id),
                    name: patch.name.clone(),
                    status: patch.status.map(status),
                },
            };
            presence_update(presence, &who.id(), &input);
        }
        PresenceStep::RawInput { who, bytes } => {
            if let Ok(input) = serde_json::from_slice::<PresenceInput>(bytes) {
                presence_update(presence, &who.id(), &input);
            }
        }
        PresenceStep::Joined {
            who,
            name,
            status: s,
            last_active,
        } => {
            let participant = Participant {
                id: who.id(),
                name: name.clone(),
                status: status(*s),
                last_active: *last_active,
            };
            commit(presence, &PresenceOp::Joined(participant), false);
        }
        PresenceStep::Updated {
            who,
            name,
            status: s,
            last_active,
        } => {
            let change = ParticipantChange {
                id: who.id(),
                name: name.clone(),
                status: s.map(status),
                last_active: *last_active,
            };
            commit(presence, &PresenceOp::Updated(change), false);
        }
        PresenceStep::Left { who } => {
            commit(
                presence,
                &PresenceOp::Left(ParticipantRef { id: who.id() }),
                false,
            );
        }
    }
}

/// A client's update: only its own participant changes.
fn presence_update(presence: &mut Presence, who: &str, input: &PresenceInput) {
    let before = presence.clone();
    if client_input(presence, who, input).is_none() {
        return;
    }
    for (id, participant) in before.participants() {
        if id != who {
            assert_eq!(
                presence.participant(id),
                Some(participant),
                "an update changed another participant"
            );
        }
    }
}

fn assert_presence_rules(presence: &Presence) {
    let limits = presence.limits();
    for (id, participant) in presence.participants() {
        assert_eq!(*id, participant.id, "a participant filed under another id");
        assert!(
            !id.is_empty() && id.len() <= limits.max_id_bytes,
            "bad id {id:?}"
        );
        let name = &participant.name;
        assert!(!name.trim().is_empty(), "blank name of {id:?}");
        assert!(
            name.chars().count() <= limits.max_name_chars,
            "long name {name:?}"
        );
        assert!(
            !name.chars().any(char::is_control),
            "control character in {name:?}"
        );
    }
}
