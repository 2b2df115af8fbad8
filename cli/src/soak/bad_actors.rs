//! Bad actors beside well-behaved clients, measured: how much each slows them down.
//!
//! The server runs in this process with its default limits (handshake timeout 5 s
//! unless `--handshake-ms`, message size 64 KiB, 100 messages/s with a burst of 200 per
//! connection, 1,000 connections per client address). Each kind of attacker connects from
//! a loopback address of its own (`127.0.0.2` to `127.0.0.6`, see [`source_of`]) and the
//! probes from `127.0.0.1`, so the per-address limits apply to them as they would to
//! clients of other hosts, and nothing is exempted.
//!
//! Two groups of probes (see `probe.rs`), `--probes` each, all on the server's first
//! shard: one in room `shared`, which the attackers that join rooms join too (the hard
//! case: they share its room's fan-out), and one in room `bystander`, where no attacker
//! goes (a client of the same shard in a room of its own). Phase by phase, each `--secs`
//! long:
//!
//! - `quiet`: the probes alone;
//! - `slowloris`: 1,000 connections that send part of an upgrade request and then a byte
//!   a second, reopened as soon as the server closes them (at the handshake timeout);
//! - `gib-header`: connections that upgrade and send a frame header announcing 1 GiB,
//!   one after the other as fast as the server closes them (close 1009);
//! - `byte-frames`: 50 joined clients of `shared` sending valid updates one byte at a
//!   time, a byte per connection per millisecond;
//! - `busy-room`: the control of `byte-frames`, not an attack (and not part of `all`): 50
//!   joined clients of `shared` sending the same updates at the same rate, each frame in
//!   one write. The probes in `shared` receive every update of their room, so a room this
//!   busy costs them something however politely its members send; what `byte-frames`
//!   costs beyond `busy-room` is the cost of trickling;
//! - `flood`: 4 joined clients of `shared` writing 10,000 updates a second each, a
//!   hundred times their rate limit (which refuses the rest), their answers read and
//!   dropped (two of them share the probes' shard);
//! - `all`: all of them at once.
//!
//! ## Why the measurement is made this way
//!
//! - **Enough samples.** A probe sends about 80 updates a second; with the default two
//!   per group, a 10 s window holds about 1,600 samples per group, so its p99 is the
//!   16th-worst, not the 5th-worst of 490 as with one probe at 50 a second.
//! - **The reference is measured beside each phase.** Every attack phase is followed by a
//!   quiet window of the same length, and its factor is taken over the quiet windows
//!   either side of it (their samples pooled): on a shared machine the quiet latency
//!   drifts by 2x or more within minutes, and one quiet window at the start is then no
//!   reference for a phase five minutes later.
//! - **Repeated.** `--repeat N` runs the whole sequence N times, each on a fresh server,
//!   and reports each phase's factor as the median and the range over the rounds: a
//!   single run's factor swings by 2x.
//! - **Where the attackers run.** On two cores, attackers in the server's own process
//!   take CPU the server and the probes need, so the run measures the generator as much
//!   as the server; a real attacker is on another machine. With `--actors-apart` they run
//!   in a child process of their own (this binary, `soak --bad-actors-fleet ADDR --actors
//!   NAMES`) under `SCHED_IDLE` (`chrt -i 0`): they get only the CPU nothing else wants,
//!   and a wake-up of the server or a probe preempts them at once, as if they ran
//!   elsewhere; what still reaches the server is what it must handle, the bytes and the
//!   connections. Run both ways and report both.
//! - **Nothing made easier.** The probe in the attacked room stays (it is what the
//!   target is about); the bystander probe is added beside it, not instead of it.
//!
//! Each window reports the probes' ack latency per group (p50, p99, max), each attack
//! phase its p99 factor over the quiet windows either side, and where the CPU went
//! meanwhile (see `phase_cpu.rs`): the server's threads, the attackers', the probes', the
//! machine's. The run ends with each phase's factors over the rounds.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use deltasync::config::{Config, Loader, Overrides};
use deltasync::server::Server;
use socket2::{Domain, Protocol, Socket, Type};

use super::phase_cpu::{self, ACTOR_THREAD, Mark, PhaseCpu};
use super::probe::{Latencies, Probe};
use super::wire;

pub(crate) use super::bad_actors_report::report;

