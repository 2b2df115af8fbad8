//! The options of `deltasync bench`, checked together and turned into a [`Scenario`] in
//! one step: every later stage reads only the scenario, and a bad combination is one
//! clear message (exit 2) before anything starts.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use deltasync::config::{Config, Loader, Overrides};

use super::BenchArgs;
use super::client::TlsTarget;
use crate::cluster_harness::EngineFsync;

/// The most nodes `--cluster-nodes` starts.
const MAX_NODES: usize = 16;

/// Updates per second of all writers together, or as fast as acknowledgements allow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Rate {
    /// This many updates per second in all, spread evenly over the writers.
    PerSecond(f64),
    /// Each writer keeps `in_flight` updates unacknowledged, sending the next as soon as
    /// one is acknowledged (a closed loop: latency is then measured from the actual send).
    Unlimited,
}

/// Parses `--rate`: a positive number, or `unlimited`.
pub(crate) fn parse_rate(text: &str) -> Result<Rate, String> {
    if text == "unlimited" {
        return Ok(Rate::Unlimited);
    }
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(Rate::PerSecond(rate)),
        _ => Err("expected a positive number of updates per second, or `unlimited`".into()),
    }
}

/// Parses a duration in seconds (`10`, `0.5`), or with a unit (`500ms`, `2s`).
pub(crate) fn parse_seconds(text: &str) -> Result<Duration, String> {
    let (number, scale) = match text.strip_suffix("ms") {
        Some(ms) => (ms, 1e-3),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 && n * scale <= 86_400.0 => {
            Ok(Duration::from_secs_f64(n * scale))
        }
        _ => Err("expected seconds (e.g. 10, 0.5, 500ms), at most one day".into()),
    }
}

/// The dialect the generator's clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DialectArg {
    /// No subprotocol: the ws-kit dialect any ws-kit server speaks.
    WsKit,
    /// Subprotocol `deltasync.v1`: ours, with epochs.
    Native,
}

/// What the run does once its clients are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Writers send updates for the warmup and the duration; everyone checks and measures.
    Load,
    /// Nobody sends: the clients stay connected for the duration (memory per connection).
    Idle,
    /// Every client but the writers drops its connection at once; the writers send
    /// `missed` updates; then all reconnect at once and resume from their revision.
    Reconnect { missed: u64 },
}

/// A `ws://` or `wss://` URL, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WsUrl {
    /// `host:port` as written (the `Host` header).
    pub(crate) host: String,
    pub(crate) addr: SocketAddr,
    /// The path, `/` when none was given.
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    /// `wss://`.
    pub(crate) tls: bool,
}

impl WsUrl {
    /// Parses and resolves `ws://host[:port][/path][?query]` (or `wss://`).
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (rest, tls) = match (text.strip_prefix("ws://"), text.strip_prefix("wss://")) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => return Err(format!("{text}: expected a ws:// or wss:// URL")),
        };
        let (authority, path_query) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (path, query) = match path_query.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (path_query, None),
        };
        let host = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.contains(']'))
        {
            authority.to_owned()
        } else if tls {
            format!("{authority}:443")
        } else {
            format!("{authority}:80")
        };
        let addr = host
            .to_socket_addrs()
            .map_err(|e| format!("{text}: cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{text}: {host} resolves to no address"))?;
        Ok(Self {
            host,
            addr,
            path: if path.is_empty() { "/" } else { path }.to_owned(),
            query,
            tls,
        })
    }

    /// The host the server's certificate must name: the `Host` header without its port
    /// and brackets.
    pub(crate) fn server_name(&self) -> &str {
        let host = self
            .host
            .rsplit_once(':')
            .map_or(&*self.host, |(host, _)| host);
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// The request target of room `room` of `rooms`: the URL's path when there is one
    /// room, else `<path>/rooms/bench-<room>`.
    pub(crate) fn room_target(&self, room: usize, rooms: usize) -> String {
        let mut target = if rooms == 1 {
            self.path.clone()
        } else {
            format!("{}/rooms/bench-{room}", self.path.trim_end_matches('/'))
        };
        if let Some(query) = &self.query {
            target.push('?');
            target.push_str(query);
        }
        target
    }
}

