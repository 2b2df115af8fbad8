//! `deltasync bench --game`: N clients against a game server at its tick rate.
//!
//! In this process it starts a server of arena rooms with `FlushPolicy::Tick` and
//! `InputPolicy::Forward` (as `examples/game_server.rs` does), a [`Game`] on room `arena`
//! with `--bots` bots, and a game loop at a fixed timestep of `--tick-hz`
//! ([`ticker`]). The loop records, for every flush, the revision it published and the
//! instant just after it ([`TickLog`]). The bench's clients join `/rooms/arena` and, for
//! every `SYNC.DELTAS` they receive, besides the bench's usual checks (contiguity, every
//! operation in order), look its `toRev` up in that log ([`TickTracker`]): it must be a
//! published tick revision (a frame ends at a tick boundary), and the receipt instant
//! minus the flush's instant is the frame's commit-to-receipt latency.
//!
//! With `--players-move N` every client sends a move every N ticks (spread evenly over
//! the clients); the game applies them on its next tick, and each must come back to its
//! sender in the stream exactly once (the bench's acknowledgement checks).
//!
//! The loop starts ticking when the load starts, once every client has joined (the
//! warmup then begins): what is measured is the steady state of N clients, not a join
//! storm into a running game (at 10,000 clients that storm alone overran the machine:
//! clients behind the ring got snapshots of the whole arena, which put more behind). At
//! the end of the window the driver drains: once every move is answered it stops the
//! loop, every client reaches the head, and the checks run.
//!
//! | module | holds |
//! |---|---|
//! | `ticks` | the log of flushes (revision, instant) and the game's counters; the rev lookup |
//! | `ticker` | the game loop thread |
//! | `frames` | what a receiving thread measures of each frame |
//! | `report` | the table and the JSON object |

mod frames;
mod report;
mod ticker;
mod ticks;

use std::sync::Arc;
use std::time::Duration;

use deltasync::config::Config;
use deltasync::game::Game;
use deltasync::model::arena::Arena;
use deltasync::room::{FlushPolicy, InputPolicy};
use deltasync::server::{Server, ServerBuilder};

pub(crate) use frames::{Frame, TickMetrics, TickTracker};
pub(crate) use report::GameReport;
pub(crate) use ticks::{Counters, TickLog};

use super::client::{Endpoint, NodeAddr};
use super::control::now;
use super::cpu::Machine;
use super::driver::{self, ServerProcess};
use super::scenario::{GameSpec, Load, Scenario};
use report::{GameFigures, GameScenario, GameSide};
use ticker::Ticker;

/// The room the game runs and the clients join.
const ROOM: &str = "arena";
/// The seed of the bots' moves.
const SEED: u64 = 7;
/// Slack in the tick log beyond the longest the run can last.
const LOG_SLACK: Duration = Duration::from_secs(60);

/// Runs the game scenario against a server configured by `config`.
///
/// # Errors
///
/// A message if the server, the game or its loop cannot start.
pub(crate) fn run(
    scenario: &Scenario,
    spec: GameSpec,
    config: &Config,
) -> Result<GameReport, String> {
    let load = &scenario.load;
    let server = ServerBuilder::new(config.clone(), |_room: &str| Arena::default())
        .flush_policy(FlushPolicy::Tick)
        .input_policy(InputPolicy::Forward {
            capacity: input_capacity(load.clients),
        })
        .start()
        .map_err(|e| format!("cannot start the in-process game server: {e}"))?;
    let outcome = drive(&server, scenario, spec);
    server.shutdown();
    let (run, side) = outcome?;
    Ok(GameReport {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: Machine::read(),
        scenario: GameScenario::of(load, spec, ROOM, config.room.ring_capacity.get()),
        violations: run.violations.total(),
        result: GameFigures::of(run, &side),
    })
}

/// The game and its loop on `server`, and the load against it.
fn drive(
    server: &Server<Arena>,
    scenario: &Scenario,
    spec: GameSpec,
) -> Result<(driver::RunResult, GameSide), String> {
    let load = &scenario.load;
    let room = server
        .room(ROOM)
        .map_err(|e| format!("cannot create room {ROOM}: {e}"))?;
    let game =
        Game::new(room, spec.bots, SEED).map_err(|e| format!("cannot spawn the bots: {e}"))?;
    let log = Arc::new(TickLog::new(now(), log_capacity(load, spec)));
    log.published(game.room().published_rev(), now());
    let ticker = Ticker::spawn(game, Arc::clone(&log), spec.period())
        .map_err(|e| format!("cannot start the game loop: {e}"))?;
    let addr = server.local_addr();
    let endpoint = Endpoint {
        nodes: vec![NodeAddr {
            addr,
            host: addr.to_string(),
        }],
        targets: vec![format!("/rooms/{ROOM}")],
        tls: None,
    };
    let game_log = Some(Arc::clone(&log));
    let run = driver::run(
        load,
        endpoint,
        ServerProcess::InProcess,
        game_log,
        &[],
        scenario.quiet,
    );
    let work = ticker.stop();
    Ok((
        run,
        GameSide {
            work,
            flushes: log.recorded(),
        },
    ))
}

/// The queue of players' moves waiting for the next tick: several ticks of every
/// client's moves.
fn input_capacity(clients: usize) -> usize {
    clients.saturating_mul(4).max(65_536)
}

/// Flushes the log can hold: one per tick for the longest the run can last (connect,
/// warmup, window, the longest drain) and some slack.
fn log_capacity(load: &Load, spec: GameSpec) -> usize {
    let longest =
        load.connect_timeout + load.warmup + load.duration + load.drain_timeout * 10 + LOG_SLACK;
    (longest.as_secs_f64() * spec.tick_hz).ceil() as usize
}
