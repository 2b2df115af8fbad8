//! A game loop for the arena model: what a server-authoritative game does each tick.
//!
//! The loop drives a room; it is not part of the model. It is the demo shared by
//! `examples/game_server.rs`, `deltasync bench --game` and the tests, and the shape of
//! what a game embedding deltasync writes: a [`Game`] owns the bots of one
//! [arena](crate::model::arena) [`Room`] (run with
//! [`InputPolicy::Forward`](crate::room::InputPolicy) and
//! [`FlushPolicy::Tick`](crate::room::FlushPolicy)). Each [`Game::tick`] applies the
//! players' queued moves by the arena's rules (committing each with its sender's
//! `clientReqId`, which acknowledges it, or rejecting it with the reason), moves every
//! bot one step, and flushes: every client behind gets one frame with the whole tick.

use std::sync::Arc;

use crate::model::Model;
use crate::model::arena::{Arena, ArenaInput, ArenaOp, BOUND};
use crate::room::{ClientInput, Origin, Room};

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Players' moves applied.
    pub applied: usize,
    /// Players' moves rejected.
    pub rejected: usize,
    /// Operations committed (moves applied and bot moves).
    pub operations: usize,
    /// The revision published at the end of the tick.
    pub rev: u64,
}

/// A game loop's state for one arena room: its bots and a deterministic move generator.
pub struct Game {
    room: Arc<Room<Arena>>,
    bots: Vec<u32>,
    seed: u64,
    inputs: Vec<ClientInput<ArenaInput>>,
}

impl Game {
    /// A game on `room`, spawning `bots` bots spread over the arena.
    ///
    /// # Errors
    ///
    /// If the room refuses a spawn (it should not, on a fresh arena).
    pub fn new(
        room: Arc<Room<Arena>>,
        bots: usize,
        seed: u64,
    ) -> Result<Self, crate::model::Rejection> {
        let mut game = Self {
            room,
            bots: Vec::with_capacity(bots),
            seed: seed | 1,
            inputs: Vec::new(),
        };
        for _ in 0..bots {
            let (x, y) = (game.random(BOUND / 2), game.random(BOUND / 2));
            let op = game.room.with_state(|arena, _| arena.spawn_bot(x, y));
            if let ArenaOp::Spawned(entity) = &op {
                game.bots.push(entity.id);
            }
            game.room.commit(op, Origin::SERVER)?;
        }
        game.room.flush();
        Ok(game)
    }

    /// The room the game runs.
    pub fn room(&self) -> &Arc<Room<Arena>> {
        &self.room
    }

    /// A number in `-limit..=limit` (xorshift: fast, deterministic per seed).
    fn random(&mut self, limit: i32) -> i32 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let span = u64::try_from(2 * limit + 1).unwrap_or(1);
        i32::try_from(self.seed % span).unwrap_or(0) - limit
    }

    /// One tick: the players' moves, one step of every bot, one flush.
    pub fn tick(&mut self) -> TickReport {
        let mut report = TickReport::default();
        self.inputs.clear();
        self.room.drain_inputs(&mut self.inputs);
        for input in std::mem::take(&mut self.inputs) {
            let decided = self
                .room
                .with_state(|arena, _| arena.decide(&input.actor, &input.input, 0));
            let origin = Origin {
                actor: Some(&input.actor),
                client_req_id: Some(&input.client_req_id),
            };
            match decided.and_then(|op| self.room.commit(op, origin)) {
                Ok(_) => {
                    report.applied += 1;
                    report.operations += 1;
                }
                Err(rejection) => {
                    self.room.reject(&input, &rejection);
                    report.rejected += 1;
                }
            }
        }
        for i in 0..self.bots.len() {
            let (id, dx, dy) = (self.bots[i], self.random(2), self.random(2));
            let op = self.room.with_state(|arena, _| arena.step(id, dx, dy));
            if let Some(op) = op {
                if self.room.commit(op, Origin::SERVER).is_ok() {
                    report.operations += 1;
                }
            }
        }
        report.rev = self.room.flush();
        report
    }
}

// The ring uses loom atomics under `cfg(loom)`; only the loom models run there.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::model::arena::Step;
    use crate::room::{FlushPolicy, InputPolicy};

    #[test]
    fn a_tick_applies_or_rejects_every_input_moves_every_bot_and_flushes_once() {
        let room = Room::builder("arena", Arena::default())
            .flush_policy(FlushPolicy::Tick)
            .input_policy(InputPolicy::Forward { capacity: 16 })
            .build()
            .unwrap();
        let room = Arc::new(room);
        let mut game = Game::new(Arc::clone(&room), 10, 42).unwrap();
        assert_eq!((room.rev(), room.published_rev()), (10, 10));
        room.join("p1", "P").unwrap();
        let input = |dx, id: &str| ClientInput {
            actor: "p1".into(),
            client_req_id: id.into(),
            base_rev: None,
            input: ArenaInput {
                step: Step { dx, dy: 0 },
            },
        };
        room.forward(input(3, "ok")).unwrap();
        room.forward(input(9, "far")).unwrap();
        let report = game.tick();
        assert_eq!(
            report,
            TickReport {
                applied: 1,
                rejected: 1,
                operations: 11,
                rev: 22
            }
        );
        assert_eq!(room.published_rev(), 22);
        assert_eq!(room.applied_rev("p1", "ok"), Some(12));
        assert_eq!(room.rejection_seq(), 1);
        room.with_state(|arena, _| assert_eq!(arena.avatar("p1").map(|e| e.x), Some(3)));
    }
}