/// What the run does.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The length of each window (phase or quiet), in seconds.
    pub(crate) secs: u64,
    pub(crate) handshake_ms: u64,
    /// The attackers run in a child process under `SCHED_IDLE`.
    pub(crate) apart: bool,
    /// The phases to run between quiet windows (all when empty).
    pub(crate) phases: Vec<String>,
    /// `KEY=VALUE` settings of the server (`--server-set`), e.g.
    /// `server.flush_interval_us=0`, applied before the soak's own.
    pub(crate) server_sets: Vec<String>,
    /// How many times the whole sequence runs, each time on a fresh server.
    pub(crate) repeat: u32,
    /// Probes in each of the two rooms.
    pub(crate) probes: usize,
}

/// One window's measure: the two groups of probes and the CPU.
#[derive(Debug)]
pub(crate) struct Window {
    pub(crate) name: &'static str,
    /// The probes in the attacked room (`shared`).
    pub(crate) in_room: Latencies,
    /// The probes in a room of their own (`bystander`), on the same shard.
    pub(crate) elsewhere: Latencies,
    pub(crate) cpu: PhaseCpu,
}

/// One run of the sequence: quiet, then each phase followed by a quiet window.
#[derive(Debug, Default)]
pub(crate) struct Round {
    pub(crate) windows: Vec<Window>,
}

/// The rounds' measures and the probes' errors.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    pub(crate) rounds: Vec<Round>,
    pub(crate) probe_errors: u64,
    pub(crate) nofile: (u64, u64),
}

/// Updates per second of each flooder.
const FLOOD_RATE: u64 = 10_000;

type Actor = fn(SocketAddr, Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>>;

const ACTORS: [(&str, Actor); 5] = [
    ("slowloris", slowloris),
    ("gib-header", gib_header),
    ("byte-frames", byte_frames),
    ("busy-room", busy_room),
    ("flood", flood),
];

/// The phases `--phases` may name.
pub(crate) const PHASES: [&str; 7] = [
    "quiet",
    "slowloris",
    "gib-header",
    "byte-frames",
    "busy-room",
    "flood",
    "all",
];

/// Phases that are controls, not attacks: not part of `all`.
const CONTROLS: [&str; 1] = ["busy-room"];

/// The loopback address each kind of attacker connects from (the probes use
/// `127.0.0.1`), so that per-address limits count each as one client host.
fn source_of(actor: &str) -> IpAddr {
    let last = match actor {
        "slowloris" => 2,
        "gib-header" => 3,
        "byte-frames" => 4,
        "busy-room" => 6,
        _ => 5,
    };
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A TCP connection to `addr` from `source` (any port). `SO_REUSEADDR` lets a churning
/// attacker bind ports whose earlier connections wait in `TIME_WAIT`.
fn connect_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

/// The attackers of phase `name`.
fn actors_of(name: &str) -> Vec<(&'static str, Actor)> {
    ACTORS
        .iter()
        .filter(|(actor, _)| *actor == name || (name == "all" && !CONTROLS.contains(actor)))
        .copied()
        .collect()
}

/// An attacker thread, named for the CPU accounting.
fn actor_thread(
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("{ACTOR_THREAD}{name}"))
        .spawn(body)
}

/// Runs every round.
pub(crate) fn run(plan: &Plan) -> std::io::Result<Figures> {
    let mut figures = Figures {
        nofile: crate::nofile::raise()?,
        ..Figures::default()
    };
    for _ in 0..plan.repeat.max(1) {
        let (round, errors) = round(plan)?;
        figures.rounds.push(round);
        figures.probe_errors += errors;
    }
    Ok(figures)
}

/// The phases after the first quiet window, in order.
fn selected(plan: &Plan) -> Vec<&'static str> {
    PHASES
        .into_iter()
        .skip(1)
        .filter(|name| plan.phases.is_empty() || plan.phases.iter().any(|p| p == name))
        .collect()
}

/// One round on a fresh server: quiet, then each phase and a quiet window after it.
/// Returns the round and the probes' errors.
fn round(plan: &Plan) -> std::io::Result<(Round, u64)> {
    let mut config = server_config(&plan.server_sets).map_err(std::io::Error::other)?;
    config.server.listen = "127.0.0.1:0".parse().map_err(std::io::Error::other)?;
    config.timeouts.handshake_ms = plan.handshake_ms;
    let server = Server::presence(config).start()?;
    let addr = server.local_addr();
    let probes = Probes::start(&server, plan.probes)?;
    let secs = Duration::from_secs(plan.secs);
    let mut windows = vec![quiet(secs)];
    for name in selected(plan) {
        windows.push(phase(name, addr, secs, plan.apart)?);
        windows.push(quiet(secs));
    }
    let (in_room, elsewhere, errors) = probes.stop();
    let round = Round {
        windows: windows
            .into_iter()
            .map(|(name, from, to)| Window {
                name,
                in_room: Latencies::window(&in_room, from.at(), to.at()),
                elsewhere: Latencies::window(&elsewhere, from.at(), to.at()),
                cpu: phase_cpu::between(&from, &to),
            })
            .collect(),
    };
    server.shutdown();
    Ok((round, errors))
}

