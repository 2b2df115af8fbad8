//! `deltasync config`, and the configuration flags every subcommand that needs a
//! configuration shares ([`ConfigArgs`]).
//!
//! The flags are the command-line layer of [`deltasync::config`]: the dedicated ones
//! (`--ring-capacity`) and the generic `--set section.key=value` become an [`Overrides`],
//! the process environment is read here (the library never reads it) and the library
//! does the rest, with the same checks and messages for every source.

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use deltasync::config::{ConfigError, ENV_PREFIX, Effective, Loader, Overrides};

/// The exit code of a configuration error: 2, as for clap's own usage errors.
const CONFIG_ERROR: u8 = 2;

/// Where the configuration comes from, in rising precedence: the file, the environment
/// (`DELTASYNC_<SECTION>_<KEY>`) and these flags. Flattened into each subcommand that
/// needs a configuration.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Configuration")]
pub(crate) struct ConfigArgs {
    /// Read this TOML file (else the file named by DELTASYNC_CONFIG, else none)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen on this IP address and port [server.listen]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Event-loop threads, 0 for one per CPU core [server.shards]
    #[arg(long, value_name = "N")]
    shards: Option<String>,
    /// Operations each room keeps for clients that resume [room.ring_capacity]
    #[arg(long, value_name = "N")]
    ring_capacity: Option<String>,
    /// Open connections at once [limits.max_connections]
    #[arg(long, value_name = "N")]
    max_connections: Option<String>,
    /// Rooms held at once [limits.max_rooms]
    #[arg(long, value_name = "N")]
    max_rooms: Option<String>,
    /// Largest message a client may send, in bytes [limits.max_message_bytes]
    #[arg(long, value_name = "N")]
    max_message_bytes: Option<String>,
    /// Sustained messages per second per connection [limits.messages_per_second]
    #[arg(long, value_name = "N")]
    rate: Option<String>,
    /// Close a connection silent for this long, in ms [timeouts.idle_ms]
    #[arg(long, value_name = "N")]
    idle_timeout_ms: Option<String>,
    /// Shared secret clients must present [server.token]; visible to other users, so prefer
    /// DELTASYNC_SERVER_TOKEN
    #[arg(long, value_name = "TOKEN")]
    token: Option<Redacted>,
    /// Serve wss:// with this PEM certificate chain (needs --tls-key) [server.tls_cert]
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<String>,
    /// The PEM private key of --tls-cert [server.tls_key]
    #[arg(long, value_name = "FILE")]
    tls_key: Option<String>,
    /// Keep room histories on disk in DIR [storage.dir; implies storage.backend=disk]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// Share rooms with the other nodes on this Redis engine, e.g. redis://127.0.0.1:6379
    /// [cluster.url]
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
    /// Set any key, e.g. --set room.dedup_window=0 (repeatable)
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    set: Vec<String>,
}

/// A secret given on the command line: its `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
struct Redacted(String);

impl From<String> for Redacted {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// The library refused the file, the environment or a flag.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A `DELTASYNC_*` variable holds bytes that are not UTF-8.
    #[error("environment variable {0} is not valid UTF-8")]
    NotUnicode(String),
}

impl ConfigArgs {
    /// The effective configuration from these flags, the process environment and the file.
    ///
    /// # Errors
    ///
    /// [`LoadError`] naming the key, the value and its source.
    ///
    /// What the library ignored (an unknown `DELTASYNC_*` variable) is printed on stderr
    /// as `warning: ...`, one line each, and loading goes on.
    pub(crate) fn load(&self) -> Result<Effective, LoadError> {
        let env = process_env()?;
        let effective = self.load_with_env(env)?;
        for warning in effective.warnings() {
            eprintln!("warning: {warning}");
        }
        Ok(effective)
    }

    /// The effective configuration from these flags, the environment `env` and the file.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the key, the value and its source.
    pub(crate) fn load_with_env(
        &self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Effective, ConfigError> {
        let mut loader = Loader::new().env(env).overrides(self.overrides()?);
        if let Some(path) = &self.config {
            loader = loader.file(path);
        }
        loader.load()
    }

    /// The flags as overrides: the dedicated ones first, then each `--set` in order.
    fn overrides(&self) -> Result<Overrides, ConfigError> {
        let mut overrides = Overrides::new();
        for (flag, key, value) in self.dedicated() {
            if let Some(value) = value {
                overrides.push(key, value, flag);
            }
        }
        if let Some(dir) = &self.data_dir {
            overrides.push("storage.backend", "disk", "--data-dir");
            overrides.push("storage.dir", dir, "--data-dir");
        }
        for arg in &self.set {
            overrides.push_set(arg)?;
        }
        Ok(overrides)
    }

    /// Each dedicated flag with the key it sets and its value, if given.
    fn dedicated(&self) -> [(&'static str, &'static str, Option<&str>); 12] {
        [
            ("--cluster", "cluster.url", self.cluster.as_deref()),
            ("--listen", "server.listen", self.listen.as_deref()),
            ("--shards", "server.shards", self.shards.as_deref()),
            (
                "--token",
                "server.token",
                self.token.as_ref().map(|t| t.0.as_str()),
            ),
            (
                "--ring-capacity",
                "room.ring_capacity",
                self.ring_capacity.as_deref(),
            ),
            (
                "--max-connections",
                "limits.max_connections",
                self.max_connections.as_deref(),
            ),
            ("--max-rooms", "limits.max_rooms", self.max_rooms.as_deref()),
            (
                "--max-message-bytes",
                "limits.max_message_bytes",
                self.max_message_bytes.as_deref(),
            ),
            ("--rate", "limits.messages_per_second", self.rate.as_deref()),
            (
                "--idle-timeout-ms",
                "timeouts.idle_ms",
                self.idle_timeout_ms.as_deref(),
            ),
            ("--tls-cert", "server.tls_cert", self.tls_cert.as_deref()),
            ("--tls-key", "server.tls_key", self.tls_key.as_deref()),
        ]
    }
}

/// The process's `DELTASYNC_*` variables (the others are none of ours).
fn process_env() -> Result<Vec<(String, String)>, LoadError> {
    let mut vars = Vec::new();
    for (var, value) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if !name.starts_with(ENV_PREFIX) {
            continue;
        }
        let name = name.into_owned();
        match (var.into_string(), value.into_string()) {
            (Ok(var), Ok(value)) => vars.push((var, value)),
            (_, _) => return Err(LoadError::NotUnicode(name)),
        }
    }
    Ok(vars)
}

