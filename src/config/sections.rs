//! The typed configuration: one struct per section of the file, and [`Config`] holding
//! them all. The defaults live here, in the `Default` impls, and nowhere else: the key
//! table reads them back through its getters.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::model::presence::PresenceLimits;
use crate::protocol::decode::DecodeLimits;
use crate::room::RoomConfig;
use crate::storage::{ClusterConfig, StorageConfig, UnknownChoice};

/// The whole configuration of a server, one field per section of the file.
///
/// `Config::default()` is what loading gives with no file, no environment variable and no
/// flag. Build one from those sources with [`Loader`](super::Loader).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// `[server]`: where to listen, how many threads, the shared secret.
    pub server: ServerConfig,
    /// `[limits]`: caps on connections, rooms, message sizes and rates.
    pub limits: LimitsConfig,
    /// `[timeouts]`: how long the server waits before it gives up on something.
    pub timeouts: TimeoutsConfig,
    /// `[room]`: how each room is sized (ring, deduplication, snapshot lag).
    pub room: RoomConfig,
    /// `[presence]`: bounds on what clients put in a participant.
    pub presence: PresenceLimits,
    /// `[storage]`: where room histories live and when the log is fsynced.
    pub storage: StorageConfig,
    /// `[cluster]`: the engine several nodes share rooms through, if any.
    pub cluster: ClusterConfig,
}

impl Config {
    /// The decoder's bounds on the strings of client messages, derived from this
    /// configuration: the one place where they are (the server's sessions use it).
    ///
    /// `JOIN`'s `name` may take up to `presence.max_name_chars` characters of up to four
    /// bytes each, so the decoder never refuses a name the model accepts (the model counts
    /// the characters, as it does for a name in an `UPDATE`); `participantId`,
    /// `clientReqId` and `meta.correlationId` are bounded by their own keys.
    ///
    /// ```
    /// use deltasync::config::Config;
    ///
    /// let mut config = Config::default();
    /// config.presence.max_name_chars = 2000;
    /// let limits = config.decode_limits();
    /// assert_eq!(limits.max_name_bytes, 8000);
    /// assert_eq!(limits.max_participant_id_bytes, config.presence.max_id_bytes);
    /// ```
    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_participant_id_bytes: self.presence.max_id_bytes,
            max_name_bytes: self
                .presence
                .max_name_chars
                .saturating_mul(MAX_UTF8_CHAR_BYTES),
            max_client_req_id_bytes: self.limits.max_client_req_id_bytes,
            max_correlation_id_bytes: self.limits.max_correlation_id_bytes,
        }
    }
}

/// The longest UTF-8 encoding of one character.
const MAX_UTF8_CHAR_BYTES: usize = 4;

