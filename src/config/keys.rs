//! The table of keys: the one place that says which keys exist, in which section, what
//! each accepts and what it means. The file, the environment, the flags, the printout and
//! the reference table of `docs/configuration.md` are all read from [`KEYS`], so they
//! cannot drift apart. Defaults are not repeated here: they are the `Default` impls of the
//! section structs, read back through each key's getter.

use std::net::SocketAddr;

use crate::ring::MAX_CAPACITY;
use crate::room::{InvalidValue, ring_capacity};

use super::Config;

/// One configuration key.
pub(crate) struct Key {
    /// The section it lives in (`room`).
    pub(crate) section: &'static str,
    /// Its name within the section (`ring_capacity`).
    pub(crate) name: &'static str,
    /// What it means, in one line (the reference table of the docs).
    pub(crate) doc: &'static str,
    /// What it accepts, and how to read and write it in a [`Config`].
    pub(crate) kind: Kind,
}

/// What a key accepts, with its typed accessors into [`Config`].
pub(crate) enum Kind {
    /// An integer in `min..=max`. `set` may refuse a value on its own (the ring capacity
    /// asks [`ring_capacity`], the room's own check).
    Count {
        min: u64,
        max: u64,
        get: fn(&Config) -> u64,
        set: fn(&mut Config, u64) -> Result<(), InvalidValue>,
    },
    /// An IP socket address (`127.0.0.1:7373`, `[::1]:7373`); host names are not resolved.
    Address {
        get: fn(&Config) -> SocketAddr,
        set: fn(&mut Config, SocketAddr),
    },
    /// A word from a fixed list, or a path: text, checked by `set`, which says what it
    /// accepts when it refuses.
    Text {
        /// What it accepts, for the docs (`"memory" or "disk"`).
        accepts: &'static str,
        get: fn(&Config) -> String,
        set: fn(&mut Config, &str) -> Result<(), String>,
    },
    /// An optional, non-empty secret, never shown.
    Secret {
        get: fn(&Config) -> Option<&str>,
        set: fn(&mut Config, String),
    },
}

impl Key {
    /// The key as written in messages and `--set`: `section.key`.
    pub(crate) fn path(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }

    /// Its one-line description, with its bounds when it has some:
    /// `event-loop threads; 0 means one per CPU core (0 to 256)`.
    pub(crate) fn described(&self) -> String {
        match self.kind {
            Kind::Count { min, max, .. } => format!("{} ({min} to {max})", self.doc),
            Kind::Address { .. } | Kind::Secret { .. } | Kind::Text { .. } => self.doc.to_owned(),
        }
    }

    /// The environment variable that sets it: `DELTASYNC_<SECTION>_<KEY>`.
    pub(crate) fn env_var(&self) -> String {
        format!("DELTASYNC_{}_{}", self.section, self.name).to_ascii_uppercase()
    }
}

/// The key named `path` (`room.ring_capacity`), with its index in [`KEYS`].
pub(crate) fn find(path: &str) -> Option<(usize, &'static Key)> {
    let (section, name) = path.split_once('.')?;
    find_in(section, name)
}

/// The key `name` of `section`, with its index in [`KEYS`].
pub(crate) fn find_in(section: &str, name: &str) -> Option<(usize, &'static Key)> {
    KEYS.iter()
        .enumerate()
        .find(|(_, key)| key.section == section && key.name == name)
}

/// The key set by the environment variable `var`, with its index in [`KEYS`].
pub(crate) fn find_env(var: &str) -> Option<(usize, &'static Key)> {
    KEYS.iter()
        .enumerate()
        .find(|(_, key)| key.env_var() == var)
}

/// The sections, in the order of [`KEYS`].
pub(crate) fn sections() -> Vec<&'static str> {
    let mut sections: Vec<&'static str> = Vec::new();
    for key in KEYS {
        if !sections.contains(&key.section) {
            sections.push(key.section);
        }
    }
    sections
}

