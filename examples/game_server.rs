//! A headless game at 60 Hz served over WebSocket: bots move every tick, players' moves
//! are applied by the game, and every client gets one frame per tick.
//!
//! ```sh
//! cargo run --release --example game_server                      # ws://127.0.0.1:7374/rooms/arena
//! cargo run --release --example game_server -- 127.0.0.1:7374 100 30   # address, bots, seconds
//! ```
//!
//! Then `cargo run --release --example game_client` in another terminal.

// An example program is the I/O shell: it keeps real time.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deltasync::config::Config;
use deltasync::game::Game;
use deltasync::model::arena::Arena;
use deltasync::room::{FlushPolicy, InputPolicy};
use deltasync::server::ServerBuilder;

const TICK: Duration = Duration::from_micros(16_667);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:7374").parse()?;
    let bots: usize = args.next().as_deref().unwrap_or("100").parse()?;
    let seconds: u64 = args.next().as_deref().unwrap_or("0").parse()?;

    let mut config = Config::default();
    config.server.listen = listen;
    // The game owns the loop: the server only moves bytes. Rooms flush on the game's tick
    // and hand players' inputs to the game.
    let server = ServerBuilder::new(config, |_room: &str| Arena::default())
        .flush_policy(FlushPolicy::Tick)
        .input_policy(InputPolicy::Forward { capacity: 65_536 })
        .start()?;
    let room = server.room("arena")?;
    let mut game = Game::new(room, bots, 7)?;
    println!(
        "game on ws://{}/rooms/arena: {bots} bots, 60 Hz{}",
        server.local_addr(),
        if seconds > 0 {
            format!(", {seconds} s")
        } else {
            String::new()
        }
    );

    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;
    let started = Instant::now();
    let mut next = started + TICK;
    let mut second = (0u64, 0usize, 0usize, 0usize);
    while !stop.load(Ordering::Relaxed) && (seconds == 0 || started.elapsed().as_secs() < seconds) {
        let report = game.tick();
        second = (
            second.0 + 1,
            second.1 + report.operations,
            second.2 + report.applied,
            second.3 + report.rejected,
        );
        if second.0 == 60 {
            println!(
                "rev {:>8}  60 ticks  {:>5} ops  {:>4} moves applied  {:>3} rejected  {:>5} connections",
                report.rev,
                second.1,
                second.2,
                second.3,
                server.connections()
            );
            second = (0, 0, 0, 0);
        }
        // A fixed timestep: a late tick does not shift the ones after it.
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        next += TICK;
    }
    println!("stopping");
    server.shutdown();
    Ok(())
}
