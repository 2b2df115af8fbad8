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
//! Each phase reports the probe's ack latency (p50, p99, max), its errors, and the
//! factor of its p50 and p99 over the quiet phase's.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use deltasync::config::Config;
use deltasync::server::Server;

use super::probe::{Latencies, Probe};
use super::wire;

/// What the run does.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) secs: u64,
    pub(crate) handshake_ms: u64,
}

/// One phase's measure.
#[derive(Debug)]
pub(crate) struct Phase {
    pub(crate) name: &'static str,
    pub(crate) latencies: Latencies,
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

type Actor = fn(SocketAddr, Arc<AtomicBool>) -> JoinHandle<()>;

const ACTORS: [(&str, Actor); 4] = [
    ("slowloris", slowloris),
    ("gib-header", gib_header),
    ("byte-frames", byte_frames),
    ("flood", flood),
];

/// Runs every phase.
pub(crate) fn run(plan: &Plan) -> std::io::Result<Figures> {
    let mut figures = Figures {
        nofile: crate::nofile::raise()?,
        ..Figures::default()
    };
    let mut config = Config::default();
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
    let quiet_start = Instant::now();
    std::thread::sleep(secs);
    windows.push(("quiet", quiet_start, Instant::now()));
    for (name, actor) in ACTORS {
        windows.push(phase(name, &[actor], addr, secs));
    }
    let all: Vec<Actor> = ACTORS.iter().map(|(_, actor)| *actor).collect();
    windows.push(phase("all", &all, addr, secs));
    let (samples, errors) = probe.stop();
    figures.probe_errors = errors;
    for (name, from, to) in windows {
        figures.phases.push(Phase {
            name,
            latencies: Latencies::window(&samples, from, to),
        });
    }
    server.shutdown();
    Ok(figures)
}

/// Runs `actors` for `secs`; returns the window to measure (after a second of ramp-up).
fn phase(
    name: &'static str,
    actors: &[Actor],
    addr: SocketAddr,
    secs: Duration,
) -> (&'static str, Instant, Instant) {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<JoinHandle<()>> = actors
        .iter()
        .map(|actor| actor(addr, Arc::clone(&stop)))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let start = Instant::now();
    std::thread::sleep(secs);
    let end = Instant::now();
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    // Let the server drop what the actors left behind before the next phase.
    std::thread::sleep(Duration::from_millis(500));
    (name, start, end)
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

fn slowloris(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
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

fn gib_header(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
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

fn byte_frames(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
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

fn flood(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let flooders: Vec<JoinHandle<()>> = (0..4)
            .map(|i| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || flooder(addr, i, FLOOD_RATE, &stop))
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
    let draining = std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });
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

/// The report.
pub(crate) fn report(plan: &Plan, figures: &Figures) -> String {
    let mut out = format!(
        "bad actors: {} s per phase, handshake timeout {} ms, default limits but no per-address limit; open files {} / {}\n",
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
    }
    out += &format!("probe errors: {}\n", figures.probe_errors);
    out += &format!("violations: {}\n", usize::from(figures.probe_errors > 0));
    out
}
