//! `deltasync bench`: a fan-out load generator that measures and checks.
//!
//! With no arguments it starts a server in this process on loopback and runs the default
//! scenario: 1,000 clients in one room, one of them writing 1,000 updates per second,
//! measured for 10 s after a 2 s warmup. `--url ws://...` points the same load at any
//! server that speaks the ws-kit dialect (ours or another); `--ceiling` runs it again
//! against a minimal built-in server that only writes frames of the same sizes (the
//! physical limit of the machine for that work) and reports ours as a fraction of it.
//! `--game` runs the clients against an in-process game server instead: an arena room
//! flushed once per tick by a game loop at `--tick-hz`, each frame timed from its tick's
//! flush and checked to end at a tick boundary (see `game`).
//!
//! While it measures it checks: every client's deltas are contiguous, every update is
//! acknowledged exactly once (or rejected by an `ERROR` naming it), every client ends at
//! its room's head. A violation is printed and makes the exit code 1: a benchmark that
//! loses data is a failure, not a fast result. Bad options exit with 2.
//!
//! | module | holds |
//! |---|---|
//! | `scenario` | the options checked together: the validated run |
//! | `driver` | one run against one server: threads, phases, CPU and memory samples |
//! | `client` | the generator: a `mio` loop per thread over many connections |
//! | `receive`, `writer` | what a client does with a message; the writers' schedule |
//! | `scan`, `frame`, `id` | the byte scanner, WebSocket framing, the update ids |
//! | `check` | the invariants checked, stream by stream and writer by writer |
//! | `metrics`, `cpu` | counters and histograms; `/proc` readings, the open-file limit |
//! | `ceiling` | the minimal fan-out server |
//! | `nodes` | a load dealt over several nodes (`--url` repeated, `--cluster-nodes`): figures per node |
//! | `game` | `--game`: an arena server on its tick, its game loop, frames timed by ticks |
//! | `report` | the table and the JSON object |

mod ceiling;
mod check;
mod client;
mod control;
pub(crate) mod cpu;
mod driver;
mod game;
mod id;
mod metrics;
mod nodes;
mod receive;
mod report;
mod scan;
mod scenario;
pub(crate) mod spawned;
mod upgrade;
mod writer;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use deltasync::config::Config;
use deltasync::server::Server;

use crate::cluster_harness::{Cluster, EngineFsync, TempDir};
use ceiling::Ceiling;
use client::{Endpoint, NodeAddr, TlsTarget};
use driver::{RunResult, ServerProcess};
use nodes::{ClusterView, NodesSpec};
use report::{BaselineRatios, Figures, Ratios, Report, ScenarioView};
use scenario::{DialectArg, Load, Rate, Scenario, ServerProcessArg, Target, WsUrl};
use spawned::Spawned;

/// Exit code of bad options and of a system that cannot run the scenario.
const USAGE: u8 = 2;

