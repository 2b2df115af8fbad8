//! Loading across layers: defaults, each source, precedence, every kind of bad input (with
//! its exact message), the printout parsing back, and the docs' reference table.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::effective::Effective;
use super::keys::{KEYS, Kind};
use super::*;

/// A configuration file in the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "deltasync-config-unit-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        fs::write(&path, contents).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(var, value)| ((*var).to_owned(), (*value).to_owned()))
        .collect()
}

/// A command-line override: `(key, value, flag)`.
type Flag<'a> = (&'a str, &'a str, &'a str);

fn flags(given: &[Flag<'_>]) -> Overrides {
    let mut overrides = Overrides::new();
    for (key, value, flag) in given {
        overrides.push(*key, *value, *flag);
    }
    overrides
}

/// Loads with a file holding `toml` (if any), the environment `vars` and the flags `given`.
fn load(
    toml: Option<&str>,
    vars: &[(&str, &str)],
    given: &[Flag<'_>],
) -> (Result<Effective, ConfigError>, Option<TempFile>) {
    let file = toml.map(TempFile::new);
    let mut loader = Loader::new().env(env(vars)).overrides(flags(given));
    if let Some(file) = &file {
        loader = loader.file(file.path());
    }
    (loader.load(), file)
}

/// The message of the error loading a file holding `toml` gives, with the file's path
/// written as `FILE`.
fn file_error(toml: &str) -> String {
    let (result, file) = load(Some(toml), &[], &[]);
    let path = file
        .map(|f| f.path().display().to_string())
        .unwrap_or_default();
    result.unwrap_err().to_string().replace(&path, "FILE")
}

fn env_error(vars: &[(&str, &str)]) -> String {
    load(None, vars, &[]).0.unwrap_err().to_string()
}

fn flag_error(given: &[Flag<'_>]) -> String {
    load(None, &[], given).0.unwrap_err().to_string()
}

#[test]
fn nothing_given_loads_the_defaults() {
    let effective = Loader::new().load().unwrap();
    assert_eq!(effective.config(), &Config::default());
    assert!(
        effective
            .sources()
            .all(|(_, source)| source == &Source::Default)
    );
    assert_eq!(effective.file(), None);

    let config = Config::default();
    assert_eq!(config.server.listen, "127.0.0.1:7373".parse().unwrap());
    assert_eq!((config.server.shards, config.server.token), (0, None));
    let limits = &config.limits;
    assert_eq!(
        [
            limits.max_connections,
            limits.max_connections_per_ip,
            limits.max_rooms,
            limits.max_participants_per_room,
            limits.max_message_bytes,
            limits.max_client_req_id_bytes,
            limits.max_correlation_id_bytes
        ],
        [10_000, 1_000, 1_000, 1_000, 65_536, 128, 128]
    );
    assert_eq!(
        (limits.messages_per_second, limits.message_burst),
        (100, 200)
    );
    let timeouts = &config.timeouts;
    assert_eq!(
        [
            timeouts.handshake_ms,
            timeouts.idle_ms,
            timeouts.participant_ttl_ms,
            timeouts.room_idle_ms
        ],
        [5_000, 60_000, 30_000, 60_000]
    );
    let room = &config.room;
    assert_eq!(
        (
            room.ring_capacity.get(),
            room.dedup_window,
            room.snapshot_max_lag
        ),
        (1024, 65_536, 0)
    );
    assert_eq!(
        (config.presence.max_name_chars, config.presence.max_id_bytes),
        (64, 128)
    );
}

#[test]
fn each_source_sets_its_keys_and_is_recorded() {
    let toml = "[room]\nring_capacity = 2048\n[presence]\nmax_name_chars = 32\n";
    let (result, file) = load(
        Some(toml),
        &[
            ("DELTASYNC_SERVER_LISTEN", "0.0.0.0:9000"),
            ("DELTASYNC_SERVER_TOKEN", "s3cret"),
            ("PATH", "/usr/bin"),
        ],
        &[("limits.messages_per_second", "50", "--rate")],
    );
    let effective = result.unwrap();
    let file = file.unwrap();
    let config = effective.config();
    assert_eq!(config.room.ring_capacity.get(), 2048);
    assert_eq!(config.presence.max_name_chars, 32);
    assert_eq!(config.server.listen, SocketAddr::from(([0, 0, 0, 0], 9000)));
    assert_eq!(config.server.token.as_deref(), Some("s3cret"));
    assert_eq!(config.limits.messages_per_second, 50);
    assert_eq!(effective.file(), Some(file.path()));

    let from_file = Source::File(file.path().to_owned());
    let expected = [
        ("room.ring_capacity", from_file.clone()),
        ("presence.max_name_chars", from_file),
        (
            "server.listen",
            Source::Env("DELTASYNC_SERVER_LISTEN".into()),
        ),
        ("server.token", Source::Env("DELTASYNC_SERVER_TOKEN".into())),
        ("limits.messages_per_second", Source::Flag("--rate".into())),
        ("limits.message_burst", Source::Default),
    ];
    for (key, source) in expected {
        assert_eq!(effective.source(key), Some(&source), "{key}");
    }
    assert_eq!(effective.source("room.nope"), None);
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let file = Some("[room]\nring_capacity = 2000\n");
    let env = [("DELTASYNC_ROOM_RING_CAPACITY", "3000")];
    let flag = [("room.ring_capacity", "4000", "--ring-capacity")];
    let cases: [(Option<&str>, &[_], &[_], usize); 5] = [
        (file, &env, &flag, 4000),
        (file, &env, &[], 3000),
        (file, &[], &flag, 4000),
        (file, &[], &[], 2000),
        (None, &[], &[], 1024),
    ];
    for (toml, vars, given, expected) in cases {
        let (result, _file) = load(toml, vars, given);
        let config = result.unwrap().into_config();
        assert_eq!(
            config.room.ring_capacity.get(),
            expected,
            "{toml:?} {vars:?} {given:?}"
        );
    }
}

#[test]
fn the_config_file_comes_from_the_flag_or_else_the_environment() {
    let from_env = TempFile::new("[server]\nshards = 2\n");
    let from_flag = TempFile::new("[server]\nshards = 3\n");
    let vars = env(&[("DELTASYNC_CONFIG", &from_env.path().display().to_string())]);

    let effective = Loader::new().env(vars.clone()).load().unwrap();
    assert_eq!(effective.config().server.shards, 2);
    assert_eq!(effective.file(), Some(from_env.path()));

    let effective = Loader::new()
        .env(vars)
        .file(from_flag.path())
        .load()
        .unwrap();
    assert_eq!(effective.config().server.shards, 3);
    assert_eq!(effective.file(), Some(from_flag.path()));
}

#[test]
fn file_errors_name_the_key_the_value_and_the_file() {
    let cases = [
        (
            "[limits]\nmax_conections = 5\n",
            "unknown key limits.max_conections in FILE",
        ),
        (
            "[metrics]\nport = 9100\n",
            "unknown section [metrics] in FILE",
        ),
        ("ring_capacity = 5\n", "unknown key ring_capacity in FILE"),
        (
            "room = 5\n",
            "room in FILE must be a section ([room]), not an integer",
        ),
        (
            "[room.ring_capacity]\nx = 1\n",
            "room.ring_capacity = { x = 1 } (from FILE): must be an integer between 1 and \
             16777216, not a table",
        ),
        (
            "[room]\nring_capacity = 0\n",
            "room.ring_capacity = 0 (from FILE): must be between 1 and 16777216",
        ),
        (
            "[room]\nring_capacity = \"big\"\n",
            "room.ring_capacity = \"big\" (from FILE): must be an integer between 1 and \
             16777216, not a string",
        ),
        (
            "[room]\nring_capacity = 1024.0\n",
            "room.ring_capacity = 1024.0 (from FILE): must be an integer between 1 and \
             16777216, not a float",
        ),
        (
            "[room]\ndedup_window = -1\n",
            "room.dedup_window = -1 (from FILE): must be between 0 and 10000000",
        ),
        (
            "[server]\nshards = 257\n",
            "server.shards = 257 (from FILE): must be between 0 and 256",
        ),
        (
            "[limits]\nmax_message_bytes = 100\n",
            "limits.max_message_bytes = 100 (from FILE): must be between 128 and 16777216",
        ),
        (
            "[timeouts]\nidle_ms = 86400001\n",
            "timeouts.idle_ms = 86400001 (from FILE): must be between 1 and 86400000",
        ),
        (
            "[presence]\nmax_id_bytes = 0\n",
            "presence.max_id_bytes = 0 (from FILE): must be between 1 and 4096",
        ),
        (
            "[server]\nlisten = 9000\n",
            "server.listen = 9000 (from FILE): must be an IP address and port such as \
             \"127.0.0.1:7373\" or \"[::1]:7373\" (host names are not resolved), not an integer",
        ),
        (
            "[server]\nlisten = \"localhost:9000\"\n",
            "server.listen = \"localhost:9000\" (from FILE): must be an IP address and port \
             such as \"127.0.0.1:7373\" or \"[::1]:7373\" (host names are not resolved)",
        ),
        (
            "[server]\ntoken = \"\"\n",
            "server.token = \"\" (from FILE): must not be empty (leave the key unset to admit \
             every client)",
        ),
        (
            "[server]\ntoken = 12345678\n",
            "server.token = <redacted> (from FILE): must be a string, not an integer",
        ),
    ];
    for (toml, message) in cases {
        assert_eq!(file_error(toml), message, "{toml}");
    }
}

#[test]
fn an_unreadable_or_malformed_file_is_an_error_naming_it() {
    let missing = std::env::temp_dir().join("deltasync-config-unit-missing.toml");
    let err = Loader::new().file(&missing).load().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read configuration file {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
    let message = file_error("[room\n");
    assert!(
        message.starts_with(
            "configuration file FILE is not valid TOML: TOML parse error at line 1, column 6\n"
        ),
        "{message}"
    );
    let vars = env(&[("DELTASYNC_CONFIG", "")]);
    let err = Loader::new().env(vars).load().unwrap_err();
    assert_eq!(
        err.to_string(),
        "the configuration file path is empty (from DELTASYNC_CONFIG)"
    );
    let err = Loader::new().file("").load().unwrap_err();
    assert_eq!(
        err.to_string(),
        "the configuration file path is empty (from --config)"
    );
}

#[test]
fn env_errors_name_the_variable() {
    let cases = [
        (
            ("DELTASYNC_ROOM_RING_CAPACITY", "4k"),
            "room.ring_capacity = \"4k\" (from DELTASYNC_ROOM_RING_CAPACITY): must be an \
             integer between 1 and 16777216",
        ),
        (
            ("DELTASYNC_ROOM_RING_CAPACITY", "16777217"),
            "room.ring_capacity = 16777217 (from DELTASYNC_ROOM_RING_CAPACITY): must be \
             between 1 and 16777216",
        ),
        (
            ("DELTASYNC_LIMITS_MESSAGES_PER_SECOND", ""),
            "limits.messages_per_second = \"\" (from DELTASYNC_LIMITS_MESSAGES_PER_SECOND): \
             must be an integer between 1 and 1000000",
        ),
        (
            ("DELTASYNC_SERVER_LISTEN", "0.0.0.0"),
            "server.listen = \"0.0.0.0\" (from DELTASYNC_SERVER_LISTEN): must be an IP \
             address and port such as \"127.0.0.1:7373\" or \"[::1]:7373\" (host names are \
             not resolved)",
        ),
        (
            ("DELTASYNC_SERVER_TOKEN", ""),
            "server.token = \"\" (from DELTASYNC_SERVER_TOKEN): must not be empty (leave the \
             key unset to admit every client)",
        ),
    ];
    for (var, message) in cases {
        assert_eq!(env_error(&[var]), message);
    }
    // The reserved variables are not keys, and not errors either.
    assert!(load(None, &[("DELTASYNC_LOG", "debug")], &[]).0.is_ok());
}

#[test]
fn unknown_env_variables_are_warnings_whatever_the_environments_order() {
    let a = ("DELTASYNC_A", "1");
    let b = ("DELTASYNC_ROOM_RING_CAPACTY", "4096");
    let expected = [
        "ignoring unknown environment variable DELTASYNC_A (the nearest known one is \
         DELTASYNC_LOG)",
        "ignoring unknown environment variable DELTASYNC_ROOM_RING_CAPACTY (the nearest known \
         one is DELTASYNC_ROOM_RING_CAPACITY)",
    ];
    for vars in [[a, b], [b, a]] {
        let effective = load(None, &vars, &[]).0.unwrap();
        let warnings: Vec<String> = effective.warnings().iter().map(|w| w.to_string()).collect();
        assert_eq!(warnings, expected);
        // Ignored: the key keeps its default.
        assert_eq!(effective.config(), &Config::default());
    }
    // Known variables give no warning.
    let quiet = load(None, &[("DELTASYNC_ROOM_RING_CAPACITY", "8")], &[])
        .0
        .unwrap();
    assert_eq!(quiet.warnings(), []);
}

#[test]
fn flag_errors_name_the_flag() {
    let cases: [(&[Flag<'_>], &str); 4] = [
        (
            &[("room.ring_capacty", "5", "--set")],
            "unknown key room.ring_capacty (from --set)",
        ),
        (
            &[("room.ring_capacity", "0", "--ring-capacity")],
            "room.ring_capacity = 0 (from --ring-capacity): must be between 1 and 16777216",
        ),
        (
            &[("server.listen", "[::1]", "--listen")],
            "server.listen = \"[::1]\" (from --listen): must be an IP address and port such \
             as \"127.0.0.1:7373\" or \"[::1]:7373\" (host names are not resolved)",
        ),
        (
            &[
                ("room.ring_capacity", "10", "--ring-capacity"),
                ("room.ring_capacity", "20", "--set"),
            ],
            "room.ring_capacity is given twice on the command line (--ring-capacity and --set)",
        ),
    ];
    for (given, message) in cases {
        assert_eq!(flag_error(given), message);
    }
}

#[test]
fn a_bad_value_is_an_error_even_where_a_higher_layer_overrides_it() {
    let (result, file) = load(
        Some("[room]\nring_capacity = 0\n"),
        &[],
        &[("room.ring_capacity", "4096", "--ring-capacity")],
    );
    let path = file.unwrap().path().display().to_string();
    assert_eq!(
        result.unwrap_err().to_string(),
        format!("room.ring_capacity = 0 (from {path}): must be between 1 and 16777216")
    );
}

/// Every key set to something other than its default, from every kind of source.
fn everything_changed() -> (Effective, TempFile) {
    let toml = "[server]
listen = \"[::1]:9000\"
shards = 4
shutdown_close_code = \"going-away\"
\
                admin_listen = \"127.0.0.1:9090\"
flush_interval_us = 777
\
                send_buffer_bytes = 65536
recv_buffer_bytes = 32768
\
                [limits]\nmax_connections = 1\nmax_rooms = 2\nmax_message_bytes = 128\n\
                [timeouts]\nhandshake_ms = 1\nidle_ms = 86400000\n\
                [room]\nring_capacity = 16777216\ndedup_window = 0\n\
                [storage]\nbackend = \"disk\"\ndir = \"/var/lib/deltasync\"\nsync = \"always\"\n\
                sync_interval_ms = 7\nsnapshot_every = 5\nsegment_bytes = 4096\n";
    let (result, file) = load(
        Some(toml),
        &[
            ("DELTASYNC_SERVER_TOKEN", "s3cret"),
            ("DELTASYNC_LIMITS_MESSAGES_PER_SECOND", "7"),
            ("DELTASYNC_TIMEOUTS_PARTICIPANT_TTL_MS", "8"),
            ("DELTASYNC_ROOM_SNAPSHOT_MAX_LAG", "1000000000"),
            ("DELTASYNC_LIMITS_MAX_CONNECTIONS_PER_IP", "0"),
            ("DELTASYNC_SERVER_SHUTDOWN_GRACE_MS", "0"),
            ("DELTASYNC_CLUSTER_URL", "redis://10.0.0.5:6379"),
        ],
        &[
            ("limits.max_participants_per_room", "3", "--set"),
            ("limits.message_burst", "9", "--set"),
            ("limits.max_new_connections_per_ip_per_sec", "14", "--set"),
            ("limits.max_client_req_id_bytes", "4096", "--set"),
            ("limits.max_correlation_id_bytes", "4095", "--set"),
            ("timeouts.room_idle_ms", "10", "--set"),
            ("presence.max_name_chars", "11", "--set"),
            ("presence.max_id_bytes", "12", "--set"),
            ("storage.retain_ops", "13", "--set"),
            ("room.snapshot_reuse_percent", "50", "--set"),
            ("storage.memory_revisions", "from-zero", "--set"),
            ("server.public_endpoints", "health", "--set"),
            ("server.tls_cert", "/etc/deltasync/cert.pem", "--set"),
            ("server.tls_key", "/etc/deltasync/key.pem", "--set"),
            ("cluster.commit_retries", "0", "--set"),
            ("cluster.timeout_ms", "60000", "--set"),
            ("cluster.node_ttl_ms", "3000", "--set"),
        ],
    );
    (result.unwrap(), file.unwrap())
}

#[test]
fn the_printout_parses_back_to_the_same_config() {
    let (effective, _file) = everything_changed();
    let defaults = Config::default();
    for key in KEYS {
        match &key.kind {
            Kind::Count { get, .. } => {
                assert_ne!(get(effective.config()), get(&defaults), "{}", key.path());
            }
            Kind::Text { get, .. } => {
                assert_ne!(get(effective.config()), get(&defaults), "{}", key.path());
            }
            Kind::Address { .. } | Kind::Secret { .. } => {}
        }
    }
    let printed = effective.to_toml();
    let table: toml::Table = printed.parse().unwrap();
    let mut parsed = Effective::defaults();
    file::apply_table(&mut parsed, &table, Path::new("printed")).unwrap();

    let mut expected = effective.config().clone();
    expected.server.token = Some("<redacted>".into());
    assert_eq!(parsed.config(), &expected);
    assert!(!printed.contains("s3cret"));
}

#[test]
fn the_printout_shows_each_keys_meaning_value_and_source() {
    let (effective, file) = everything_changed();
    let path = file.path().display().to_string();
    let printed = effective.to_toml().replace(&path, "FILE");
    let expected = [
        "# deltasync configuration: each key's value and its source",
        "# configuration file: FILE",
        "",
        "[server]",
        "# IP address and port the WebSocket server listens on",
        "listen = \"[::1]:9000\"  # from FILE",
        "# event-loop threads; 0 means one per CPU core (0 to 256)",
        "shards = 4  # from FILE",
        "# shared secret clients must present; unset admits everyone",
        "token = \"<redacted>\"  # from DELTASYNC_SERVER_TOKEN",
        "# what a stopping server tells clients: `restart` (close 1012, come back) or `going-away` (close 1001, a final stop)",
        "shutdown_close_code = \"going-away\"  # from FILE",
        "# time a stopping server takes at most to flush, close and let clients answer; then it cuts the rest (0 to 86400000)",
        "shutdown_grace_ms = 0  # from DELTASYNC_SERVER_SHUTDOWN_GRACE_MS",
        "# a second address answering only /health, /ready and /metrics (no token); empty means none",
        "admin_listen = \"127.0.0.1:9090\"  # from FILE",
        "# which of /health, /ready and /metrics the WebSocket port answers too",
        "public_endpoints = \"health\"  # from --set",
        "# microseconds a room's connections wait after a write so the next carries more \
         operations; 0 never waits (0 to 1000000)",
        "flush_interval_us = 777  # from FILE",
        "# kernel send buffer per client socket (SO_SNDBUF); 0 keeps the OS default (0 to \
         67108864)",
        "send_buffer_bytes = 65536  # from FILE",
        "# kernel receive buffer per client socket (SO_RCVBUF); 0 keeps the OS default (0 to \
         67108864)",
        "recv_buffer_bytes = 32768  # from FILE",
        "# PEM file of the TLS certificate chain: with `tls_key`, serve `wss://` only; empty means plain `ws://`",
        "tls_cert = \"/etc/deltasync/cert.pem\"  # from --set",
        "# PEM file of the private key of `tls_cert`",
        "tls_key = \"/etc/deltasync/key.pem\"  # from --set",
        "",
        "[limits]",
    ];
    let head: Vec<&str> = printed.lines().take(expected.len()).collect();
    assert_eq!(head, expected);
    for line in [
        "messages_per_second = 7  # from DELTASYNC_LIMITS_MESSAGES_PER_SECOND\n",
        "message_burst = 9  # from --set\n",
        "max_connections_per_ip = 0  # from DELTASYNC_LIMITS_MAX_CONNECTIONS_PER_IP\n",
        "max_participants_per_room = 3  # from --set\n",
        "ring_capacity = 16777216  # from FILE\n",
        "max_id_bytes = 12  # from --set\n",
    ] {
        assert!(printed.contains(line), "{line}");
    }

    let defaults = Loader::new().load().unwrap().to_toml();
    assert!(defaults.contains("\n# configuration file: none\n"));
    assert!(defaults.contains(
        "\n# shared secret clients must present; unset admits everyone\n\
         # token is not set (default)\n"
    ));
}

#[test]
fn a_control_character_in_a_path_stays_inside_its_comment() {
    let mut effective = Effective::defaults();
    let table: toml::Table = "[server]\nshards = 1\n".parse().unwrap();
    file::apply_table(&mut effective, &table, Path::new("a\nb.toml")).unwrap();
    let printed = effective.to_toml();
    assert!(
        printed.contains("shards = 1  # from a\\nb.toml\n"),
        "{printed}"
    );
    assert!(printed.parse::<toml::Table>().is_ok());
}

/// The reference table in the docs, as the key table says it must read.
fn reference_table() -> String {
    let defaults = Config::default();
    let mut out = String::from(
        "| key | default | accepts | environment variable | meaning |\n|---|---|---|---|---|\n",
    );
    for key in KEYS {
        let (default, accepts) = match key.kind {
            Kind::Count { min, max, get, .. } => {
                (format!("`{}`", get(&defaults)), format!("{min} to {max}"))
            }
            Kind::Address { get, .. } => {
                (format!("`{}`", get(&defaults)), "IP address:port".into())
            }
            Kind::Secret { get, .. } => (
                get(&defaults).map_or("unset".into(), |_| "set".into()),
                "non-empty string".into(),
            ),
            Kind::Text { get, accepts, .. } => match get(&defaults) {
                // An optional path (`server.tls_cert`) prints as empty when unset.
                unset if unset.is_empty() => ("unset".into(), accepts.into()),
                default => (format!("`{default}`"), accepts.into()),
            },
        };
        let _ = writeln!(
            out,
            "| `{}` | {default} | {accepts} | `{}` | {} |",
            key.path(),
            key.env_var(),
            key.doc
        );
    }
    out
}

#[test]
fn the_docs_list_every_key_as_the_table_says() {
    let docs = include_str!("../../docs/configuration.md");
    let table = reference_table();
    assert!(
        docs.contains(&table),
        "docs/configuration.md must contain this table:\n{table}"
    );
}

#[test]
fn the_example_file_in_the_docs_loads() {
    let docs = include_str!("../../docs/configuration.md");
    let example = docs
        .split("## Example\n")
        .nth(1)
        .and_then(|rest| rest.split("```toml\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    let (result, _file) = load(Some(example), &[], &[]);
    let config = result.unwrap().into_config();
    assert_eq!(config.room.ring_capacity.get(), 8192);
    assert_eq!(config.limits.max_connections, 50_000);
}

#[test]
fn tls_files_are_optional_paths_that_empty_text_unsets() {
    let (result, _file) = load(
        None,
        &[("DELTASYNC_SERVER_TLS_CERT", "/etc/deltasync/cert.pem")],
        &[],
    );
    let effective = result.unwrap();
    assert_eq!(
        effective.config().server.tls_cert.as_deref(),
        Some(Path::new("/etc/deltasync/cert.pem"))
    );
    let printed = effective.to_toml();
    assert!(
        printed.contains(
            "\ntls_cert = \"/etc/deltasync/cert.pem\"  # from DELTASYNC_SERVER_TLS_CERT\n"
        )
    );
    assert!(
        printed.contains("\ntls_key = \"\"  # default\n"),
        "{printed}"
    );
    let (result, _file) = load(None, &[("DELTASYNC_SERVER_TLS_CERT", "")], &[]);
    assert_eq!(result.unwrap().config().server.tls_cert, None);
    // What is printed loads back to the same configuration.
    let (reloaded, _file) = load(Some(&printed), &[], &[]);
    assert_eq!(reloaded.unwrap().config(), effective.config());
}

#[test]
fn cluster_url_must_be_a_redis_url_and_empty_means_one_node() {
    let (result, _) = load(None, &[], &[("cluster.url", "nats://h:4222", "--cluster")]);
    assert_eq!(
        result.unwrap_err().to_string(),
        "cluster.url = \"nats://h:4222\" (from --cluster): must be a redis:// URL, or empty for one node"
    );
    let (result, _) = load(None, &[("DELTASYNC_CLUSTER_URL", "")], &[]);
    assert_eq!(result.unwrap().config().cluster.url, None);
}
