//! Bad actors beside a well-behaved client, measured: how much each slows it down.
//!
//! The server runs in this process with its default limits (handshake timeout 5 s
//! unless `--handshake-ms`, message size 64 KiB, 100 messages/s with a burst of 200 per
//! connection) but no per-address limit: every actor comes from loopback. A probe (see
//! `probe.rs`) in room `shared` updates and waits for each ack all along. Phase by
//! phase, each `--secs` long:
//!
//! - `quiet`: the probe alone;
//! - `slowloris`: 1,000 connections that send part of an upgrade request and then a byte
//!   a second, reopened as soon as the server closes them (at the handshake timeout);
//! - `gib-header`: connections that upgrade and send a frame header announcing 1 GiB,
//!   one after the other as fast as the server closes them (close 1009);
//! - `byte-frames`: 50 joined clients of `shared` sending valid updates one byte at a
//!   time, a byte per connection per millisecond;
//! - `flood`: 4 joined clients of `shared` writing 10,000 updates a second each, a
//!   hundred times their rate limit (which refuses the rest), their answers read and
//!   dropped (two of them share the probe's shard);
//! - `all`: all of them at once.
//!
//! Each phase reports the probe's ack latency (p50, p99, max), its errors, the factor of
//! its p50 and p99 over the quiet phase's, and where the CPU went meanwhile (see
//! `phase_cpu.rs`): the server's threads, the attackers', the probe's, the machine's.
//!
//! With `--actors-apart` the attackers run in a child process of their own (this binary,
//! `soak --bad-actors-fleet ADDR --actors NAMES`) at the lowest priority (`nice -n 19`),
//! as if they came from another machine: on two cores, attackers in the server's own
//! process take CPU the server and the probe need, and the run then measures the
//! generator as much as the server. Run both ways and compare. `--phases` picks phases
//! (`quiet` always runs, as the reference).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use deltasync::config::{Config, Loader, Overrides};
use deltasync::server::Server;

use super::phase_cpu::{self, ACTOR_THREAD, Mark, PhaseCpu};
use super::probe::{Latencies, Probe};
use super::wire;

/// What the run does.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) secs: u64,
    pub(crate) handshake_ms: u64,
    /// The attackers run in a child process at the lowest priority.
    pub(crate) apart: bool,
    /// The phases to run after `quiet` (all when empty).
    pub(crate) phases: Vec<String>,
    /// `KEY=VALUE` settings of the server (`--server-set`), e.g.
    /// `server.flush_interval_us=0`, applied before the soak's own.
    pub(crate) server_sets: Vec<String>,
}

/// One phase's measure.
#[derive(Debug)]
pub(crate) struct Phase {
    pub(crate) name: &'static str,
    pub(crate) latencies: Latencies,
    pub(crate) cpu: PhaseCpu,
}

/// The phases' measures and the probe's errors.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    pub(crate) phases: Vec<Phase>,
    pub(crate) probe_errors: u64,
    pub(crate) nofile: (u64, u64),
}

/// Updates per second of each flooder.
const FLOOD_RATE: u64 = 10_000;