/// The integer types of the configuration's fields, to and from the `u64` the table
/// checks bounds on. Every bound is below `u32::MAX`, so no conversion ever saturates.
trait Count: Copy {
    fn to_u64(self) -> u64;
    fn from_u64(n: u64) -> Self;
}

impl Count for u64 {
    fn to_u64(self) -> u64 {
        self
    }
    fn from_u64(n: u64) -> Self {
        n
    }
}

impl Count for u32 {
    fn to_u64(self) -> u64 {
        u64::from(self)
    }
    fn from_u64(n: u64) -> Self {
        Self::try_from(n).unwrap_or(Self::MAX)
    }
}

impl Count for usize {
    fn to_u64(self) -> u64 {
        u64::try_from(self).unwrap_or(u64::MAX)
    }
    fn from_u64(n: u64) -> Self {
        Self::try_from(n).unwrap_or(Self::MAX)
    }
}

/// A [`Kind::Text`] for a field of [`Config`] that parses from and prints as a word.
macro_rules! word {
    ($section:ident . $field:ident, $accepts:literal) => {
        Kind::Text {
            accepts: $accepts,
            get: |config| config.$section.$field.to_string(),
            set: |config, text| {
                config.$section.$field = text.parse().map_err(|e| format!("{e}"))?;
                Ok(())
            },
        }
    };
}

/// A [`Kind::Count`] for the integer field `section.field` of [`Config`], in `min..=max`.
macro_rules! count {
    ($section:ident . $field:ident, $min:expr, $max:expr) => {
        Kind::Count {
            min: $min,
            max: $max,
            get: |config| Count::to_u64(config.$section.$field),
            set: |config, n| {
                config.$section.$field = Count::from_u64(n);
                Ok(())
            },
        }
    };
}

/// A [`Kind::Text`] for the optional path `section.field` of [`Config`]: empty text
/// unsets it (and is how an unset path prints).
macro_rules! optional_path {
    ($section:ident . $field:ident) => {
        Kind::Text {
            accepts: "a path, or empty for none",
            get: |config| {
                config
                    .$section
                    .$field
                    .as_ref()
                    .map(|path| path.display().to_string())
                    .unwrap_or_default()
            },
            set: |config, text| {
                config.$section.$field = (!text.is_empty()).then(|| text.into());
                Ok(())
            },
        }
    };
}

const MIB: u64 = 1 << 20;
/// One day, the longest timeout.
const DAY_MS: u64 = 86_400_000;