/// Options of `deltasync bench`.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Load")]
pub(crate) struct BenchArgs {
    /// Load the server at this URL (ws://HOST:PORT/PATH) instead of one in this process;
    /// repeated: the nodes of one cluster, clients dealt round-robin over them (client c
    /// on URL c mod N, so writer w is on URL w mod N) and latency reported per node
    #[arg(long, value_name = "URL")]
    url: Vec<String>,
    /// The process id of the --url server: its CPU time and memory are reported (with
    /// several --url, one per URL in the same order: their CPU times are added up)
    #[arg(long, value_name = "PID")]
    server_pid: Vec<u32>,
    /// Start a cluster on this machine and load it: a redis-server (the engine, from
    /// PATH) and N `deltasync serve --cluster` nodes on loopback, clients dealt
    /// round-robin over them as with several --url
    #[arg(long, value_name = "N", conflicts_with_all = ["url", "server_pid", "ceiling", "baseline_set"])]
    cluster_nodes: Option<usize>,
    /// With --cluster-nodes: the engine's appendfsync
    #[arg(long, value_enum, default_value = "always", requires = "cluster_nodes")]
    engine_fsync: crate::cluster_harness::EngineFsync,
    /// With --cluster-nodes: run the same load against one `deltasync serve` node with
    /// the disk backend (a temporary --data-dir) too, and report the cluster against it
    #[arg(long, requires = "cluster_nodes")]
    disk_baseline: bool,
    /// For wss:// (a wss:// --url, or --server-set server.tls_cert=...): trust only the CA
    /// certificates of this PEM file instead of the system's roots
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// Clients (WebSocket connections), writers included
    #[arg(long, value_name = "N", default_value_t = 1000)]
    clients: usize,
    /// Rooms; clients are dealt round-robin (room r at /rooms/bench-r when more than one)
    #[arg(long, value_name = "N", default_value_t = 1)]
    rooms: usize,
    /// Writers: clients 0..W, so writer w is in room w mod --rooms
    #[arg(long, value_name = "N", default_value_t = 1)]
    writers: usize,
    /// Updates per second of all writers together, or `unlimited` (closed loop)
    #[arg(long, value_name = "R", default_value = "1000", value_parser = scenario::parse_rate)]
    rate: Rate,
    /// With --rate unlimited: unacknowledged updates each writer keeps in flight
    #[arg(long, value_name = "N", default_value_t = 64)]
    in_flight: usize,
    /// Length of the name each update sets (the update's payload, padded)
    #[arg(long, value_name = "BYTES", default_value_t = 32)]
    payload_bytes: usize,
    /// Seconds measured, after the warmup
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = scenario::parse_seconds)]
    duration: Duration,
    /// Seconds of load before the measurement starts
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = scenario::parse_seconds)]
    warmup: Duration,
    /// New connections per second in all; 0 for as fast as --connect-concurrency allows
    #[arg(long, value_name = "N", default_value_t = 0.0)]
    connect_rate: f64,
    /// Connections upgrading at once, at most
    #[arg(long, value_name = "N", default_value_t = 256)]
    connect_concurrency: usize,
    /// Seconds for every client to connect and join (and, with --reconnect, to be back)
    #[arg(long, value_name = "SECS", default_value = "120", value_parser = scenario::parse_seconds)]
    connect_timeout: Duration,
    /// The dialect: ws-kit (no subprotocol) or native (deltasync.v1)
    #[arg(long, value_enum, default_value = "ws-kit")]
    dialect: DialectArg,
    /// Receiving generator threads (one mio event loop each; the writers have one more of
    /// their own). Default: one per core on machines of two cores or fewer, else half the
    /// cores
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Where the server under test runs: in this process, in a `deltasync serve` process
    /// of its own (`separate`), or `auto`: separate on machines of two cores or fewer,
    /// where the generator and the server fight for them
    #[arg(long, value_enum, default_value = "auto")]
    server_process: ServerProcessArg,
    /// Seconds without a byte received after which the drain (every update settled, every
    /// client current) is given up
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = scenario::parse_seconds)]
    drain_timeout: Duration,
    /// Seconds between HEARTBEATs of a client that sends nothing else; 0 for none
    #[arg(long, value_name = "SECS", default_value = "20", value_parser = scenario::parse_seconds)]
    heartbeat: Duration,
    /// Record latency at every Nth client only (every client still checks and counts)
    #[arg(long, value_name = "N", default_value_t = 1)]
    latency_every: usize,
    /// Connect, join and stay idle for --duration: with --server-pid, memory per client
    #[arg(long, conflicts_with = "reconnect")]
    idle: bool,
    /// Every client but the writers drops its connection at once, then all reconnect and
    /// resume; reports the time until all are current again
    #[arg(long)]
    reconnect: bool,
    /// With --reconnect: updates the writers make while the others are away
    #[arg(long, value_name = "N", default_value_t = 0)]
    missed: u64,
    /// Run the same load against the ceiling server too and report the ratio
    #[arg(long)]
    ceiling: bool,
    /// With --ceiling: a ceiling already running (deltasync bench --serve-ceiling ADDR)
    #[arg(long, value_name = "URL")]
    ceiling_url: Option<String>,
    /// The process id of the --ceiling-url server
    #[arg(long, value_name = "PID")]
    ceiling_pid: Option<u32>,
    /// Configure the in-process server, e.g. --server-set server.shards=2 (repeatable)
    #[arg(long = "server-set", value_name = "SECTION.KEY=VALUE")]
    server_set: Vec<String>,
    /// Run the same load again against an in-process server configured like the first
    /// plus this, and report ours against it, e.g. --baseline-set server.flush_interval_us=0
    /// (repeatable)
    #[arg(long = "baseline-set", value_name = "SECTION.KEY=VALUE")]
    baseline_set: Vec<String>,
    /// Only run the ceiling server on ADDR until interrupted (for --ceiling-url)
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["url", "ceiling", "idle", "reconnect", "json"])]
    serve_ceiling: Option<SocketAddr>,
    /// The game scenario: an arena room on the game's tick (`FlushPolicy::Tick`), a game
    /// loop at --tick-hz moving --bots bots, and every client in /rooms/arena
    #[arg(
        long,
        help_heading = "Game",
        conflicts_with_all = [
            "url", "server_pid", "cluster_nodes", "rooms", "writers", "rate", "in_flight", "payload_bytes",
            "idle", "reconnect", "missed", "ceiling", "ceiling_url", "ceiling_pid", "serve_ceiling",
            "baseline_set",
        ]
    )]
    game: bool,
    /// With --game: ticks per second of the game loop
    #[arg(
        long,
        value_name = "HZ",
        default_value_t = 60.0,
        requires = "game",
        help_heading = "Game"
    )]
    tick_hz: f64,
    /// With --game: bots the game moves one step every tick (the entity moves per tick)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        requires = "game",
        help_heading = "Game"
    )]
    bots: usize,
    /// With --game: every client sends a move every N ticks (0: spectators only, the
    /// figures are then pure fan-out)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        requires = "game",
        help_heading = "Game"
    )]
    players_move: u64,
    /// Print one JSON object with every figure instead of the table
    #[arg(long)]
    json: bool,
    /// No progress lines on stderr
    #[arg(long)]
    quiet: bool,
}