type Actor = fn(SocketAddr, Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>>;

const ACTORS: [(&str, Actor); 4] = [
    ("slowloris", slowloris),
    ("gib-header", gib_header),
    ("byte-frames", byte_frames),
    ("flood", flood),
];

/// The phases `--phases` may name.
pub(crate) const PHASES: [&str; 6] = [
    "quiet",
    "slowloris",
    "gib-header",
    "byte-frames",
    "flood",
    "all",
];

/// The attackers of phase `name`.
fn actors_of(name: &str) -> Vec<(&'static str, Actor)> {
    ACTORS
        .iter()
        .filter(|(actor, _)| name == "all" || *actor == name)
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

/// Runs every phase.
pub(crate) fn run(plan: &Plan) -> std::io::Result<Figures> {
    let mut figures = Figures {
        nofile: crate::nofile::raise()?,
        ..Figures::default()
    };
    let mut config = server_config(&plan.server_sets).map_err(std::io::Error::other)?;
    config.server.listen = "127.0.0.1:0".parse().map_err(std::io::Error::other)?;
    config.timeouts.handshake_ms = plan.handshake_ms;
    // Every actor comes from the loopback address: with the per-address limit, most of
    // them would be refused at accept, which is not what the phases measure.
    config.limits.max_connections_per_ip = 0;
    let server = Server::presence(config).start()?;
    let addr = server.local_addr();
    let probe = Probe::start(&format!("ws://{addr}/rooms/shared"))?;
    let secs = Duration::from_secs(plan.secs);
    let mut windows = Vec::new();
    let quiet_start = Mark::take(None);
    std::thread::sleep(secs);
    windows.push(("quiet", quiet_start, Mark::take(None)));
    for name in PHASES.into_iter().skip(1) {
        if plan.phases.is_empty() || plan.phases.iter().any(|p| p == name) {
            windows.push(phase(name, addr, secs, plan.apart)?);
        }
    }
    let (samples, errors) = probe.stop();
    figures.probe_errors = errors;
    for (name, from, to) in windows {
        figures.phases.push(Phase {
            name,
            latencies: Latencies::window(&samples, from.at(), to.at()),
            cpu: phase_cpu::between(&from, &to),
        });
    }
    server.shutdown();
    Ok(figures)
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
        let child = Command::new("nice")
            .args(["-n", "19"])
            .arg(exe)
            .args(["soak", "--bad-actors-fleet", &addr.to_string()])
            .args(["--actors", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                std::io::Error::other(format!(
                    "cannot start the attackers' process with `nice -n 19`: {e}"
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
    // Let the server drop what the actors left behind before the next phase.
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

/// A connection upgraded to `path` (its `101` read), with a read timeout.
fn upgraded(addr: SocketAddr, path: &str) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).ok()?;
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
        let open = |i: usize| {
            let mut stream = TcpStream::connect(addr).ok()?;
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
            let Some(mut stream) = upgraded(addr, "/rooms/gib") else {
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
        let mut clients: Vec<(TcpStream, Vec<u8>, usize)> = (0..50)
            .filter_map(|i| {
                let stream = upgraded(addr, "/rooms/shared")?;
                stream.set_nonblocking(true).ok()?;
                let join = format!(
                    r#"{{"type":"JOIN","payload":{{"participantId":"trickle-{i}","name":"T"}}}}"#
                );
                let mut bytes = wire::text_frame(join.as_bytes(), [7, 7, 7, 7]);
                for n in 0..1000 {
                    let status = if n % 2 == 0 { "away" } else { "online" };
                    let update = format!(
                        r#"{{"type":"UPDATE","payload":{{"patch":{{"status":"{status}"}},"clientReqId":"t{i}-{n}"}}}}"#
                    );
                    bytes.extend(wire::text_frame(update.as_bytes(), [7, 7, 7, 7]));
                }
                Some((stream, bytes, 0))
            })
            .collect();
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            for (stream, bytes, sent) in &mut clients {
                if *sent < bytes.len() && stream.write(&bytes[*sent..*sent + 1]).is_ok() {
                    *sent += 1;
                }
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })
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
    let Some(mut stream) = upgraded(addr, "/rooms/shared") else {
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

/// The report.
pub(crate) fn report(plan: &Plan, figures: &Figures) -> String {
    let actors = if plan.apart {
        "in a child process at nice 19"
    } else {
        "in this process"
    };
    let settings = if plan.server_sets.is_empty() {
        String::new()
    } else {
        format!(", server set {}", plan.server_sets.join(" "))
    };
    let mut out = format!(
        "bad actors: {} s per phase, handshake timeout {} ms, default limits but no per-address limit{settings}; open files {} / {}; attackers {actors}\n",
        plan.secs, plan.handshake_ms, figures.nofile.0, figures.nofile.1
    );
    let quiet = figures.phases.first().map(|p| &p.latencies);
    for phase in &figures.phases {
        let factor =
            |p: f64| quiet.map_or(f64::NAN, |q| phase.latencies.ms(p) / q.ms(p).max(0.001));
        out += &format!(
            "{:<12} {}; factor over quiet: p50 {:.2}x, p99 {:.2}x\n",
            phase.name,
            phase.latencies.summary(),
            factor(0.5),
            factor(0.99)
        );
        out += &format!("{:<12} {}\n", "", phase.cpu.summary());
    }
    out += &format!("probe errors: {}\n", figures.probe_errors);
    out += &format!("violations: {}\n", usize::from(figures.probe_errors > 0));
    out
}