/// Every key, section by section, in the order they are printed and documented.
pub(crate) static KEYS: &[Key] = &[
    Key {
        section: "server",
        name: "listen",
        doc: "IP address and port the WebSocket server listens on",
        kind: Kind::Address {
            get: |config| config.server.listen,
            set: |config, addr| config.server.listen = addr,
        },
    },
    Key {
        section: "server",
        name: "shards",
        doc: "event-loop threads; 0 means one per CPU core",
        kind: count!(server.shards, 0, 256),
    },
    Key {
        section: "server",
        name: "token",
        doc: "shared secret clients must present; unset admits everyone",
        kind: Kind::Secret {
            get: |config| config.server.token.as_deref(),
            set: |config, token| config.server.token = Some(token),
        },
    },
    Key {
        section: "server",
        name: "shutdown_close_code",
        doc: "what a stopping server tells clients: `restart` (close 1012, come back) or `going-away` (close 1001, a final stop)",
        kind: word!(server.shutdown_close_code, r#""restart" or "going-away""#),
    },
    Key {
        section: "server",
        name: "shutdown_grace_ms",
        doc: "time a stopping server takes at most to flush, close and let clients answer; then it cuts the rest",
        kind: count!(server.shutdown_grace_ms, 0, DAY_MS),
    },
    Key {
        section: "server",
        name: "admin_listen",
        doc: "a second address answering only /health, /ready and /metrics (no token); empty means none",
        kind: Kind::Text {
            accepts: "IP address:port, or empty",
            get: |config| {
                config
                    .server
                    .admin_listen
                    .map_or_else(String::new, |addr| addr.to_string())
            },
            set: |config, text| {
                config.server.admin_listen = match text {
                    "" => None,
                    text => Some(text.parse().map_err(|_| {
                        r#"must be an IP address and port such as "127.0.0.1:9090", or "" for none"#
                            .to_owned()
                    })?),
                };
                Ok(())
            },
        },
    },
    Key {
        section: "server",
        name: "public_endpoints",
        doc: "which of /health, /ready and /metrics the WebSocket port answers too",
        kind: word!(server.public_endpoints, r#""all", "health" or "none""#),
    },
    Key {
        section: "server",
        name: "flush_interval_us",
        doc: "microseconds a room's connections wait after a write so the next carries more operations; 0 never waits",
        kind: count!(server.flush_interval_us, 0, 1_000_000),
    },
    Key {
        section: "server",
        name: "send_buffer_bytes",
        doc: "kernel send buffer per client socket (SO_SNDBUF); 0 keeps the OS default",
        kind: count!(server.send_buffer_bytes, 0, 64 * MIB),
    },
    Key {
        section: "server",
        name: "recv_buffer_bytes",
        doc: "kernel receive buffer per client socket (SO_RCVBUF); 0 keeps the OS default",
        kind: count!(server.recv_buffer_bytes, 0, 64 * MIB),
    },
    Key {
        section: "server",
        name: "tls_cert",
        doc: "PEM file of the TLS certificate chain: with `tls_key`, serve `wss://` only; empty means plain `ws://`",
        kind: optional_path!(server.tls_cert),
    },
    Key {
        section: "server",
        name: "tls_key",
        doc: "PEM file of the private key of `tls_cert`",
        kind: optional_path!(server.tls_key),
    },
    Key {
        section: "limits",
        name: "max_connections",
        doc: "open WebSocket connections at once",
        kind: count!(limits.max_connections, 1, 10_000_000),
    },
    Key {
        section: "limits",
        name: "max_connections_per_ip",
        doc: "open connections from one client IP address; 0 means no limit (behind a proxy)",
        kind: count!(limits.max_connections_per_ip, 0, 10_000_000),
    },
    Key {
        section: "limits",
        name: "max_new_connections_per_ip_per_sec",
        doc: "new connections one client IP address may open per second (and at once); 0 means no limit",
        kind: count!(limits.max_new_connections_per_ip_per_sec, 0, 10_000_000),
    },
    Key {
        section: "limits",
        name: "max_rooms",
        doc: "rooms held at once",
        kind: count!(limits.max_rooms, 1, 1_000_000),
    },
    Key {
        section: "limits",
        name: "max_participants_per_room",
        doc: "participants one room admits at once; 0 means no limit",
        kind: count!(limits.max_participants_per_room, 0, 10_000_000),
    },
    Key {
        section: "limits",
        name: "max_message_bytes",
        doc: "largest message a client may send, in bytes",
        kind: count!(limits.max_message_bytes, 128, 16 * MIB),
    },
    Key {
        section: "limits",
        name: "messages_per_second",
        doc: "sustained messages per second one connection may send",
        kind: count!(limits.messages_per_second, 1, 1_000_000),
    },
    Key {
        section: "limits",
        name: "message_burst",
        doc: "messages one connection may send at once before the rate applies",
        kind: count!(limits.message_burst, 1, 1_000_000),
    },
    Key {
        section: "limits",
        name: "max_client_req_id_bytes",
        doc: "longest `clientReqId`, in bytes",
        kind: count!(limits.max_client_req_id_bytes, 1, 4096),
    },
    Key {
        section: "limits",
        name: "max_correlation_id_bytes",
        doc: "longest `meta.correlationId`, in bytes",
        kind: count!(limits.max_correlation_id_bytes, 1, 4096),
    },
    Key {
        section: "timeouts",
        name: "handshake_ms",
        doc: "time a new connection has to complete the WebSocket upgrade",
        kind: count!(timeouts.handshake_ms, 1, DAY_MS),
    },
    Key {
        section: "timeouts",
        name: "idle_ms",
        doc: "a connection silent this long (no message, no heartbeat) is closed",
        kind: count!(timeouts.idle_ms, 1, DAY_MS),
    },
    Key {
        section: "timeouts",
        name: "participant_ttl_ms",
        doc: "a participant with no connection left is removed after this",
        kind: count!(timeouts.participant_ttl_ms, 1, DAY_MS),
    },
    Key {
        section: "timeouts",
        name: "room_idle_ms",
        doc: "an empty room is dropped after this",
        kind: count!(timeouts.room_idle_ms, 1, DAY_MS),
    },
    Key {
        section: "room",
        name: "ring_capacity",
        doc: "operations each room keeps for clients that resume",
        kind: Kind::Count {
            min: 1,
            max: MAX_CAPACITY as u64,
            get: |config| Count::to_u64(config.room.ring_capacity.get()),
            set: |config, n| {
                config.room.ring_capacity = ring_capacity(Count::from_u64(n))?;
                Ok(())
            },
        },
    },
    Key {
        section: "room",
        name: "dedup_window",
        doc: "recent `clientReqId`s each room remembers; 0 disables deduplication",
        kind: count!(room.dedup_window, 0, 10_000_000),
    },
    Key {
        section: "room",
        name: "snapshot_max_lag",
        doc: "revisions a snapshot served to a joining client may lag the head",
        kind: count!(room.snapshot_max_lag, 0, 1_000_000_000),
    },
    Key {
        section: "room",
        name: "snapshot_reuse_percent",
        doc: "a joining client is served the last snapshot while what was committed after it is at most this % of its size",
        kind: count!(room.snapshot_reuse_percent, 0, 100),
    },
    Key {
        section: "presence",
        name: "max_name_chars",
        doc: "longest participant name, in characters",
        kind: count!(presence.max_name_chars, 1, 4096),
    },
    Key {
        section: "presence",
        name: "max_id_bytes",
        doc: "longest participant id, in bytes",
        kind: count!(presence.max_id_bytes, 1, 4096),
    },
    Key {
        section: "storage",
        name: "backend",
        doc: "where room histories live: `memory` (lost at restart) or `disk` (in `storage.dir`)",
        kind: word!(storage.backend, r#""memory" or "disk""#),
    },
    Key {
        section: "storage",
        name: "dir",
        doc: "the data directory of the `disk` backend (created if missing; one server at a time)",
        kind: Kind::Text {
            accepts: "a path",
            get: |config| config.storage.dir.display().to_string(),
            set: |config, text| {
                if text.is_empty() {
                    return Err("must not be empty".into());
                }
                config.storage.dir = text.into();
                Ok(())
            },
        },
    },
    Key {
        section: "storage",
        name: "sync",
        doc: "when the log is fsynced: `always` (before anyone sees an update), `interval`, `never` (the OS decides)",
        kind: word!(storage.sync, r#""always", "interval" or "never""#),
    },
    Key {
        section: "storage",
        name: "sync_interval_ms",
        doc: "the fsync period of `sync = \"interval\"`",
        kind: count!(storage.sync_interval_ms, 1, 60_000),
    },
    Key {
        section: "storage",
        name: "snapshot_every",
        doc: "a room's state is stored every this many operations (recovery replays at most that many)",
        kind: count!(storage.snapshot_every, 1, 1_000_000_000),
    },
    Key {
        section: "storage",
        name: "segment_bytes",
        doc: "a log segment is closed past this size; compaction deletes whole segments",
        kind: count!(storage.segment_bytes, 4096, 1 << 32),
    },
    Key {
        section: "storage",
        name: "retain_ops",
        doc: "operations kept in the log behind the latest snapshot, beyond what the ring needs",
        kind: count!(storage.retain_ops, 0, 1 << 40),
    },
    Key {
        section: "storage",
        name: "memory_revisions",
        doc: "where a new in-memory history starts: `restart-safe` (above any earlier one) or `from-zero`",
        kind: word!(storage.memory_revisions, r#""restart-safe" or "from-zero""#),
    },
    Key {
        section: "cluster",
        name: "url",
        doc: "the Redis engine several nodes share rooms through (`redis://host:port`); empty: one node",
        kind: Kind::Text {
            accepts: "a redis:// URL, or empty",
            get: |config| config.cluster.url.clone().unwrap_or_default(),
            set: |config, text| {
                if text.is_empty() {
                    config.cluster.url = None;
                    return Ok(());
                }
                if !text.starts_with("redis://") {
                    return Err("must be a redis:// URL, or empty for one node".into());
                }
                config.cluster.url = Some(text.to_owned());
                Ok(())
            },
        },
    },
    Key {
        section: "cluster",
        name: "commit_retries",
        doc: "times in a row a commit may lose its revision to another node before it is refused (retryable)",
        kind: count!(cluster.commit_retries, 0, 1000),
    },
    Key {
        section: "cluster",
        name: "timeout_ms",
        doc: "how long one call to the engine may take, connecting included",
        kind: count!(cluster.timeout_ms, 10, 60_000),
    },
    Key {
        section: "cluster",
        name: "node_ttl_ms",
        doc: "how long a node's heartbeat lives in the engine; a node silent that long is dead and its participants leave",
        kind: count!(cluster.node_ttl_ms, 300, 3_600_000),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_named_by_their_section() {
        let paths: Vec<String> = KEYS.iter().map(Key::path).collect();
        for (i, path) in paths.iter().enumerate() {
            assert!(!paths[..i].contains(path), "{path} is listed twice");
            assert_eq!(find(path).map(|(index, _)| index), Some(i));
        }
        assert_eq!(
            sections(),
            [
                "server", "limits", "timeouts", "room", "presence", "storage", "cluster"
            ]
        );
        assert_eq!(
            find("room.ring_capacity").map(|(_, key)| key.env_var()),
            Some("DELTASYNC_ROOM_RING_CAPACITY".to_owned())
        );
        assert_eq!(
            find_env("DELTASYNC_LIMITS_MAX_CLIENT_REQ_ID_BYTES").map(|(_, key)| key.path()),
            Some("limits.max_client_req_id_bytes".to_owned())
        );
        assert!(find("room").is_none());
        assert!(find("room.ring_capacity.x").is_none());
    }

    #[test]
    fn every_default_is_within_its_bounds() {
        let defaults = Config::default();
        for key in KEYS {
            if let Kind::Count { min, max, get, .. } = key.kind {
                let value = get(&defaults);
                assert!((min..=max).contains(&value), "{} = {value}", key.path());
            }
        }
    }

    #[test]
    fn ring_capacity_bounds_are_the_rooms_own() {
        let Some((_, key)) = find("room.ring_capacity") else {
            panic!("room.ring_capacity is not in the table");
        };
        let Kind::Count { min, max, set, .. } = key.kind else {
            panic!("room.ring_capacity is not a count");
        };
        let mut config = Config::default();
        assert!(set(&mut config, min).is_ok());
        assert!(set(&mut config, max).is_ok());
        assert_eq!(config.room.ring_capacity.get(), MAX_CAPACITY);
        assert!(set(&mut config, min - 1).is_err());
        assert!(set(&mut config, max + 1).is_err());
    }

    #[test]
    fn setters_write_the_field_their_getter_reads() {
        for (i, key) in KEYS.iter().enumerate() {
            let mut config = Config::default();
            if let Kind::Count { min, max, get, set } = key.kind {
                // A value distinct from every default, so a setter writing the wrong
                // field shows up in the comparison below.
                let value = (max - min) / 2 + min + 1;
                assert_eq!(set(&mut config, value).map(|()| get(&config)), Ok(value));
                for (j, other) in KEYS.iter().enumerate() {
                    if let (true, Kind::Count { get, .. }) = (i != j, &other.kind) {
                        assert_eq!(get(&config), get(&Config::default()), "{}", other.path());
                    }
                }
            }
        }
    }
}
