//! `deltasync serve`: runs the WebSocket server until SIGINT or SIGTERM.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use deltasync::clock::{Clock, ManualClock, SystemClock};
use deltasync::config::Config;
use deltasync::server::Server;
use deltasync::storage::{Backend, MemoryRevisions, RedisStorage, Storage, StorageError};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing_subscriber::EnvFilter;

use super::config::ConfigArgs;

/// Options of `deltasync serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Testing only: freeze the wall clock rooms use at MS (ms since the Unix epoch), as the
    /// conformance fixtures expect (`deltasync conformance --url` needs 1000)
    #[arg(long, value_name = "MS")]
    test_clock: Option<u64>,
}

/// Loads the configuration, starts the server, prints where it listens, and stops it
/// cleanly (close 1001 to every client) on SIGINT or SIGTERM. Exit 0 after a clean stop,
/// 2 on a configuration error, 1 if the server cannot start.
pub(crate) fn run(args: &ServeArgs) -> ExitCode {
    let mut config = match args.config.load() {
        Ok(effective) => effective.into_config(),
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    raise_file_limit(config.limits.max_connections);
    let listen = config.server.listen;
    let clock: Arc<dyn Clock> = match args.test_clock {
        Some(ms) => {
            tracing::warn!(
                ms,
                "the wall clock is frozen (--test-clock): for testing only"
            );
            // A frozen clock cannot date histories: revisions start at 0, as the
            // conformance fixtures expect.
            config.storage.memory_revisions = MemoryRevisions::FromZero;
            Arc::new(ManualClock::new(ms))
        }
        None => Arc::new(SystemClock),
    };
    let storage = match open_storage(&config, &*clock) {
        Ok(storage) => storage,
        Err(OpenError::Config(message)) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
        Err(OpenError::Storage(err)) => {
            eprintln!("error: cannot open the storage: {err}");
            return ExitCode::FAILURE;
        }
    };
    let described = storage.describe();
    let builder = Server::presence(config).clock(clock).storage(storage);
    let server = match builder.start() {
        Ok(server) => server,
        Err(err) => {
            eprintln!("error: cannot serve on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("error: cannot handle signals: {err}");
            server.shutdown();
            return ExitCode::FAILURE;
        }
    };
    // The first word after "on" is the URL; scripts read up to the first space.
    println!(
        "deltasync listening on ws://{}/ with storage {described}",
        server.local_addr()
    );
    let _ = std::io::stdout().flush();
    let handle = server.handle();
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            tracing::info!(signal, "stopping: closing every connection (1001)");
            handle.shutdown();
        }
    });
    server.join();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Why the storage could not be opened.
enum OpenError {
    /// The configuration asks for two backends at once.
    Config(String),
    /// The backend refused (a locked directory, an engine that does not answer).
    Storage(StorageError),
}

/// The storage the configuration asks for: the cluster's engine when `cluster.url` is set
/// (which then must not be combined with the disk backend), else `[storage]`'s backend.
/// An engine that does not answer at start is an error: a node that cannot commit
/// anything should not take clients.
fn open_storage(config: &Config, clock: &dyn Clock) -> Result<Arc<dyn Storage>, OpenError> {
    if config.cluster.url.is_none() {
        return deltasync::storage::open(&config.storage, clock).map_err(OpenError::Storage);
    }
    if config.storage.backend == Backend::Disk {
        return Err(OpenError::Config(
            "cluster.url and storage.backend = \"disk\" exclude each other: a cluster keeps room histories in its engine".into(),
        ));
    }
    let storage =
        RedisStorage::connect(&config.cluster, &config.storage).map_err(OpenError::Storage)?;
    Ok(Arc::new(storage))
}

/// Raises the soft open-file limit to the hard one, and warns when even that is below
/// `limits.max_connections` (connections beyond it wait in the listen backlog until
/// descriptors are freed).
fn raise_file_limit(max_connections: usize) {
    match super::nofile::raise() {
        Ok((soft, _)) if !super::nofile::fits(max_connections as u64, soft) => {
            tracing::warn!(
                open_files = soft,
                max_connections,
                "the open-file limit is below limits.max_connections; connections beyond it wait"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-file limit"),
    }
}

/// Logs to stderr at the level `RUST_LOG` asks (default `info`).
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
