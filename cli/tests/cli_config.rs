//! `deltasync config`, run as a user runs it: the real binary, a configuration file, the
//! environment and flags; whole outputs and exit codes compared.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A configuration file in the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(test: &str, contents: &str) -> Self {
        let name = format!("deltasync-cli-config-{}-{test}.toml", std::process::id());
        let path = std::env::temp_dir().join(name);
        fs::write(&path, contents).unwrap();
        Self(path)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Runs `deltasync config args` with exactly the `DELTASYNC_*` variables `env` (those of
/// the environment running the tests are removed).
fn deltasync_config(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deltasync"));
    command.arg("config").args(args);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("DELTASYNC_") {
            command.env_remove(var);
        }
    }
    command.envs(env.iter().copied()).output().unwrap()
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[test]
fn prints_every_key_with_its_value_and_source() {
    let file = TempFile::new(
        "sources",
        "[server]\nlisten = \"0.0.0.0:7373\"\n\n[room]\nring_capacity = 4096\n",
    );
    let path = file.path();
    let output = deltasync_config(
        &[
            "--config",
            &path,
            "--rate",
            "50",
            "--set",
            "room.dedup_window=0",
        ],
        &[
            ("DELTASYNC_SERVER_TOKEN", "s3cret"),
            ("DELTASYNC_ROOM_RING_CAPACITY", "8192"),
        ],
    );
    assert_eq!(text(&output.stderr), "");
    assert_eq!(output.status.code(), Some(0));
    let expected = format!(
        r#"# deltasync configuration: each key's value and its source
# configuration file: {path}

[server]
# IP address and port the WebSocket server listens on
listen = "0.0.0.0:7373"  # from {path}
# event-loop threads; 0 means one per CPU core (0 to 256)
shards = 0  # default
# shared secret clients must present; unset admits everyone
token = "<redacted>"  # from DELTASYNC_SERVER_TOKEN
# what a stopping server tells clients: `restart` (close 1012, come back) or `going-away` (close 1001, a final stop)
shutdown_close_code = "restart"  # default
# time a stopping server takes at most to flush, close and let clients answer; then it cuts the rest (0 to 86400000)
shutdown_grace_ms = 10000  # default
# a second address answering only /health, /ready and /metrics (no token); empty means none
admin_listen = ""  # default
# which of /health, /ready and /metrics the WebSocket port answers too
public_endpoints = "all"  # default
# microseconds a room's connections wait after a write so the next carries more operations; 0 never waits (0 to 1000000)
flush_interval_us = 10000  # default
# kernel send buffer per client socket (SO_SNDBUF); 0 keeps the OS default (0 to 67108864)
send_buffer_bytes = 0  # default
# kernel receive buffer per client socket (SO_RCVBUF); 0 keeps the OS default (0 to 67108864)
recv_buffer_bytes = 0  # default
# PEM file of the TLS certificate chain: with `tls_key`, serve `wss://` only; empty means plain `ws://`
tls_cert = ""  # default
# PEM file of the private key of `tls_cert`
tls_key = ""  # default

[limits]
# open WebSocket connections at once (1 to 10000000)
max_connections = 10000  # default
# open connections from one client IP address; 0 means no limit (behind a proxy) (0 to 10000000)
max_connections_per_ip = 1000  # default
# new connections one client IP address may open per second (and at once); 0 means no limit (0 to 10000000)
max_new_connections_per_ip_per_sec = 1000  # default
# rooms held at once (1 to 1000000)
max_rooms = 1000  # default
# participants one room admits at once; 0 means no limit (0 to 10000000)
max_participants_per_room = 1000  # default
# largest message a client may send, in bytes (128 to 16777216)
max_message_bytes = 65536  # default
# sustained messages per second one connection may send (1 to 1000000)
messages_per_second = 50  # from --rate
# messages one connection may send at once before the rate applies (1 to 1000000)
message_burst = 200  # default
# longest `clientReqId`, in bytes (1 to 4096)
max_client_req_id_bytes = 128  # default
# longest `meta.correlationId`, in bytes (1 to 4096)
max_correlation_id_bytes = 128  # default

[timeouts]
# time a new connection has to complete the WebSocket upgrade (1 to 86400000)
handshake_ms = 5000  # default
# a connection silent this long (no message, no heartbeat) is closed (1 to 86400000)
idle_ms = 60000  # default
# a participant with no connection left is removed after this (1 to 86400000)
participant_ttl_ms = 30000  # default
# an empty room is dropped after this (1 to 86400000)
room_idle_ms = 60000  # default

[room]
# operations each room keeps for clients that resume (1 to 16777216)
ring_capacity = 8192  # from DELTASYNC_ROOM_RING_CAPACITY
# recent `clientReqId`s each room remembers; 0 disables deduplication (0 to 10000000)
dedup_window = 0  # from --set
# revisions a snapshot served to a joining client may lag the head (0 to 1000000000)
snapshot_max_lag = 0  # default
# a joining client is served the last snapshot while what was committed after it is at most this % of its size (0 to 100)
snapshot_reuse_percent = 25  # default

[presence]
# longest participant name, in characters (1 to 4096)
max_name_chars = 64  # default
# longest participant id, in bytes (1 to 4096)
max_id_bytes = 128  # default

[storage]
# where room histories live: `memory` (lost at restart) or `disk` (in `storage.dir`)
backend = "memory"  # default
# the data directory of the `disk` backend (created if missing; one server at a time)
dir = "deltasync-data"  # default
# when the log is fsynced: `always` (before anyone sees an update), `interval`, `never` (the OS decides)
sync = "interval"  # default
# the fsync period of `sync = "interval"` (1 to 60000)
sync_interval_ms = 100  # default
# a room's state is stored every this many operations (recovery replays at most that many) (1 to 1000000000)
snapshot_every = 10000  # default
# a log segment is closed past this size; compaction deletes whole segments (4096 to 4294967296)
segment_bytes = 16777216  # default
# operations kept in the log behind the latest snapshot, beyond what the ring needs (0 to 1099511627776)
retain_ops = 0  # default
# where a new in-memory history starts: `restart-safe` (above any earlier one) or `from-zero`
memory_revisions = "restart-safe"  # default

[cluster]
# the Redis engine several nodes share rooms through (`redis://host:port`); empty: one node
url = ""  # default
# times in a row a commit may lose its revision to another node before it is refused (retryable) (0 to 1000)
commit_retries = 64  # default
# how long one call to the engine may take, connecting included (10 to 60000)
timeout_ms = 2000  # default
# how long a node's heartbeat lives in the engine; a node silent that long is dead and its participants leave (300 to 3600000)
node_ttl_ms = 10000  # default
"#
    );
    assert_eq!(text(&output.stdout), expected);
}

#[test]
fn the_file_can_come_from_the_environment() {
    let file = TempFile::new("env-file", "[server]\nshards = 3\n");
    let path = file.path();
    let output = deltasync_config(&[], &[("DELTASYNC_CONFIG", &path)]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = text(&output.stdout);
    assert!(stdout.contains(&format!("\n# configuration file: {path}\n")));
    assert!(stdout.contains(&format!("\nshards = 3  # from {path}\n")));
}

/// The environment is shared with other tools: a `DELTASYNC_*` variable that names no key
/// (a script's own `DELTASYNC_BIN`, or a typo) is a warning naming the nearest known
/// variable, and the configuration loads.
#[test]
fn an_unknown_environment_variable_is_a_warning_and_exits_0() {
    let cases = [
        (
            vec![("DELTASYNC_BIN", "x")],
            "warning: ignoring unknown environment variable DELTASYNC_BIN (the nearest known \
             one is DELTASYNC_LOG)\n",
        ),
        (
            vec![
                ("DELTASYNC_LIMITS_MAX_CONECTIONS", "5"),
                ("DELTASYNC_BIN", "x"),
            ],
            "warning: ignoring unknown environment variable DELTASYNC_BIN (the nearest known \
             one is DELTASYNC_LOG)\n\
             warning: ignoring unknown environment variable DELTASYNC_LIMITS_MAX_CONECTIONS \
             (the nearest known one is DELTASYNC_LIMITS_MAX_CONNECTIONS)\n",
        ),
    ];
    for (env, stderr) in cases {
        let output = deltasync_config(&[], &env);
        assert_eq!(text(&output.stderr), stderr, "{env:?}");
        assert_eq!(output.status.code(), Some(0), "{env:?}");
        assert!(
            text(&output.stdout).contains("\nmax_connections = 10000  # default\n"),
            "{env:?}"
        );
    }
}

#[test]
fn a_bad_value_is_an_error_naming_the_key_and_exits_2() {
    let file = TempFile::new("bad-value", "[room]\nring_capacity = 0\n");
    let path = file.path();
    let cases = [
        (
            vec!["--ring-capacity", "0"],
            vec![],
            "error: room.ring_capacity = 0 (from --ring-capacity): must be between 1 and \
             16777216\n"
                .to_owned(),
        ),
        (
            vec!["--config", &path],
            vec![],
            format!(
                "error: room.ring_capacity = 0 (from {path}): must be between 1 and 16777216\n"
            ),
        ),
        (
            vec!["--set", "limits.max_rooms"],
            vec![],
            "error: --set \"limits.max_rooms\" is not of the form section.key=value\n".to_owned(),
        ),
    ];
    for (args, env, stderr) in cases {
        let output = deltasync_config(&args, &env);
        assert_eq!(text(&output.stderr), stderr, "{args:?} {env:?}");
        assert_eq!(text(&output.stdout), "");
        assert_eq!(output.status.code(), Some(2));
    }
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let path = std::env::temp_dir().join("deltasync-cli-config-missing.toml");
    let path = path.display().to_string();
    let output = deltasync_config(&["--config", &path], &[]);
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: cannot read configuration file {path}: No such file or directory (os error 2)\n"
        )
    );
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn data_dir_sets_the_disk_backend_and_a_bad_sync_word_lists_the_choices() {
    let output = deltasync_config(&["--data-dir", "/var/lib/ds"], &[]);
    assert!(output.status.success());
    let printed = text(&output.stdout);
    assert!(
        printed.contains("backend = \"disk\"  # from --data-dir\n"),
        "{printed}"
    );
    assert!(
        printed.contains("dir = \"/var/lib/ds\"  # from --data-dir\n"),
        "{printed}"
    );
    let output = deltasync_config(&[], &[("DELTASYNC_STORAGE_SYNC", "sometimes")]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "error: storage.sync = \"sometimes\" (from DELTASYNC_STORAGE_SYNC): must be one of \
         \"always\", \"interval\", \"never\"\n"
    );
}