/// A quiet window of `secs`.
fn quiet(secs: Duration) -> (&'static str, Mark, Mark) {
    let start = Mark::take(None);
    std::thread::sleep(secs);
    ("quiet", start, Mark::take(None))
}

/// The two groups of probes, all on the server's first shard.
struct Probes {
    in_room: Vec<Probe>,
    elsewhere: Vec<Probe>,
}

impl Probes {
    /// Starts `per_room` probes in room `shared` and as many in room `bystander`, on the
    /// server's first shard: the acceptor hands connections to the shards in turn, so
    /// after each probe one connection per other shard is opened and dropped at once.
    /// Checked from the server's metrics.
    fn start<M: deltasync::model::Model>(
        server: &Server<M>,
        per_room: usize,
    ) -> std::io::Result<Self> {
        let addr = server.local_addr();
        let shards = connections_per_shard(&server.metrics()).len().max(1);
        let mut groups = [Vec::new(), Vec::new()];
        for (group, (room, tag)) in groups.iter_mut().zip([("shared", "r"), ("bystander", "b")]) {
            for i in 0..per_room {
                let url = format!("ws://{addr}/rooms/{room}");
                group.push(Probe::start_as(&url, &format!("probe-{tag}{i}"))?);
                for _ in 1..shards {
                    drop(TcpStream::connect(addr)?);
                }
            }
        }
        let [in_room, elsewhere] = groups;
        let probes = Self { in_room, elsewhere };
        let per_shard = connections_per_shard(&server.metrics());
        if per_shard.first() != Some(&(2 * per_room as u64)) {
            let _ = probes.stop();
            return Err(std::io::Error::other(format!(
                "the probes are not all on the first shard: connections per shard {per_shard:?}"
            )));
        }
        Ok(probes)
    }

    /// Stops them; returns the samples of each group and the errors of all.
    #[allow(clippy::type_complexity)]
    fn stop(self) -> (Vec<(Instant, Duration)>, Vec<(Instant, Duration)>, u64) {
        let mut errors = 0;
        let mut collect = |probes: Vec<Probe>| {
            let mut all = Vec::new();
            for probe in probes {
                let (samples, e) = probe.stop();
                all.extend(samples);
                errors += e;
            }
            all
        };
        let in_room = collect(self.in_room);
        let elsewhere = collect(self.elsewhere);
        (in_room, elsewhere, errors)
    }
}

/// The `deltasync_connections` gauge of each shard, in shard order, from the metrics'
/// text.
fn connections_per_shard(metrics: &str) -> Vec<u64> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("deltasync_connections{shard=\""))
        .filter_map(|rest| rest.split_once("} "))
        .filter_map(|(_, value)| value.trim().parse().ok())
        .collect()
}

/// The attackers of one phase: threads of this process, or a child process.
enum Attack {
    Here(Vec<JoinHandle<()>>),
    Apart(Child),
}

impl Attack {
    fn start(
        name: &str,
        addr: SocketAddr,
        stop: &Arc<AtomicBool>,
        apart: bool,
    ) -> std::io::Result<Self> {
        if !apart {
            let threads = actors_of(name)
                .into_iter()
                .map(|(_, actor)| actor(addr, Arc::clone(stop)))
                .collect::<std::io::Result<_>>()?;
            return Ok(Self::Here(threads));
        }
        let exe = std::env::current_exe()?;
        let child = Command::new("chrt")
            .args(["--idle", "0"])
            .arg(exe)
            .args(["soak", "--bad-actors-fleet", &addr.to_string()])
            .args(["--actors", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                std::io::Error::other(format!(
                    "cannot start the attackers' process with `chrt --idle 0` (util-linux): {e}"
                ))
            })?;
        Ok(Self::Apart(child))
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Self::Here(_) => None,
            Self::Apart(child) => Some(child.id()),
        }
    }

    /// Stops the attackers (a child is told by the end of its standard input).
    fn stop(self, stop: &AtomicBool) {
        stop.store(true, Ordering::Relaxed);
        match self {
            Self::Here(threads) => {
                for thread in threads {
                    let _ = thread.join();
                }
            }
            Self::Apart(mut child) => {
                drop(child.stdin.take());
                let _ = child.wait();
            }
        }
    }
}

