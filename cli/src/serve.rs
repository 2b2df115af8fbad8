//! `deltasync serve`: runs the WebSocket server until SIGINT or SIGTERM, then stops it
//! gracefully (see `docs/reliability.md`, "Restarts"); SIGHUP reloads the TLS certificate.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use deltasync::clock::{Clock, ManualClock, SystemClock};
use deltasync::config::Config;
use deltasync::server::Server;
use deltasync::storage::{Backend, MemoryRevisions, RedisStorage, Storage, StorageError};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
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
    /// How log lines are written to stderr: human (text) or json (one object per line,
    /// for log collectors)
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormat,
}

/// The format of the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Text for people, with colours on a terminal.
    Human,
    /// One JSON object per line: `timestamp`, `level`, `fields` (`message` and the
    /// event's fields), `target`.
    Json,
}

/// Loads the configuration, starts the server, prints where it listens, and stops it
/// gracefully on SIGINT or SIGTERM (both the same way: every client gets what it is owed,
/// then close `server.shutdown_close_code`, 1012 by default; the process exits within
/// `server.shutdown_grace_ms`); on SIGHUP it reloads the TLS certificate. Exit 0 after a
/// clean stop, 2 on a configuration error, 1 if the server cannot start.
pub(crate) fn run(args: &ServeArgs) -> ExitCode {
    let mut config = match args.config.load() {
        Ok(effective) => effective.into_config(),
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging(args.log_format);
    raise_file_limit(config.limits.max_connections);
    let listen = config.server.listen;
    let close = config.server.shutdown_close_code;
    let grace_ms = config.server.shutdown_grace_ms;
    let scheme = if config.server.tls_cert.is_some() {
        "wss"
    } else {
        "ws"
    };
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
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("error: cannot handle signals: {err}");
            server.shutdown();
            return ExitCode::FAILURE;
        }
    };
    // The first word after "on" is the URL; scripts read up to the first space.
    println!(
        "deltasync listening on {scheme}://{}/ with storage {described}",
        server.local_addr()
    );
    if let Some(admin) = server.admin_addr() {
        println!("health and metrics on http://{admin}/ (/health, /ready, /metrics)");
    }
    let _ = std::io::stdout().flush();
    let handle = server.handle();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal == SIGHUP {
                reload_tls(&handle);
                continue;
            }
            tracing::info!(
                signal,
                close_code = close.code(),
                grace_ms,
                "stopping: flushing and closing every connection ({close})"
            );
            handle.shutdown();
            return;
        }
    });
    server.join();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// SIGHUP: reads the TLS certificate and key again (new connections present them; open
/// ones keep theirs). A file that cannot be used is logged and the old certificate stays.
fn reload_tls(handle: &deltasync::server::ServerHandle) {
    match handle.reload_tls() {
        Ok(true) => tracing::info!("SIGHUP: TLS certificate reloaded"),
        Ok(false) => tracing::info!("SIGHUP: no TLS certificate to reload"),
        Err(error) => {
            tracing::error!(%error, "SIGHUP: TLS certificate not reloaded; the old one stays");
        }
    }
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

/// Logs to stderr at the level `RUST_LOG` asks (default `info`), in `format`.
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
