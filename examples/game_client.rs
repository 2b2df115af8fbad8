//! A player of `examples/game_server.rs`: keeps its replica of the arena current, moves
//! its avatar, and at the end checks its replica against a fresh snapshot.
//!
//! ```sh
//! cargo run --release --example game_client -- ws://127.0.0.1:7374/rooms/arena player-1 10
//! ```

// An example program is the I/O shell: it keeps real time.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use deltasync::client::{Connector, ConnectorError};
use deltasync::model::arena::{Arena, ArenaInput, Step};

fn main() -> Result<(), ConnectorError> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:7374/rooms/arena".into());
    let player = args.next().unwrap_or_else(|| "player-1".into());
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);

    let mut client = Connector::<Arena>::connect(&url, &player, &player)?;
    println!("joined at rev {}", client.replica().server_rev());
    let started = Instant::now();
    let mut last_move = Instant::now();
    let (mut frames, mut sent) = (0u64, 0u64);
    let mut direction = 1;
    while started.elapsed() < Duration::from_secs(seconds) {
        if !client.poll(Duration::from_millis(5))?.is_empty() {
            frames += 1;
        }
        if last_move.elapsed() >= Duration::from_millis(100) {
            last_move = Instant::now();
            let x = client
                .replica()
                .visible()
                .and_then(|a| a.avatar(&player))
                .map_or(0, |e| e.x);
            if x.abs() > 50 {
                direction = -x.signum();
            }
            client.update(ArenaInput {
                step: Step {
                    dx: 3 * direction,
                    dy: 0,
                },
            })?;
            sent += 1;
        }
    }
    client.poll_until(Duration::from_secs(5), |r| r.pending().is_empty())?;
    let replica = client.replica();
    println!(
        "{frames} frames in {seconds} s ({:.1}/s), rev {}, {sent} moves sent, all acknowledged",
        frames as f64 / seconds as f64,
        replica.server_rev()
    );

    // A fresh connection (a snapshot) and our replica (every frame since we joined) must
    // hold the same arena once both are at the same revision: follow both until they meet.
    let mut fresh = Connector::<Arena>::connect(&url, &format!("{player}-check"), "check")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let (mine, theirs) = (client.replica().server_rev(), fresh.replica().server_rev());
        if mine == theirs {
            let same = client.replica().visible() == fresh.replica().visible();
            println!(
                "replica at rev {mine} {} the server's snapshot",
                if same { "equals" } else { "DIFFERS FROM" }
            );
            client.close();
            fresh.close();
            if !same {
                std::process::exit(1);
            }
            return Ok(());
        }
        // Read whichever is behind.
        if mine < theirs {
            client.poll(Duration::from_millis(50))?;
        } else {
            fresh.poll(Duration::from_millis(50))?;
        }
    }
    println!("the replicas never met at one revision within 5 s");
    std::process::exit(1);
}