/// The `[server]` section.
///
/// Its `Debug` output shows the token as `<redacted>`, so that logging a configuration
/// never leaks the secret.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The address and port the WebSocket server listens on (default `127.0.0.1:7373`).
    pub listen: SocketAddr,
    /// How many event-loop threads (shards) to run; 0 (the default) means one per CPU
    /// core.
    pub shards: usize,
    /// The shared secret a client must present at the upgrade; `None` (the default)
    /// admits every client. Never empty.
    pub token: Option<String>,
    /// The close code a stopping server sends its clients (default
    /// [`ShutdownClose::Restart`], 1012: come back).
    pub shutdown_close_code: ShutdownClose,
    /// How long a stopping server may take, in milliseconds (default 10,000): it flushes
    /// what each client is owed, closes, and waits for the clients' side of the close up
    /// to then; connections still open at the deadline are cut.
    pub shutdown_grace_ms: u64,
    /// A second address that answers only `/health`, `/ready` and `/metrics` (plain HTTP,
    /// never a token), e.g. on a loopback or internal interface; `None` (the default):
    /// none.
    pub admin_listen: Option<SocketAddr>,
    /// Which of `/health`, `/ready` and `/metrics` the WebSocket port answers too
    /// (default: all).
    pub public_endpoints: PublicEndpoints,
    /// How long, in microseconds, a room's connections on a shard wait after a fan-out
    /// write before the next one (default [`DEFAULT_FLUSH_INTERVAL_US`], 5 ms; 0: no wait),
    /// so that the operations committed meanwhile share one write. The first commit
    /// after a quiet period goes out at once. Rooms flushed on a tick are not paced.
    pub flush_interval_us: u64,
    /// The kernel's send buffer per client socket (`SO_SNDBUF`), in bytes; 0 (the
    /// default) keeps the OS default.
    pub send_buffer_bytes: usize,
    /// The kernel's receive buffer per client socket (`SO_RCVBUF`), in bytes; 0 (the
    /// default) keeps the OS default.
    pub recv_buffer_bytes: usize,
    /// The PEM file of the TLS certificate chain (the server's certificate first): with
    /// [`tls_key`](Self::tls_key), the server speaks `wss://` only. `None` (the default):
    /// plain `ws://`. Needs the library's `tls` feature.
    pub tls_cert: Option<PathBuf>,
    /// The PEM file of the private key of [`tls_cert`](Self::tls_cert).
    pub tls_key: Option<PathBuf>,
}

/// Which HTTP endpoints the WebSocket port answers (`server.public_endpoints`); the admin
/// address, when there is one, always answers all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PublicEndpoints {
    /// `/health`, `/ready` and `/metrics` (the default).
    #[default]
    All,
    /// `/health` and `/ready`: the metrics only on the admin address.
    Health,
    /// None: the three paths are WebSocket rooms like any other there.
    None,
}

impl PublicEndpoints {
    /// Whether the WebSocket port answers `path` (`/health`, `/ready` or `/metrics`).
    pub fn answers(self, path: &str) -> bool {
        match self {
            Self::All => true,
            Self::Health => path != "/metrics",
            Self::None => false,
        }
    }
}

impl std::str::FromStr for PublicEndpoints {
    type Err = crate::storage::UnknownChoice;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "all" => Ok(Self::All),
            "health" => Ok(Self::Health),
            "none" => Ok(Self::None),
            _ => Err(crate::storage::UnknownChoice {
                choices: r#""all", "health", "none""#,
            }),
        }
    }
}

impl fmt::Display for PublicEndpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::All => "all",
            Self::Health => "health",
            Self::None => "none",
        })
    }
}

/// The default of `server.flush_interval_us`: 10 ms, where the measured curve (see
/// `docs/benchmarks.md`, Fan-out cost) cuts the server's CPU per delivered operation to
/// 0.57x and its writes to 0.4x of `0` in a room busier than one commit per 10 ms, for at
/// most 10 ms more latency to the room's readers (a committer's own ack never waits).
pub const DEFAULT_FLUSH_INTERVAL_US: u64 = 10_000;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 7373)),
            shards: 0,
            token: None,
            shutdown_close_code: ShutdownClose::Restart,
            shutdown_grace_ms: 10_000,
            admin_listen: None,
            public_endpoints: PublicEndpoints::All,
            flush_interval_us: DEFAULT_FLUSH_INTERVAL_US,
            send_buffer_bytes: 0,
            recv_buffer_bytes: 0,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl ServerConfig {
    /// [`shutdown_grace_ms`](Self::shutdown_grace_ms) as a [`Duration`].
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// What a stopping server tells its clients (`server.shutdown_close_code`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownClose {
    /// `restart`: close 1012 (Service Restart): the server will be back; clients
    /// reconnect with backoff and resume. The default.
    #[default]
    Restart,
    /// `going-away`: close 1001 (Going Away): a final stop; the project's clients can be
    /// told to stop reconnecting on it.
    GoingAway,
}

impl ShutdownClose {
    /// The WebSocket close code: 1012 or 1001.
    pub fn code(self) -> u16 {
        match self {
            ShutdownClose::Restart => 1012,
            ShutdownClose::GoingAway => 1001,
        }
    }

