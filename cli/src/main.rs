//! The `deltasync` command: parses the command line and dispatches to a subcommand.
//!
//! Each subcommand is a module of its own that owns its options (clap derive) and a `run`
//! returning the process's exit code. They use only the library's public API: the binary
//! is the library's first embedder.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod cluster_harness;
mod config;
mod conformance;
mod nofile;
mod serve;
mod soak;

/// deltasync: a delta-sync engine and WebSocket server.
#[derive(Debug, Parser)]
#[command(name = "deltasync", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once, on main's stack: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the WebSocket server (on 127.0.0.1:7373 unless configured otherwise).
    Serve(serve::ServeArgs),
    /// Run every conformance fixture of a directory against the in-process engine.
    Conformance(conformance::ConformanceArgs),
    /// Hostile conditions against a real server (faults, reconnects, slow readers), then
    /// a check that nothing was lost.
    Soak(soak::SoakArgs),
    /// Print the version.
    Version,
    /// Load a server with many clients, measure fan-out and check every delivery.
    #[command(
        after_help = "With no arguments: 1,000 clients in one room of an in-process server, \
        one writer at 1,000 updates/s, 10 s measured after 2 s of warmup. With --game: the \
        clients in the arena room of an in-process game server ticking at --tick-hz (60), \
        frames timed from each tick's flush. Exit 0 when every check passed, 1 on a violation (lost, duplicated or reordered data), 2 on bad options. \
        docs/benchmarks.md has the method and the results."
    )]
    Bench(bench::BenchArgs),
    /// Print the effective configuration as TOML, each key with its source.
    #[command(
        after_help = "Precedence: flag > environment > file > default. Every key has an \
        environment variable DELTASYNC_<SECTION>_<KEY>, e.g. DELTASYNC_ROOM_RING_CAPACITY=4096; \
        the keys are listed in docs/configuration.md."
    )]
    Config(config::ConfigArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("deltasync {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Config(args) => config::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Conformance(args) => conformance::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Soak(args) => soak::run(&args),
    }
}
