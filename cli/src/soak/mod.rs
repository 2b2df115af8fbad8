//! `deltasync soak`: hostile conditions against a real server, with a check that nothing
//! was lost.
//!
//! - The default mode is the soak (see `soak.rs`): hundreds of clients in several rooms
//!   against a `deltasync serve` child, writers at a steady rate, clients killed in the
//!   middle of a frame, stalled, reconnecting; at the end every client's state equals the
//!   room's, every update was answered exactly once, no delivery invariant broke, and the
//!   server's memory stayed within a stated bound. `--secs` (or `DELTASYNC_SOAK_SECS`)
//!   sets its length.
//! - `--storm` is the reconnect storm (see `storm.rs`): 10,000 clients of one room drop
//!   and reconnect at once, half within the ring and half beyond it; one snapshot
//!   encoding, every client current, and the latency of a client of another room.
//! - `--bad-actors` measures how much slowloris connections, 1 GiB frame headers, frames
//!   sent a byte at a time and update floods slow a well-behaved client down (see
//!   `bad_actors.rs`); `--secs` is then the length of each phase.
//!
//! Exit status: 0 when there was no violation, 1 when there was, 2 for bad options.

// The soak is an I/O shell around real sockets: its schedule runs on real time.
#![allow(clippy::disallowed_methods)]

mod bad_actors;
mod client;
mod faults;
mod fleet;
mod probe;
mod process;
mod storm;
mod storm_fleet;
mod wire;

use std::process::ExitCode;

/// Options of `deltasync soak`.
#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    /// Seconds of faults after the warm-up (default 5, or DELTASYNC_SOAK_SECS)
    #[arg(long, value_name = "SECS")]
    secs: Option<u64>,
    /// Simulated clients (default 60; with --storm, 10000)
    #[arg(long)]
    clients: Option<usize>,
    /// The reconnect storm instead of the soak
    #[arg(long)]
    storm: bool,
    /// Bad actors beside a well-behaved client, measured phase by phase
    #[arg(long, conflicts_with = "storm")]
    bad_actors: bool,
    /// With --bad-actors: the server's handshake timeout
    #[arg(long, default_value_t = 5000)]
    handshake_ms: u64,
    /// Participants the storm's clients join as (several clients share one)
    #[arg(long, default_value_t = 50)]
    participants: usize,
    /// Internal: run the storm's clients against ADDR, driven by stdin
    #[arg(long, value_name = "ADDR", hide = true)]
    storm_fleet: Option<std::net::SocketAddr>,
    /// Rooms the clients are spread over
    #[arg(long, default_value_t = 3)]
    rooms: usize,
    /// The server's ring capacity (small, so that clients fall behind it)
    #[arg(long, default_value_t = 64)]
    ring_capacity: usize,
    /// Updates per second of each writer (every fourth client of each room writes)
    #[arg(long, default_value_t = 4.0)]
    write_hz: f64,
    /// Faults per client per second
    #[arg(long, default_value_t = 0.1)]
    fault_rate: f64,
    /// Seed of the fault schedule
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The rooms' deduplication window (it fills during the run; the memory bound allows
    /// for it)
    #[arg(long, default_value_t = 8192)]
    dedup_window: usize,
}

/// Runs the soak; prints its report.
pub(crate) fn run(args: &SoakArgs) -> ExitCode {
    if let Some(addr) = args.storm_fleet {
        let clients = args.clients.unwrap_or(10_000);
        return match storm_fleet::run(addr, clients, args.participants) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: the storm's clients failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.storm {
        return run_storm(args);
    }
    let secs = match secs(args) {
        Ok(secs) => secs,
        Err(code) => return code,
    };
    if args.bad_actors {
        return run_bad_actors(args, secs);
    }
    let clients = args.clients.unwrap_or(60);
    if clients == 0 || args.rooms == 0 || args.rooms > clients {
        eprintln!("error: --clients and --rooms must be positive, with no more rooms than clients");
        return ExitCode::from(2);
    }
    let plan = faults::Plan {
        secs,
        clients,
        rooms: args.rooms,
        ring_capacity: args.ring_capacity,
        write_hz: args.write_hz,
        fault_rate: args.fault_rate,
        seed: args.seed,
        dedup_window: args.dedup_window,
    };
    match faults::run(&plan) {
        Ok(figures) => {
            print!("{}", faults::report(&plan, &figures));
            if figures.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: the soak could not run: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_storm(args: &SoakArgs) -> ExitCode {
    let plan = storm::Plan {
        clients: args.clients.unwrap_or(10_000).max(2),
        participants: args.participants.max(1),
        ring_capacity: args.ring_capacity,
    };
    match storm::run(&plan) {
        Ok(figures) => {
            print!("{}", storm::report(&plan, &figures));
            if figures.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: the storm could not run: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--secs`, else `DELTASYNC_SOAK_SECS`, else 5.
fn secs(args: &SoakArgs) -> Result<u64, ExitCode> {
    match args.secs {
        Some(secs) => Ok(secs),
        None => match std::env::var("DELTASYNC_SOAK_SECS") {
            Ok(value) => match value.parse() {
                Ok(secs) => Ok(secs),
                Err(_) => {
                    eprintln!(
                        "error: DELTASYNC_SOAK_SECS = {value:?}: must be a number of seconds"
                    );
                    Err(ExitCode::from(2))
                }
            },
            Err(_) => Ok(5),
        },
    }
}

fn run_bad_actors(args: &SoakArgs, secs: u64) -> ExitCode {
    let plan = bad_actors::Plan {
        secs,
        handshake_ms: args.handshake_ms,
    };
    match bad_actors::run(&plan) {
        Ok(figures) => {
            print!("{}", bad_actors::report(&plan, &figures));
            if figures.probe_errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: the bad actors could not run: {e}");
            ExitCode::FAILURE
        }
    }
}