    /// The close reason sent with the code.
    pub fn reason(self) -> &'static str {
        match self {
            ShutdownClose::Restart => "server restarting",
            ShutdownClose::GoingAway => "server shutting down",
        }
    }
}

impl FromStr for ShutdownClose {
    type Err = UnknownChoice;

    fn from_str(text: &str) -> Result<Self, UnknownChoice> {
        match text {
            "restart" => Ok(ShutdownClose::Restart),
            "going-away" => Ok(ShutdownClose::GoingAway),
            _ => Err(UnknownChoice {
                choices: r#""restart", "going-away""#,
            }),
        }
    }
}

impl fmt::Display for ShutdownClose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShutdownClose::Restart => "restart",
            ShutdownClose::GoingAway => "going-away",
        })
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("shards", &self.shards)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("shutdown_close_code", &self.shutdown_close_code)
            .field("shutdown_grace_ms", &self.shutdown_grace_ms)
            .field("admin_listen", &self.admin_listen)
            .field("public_endpoints", &self.public_endpoints)
            .field("flush_interval_us", &self.flush_interval_us)
            .field("send_buffer_bytes", &self.send_buffer_bytes)
            .field("recv_buffer_bytes", &self.recv_buffer_bytes)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

/// The `[limits]` section: what one server accepts at most.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// Open WebSocket connections at once (default 10,000).
    pub max_connections: usize,
    /// Open connections at once from one client IP address (default 1,000, a tenth of
    /// `max_connections`: one host cannot take every place); 0: no per-address limit,
    /// for a server behind a proxy whose clients all arrive from the proxy's address.
    pub max_connections_per_ip: usize,
    /// New connections one client IP address may open per second (and at once), refused
    /// at accept beyond that (default 1,000, as many as one address may hold, so every
    /// client of a NAT under `max_connections_per_ip` can reconnect at once after a
    /// restart); 0: no limit (behind a proxy). It bounds connection churn: a client that
    /// reconnects as fast as it is closed holds one connection at a time, so
    /// `max_connections_per_ip` does not.
    pub max_new_connections_per_ip_per_sec: u32,
    /// Rooms held at once (default 1,000).
    pub max_rooms: usize,
    /// Participants one room admits at once (default 1,000); 0: no limit. A participant
    /// counts from its `JOIN` until it leaves or its time-to-live runs out.
    pub max_participants_per_room: usize,
    /// Largest message a client may send, in bytes (default 65,536).
    pub max_message_bytes: usize,
    /// Sustained messages per second one connection may send (default 100).
    pub messages_per_second: u32,
    /// Messages one connection may send at once before the sustained rate applies (the size
    /// of its token bucket; default 200).
    pub message_burst: u32,
    /// Longest `clientReqId`, in bytes (default 128).
    pub max_client_req_id_bytes: usize,
    /// Longest `meta.correlationId`, in bytes (default 128).
    pub max_correlation_id_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            max_new_connections_per_ip_per_sec: 1_000,
            max_rooms: 1_000,
            max_participants_per_room: 1_000,
            max_message_bytes: 65_536,
            messages_per_second: 100,
            message_burst: 200,
            max_client_req_id_bytes: 128,
            max_correlation_id_bytes: 128,
        }
    }
}

/// The `[timeouts]` section, in milliseconds; each also has a [`Duration`] accessor.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeoutsConfig {
    /// How long a connection may take to complete the WebSocket upgrade (default 5,000).
    pub handshake_ms: u64,
    /// A connection that sends no message (a `HEARTBEAT` counts) for this long is closed
    /// (default 60,000).
    pub idle_ms: u64,
    /// A participant with no connection left is removed after this long (default 30,000).
    pub participant_ttl_ms: u64,
    /// An empty room is dropped after this long (default 60,000).
    pub room_idle_ms: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            handshake_ms: 5_000,
            idle_ms: 60_000,
            participant_ttl_ms: 30_000,
            room_idle_ms: 60_000,
        }
    }
}

