//! The `deltasync` command: parses the command line and dispatches to a subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// deltasync: a delta-sync engine and WebSocket server.
#[derive(Debug, Parser)]
#[command(name = "deltasync", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version and the build's defaults.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("deltasync {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}