/// Which server the load goes to.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A server started in this process with this configuration.
    InProcess(Box<Config>),
    /// A `deltasync serve` process of its own, configured with these `KEY=VALUE`s.
    Spawned(Vec<String>),
    /// The built-in ceiling server in this process, with this many threads.
    CeilingInProcess { shards: usize },
    /// A server elsewhere; its process id, when given, is read for CPU time and memory.
    Url { url: WsUrl, pid: Option<u32> },
    /// Several servers elsewhere, the nodes of one cluster (clients dealt round-robin);
    /// their process ids, when given (one per URL), are read for CPU time.
    Nodes { urls: Vec<WsUrl>, pids: Vec<u32> },
    /// A cluster started here (see `cluster_harness`): the engine and `nodes` nodes, each
    /// a `deltasync serve` process configured with `sets`.
    Cluster {
        nodes: usize,
        fsync: EngineFsync,
        sets: Vec<String>,
    },
    /// A `deltasync serve` process configured with these `KEY=VALUE`s and the disk
    /// backend on a temporary data directory (made for the run, removed after it).
    SpawnedDisk(Vec<String>),
}

/// The game scenario's parameters (`--game`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GameSpec {
    pub(crate) tick_hz: f64,
    pub(crate) bots: usize,
    /// Every client moves every this many ticks; 0 for spectators only.
    pub(crate) players_move: u64,
}

impl GameSpec {
    /// The time between two ticks.
    pub(crate) fn period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.tick_hz)
    }

    /// Operations the room commits per second at full speed.
    pub(crate) fn ops_per_second(&self, clients: usize) -> f64 {
        let moves = match self.players_move {
            0 => 0.0,
            n => clients as f64 / n as f64,
        };
        (self.bots as f64 + moves) * self.tick_hz
    }
}

/// What the generator does: sizes, rates, times.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    pub(crate) clients: usize,
    pub(crate) rooms: usize,
    pub(crate) writers: usize,
    pub(crate) rate: Rate,
    pub(crate) in_flight: usize,
    pub(crate) payload_bytes: usize,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) connect_rate: Option<f64>,
    pub(crate) connect_concurrency: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) native: bool,
    pub(crate) threads: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) latency_every: usize,
    /// The servers the clients are dealt over (round-robin): 1, or the nodes of a cluster.
    pub(crate) nodes: usize,
    pub(crate) mode: Mode,
    /// The game scenario, when `--game` is given: one room (`/rooms/arena`) and, with
    /// `--players-move`, every client a writer of moves.
    pub(crate) game: Option<GameSpec>,
}

impl Load {
    /// The room of client `client`.
    pub(crate) fn room_of(&self, client: usize) -> usize {
        client % self.rooms
    }

    /// How many clients room `room` has.
    pub(crate) fn clients_in(&self, room: usize) -> usize {
        self.clients / self.rooms + usize::from(room < self.clients % self.rooms)
    }

    /// How many clients node `node` has: client `c` is on node `c mod nodes`, so writer
    /// `w` is on node `w mod nodes`.
    pub(crate) fn clients_on(&self, node: usize) -> usize {
        self.clients / self.nodes + usize::from(node < self.clients % self.nodes)
    }

    /// How many writers node `node` has.
    pub(crate) fn writers_on(&self, node: usize) -> usize {
        self.writers / self.nodes + usize::from(node < self.writers % self.nodes)
    }

    /// Whether client `client` is a writer (writers are clients `0..writers`).
    pub(crate) fn is_writer(&self, client: usize) -> bool {
        client < self.writers
    }
}

/// A whole validated run.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    pub(crate) target: Target,
    /// How the clients start TLS: for a `wss://` URL, or an in-process server with
    /// `server.tls_cert` (asked for as `localhost`). The ceiling is always `ws://`.
    pub(crate) tls: Option<TlsTarget>,
    /// The ceiling to run the same load against afterwards, if asked.
    pub(crate) ceiling: Option<Target>,
    /// The in-process server with `--baseline-set`, to run the same load against, if asked.
    pub(crate) baseline: Option<Target>,
    pub(crate) load: Load,
    pub(crate) json: bool,
    pub(crate) quiet: bool,
}

/// What `--serve-ceiling` runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CeilingServe {
    pub(crate) listen: SocketAddr,
    pub(crate) shards: usize,
}

fn check(ok: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(message()) }
}