/// Runs the benchmark: exit 0 if every run passed its checks, 1 if one did not, 2 on
/// bad options or a system that cannot hold the scenario.
pub(crate) fn run(args: &BenchArgs) -> ExitCode {
    if let Some(listen) = args.serve_ceiling {
        return serve_ceiling(args, listen);
    }
    let scenario = match Scenario::from_args(args) {
        Ok(scenario) => scenario,
        Err(message) => return usage(&message),
    };
    let per_client = match scenario.target {
        Target::Url { .. }
        | Target::Spawned(_)
        | Target::Nodes { .. }
        | Target::Cluster { .. }
        | Target::SpawnedDisk(_) => 1,
        _ => 2,
    };
    let needed = (scenario.load.clients * per_client + 256) as u64;
    if let Err(message) = cpu::raise_open_files(needed, &describe_need(&scenario, per_client)) {
        return usage(&message);
    }
    if let (Some(spec), Target::InProcess(config)) = (scenario.load.game, &scenario.target) {
        return run_game(&scenario, spec, config);
    }
    let ours = match run_against(&scenario, &scenario.target) {
        Ok(figures) => figures,
        Err(message) => return failure(&message),
    };
    let baseline = match &scenario.baseline {
        Some(target) => match run_against(&scenario, target) {
            Ok(figures) => {
                let label = match args.disk_baseline {
                    true => "single node, disk backend".to_owned(),
                    false => format!("baseline: {}", args.baseline_set.join(" ")),
                };
                Some(figures.named(&label))
            }
            Err(message) => return failure(&message),
        },
        None => None,
    };
    let ceiling = match &scenario.ceiling {
        Some(target) => match run_against(&scenario, target) {
            Ok(figures) => Some(figures),
            Err(message) => return failure(&message),
        },
        None => None,
    };
    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: cpu::Machine::read(),
        scenario: ScenarioView::of(&scenario.load),
        vs_ceiling: ceiling.as_ref().map(|c| Ratios::of(&ours, c)),
        vs_baseline: baseline.as_ref().map(|b| BaselineRatios::of(&ours, b)),
        violations: ours.violations
            + baseline.as_ref().map_or(0, |b| b.violations)
            + ceiling.as_ref().map_or(0, |c| c.violations),
        result: ours,
        baseline,
        ceiling,
    };
    print(&report, scenario.json);
    let passed = report.result.passed()
        && report.baseline.as_ref().is_none_or(Figures::passed)
        && report.ceiling.as_ref().is_none_or(Figures::passed);
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn describe_need(scenario: &Scenario, per_client: usize) -> String {
    let clients = scenario.load.clients;
    if per_client == 2 {
        format!("{clients} clients with the server in this process (two sockets each)")
    } else {
        format!("{clients} clients")
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(USAGE)
}

fn failure(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

fn print(report: &Report, json: bool) {
    let text = if json {
        serde_json::to_string(report).unwrap_or_default() + "\n"
    } else {
        report.table()
    };
    emit(&text);
}

fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// `--game`: the game scenario against its in-process server.
fn run_game(scenario: &Scenario, spec: scenario::GameSpec, config: &Config) -> ExitCode {
    let report = match game::run(scenario, spec, config) {
        Ok(report) => report,
        Err(message) => return failure(&message),
    };
    emit(&if scenario.json {
        serde_json::to_string(&report).unwrap_or_default() + "\n"
    } else {
        report.table()
    });
    if report.result.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs the scenario's load against one target and turns the result into figures.
fn run_against(scenario: &Scenario, target: &Target) -> Result<Figures, String> {
    let load = &scenario.load;
    let quiet = scenario.quiet;
    match target {
        Target::InProcess(config) => {
            let server = Server::presence((**config).clone())
                .start()
                .map_err(|e| format!("cannot start the in-process server: {e}"))?;
            let url = local_url(server.local_addr(), scenario.tls.is_some());
            let endpoint = endpoint(&url, load, scenario.tls.as_ref());
            let result = driver::run(load, endpoint, ServerProcess::InProcess, None, &[], quiet);
            server.shutdown();
            Ok(figures("deltasync (in-process)", load, result))
        }
        Target::Spawned(sets) => {
            let server = Spawned::start(sets)?;
            let url = local_url(server.addr(), scenario.tls.is_some());
            let endpoint = endpoint(&url, load, scenario.tls.as_ref());
            let process = ServerProcess::Pid(server.pid());
            let result = driver::run(load, endpoint, process, None, &[], quiet);
            drop(server);
            Ok(figures("deltasync (separate process)", load, result))
        }
        Target::CeilingInProcess { shards } => {
            let ceiling = Ceiling::start(([127, 0, 0, 1], 0).into(), *shards)
                .map_err(|e| format!("cannot start the ceiling server: {e}"))?;
            let endpoint = endpoint(&local_url(ceiling.local_addr(), false), load, None);
            let result = driver::run(load, endpoint, ServerProcess::InProcess, None, &[], quiet);
            ceiling.shutdown();
            Ok(figures("ceiling (in-process)", load, result))
        }
        Target::Url { url, pid } => {
            let server = pid.map_or(ServerProcess::Unknown, ServerProcess::Pid);
            let endpoint = endpoint(url, load, scenario.tls.as_ref().filter(|_| url.tls));
            let result = driver::run(load, endpoint, server, None, &[], quiet);
            let scheme = if url.tls { "wss" } else { "ws" };
            let name = format!("{scheme}://{}{}", url.host, url.path);
            Ok(figures(&name, load, result))
        }
        Target::Nodes { urls, pids } => run_nodes(load, urls, pids, quiet),
        Target::Cluster { nodes, fsync, sets } => run_cluster(load, *nodes, *fsync, sets, quiet),
        Target::SpawnedDisk(sets) => {
            // One node: its clients are not dealt over the cluster's.
            let load = &Load {
                nodes: 1,
                ..load.clone()
            };
            let dir = TempDir::new("bench-disk").map_err(|e| format!("the disk baseline: {e}"))?;
            let mut sets = sets.clone();
            sets.push(format!("storage.dir={}", dir.path().display()));
            let server = Spawned::start(&sets)?;
            let endpoint = endpoint(&local_url(server.addr(), false), load, None);
            let process = ServerProcess::Pid(server.pid());
            let result = driver::run(load, endpoint, process, None, &[], quiet);
            drop(server);
            Ok(figures("single node, disk backend", load, result))
        }
    }
}

/// Several `--url`s: the nodes of a cluster running elsewhere.
fn run_nodes(load: &Load, urls: &[WsUrl], pids: &[u32], quiet: bool) -> Result<Figures, String> {
    let endpoint = nodes_endpoint(urls, load);
    let spec = NodesSpec {
        urls: urls.iter().map(shown).collect(),
        addrs: urls.iter().map(|url| url.addr).collect(),
        node_pids: pids.len(),
        engine_fsync: None,
    };
    let result = driver::run(load, endpoint, ServerProcess::Unknown, None, pids, quiet);
    Ok(nodes_figures(
        &format!("{} nodes", urls.len()),
        load,
        result,
        &spec,
    ))
}

/// `--cluster-nodes N`: an engine and N nodes started here, loaded, then stopped.
fn run_cluster(
    load: &Load,
    nodes: usize,
    fsync: EngineFsync,
    sets: &[String],
    quiet: bool,
) -> Result<Figures, String> {
    let cluster = Cluster::start(nodes, fsync, sets)?;
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.addr()).collect();
    let urls: Vec<WsUrl> = addrs.iter().map(|addr| local_url(*addr, false)).collect();
    let spec = NodesSpec {
        urls: urls.iter().map(shown).collect(),
        addrs,
        node_pids: nodes,
        engine_fsync: Some(fsync.as_str()),
    };
    let endpoint = nodes_endpoint(&urls, load);
    let pids = cluster.pids();
    let result = driver::run(load, endpoint, ServerProcess::Unknown, None, &pids, quiet);
    let name = format!(
        "{nodes} nodes + engine (redis, appendfsync {})",
        fsync.as_str()
    );
    let figures = nodes_figures(&name, load, result, &spec);
    drop(cluster);
    Ok(figures)
}

/// Clients dealt over `urls` (every node serves every room at the same path).
fn nodes_endpoint(urls: &[WsUrl], load: &Load) -> Endpoint {
    Endpoint {
        nodes: urls
            .iter()
            .map(|url| NodeAddr {
                addr: url.addr,
                host: url.host.clone(),
            })
            .collect(),
        targets: (0..load.rooms)
            .map(|room| urls[0].room_target(room, load.rooms))
            .collect(),
        tls: None,
    }
}

/// A node's URL as the report shows it.
fn shown(url: &WsUrl) -> String {
    format!("ws://{}{}", url.host, url.path)
}

/// The figures of a load over several nodes: the server's CPU time is every watched
/// process's (nodes and engine), and the per-node view is attached.
fn nodes_figures(name: &str, load: &Load, mut result: RunResult, spec: &NodesSpec) -> Figures {
    if !result.watched_cpu.is_empty() {
        result.server_cpu = Some(result.watched_cpu.iter().sum());
        result.server_writes = result.watched_writes.iter().copied().sum();
    }
    let counters = nodes::read_counters(&spec.addrs);
    let view = ClusterView::of(load, &result, spec, counters);
    figures(name, load, result).with_cluster(view)
}

fn figures(name: &str, load: &Load, result: RunResult) -> Figures {
    Figures::of(name.to_owned(), load, result)
}

/// The URL of a server in this process: `wss://localhost:PORT/` when it serves TLS (its
/// certificate must name `localhost`).
fn local_url(addr: SocketAddr, tls: bool) -> WsUrl {
    WsUrl {
        host: if tls {
            format!("localhost:{}", addr.port())
        } else {
            addr.to_string()
        },
        addr,
        path: "/".into(),
        query: None,
        tls,
    }
}

fn endpoint(url: &WsUrl, load: &Load, tls: Option<&TlsTarget>) -> Endpoint {
    Endpoint {
        nodes: vec![NodeAddr {
            addr: url.addr,
            host: url.host.clone(),
        }],
        targets: (0..load.rooms)
            .map(|room| url.room_target(room, load.rooms))
            .collect(),
        tls: tls.cloned(),
    }
}

/// `--serve-ceiling ADDR`: the ceiling alone, until SIGINT or SIGTERM.
fn serve_ceiling(args: &BenchArgs, listen: SocketAddr) -> ExitCode {
    let serve = match scenario::ceiling_serve(args, listen) {
        Ok(serve) => serve,
        Err(message) => return usage(&message),
    };
    if let Err(message) = cpu::raise_open_files(65_536, "the ceiling server") {
        eprintln!("warning: {message}");
    }
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(signals) => signals,
        Err(e) => return failure(&format!("cannot handle signals: {e}")),
    };
    let ceiling = match Ceiling::start(serve.listen, serve.shards) {
        Ok(ceiling) => ceiling,
        Err(e) => return failure(&format!("cannot serve on {}: {e}", serve.listen)),
    };
    println!("ceiling listening on ws://{}/", ceiling.local_addr());
    let _ = std::io::stdout().flush();
    let _ = signals.forever().next();
    ceiling.shutdown();
    ExitCode::SUCCESS
}