impl TimeoutsConfig {
    /// [`handshake_ms`](Self::handshake_ms) as a [`Duration`].
    pub fn handshake(&self) -> Duration {
        Duration::from_millis(self.handshake_ms)
    }

    /// [`idle_ms`](Self::idle_ms) as a [`Duration`].
    pub fn idle(&self) -> Duration {
        Duration::from_millis(self.idle_ms)
    }

    /// [`participant_ttl_ms`](Self::participant_ttl_ms) as a [`Duration`].
    pub fn participant_ttl(&self) -> Duration {
        Duration::from_millis(self.participant_ttl_ms)
    }

    /// [`room_idle_ms`](Self::room_idle_ms) as a [`Duration`].
    pub fn room_idle(&self) -> Duration {
        Duration::from_millis(self.room_idle_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let server = ServerConfig {
            token: Some("s3cret".into()),
            ..ServerConfig::default()
        };
        assert_eq!(
            format!("{server:?}"),
            format!(
                "ServerConfig {{ listen: 127.0.0.1:7373, shards: 0, token: Some(\"<redacted>\"), \
                 shutdown_close_code: Restart, shutdown_grace_ms: 10000, admin_listen: None, \
                 public_endpoints: All, flush_interval_us: {DEFAULT_FLUSH_INTERVAL_US}, \
                 send_buffer_bytes: 0, recv_buffer_bytes: 0, tls_cert: None, tls_key: None }}"
            )
        );
    }

    #[test]
    fn shutdown_close_words_round_trip_and_name_their_codes() {
        for close in [ShutdownClose::Restart, ShutdownClose::GoingAway] {
            assert_eq!(close.to_string().parse(), Ok(close));
        }
        assert_eq!(
            (
                ShutdownClose::Restart.code(),
                ShutdownClose::GoingAway.code()
            ),
            (1012, 1001)
        );
        assert_eq!(
            "final".parse::<ShutdownClose>().unwrap_err().to_string(),
            r#"must be one of "restart", "going-away""#
        );
    }

    #[test]
    fn decode_limits_follow_the_configuration() {
        let mut config = Config::default();
        assert_eq!(
            config.decode_limits(),
            DecodeLimits {
                max_participant_id_bytes: 128,
                max_name_bytes: 256,
                max_client_req_id_bytes: 128,
                max_correlation_id_bytes: 128,
            }
        );
        config.presence.max_name_chars = 2000;
        config.presence.max_id_bytes = 7;
        config.limits.max_client_req_id_bytes = 9;
        config.limits.max_correlation_id_bytes = 11;
        assert_eq!(
            config.decode_limits(),
            DecodeLimits {
                max_participant_id_bytes: 7,
                max_name_bytes: 8000,
                max_client_req_id_bytes: 9,
                max_correlation_id_bytes: 11,
            }
        );
        // The widest name the model accepts decodes: 2,000 four-byte characters.
        let name = "\u{1F600}".repeat(2000);
        let join = serde_json::json!({"type": "JOIN",
            "payload": {"participantId": "u1", "name": name}});
        let decoded = crate::protocol::decode::decode_client::<crate::model::presence::PresenceInput>(
            join.to_string().as_bytes(),
            &config.decode_limits(),
        );
        assert!(decoded.is_ok(), "{decoded:?}");
    }

    #[test]
    fn timeouts_convert_to_durations() {
        let timeouts = TimeoutsConfig::default();
        assert_eq!(
            (
                timeouts.handshake(),
                timeouts.idle(),
                timeouts.participant_ttl(),
                timeouts.room_idle()
            ),
            (
                Duration::from_secs(5),
                Duration::from_secs(60),
                Duration::from_secs(30),
                Duration::from_secs(60)
            )
        );
    }
}