impl Scenario {
    /// Checks the options together.
    ///
    /// # Errors
    ///
    /// A message naming the option and the value at fault.
    pub(crate) fn from_args(args: &BenchArgs) -> Result<Self, String> {
        let load = load(args)?;
        let target = match (args.url.as_slice(), args.cluster_nodes) {
            (_, Some(nodes)) => Target::Cluster {
                nodes,
                fsync: args.engine_fsync,
                sets: spawned_sets(&args.server_set, &load)
                    .into_iter()
                    .filter(|set| !set.starts_with("server.listen="))
                    .collect(),
            },
            ([], None) => {
                check(args.server_pid.is_empty(), || {
                    "--server-pid names the process of a --url server; the in-process server \
                     is this process"
                        .into()
                })?;
                own_server(args, &args.server_set, &load)?
            }
            (urls, None) => url_target(args, urls)?,
        };
        let ceiling = ceiling(args, &load)?;
        let baseline = match args.disk_baseline {
            true => Some(disk_baseline(args, &load)),
            false => baseline(args, &load)?,
        };
        let tls = tls(args, &target)?;
        Ok(Self {
            target,
            tls,
            ceiling,
            baseline,
            load,
            json: args.json,
            quiet: args.quiet,
        })
    }
}

/// `--disk-baseline`: one node with the disk backend, fsyncing as the engine does
/// (`storage.sync = always` for `appendfsync always`, `interval` for `everysec`) unless
/// `--server-set` says otherwise.
fn disk_baseline(args: &BenchArgs, load: &Load) -> Target {
    let mut sets = vec!["storage.backend=disk".to_owned()];
    if !args
        .server_set
        .iter()
        .any(|set| set.starts_with("storage.sync="))
    {
        let sync = match args.engine_fsync {
            EngineFsync::Always => "always",
            EngineFsync::Everysec => "interval",
            EngineFsync::Off => "never",
        };
        sets.push(format!("storage.sync={sync}"));
    }
    sets.extend(spawned_sets(&args.server_set, load));
    Target::SpawnedDisk(sets)
}

/// `--url` given once (a server) or more (the nodes of a cluster).
fn url_target(args: &BenchArgs, urls: &[String]) -> Result<Target, String> {
    check(args.server_set.is_empty(), || {
        "--server-set configures the in-process server; it cannot be used with --url".into()
    })?;
    let parsed = urls
        .iter()
        .map(|url| WsUrl::parse(url))
        .collect::<Result<Vec<_>, _>>()?;
    if let [url] = parsed.as_slice() {
        check(args.server_pid.len() <= 1, || {
            "--server-pid: one process id for one --url".into()
        })?;
        return Ok(Target::Url {
            url: url.clone(),
            pid: args.server_pid.first().copied(),
        });
    }
    check(parsed.len() <= MAX_NODES, || {
        format!("--url: at most {MAX_NODES} nodes")
    })?;
    check(
        args.server_pid.is_empty() || args.server_pid.len() == parsed.len(),
        || {
            format!(
                "--server-pid: give one per --url ({} URLs, {} process ids), or none",
                parsed.len(),
                args.server_pid.len()
            )
        },
    )?;
    check(parsed.iter().all(|url| !url.tls), || {
        "several --url: only ws:// nodes are supported".into()
    })?;
    Ok(Target::Nodes {
        urls: parsed,
        pids: args.server_pid.clone(),
    })
}

/// The clients' TLS, when the target speaks it: trusting `--ca`, else the system's roots.
fn tls(args: &BenchArgs, target: &Target) -> Result<Option<TlsTarget>, String> {
    let name = match target {
        Target::Url { url, .. } if url.tls => url.server_name().to_owned(),
        Target::InProcess(config) if config.server.tls_cert.is_some() => "localhost".to_owned(),
        Target::Spawned(sets) if sets.iter().any(|set| set.starts_with("server.tls_cert=")) => {
            "localhost".to_owned()
        }
        _ => {
            return match &args.ca {
                Some(_) => Err("--ca is for a wss:// --url, or an in-process server with \
                                server.tls_cert"
                    .into()),
                None => Ok(None),
            };
        }
    };
    let config = deltasync::tls::client_config(args.ca.as_deref()).map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(name.clone())
        .map_err(|e| format!("{name} is not a TLS server name: {e}"))?;
    Ok(Some(TlsTarget { config, name }))
}

