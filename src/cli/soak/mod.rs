//! `deltasync soak`: hostile conditions against a real server, with a check that nothing
//! was lost.
//!
//! - The default mode is the soak (see `soak.rs`): hundreds of clients in several rooms
//!   against a `deltasync serve` child, writers at a steady rate, clients killed in the
//!   middle of a frame, stalled, reconnecting; at the end every client's state equals the
//!   room's, every update was answered exactly once, no delivery invariant broke, and the
//!   server's memory stayed within a stated bound. `--secs` (or `DELTASYNC_SOAK_SECS`)
//!   sets its length.
//!
//! Exit status: 0 when there was no violation, 1 when there was, 2 for bad options.

// The soak is an I/O shell around real sockets: its schedule runs on real time.
#![allow(clippy::disallowed_methods)]

mod client;
mod faults;
mod fleet;
mod process;
mod wire;

use std::process::ExitCode;

/// Options of `deltasync soak`.
#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    /// Seconds of faults after the warm-up (default 5, or DELTASYNC_SOAK_SECS)
    #[arg(long, value_name = "SECS")]
    secs: Option<u64>,
    /// Simulated clients
    #[arg(long, default_value_t = 60)]
    clients: usize,
    /// Rooms the clients are spread over
    #[arg(long, default_value_t = 3)]
    rooms: usize,
    /// The server's ring capacity (small, so that clients fall behind it)
    #[arg(long, default_value_t = 64)]
    ring_capacity: usize,
    /// Updates per second of each writer (every fourth client writes)
    #[arg(long, default_value_t = 4.0)]
    write_hz: f64,
    /// Faults per client per second
    #[arg(long, default_value_t = 0.1)]
    fault_rate: f64,
    /// Seed of the fault schedule
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Runs the soak; prints its report.
pub(crate) fn run(args: &SoakArgs) -> ExitCode {
    let secs = match args.secs {
        Some(secs) => secs,
        None => match std::env::var("DELTASYNC_SOAK_SECS") {
            Ok(value) => match value.parse() {
                Ok(secs) => secs,
                Err(_) => {
                    eprintln!(
                        "error: DELTASYNC_SOAK_SECS = {value:?}: must be a number of seconds"
                    );
                    return ExitCode::from(2);
                }
            },
            Err(_) => 5,
        },
    };
    if args.clients == 0 || args.rooms == 0 || args.rooms > args.clients {
        eprintln!("error: --clients and --rooms must be positive, with no more rooms than clients");
        return ExitCode::from(2);
    }
    let plan = faults::Plan {
        secs,
        clients: args.clients,
        rooms: args.rooms,
        ring_capacity: args.ring_capacity,
        write_hz: args.write_hz,
        fault_rate: args.fault_rate,
        seed: args.seed,
        dedup_window: 8192,
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
