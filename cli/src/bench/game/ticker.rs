//! The scenario's game loop: a fixed timestep on a thread of its own, as a game server
//! runs it (`examples/game_server.rs`). Each tick calls [`Game::tick`] (the players'
//! moves, one step of every bot, `room.flush()`), takes the clock just after, and records
//! the published revision with that instant in the [`TickLog`]. A late tick does not shift
//! the ones after it: tick `k` is due at `start + k·period`, and a loop that fell behind
//! runs the ticks due back to back. The loop ticks only while the log says so
//! ([`TickLog::set_ticking`]): from the start of the load (every client joined) until
//! the drain.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use hdrhistogram::Histogram;

use deltasync::game::Game;

use super::super::control::now;
use super::super::metrics;
use super::ticks::TickLog;

/// The game loop thread's name (as `/proc` shows it: at most 15 bytes).
pub(crate) const GAME_THREAD: &str = "game-loop";

/// How long a stopped loop sleeps between looks at its flags.
const IDLE_NAP: Duration = Duration::from_millis(1);

/// The running loop.
pub(crate) struct Ticker {
    handle: JoinHandle<Histogram<u64>>,
    stop: Arc<AtomicBool>,
}

impl Ticker {
    /// Starts ticking `game` every `period`, recording into `log`.
    ///
    /// # Errors
    ///
    /// If the thread cannot be started.
    pub(crate) fn spawn(game: Game, log: Arc<TickLog>, period: Duration) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name(GAME_THREAD.into())
            .spawn(move || run(game, &log, period, &flag))?;
        Ok(Self { handle, stop })
    }

    /// Stops the loop; returns how long its measured ticks took (µs, from the start of
    /// `Game::tick` to the instant after its flush).
    pub(crate) fn stop(self) -> Histogram<u64> {
        // Relaxed: a flag polled once per tick.
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_else(|_| metrics::histogram())
    }
}

fn run(mut game: Game, log: &TickLog, period: Duration, stop: &AtomicBool) -> Histogram<u64> {
    let mut work = metrics::histogram();
    // When the next tick is due; `None` while the loop is stopped (it starts afresh).
    let mut due = None;
    // Relaxed: see `Ticker::stop`.
    while !stop.load(Ordering::Relaxed) {
        if !log.is_ticking() {
            due = None;
            std::thread::sleep(IDLE_NAP);
            continue;
        }
        let began = now();
        let scheduled = *due.get_or_insert(began);
        let report = game.tick();
        let flushed = now();
        log.published(report.rev, flushed);
        let late = began > scheduled + period;
        log.tick(report.operations, report.applied, report.rejected, late);
        if log.measuring() {
            metrics::record(&mut work, flushed - began);
        }
        let due = due.insert(scheduled + period);
        let after = now();
        if *due > after {
            std::thread::sleep(*due - after);
        }
    }
    work
}