fn load(args: &BenchArgs) -> Result<Load, String> {
    check(args.clients >= 1, || "--clients must be at least 1".into())?;
    let threads = args
        .threads
        .unwrap_or_else(|| default_threads(args.clients));
    check((1..=args.clients).contains(&args.rooms), || {
        format!(
            "--rooms {} must be between 1 and --clients ({})",
            args.rooms, args.clients
        )
    })?;
    check(args.writers <= args.clients, || {
        format!(
            "--writers {} is more than --clients {}: writers are among the clients",
            args.writers, args.clients
        )
    })?;
    check(
        (1..=16).contains(&threads) && threads <= args.clients,
        || format!("--threads {threads} must be between 1 and 16 and at most --clients"),
    )?;
    check((1..=4096).contains(&args.payload_bytes), || {
        format!(
            "--payload-bytes {} must be between 1 and 4096 (the name field it pads)",
            args.payload_bytes
        )
    })?;
    check(!args.duration.is_zero(), || {
        "--duration must be more than 0".into()
    })?;
    check(args.in_flight >= 1, || {
        "--in-flight must be at least 1".into()
    })?;
    check(args.latency_every >= 1, || {
        "--latency-every must be at least 1".into()
    })?;
    check(args.connect_concurrency >= 1, || {
        "--connect-concurrency must be at least 1".into()
    })?;
    check(
        args.cluster_nodes
            .is_none_or(|n| (1..=MAX_NODES).contains(&n) && n <= args.clients),
        || {
            format!(
                "--cluster-nodes {} must be between 1 and {MAX_NODES} and at most --clients",
                args.cluster_nodes.unwrap_or(0)
            )
        },
    )?;
    let mode = mode(args)?;
    let game = game(args)?;
    let writers = match (mode, game) {
        (Mode::Idle, _) => 0,
        (_, Some(game)) if game.players_move > 0 => args.clients,
        (_, Some(_)) => 0,
        _ => args.writers,
    };
    let rate = match game {
        Some(game) if game.players_move > 0 => {
            Rate::PerSecond(args.clients as f64 * game.tick_hz / game.players_move as f64)
        }
        _ => args.rate,
    };
    if let Mode::Reconnect { .. } = mode {
        check(writers < args.clients, || {
            "--reconnect needs clients that are not writers (they are the ones that reconnect)"
                .into()
        })?;
    }
    Ok(Load {
        clients: args.clients,
        rooms: args.rooms,
        writers,
        rate,
        in_flight: args.in_flight,
        payload_bytes: args.payload_bytes,
        duration: args.duration,
        warmup: args.warmup,
        connect_rate: (args.connect_rate > 0.0).then_some(args.connect_rate),
        connect_concurrency: args.connect_concurrency,
        connect_timeout: args.connect_timeout,
        native: args.dialect == DialectArg::Native,
        threads,
        drain_timeout: args.drain_timeout,
        heartbeat: (!args.heartbeat.is_zero()).then_some(args.heartbeat),
        latency_every: args.latency_every,
        nodes: args.cluster_nodes.unwrap_or(args.url.len().max(1)),
        mode,
        game,
    })
}

/// The game scenario's parameters, checked (`None` without `--game`).
fn game(args: &BenchArgs) -> Result<Option<GameSpec>, String> {
    if !args.game {
        return Ok(None);
    }
    check(
        args.tick_hz.is_finite() && (1.0..=1000.0).contains(&args.tick_hz),
        || format!("--tick-hz {} must be between 1 and 1000", args.tick_hz),
    )?;
    check(args.bots <= 100_000, || {
        format!("--bots {} must be at most 100000", args.bots)
    })?;
    check(args.players_move <= 1_000_000, || {
        format!(
            "--players-move {} must be at most 1000000 ticks",
            args.players_move
        )
    })?;
    Ok(Some(GameSpec {
        tick_hz: args.tick_hz,
        bots: args.bots,
        players_move: args.players_move,
    }))
}

fn mode(args: &BenchArgs) -> Result<Mode, String> {
    check(!(args.idle && args.ceiling), || {
        "--idle measures the server's memory; --ceiling has nothing to compare there".into()
    })?;
    check(args.missed == 0 || args.reconnect, || {
        "--missed is the number of updates made while --reconnect clients are away".into()
    })?;
    Ok(match (args.idle, args.reconnect) {
        (true, _) => Mode::Idle,
        (false, true) => Mode::Reconnect {
            missed: args.missed,
        },
        (false, false) => Mode::Load,
    })
}