/// `deltasync config`: prints the effective configuration, each key with its source, as
/// TOML on stdout (exit 0); or `error: <message>` on stderr (exit 2).
pub(crate) fn run(args: &ConfigArgs) -> ExitCode {
    let effective = match args.load() {
        Ok(effective) => effective,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    match io::stdout()
        .lock()
        .write_all(effective.to_toml().as_bytes())
    {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`deltasync config | head`): nothing left to say.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: cannot write the configuration: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};
    use deltasync::config::Source;

    use super::*;

    /// `ConfigArgs` alone, as a subcommand flattens it.
    #[derive(Debug, Parser)]
    struct Args {
        #[command(flatten)]
        config: ConfigArgs,
    }

    fn parse(args: &[&str]) -> ConfigArgs {
        let argv = std::iter::once("deltasync").chain(args.iter().copied());
        Args::try_parse_from(argv).unwrap().config
    }

    #[test]
    fn the_flags_are_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn every_dedicated_flag_sets_its_key() {
        let args = parse(&[
            "--listen=[::1]:9000",
            "--shards=3",
            "--token=s3cret",
            "--ring-capacity=4096",
            "--max-connections=5",
            "--max-rooms=6",
            "--max-message-bytes=1024",
            "--rate=7",
            "--idle-timeout-ms=8",
            "--tls-cert=/etc/deltasync/cert.pem",
            "--tls-key=/etc/deltasync/key.pem",
            "--cluster=redis://127.0.0.1:6380",
        ]);
        let effective = args.load_with_env([]).unwrap();
        let config = effective.config();
        assert_eq!(config.server.listen, "[::1]:9000".parse().unwrap());
        assert_eq!(config.server.token.as_deref(), Some("s3cret"));
        assert_eq!(
            [
                config.server.shards,
                config.room.ring_capacity.get(),
                config.limits.max_connections,
                config.limits.max_rooms,
                config.limits.max_message_bytes,
            ],
            [3, 4096, 5, 6, 1024]
        );
        assert_eq!(config.limits.messages_per_second, 7);
        assert_eq!(config.timeouts.idle_ms, 8);
        assert_eq!(
            (
                config.server.tls_cert.as_deref(),
                config.server.tls_key.as_deref()
            ),
            (
                Some(std::path::Path::new("/etc/deltasync/cert.pem")),
                Some(std::path::Path::new("/etc/deltasync/key.pem"))
            )
        );
        assert_eq!(
            config.cluster.url.as_deref(),
            Some("redis://127.0.0.1:6380")
        );
        for (flag, key, _) in args.dedicated() {
            assert_eq!(effective.source(key), Some(&Source::Flag(flag.into())));
        }
    }

    #[test]
    fn set_reaches_every_other_key_and_flags_beat_the_environment() {
        let args = parse(&[
            "--set",
            "room.dedup_window=0",
            "--set=presence.max_id_bytes=9",
        ]);
        let env = [
            ("DELTASYNC_ROOM_DEDUP_WINDOW".to_owned(), "5".to_owned()),
            ("DELTASYNC_ROOM_SNAPSHOT_MAX_LAG".to_owned(), "6".to_owned()),
        ];
        let effective = args.load_with_env(env).unwrap();
        let config = effective.config();
        assert_eq!(
            (config.room.dedup_window, config.room.snapshot_max_lag),
            (0, 6)
        );
        assert_eq!(config.presence.max_id_bytes, 9);
        assert_eq!(
            effective.source("room.dedup_window"),
            Some(&Source::Flag("--set".into()))
        );
    }

    #[test]
    fn bad_flags_are_errors_naming_them() {
        let cases = [
            (
                vec!["--set", "room.dedup_window"],
                r#"--set "room.dedup_window" is not of the form section.key=value"#,
            ),
            (
                vec!["--set", "room.dedup_windw=1"],
                "unknown key room.dedup_windw (from --set)",
            ),
            (
                vec!["--rate", "fast"],
                r#"limits.messages_per_second = "fast" (from --rate): must be an integer between 1 and 1000000"#,
            ),
            (
                vec!["--token="],
                r#"server.token = "" (from --token): must not be empty (leave the key unset to admit every client)"#,
            ),
            (
                vec!["--shards", "2", "--set", "server.shards=3"],
                "server.shards is given twice on the command line (--shards and --set)",
            ),
        ];
        for (args, message) in cases {
            let err = parse(&args).load_with_env([]).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let args = parse(&["--token", "s3cret"]);
        let shown = format!("{args:?}");
        assert!(shown.contains("token: Some(<redacted>)"), "{shown}");
        assert!(!shown.contains("s3cret"));
    }
}