/// Runs phase `name`'s attackers for `secs`; returns the window to measure (after a
/// second of ramp-up) as two CPU marks.
fn phase(
    name: &'static str,
    addr: SocketAddr,
    secs: Duration,
    apart: bool,
) -> std::io::Result<(&'static str, Mark, Mark)> {
    let stop = Arc::new(AtomicBool::new(false));
    let attack = Attack::start(name, addr, &stop, apart)?;
    std::thread::sleep(Duration::from_secs(1));
    let start = Mark::take(attack.pid());
    std::thread::sleep(secs);
    let end = Mark::take(attack.pid());
    attack.stop(&stop);
    // Let the server drop what the actors left behind before the next window.
    std::thread::sleep(Duration::from_millis(500));
    Ok((name, start, end))
}

/// The child process of `--actors-apart`: runs the attackers of `phase` against `addr`
/// until its standard input ends.
pub(crate) fn run_fleet(addr: SocketAddr, phase: &str) -> std::io::Result<()> {
    crate::nofile::raise()?;
    let stop = Arc::new(AtomicBool::new(false));
    let attack = Attack::start(phase, addr, &stop, false)?;
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    attack.stop(&stop);
    Ok(())
}

/// A connection from `source` upgraded to `path` (its `101` read), with a read timeout.
fn upgraded(source: IpAddr, addr: SocketAddr, path: &str) -> Option<TcpStream> {
    let mut stream = connect_from(source, addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(&wire::upgrade_request(&addr.to_string(), path))
        .ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).ok()?;
        head.push(byte[0]);
    }
    head.starts_with(b"HTTP/1.1 101 ").then_some(stream)
}