fn ceiling(args: &BenchArgs, load: &Load) -> Result<Option<Target>, String> {
    match (&args.ceiling_url, args.ceiling) {
        (Some(_), false) => Err("--ceiling-url needs --ceiling".into()),
        (Some(url), true) => Ok(Some(Target::Url {
            url: WsUrl::parse(url)?,
            pid: args.ceiling_pid,
        })),
        (None, true) => {
            check(args.ceiling_pid.is_none(), || {
                "--ceiling-pid names the process of a --ceiling-url server".into()
            })?;
            let config = server_config(args, load)?;
            Ok(Some(Target::CeilingInProcess {
                shards: shards(&config),
            }))
        }
        (None, false) => Ok(None),
    }
}

/// The baseline (`--baseline-set`): the in-process server's configuration plus those keys.
fn baseline(args: &BenchArgs, load: &Load) -> Result<Option<Target>, String> {
    if args.baseline_set.is_empty() {
        return Ok(None);
    }
    check(args.url.is_empty(), || {
        "--baseline-set configures a second in-process server; it cannot be used with --url".into()
    })?;
    let key = |set: &String| {
        set.split_once('=')
            .map_or(set.clone(), |(k, _)| k.to_owned())
    };
    let replaced: Vec<String> = args.baseline_set.iter().map(key).collect();
    // A key of --baseline-set replaces the same key of --server-set.
    let mut sets: Vec<String> = args
        .server_set
        .iter()
        .filter(|set| !replaced.contains(&key(set)))
        .cloned()
        .collect();
    sets.extend(args.baseline_set.iter().cloned());
    let target = own_server(args, &sets, load)
        .map_err(|e| e.replace("(from --server-set)", "(from --baseline-set)"))?;
    Ok(Some(target))
}

/// Our server with `sets`: in this process, or in one of its own (`--server-process`).
fn own_server(args: &BenchArgs, sets: &[String], load: &Load) -> Result<Target, String> {
    let config = config_with(sets, load)?;
    if !separate_process(args.server_process, load) {
        return Ok(Target::InProcess(Box::new(config)));
    }
    Ok(Target::Spawned(spawned_sets(sets, load)))
}

/// The `KEY=VALUE`s of a `deltasync serve` process: the bench's defaults, then `sets`
/// (which win).
fn spawned_sets(sets: &[String], load: &Load) -> Vec<String> {
    let mut all: Vec<String> = bench_defaults(load)
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .filter(|set| {
            !sets
                .iter()
                .any(|s| s.split('=').next() == set.split('=').next())
        })
        .collect();
    all.extend(sets.iter().cloned());
    all
}

