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
//!   `bad_actors.rs`); `--secs` is then the length of each window, `--phases` picks some,
//!   `--repeat` runs the sequence again on fresh servers, `--probes` sets how many probes
//!   each room has, and `--actors-apart` runs the attackers in a child process under
//!   `SCHED_IDLE`.
//!
//! - `--kill-server` kills the server with SIGKILL at random moments (`--kills`, default
//!   20) while writers and readers work, and restarts it on its data directory; every
//!   acknowledged update must survive exactly once (see `kill_server.rs`).
//!
//! - `--cluster` runs the kill-server soak's clients and checker against a cluster on
//!   this machine (a `redis-server` engine and `--nodes` nodes): random nodes killed with
//!   SIGKILL and restarted, the engine killed and restarted once, for `--secs`; clients
//!   move to another node and resume there (see `cluster.rs`).
//!
//! Exit status: 0 when there was no violation, 1 when there was, 2 for bad options.

// The soak is an I/O shell around real sockets: its schedule runs on real time.
#![allow(clippy::disallowed_methods)]

mod bad_actors;
mod bad_actors_report;
mod client;
mod cluster;
mod faults;
mod fleet;
mod kill_server;
mod phase_cpu;
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
    /// With --bad-actors: run the attackers in a child process under SCHED_IDLE
    /// (`chrt --idle 0`), as if from another machine, instead of beside the server
    #[arg(long, requires = "bad_actors")]
    actors_apart: bool,
    /// With --bad-actors: run the whole sequence this many times, each on a fresh server,
    /// and report each phase's factor as the median and the range
    #[arg(long, default_value_t = 1, requires = "bad_actors", value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// With --bad-actors: probes in the attacked room, and as many in a room of their own
    #[arg(long, default_value_t = 2, requires = "bad_actors", value_parser = clap::value_parser!(u64).range(1..=50))]
    probes: u64,
    /// With --bad-actors: the phases to run after `quiet` (default: all)
    #[arg(
        long,
        value_delimiter = ',',
        requires = "bad_actors",
        value_parser = clap::builder::PossibleValuesParser::new(bad_actors::PHASES)
    )]
    phases: Vec<String>,
    /// With --bad-actors: a setting of the server, `KEY=VALUE` as `deltasync serve --set`
    /// takes it (repeatable), e.g. `server.flush_interval_us=0`
    #[arg(long, value_name = "KEY=VALUE", requires = "bad_actors")]
    server_set: Vec<String>,
    /// Internal: run the attackers of the phase `--actors` against ADDR until stdin ends
    #[arg(long, value_name = "ADDR", hide = true)]
    bad_actors_fleet: Option<std::net::SocketAddr>,
    /// Internal: with --bad-actors-fleet, the phase whose attackers to run
    #[arg(long, hide = true, default_value = "all")]
    actors: String,
    /// Participants the storm's clients join as (several clients share one)
    #[arg(long, default_value_t = 50)]
    participants: usize,
    /// Kill the server (SIGKILL) at random moments and restart it on its data directory
    #[arg(long, conflicts_with_all = ["storm", "bad_actors"])]
    kill_server: bool,
    /// With --kill-server: how many kills and restarts
    #[arg(long, default_value_t = 20)]
    kills: u32,
    /// With --kill-server or --cluster: the longest wait between two kills, in ms
    /// (default 400 with --kill-server, 4000 with --cluster)
    #[arg(long)]
    kill_interval_ms: Option<u64>,
    /// Run the kill-server soak against a cluster started here: a redis-server engine
    /// and --nodes nodes, random nodes killed (SIGKILL) and restarted, the engine
    /// killed and restarted once half-way, for --secs
    #[arg(long, conflicts_with_all = ["storm", "bad_actors", "kill_server", "in_memory"])]
    cluster: bool,
    /// With --cluster: nodes
    #[arg(long, default_value_t = 3, requires = "cluster")]
    nodes: usize,
    /// With --cluster: how long a killed node stays down, in ms
    #[arg(long, default_value_t = 1000, requires = "cluster")]
    node_down_ms: u64,
    /// With --cluster: how long the engine stays down at its restart, in ms
    #[arg(long, default_value_t = 3000, requires = "cluster")]
    engine_down_ms: u64,
    /// With --cluster: the engine's appendfsync
    #[arg(long, value_enum, default_value = "always", requires = "cluster")]
    engine_fsync: crate::cluster_harness::EngineFsync,
    /// With --cluster: a writer's pause after each answered update, in ms
    #[arg(long, default_value_t = 20, requires = "cluster")]
    write_pause_ms: u64,
    /// With --kill-server: the server's storage.sync
    #[arg(long, default_value = "always")]
    sync: String,
    /// With --kill-server: keep history in memory instead of on disk, to see what the
    /// checker counts when a restart loses it
    #[arg(long)]
    in_memory: bool,
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
    if let Some(addr) = args.bad_actors_fleet {
        return match bad_actors::run_fleet(addr, &args.actors) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: the bad actors' process failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.storm {
        return run_storm(args);
    }
    if args.kill_server {
        return run_kill_server(args);
    }
    let secs = match secs(args) {
        Ok(secs) => secs,
        Err(code) => return code,
    };
    if args.cluster {
        return run_cluster(args, secs);
    }
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

fn run_kill_server(args: &SoakArgs) -> ExitCode {
    let plan = kill_server::Plan {
        kills: args.kills,
        rooms: args.rooms,
        writers: 3,
        readers: 2,
        sync: args.sync.clone(),
        disk: !args.in_memory,
        seed: args.seed,
        interval_ms: args.kill_interval_ms.unwrap_or(400).max(4),
        write_pause_ms: 0,
    };
    match kill_server::run(&plan) {
        Ok(figures) => {
            print!("{}", kill_server::report(&plan, &figures));
            if figures.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: the kill-server soak could not run: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_cluster(args: &SoakArgs, secs: u64) -> ExitCode {
    if !(1..=16).contains(&args.nodes) || args.rooms == 0 {
        eprintln!("error: --nodes must be between 1 and 16, --rooms at least 1");
        return ExitCode::from(2);
    }
    let plan = cluster::Plan {
        clients: kill_server::Plan {
            kills: 0,
            rooms: args.rooms,
            writers: 3,
            readers: 2,
            sync: args.engine_fsync.as_str().to_owned(),
            disk: false,
            seed: args.seed,
            interval_ms: args.kill_interval_ms.unwrap_or(4000).max(4),
            write_pause_ms: args.write_pause_ms,
        },
        nodes: args.nodes,
        secs,
        node_down_ms: args.node_down_ms,
        engine_down_ms: args.engine_down_ms,
        fsync: args.engine_fsync,
    };
    match cluster::run(&plan) {
        Ok(figures) => {
            print!("{}", cluster::report(&plan, &figures));
            if figures.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: the cluster soak could not run: {e}");
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
        apart: args.actors_apart,
        phases: args.phases.clone(),
        server_sets: args.server_set.clone(),
        repeat: args.repeat,
        probes: usize::try_from(args.probes).unwrap_or(1),
    };
    if let Err(message) = bad_actors::server_config(&plan.server_sets) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
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