fn slowloris(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    actor_thread("slowloris", move || {
        let request = wire::upgrade_request(&addr.to_string(), "/");
        let source = source_of("slowloris");
        let open = |i: usize| {
            let mut stream = connect_from(source, addr).ok()?;
            stream.set_nonblocking(true).ok()?;
            let _ = stream.write_all(&request[..i % (request.len() - 4)]);
            Some(stream)
        };
        let mut loris: Vec<Option<TcpStream>> = (0..1000).map(open).collect();
        let mut buf = [0u8; 256];
        while !stop.load(Ordering::Relaxed) {
            for (i, slot) in loris.iter_mut().enumerate() {
                let closed = match slot {
                    Some(stream) => {
                        let _ = stream.write(b"X");
                        // End of stream, a refusal, or an error: the server is done with it.
                        match stream.read(&mut buf) {
                            Ok(0) => true,
                            Ok(n) => buf[..n].starts_with(b"HTTP/1.1 "),
                            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                        }
                    }
                    None => true,
                };
                if closed {
                    *slot = open(i);
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    })
}

fn gib_header(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    actor_thread("gib-header", move || {
        let mut header = vec![0x81, 0xff];
        header.extend_from_slice(&(1u64 << 30).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        while !stop.load(Ordering::Relaxed) {
            let Some(mut stream) = upgraded(source_of("gib-header"), addr, "/rooms/gib") else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let _ = stream.write_all(&header);
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
        }
    })
}

fn byte_frames(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    actor_thread("byte-frames", move || {
        room_members(addr, "byte-frames", Chunks::Bytes, &stop);
    })
}

/// The control of `byte-frames`, not an attack: the same clients sending the same
/// updates at the same rate, each frame in one write. What `byte-frames` costs beyond it
/// is the cost of trickling; the rest is the fan-out of a busy room.
fn busy_room(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    actor_thread("busy-room", move || {
        room_members(addr, "busy-room", Chunks::Frames, &stop);
    })
}

/// How the members of `room_members` write their frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunks {
    /// A byte at a time.
    Bytes,
    /// Each frame whole, once its bytes are due.
    Frames,
}

/// 50 joined clients of `shared` from the address of `actor`, each with a byte of
/// updates due per millisecond, sent as `chunks` say; their answers read and dropped.
fn room_members(addr: SocketAddr, actor: &str, chunks: Chunks, stop: &AtomicBool) {
    struct Member {
        stream: TcpStream,
        bytes: Vec<u8>,
        /// Where each frame ends in `bytes`.
        ends: Vec<usize>,
        sent: usize,
        due: usize,
    }
    let mut members: Vec<Member> = (0..50)
        .filter_map(|i| {
            let stream = upgraded(source_of(actor), addr, "/rooms/shared")?;
            stream.set_nonblocking(true).ok()?;
            let join = format!(
                r#"{{"type":"JOIN","payload":{{"participantId":"{actor}-{i}","name":"T"}}}}"#
            );
            let mut bytes = wire::text_frame(join.as_bytes(), [7, 7, 7, 7]);
            let mut ends = vec![bytes.len()];
            for n in 0..1000 {
                let status = if n % 2 == 0 { "away" } else { "online" };
                let update = format!(
                    r#"{{"type":"UPDATE","payload":{{"patch":{{"status":"{status}"}},"clientReqId":"t{i}-{n}"}}}}"#
                );
                bytes.extend(wire::text_frame(update.as_bytes(), [7, 7, 7, 7]));
                ends.push(bytes.len());
            }
            Some(Member {
                stream,
                bytes,
                ends,
                sent: 0,
                due: 0,
            })
        })
        .collect();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        for member in &mut members {
            member.due = (member.due + 1).min(member.bytes.len());
            let upto = match chunks {
                Chunks::Bytes => member.due,
                Chunks::Frames => member
                    .ends
                    .iter()
                    .copied()
                    .take_while(|&end| end <= member.due)
                    .last()
                    .unwrap_or(0),
            };
            if member.sent < upto {
                if let Ok(n) = member.stream.write(&member.bytes[member.sent..upto]) {
                    member.sent += n;
                }
            }
            while matches!(member.stream.read(&mut buf), Ok(n) if n > 0) {}
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn flood(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    actor_thread("flood", move || {
        let flooders: Vec<JoinHandle<()>> = (0..4)
            .filter_map(|i| {
                let stop = Arc::clone(&stop);
                actor_thread("flooder", move || flooder(addr, i, FLOOD_RATE, &stop)).ok()
            })
            .collect();
        for flooder in flooders {
            let _ = flooder.join();
        }
    })
}

/// Updates a flooder writes at once.
const FLOOD_BATCH: u64 = 100;

fn flooder(addr: SocketAddr, i: usize, rate: u64, stop: &AtomicBool) {
    let Some(mut stream) = upgraded(source_of("flood"), addr, "/rooms/shared") else {
        return;
    };
    let Ok(mut reader) = stream.try_clone() else {
        return;
    };
    let Ok(draining) = actor_thread("drain", move || {
        let mut buf = [0u8; 64 * 1024];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    }) else {
        return;
    };
    let join = format!(r#"{{"type":"JOIN","payload":{{"participantId":"flood-{i}","name":"F"}}}}"#);
    let _ = stream.write_all(&wire::text_frame(join.as_bytes(), [9, 9, 9, 9]));
    // Made once and written again and again at a steady pace, so that the flooder
    // costs the machine a write, not the encoding of each update: on two cores, a
    // generator encoding as fast as it can starves the server of CPU and measures itself.
    let mut batch = Vec::new();
    for n in 0..FLOOD_BATCH {
        let status = if n % 2 == 0 { "away" } else { "online" };
        let update = format!(
            r#"{{"type":"UPDATE","payload":{{"patch":{{"status":"{status}"}},"clientReqId":"f{i}-{n}"}}}}"#
        );
        batch.extend(wire::text_frame(update.as_bytes(), [9, 9, 9, 9]));
    }
    let period = Duration::from_secs_f64(FLOOD_BATCH as f64 / rate as f64);
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if stream.write_all(&batch).is_err() {
            break;
        }
        next += period;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = draining.join();
}

/// The server's configuration: the defaults with `sets` (`KEY=VALUE`, as `--set` takes
/// them) applied.
///
/// # Errors
///
/// The configuration's message, naming `--server-set`, for an unknown key or a bad value.
pub(crate) fn server_config(sets: &[String]) -> Result<Config, String> {
    let mut overrides = Overrides::new();
    for set in sets {
        overrides.push_set(set).map_err(|e| e.to_string())?;
    }
    let effective = Loader::new()
        .overrides(overrides)
        .load()
        .map_err(|e| e.to_string().replace("(from --set)", "(from --server-set)"))?;
    Ok(effective.into_config())
}