/// Where our server runs: `auto` puts it in a process of its own on a machine of two
/// cores or fewer, where it and the generator fight for them (the game scenario's server
/// is always in this process: its game loop is part of the bench).
fn separate_process(choice: ServerProcessArg, load: &Load) -> bool {
    match choice {
        ServerProcessArg::InProcess => false,
        ServerProcessArg::Separate => true,
        ServerProcessArg::Auto => load.game.is_none() && cores() <= 2,
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Receiving threads when `--threads` is not given: on machines of two cores or fewer,
/// one per core; elsewhere half the cores (the other half is the server's), at most 16;
/// never more than the clients.
///
/// On two cores the generator and the server share both whatever the split, and on a
/// quiet one two receiving threads were never worse than one: the busiest thread at
/// 47-68 % against 58-86 % (1,000 to 10,000 clients), the same p99, and a 10,000-client
/// join storm read in 10.3 s instead of 14.2 s (`docs/benchmarks.md`).
pub(crate) fn default_threads(clients: usize) -> usize {
    let threads = match cores() {
        0..=2 => cores(),
        n => n / 2,
    };
    threads.clamp(1, 16).min(clients)
}

/// Where `deltasync bench` runs the server it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ServerProcessArg {
    /// A process of its own on machines of two cores or fewer, else this process.
    Auto,
    /// This process.
    InProcess,
    /// A `deltasync serve` process of its own.
    Separate,
}

/// The in-process server's threads: `server.shards`, 0 meaning one per core.
pub(crate) fn shards(config: &Config) -> usize {
    match config.server.shards {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// What `--serve-ceiling` needs: its address and its threads (`--server-set server.shards`).
pub(crate) fn ceiling_serve(args: &BenchArgs, listen: SocketAddr) -> Result<CeilingServe, String> {
    let mut overrides = Overrides::new();
    for arg in &args.server_set {
        overrides.push_set(arg).map_err(|e| e.to_string())?;
    }
    let effective = Loader::new()
        .overrides(overrides)
        .load()
        .map_err(|e| e.to_string())?;
    Ok(CeilingServe {
        listen,
        shards: shards(effective.config()),
    })
}

/// The adjustments the bench makes to the in-process server's defaults, so that the
/// load is not refused by limits meant for the public: every key the user sets with
/// `--server-set` wins over these.
pub(crate) fn bench_defaults(load: &Load) -> Vec<(&'static str, String)> {
    let mut defaults = vec![
        ("server.listen", "127.0.0.1:0".into()),
        // A reconnect storm can briefly hold old and new connections of every client.
        (
            "limits.max_connections",
            (2 * load.clients + 100).max(10_000).to_string(),
        ),
        // Every client comes from one address; a room may hold them all.
        ("limits.max_connections_per_ip", "0".into()),
        ("limits.max_new_connections_per_ip_per_sec", "0".into()),
        ("limits.max_participants_per_room", "0".into()),
        ("limits.max_rooms", (load.rooms + 10).max(1_000).to_string()),
        ("limits.messages_per_second", "1000000".into()),
        ("limits.message_burst", "1000000".into()),
        (
            "presence.max_name_chars",
            load.payload_bytes.max(64).to_string(),
        ),
    ];
    if let Some(game) = load.game {
        defaults.push((
            "room.ring_capacity",
            game_ring(game, load.clients).to_string(),
        ));
    }
    defaults
}

/// The game room's ring: about two seconds of its operations and one spawn per client (a
/// client away longer resumes with a snapshot), a power of two from 16,384 up.
fn game_ring(game: GameSpec, clients: usize) -> usize {
    let wanted = 2.0 * game.ops_per_second(clients) + clients as f64;
    (wanted.min(16_777_216.0) as usize)
        .next_power_of_two()
        .clamp(16_384, 16_777_216)
}

/// The in-process server's configuration: its defaults, the bench's adjustments
/// ([`bench_defaults`]) and `--server-set`. No file and no environment are read.
fn server_config(args: &BenchArgs, load: &Load) -> Result<Config, String> {
    config_with(&args.server_set, load)
}

/// The bench's defaults with `sets` (`SECTION.KEY=VALUE`, later ones win) on top.
fn config_with(sets: &[String], load: &Load) -> Result<Config, String> {
    let mut overrides = Overrides::new();
    let given: Vec<&str> = sets
        .iter()
        .map(|arg| arg.split_once('=').map_or(arg.as_str(), |(key, _)| key))
        .collect();
    for (key, value) in bench_defaults(load) {
        if !given.contains(&key) {
            overrides.push(key, value, "deltasync bench");
        }
    }
    for arg in sets {
        overrides.push_set(arg).map_err(|e| e.to_string())?;
    }
    let effective = Loader::new()
        .overrides(overrides)
        .load()
        .map_err(|e| e.to_string().replace("(from --set)", "(from --server-set)"))?;
    Ok(effective.into_config())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn scenario(args: &[&str]) -> Result<Scenario, String> {
        let argv = std::iter::once("bench").chain(args.iter().copied());
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        Scenario::from_args(&cli.bench)
    }

    #[test]
    fn the_defaults_are_the_documented_scenario() {
        let s = scenario(&[]).unwrap();
        let l = &s.load;
        assert_eq!(
            (l.clients, l.rooms, l.writers, l.rate, l.payload_bytes),
            (1000, 1, 1, Rate::PerSecond(1000.0), 32)
        );
        assert_eq!(
            (l.duration, l.warmup, l.threads, l.mode),
            (
                Duration::from_secs(10),
                Duration::from_secs(2),
                // One per core on two cores or fewer, else half the cores.
                if cores() <= 2 { cores() } else { cores() / 2 }.clamp(1, 16),
                Mode::Load
            )
        );
        match &s.target {
            Target::InProcess(config) if cores() > 2 => {
                assert_eq!(config.limits.messages_per_second, 1_000_000);
                assert_eq!(config.server.listen.port(), 0);
            }
            Target::Spawned(sets) if cores() <= 2 => {
                assert!(sets.contains(&"limits.messages_per_second=1000000".to_owned()));
                assert!(sets.contains(&"server.listen=127.0.0.1:0".to_owned()));
            }
            other => panic!("not the default for {} cores: {other:?}", cores()),
        }
        assert!(s.ceiling.is_none());
    }

    #[test]
    fn a_separate_server_process_gets_the_same_keys() {
        let s = scenario(&[
            "--server-process",
            "separate",
            "--server-set",
            "limits.messages_per_second=50",
            "--baseline-set",
            "server.flush_interval_us=0",
        ])
        .unwrap();
        let Target::Spawned(sets) = &s.target else {
            panic!("{:?}", s.target)
        };
        assert!(sets.contains(&"limits.messages_per_second=50".to_owned()));
        assert!(sets.contains(&"limits.message_burst=1000000".to_owned()));
        assert!(!sets.contains(&"limits.messages_per_second=1000000".to_owned()));
        let Some(Target::Spawned(baseline)) = &s.baseline else {
            panic!("{:?}", s.baseline)
        };
        assert_eq!(baseline.last().unwrap(), "server.flush_interval_us=0");
        assert!(baseline.contains(&"limits.messages_per_second=50".to_owned()));
    }

    #[test]
    fn bad_combinations_are_one_clear_message() {
        let cases: [(&[&str], &str); 10] = [
            (&["--clients", "0"], "--clients must be at least 1"),
            (
                &["--clients", "3", "--writers", "5"],
                "--writers 5 is more than --clients 3: writers are among the clients",
            ),
            (
                &["--clients", "3", "--rooms", "4"],
                "--rooms 4 must be between 1 and --clients (3)",
            ),
            (&["--duration", "0"], "--duration must be more than 0"),
            (
                &["--payload-bytes", "5000"],
                "--payload-bytes 5000 must be between 1 and 4096 (the name field it pads)",
            ),
            (
                &["--ca", "/no/ca.pem"],
                "--ca is for a wss:// --url, or an in-process server with server.tls_cert",
            ),
            (
                &["--url", "http://127.0.0.1:1/"],
                "http://127.0.0.1:1/: expected a ws:// or wss:// URL",
            ),
            (
                &["--server-pid", "1"],
                "--server-pid names the process of a --url server; the in-process server is this process",
            ),
            (
                &["--server-set", "room.ring_capacity=0"],
                "room.ring_capacity = 0 (from --server-set): must be between 1 and 16777216",
            ),
            (
                &["--idle", "--ceiling"],
                "--idle measures the server's memory; --ceiling has nothing to compare there",
            ),
        ];
        for (args, message) in cases {
            assert_eq!(scenario(args).unwrap_err(), message, "{args:?}");
        }
    }

    #[test]
    fn values_parse_with_clear_errors() {
        assert_eq!(parse_rate("unlimited"), Ok(Rate::Unlimited));
        assert_eq!(parse_rate("60"), Ok(Rate::PerSecond(60.0)));
        assert!(parse_rate("0").is_err() && parse_rate("fast").is_err());
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_seconds("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_seconds("-1").is_err() && parse_seconds("soon").is_err());
        let err = scenario(&["--rate", "fast"]).unwrap_err();
        assert!(
            err.contains("expected a positive number of updates per second"),
            "{err}"
        );
    }

    #[test]
    fn server_set_wins_over_the_bench_adjustments() {
        let s = scenario(&[
            "--server-process",
            "in-process",
            "--server-set",
            "limits.messages_per_second=50",
        ])
        .unwrap();
        let Target::InProcess(config) = &s.target else {
            panic!()
        };
        assert_eq!(config.limits.messages_per_second, 50);
        assert_eq!(config.limits.message_burst, 1_000_000);
    }

    #[test]
    fn urls_resolve_and_name_rooms() {
        let url = WsUrl::parse("ws://127.0.0.1:7373").unwrap();
        assert_eq!((url.path.as_str(), url.addr.port()), ("/", 7373));
        assert_eq!(url.room_target(0, 1), "/");
        assert_eq!(url.room_target(3, 100), "/rooms/bench-3");
        let url = WsUrl::parse("ws://localhost:9/app/?token=t").unwrap();
        assert_eq!(url.room_target(0, 1), "/app/?token=t");
        assert_eq!(url.room_target(2, 5), "/app/rooms/bench-2?token=t");
        assert_eq!(url.host, "localhost:9");
    }

    #[test]
    fn the_game_scenario_is_one_room_of_movers_or_spectators() {
        let s = scenario(&["--game", "--clients", "10"]).unwrap();
        let game = s.load.game.unwrap();
        assert_eq!((game.tick_hz, game.bots, game.players_move), (60.0, 100, 0));
        assert_eq!((s.load.rooms, s.load.writers), (1, 0));
        let Target::InProcess(config) = &s.target else {
            panic!("in-process")
        };
        assert_eq!(config.room.ring_capacity.get(), 16_384);
        let s = scenario(&["--game", "--clients", "10", "--players-move", "3"]).unwrap();
        // Every client moves every 3 ticks: 10 × 60 / 3 moves per second in all.
        assert_eq!((s.load.writers, s.load.rate), (10, Rate::PerSecond(200.0)));
        // 10,000 clients moving every tick: 2 × (100 + 10,000) × 60 + 10,000 operations.
        let s = scenario(&["--game", "--clients", "10000", "--players-move", "1"]).unwrap();
        let Target::InProcess(config) = &s.target else {
            panic!("in-process")
        };
        assert_eq!(config.room.ring_capacity.get(), 2_097_152);
        assert_eq!(
            scenario(&["--game", "--tick-hz", "0"]).unwrap_err(),
            "--tick-hz 0 must be between 1 and 1000"
        );
        for bad in [
            &["--game", "--rooms", "2"][..],
            &["--game", "--rate", "5"],
            &["--game", "--url", "ws://127.0.0.1:1/"],
            &["--bots", "5"],
        ] {
            assert!(scenario(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn several_nodes_share_the_clients_and_writers_round_robin() {
        let s = scenario(&["--cluster-nodes", "3", "--clients", "10", "--writers", "4"]).unwrap();
        let l = &s.load;
        assert_eq!(l.nodes, 3);
        assert_eq!(
            (0..3).map(|n| l.clients_on(n)).collect::<Vec<_>>(),
            [4, 3, 3]
        );
        assert_eq!(
            (0..3).map(|n| l.writers_on(n)).collect::<Vec<_>>(),
            [2, 1, 1]
        );
        let Target::Cluster { nodes, fsync, sets } = &s.target else {
            panic!("{:?}", s.target)
        };
        assert_eq!((*nodes, *fsync), (3, EngineFsync::Always));
        // The harness pins each node's port; the bench's other keys are there.
        assert!(!sets.iter().any(|set| set.starts_with("server.listen=")));
        assert!(sets.contains(&"limits.max_connections_per_ip=0".to_owned()));
        assert!(s.baseline.is_none());
        let urls = ["--url", "ws://127.0.0.1:1/", "--url", "ws://127.0.0.1:2/"];
        let s = scenario(&urls).unwrap();
        assert_eq!(s.load.nodes, 2);
        let Target::Nodes { urls, pids } = &s.target else {
            panic!("{:?}", s.target)
        };
        assert_eq!((urls.len(), pids.len()), (2, 0));
    }

    #[test]
    fn the_disk_baseline_fsyncs_as_the_engine_does() {
        let sets = |args: &[&str]| match scenario(args).unwrap().baseline {
            Some(Target::SpawnedDisk(sets)) => sets,
            other => panic!("{other:?}"),
        };
        let always = sets(&["--cluster-nodes", "2", "--disk-baseline"]);
        assert_eq!(always[..2], ["storage.backend=disk", "storage.sync=always"]);
        let everysec = sets(&[
            "--cluster-nodes",
            "2",
            "--disk-baseline",
            "--engine-fsync",
            "everysec",
        ]);
        assert_eq!(everysec[1], "storage.sync=interval");
        let given = sets(&[
            "--cluster-nodes",
            "2",
            "--disk-baseline",
            "--server-set",
            "storage.sync=never",
        ]);
        assert_eq!(given.last().unwrap(), "storage.sync=never");
        assert!(!given.contains(&"storage.sync=always".to_owned()));
        assert!(scenario(&["--disk-baseline"]).is_err());
    }

    #[test]
    fn rooms_share_the_clients_evenly() {
        let s = scenario(&["--clients", "10", "--rooms", "3", "--writers", "3"]).unwrap();
        let l = &s.load;
        assert_eq!(
            (0..3).map(|r| l.clients_in(r)).collect::<Vec<_>>(),
            [4, 3, 3]
        );
        assert_eq!((0..10).filter(|&c| l.room_of(c) == 1).count(), 3);
        assert!(l.is_writer(2) && !l.is_writer(3));
    }
}
