//! NATS JetStream's conditional publish against the cluster backend's Redis append, on
//! loopback, under the same conditions: see `README.md` for what it measures and how to
//! run it, and `docs/cluster.md` ("Why Redis Streams") for the figures.
//!
//! Each engine is a child process on a free loopback port with its data in a temporary
//! directory (killed at the end). An append is one room's next revision written only if
//! the room is where the writer expects it:
//!
//! - JetStream: a publish to the room's subject with the header
//!   `Nats-Expected-Last-Subject-Sequence: N` (file storage), awaited until its ack;
//! - Redis: the cluster backend's Lua script (check the head counter is `N`, `XADD` at
//!   `N+1-0`, move the head), with `appendfsync always` and then `everysec`.
//!
//! One writer appends `APPENDS` records to one room, each waiting for the answer of the
//! last (round trip p50/p99, appends/s); then ten writers each on a room of its own, all
//! at once (the engine may batch their syncs).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Appends per run (split between the writers).
const APPENDS: usize = 4000;
/// A presence operation's size on the wire (`participant.updated` with a name).
const PAYLOAD: &[u8] = br#"{"rev":0,"type":"participant.updated","payload":{"id":"user-1","name":"a name of some length","lastActive":1764671234567},"clientReqId":"req-123456"}"#;

/// The cluster backend's append script, the very file it runs.
const APPEND: &str = include_str!("../../../src/storage/cluster/append.lua");

/// What one run measured.
struct Figures {
    appends: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Figures {
    fn print(mut self, label: &str) {
        self.latencies.sort();
        let at = |q: f64| {
            let i = ((self.latencies.len() as f64 * q) as usize).min(self.latencies.len() - 1);
            self.latencies[i]
        };
        println!(
            "{label:<44} {:>8.0} appends/s  p50 {:>9.1?}  p99 {:>9.1?}",
            self.appends as f64 / self.elapsed.as_secs_f64(),
            at(0.5),
            at(0.99),
        );
    }
}

/// A child process killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn spawn(program: &str, args: &[&str], install: &str) -> Server {
    match Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => Server(child),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{program} is not installed: apt-get install -y {install}")
        }
        Err(e) => panic!("cannot start {program}: {e}"),
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "port {port} did not open in 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- Redis ----------------------------------------------------------------------------

fn redis_server(dir: &std::path::Path, fsync: &str) -> (Server, String) {
    let port = free_port();
    let server = spawn(
        "redis-server",
        &[
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            dir.to_str().expect("a UTF-8 path"),
            "--appendonly",
            "yes",
            "--appendfsync",
            fsync,
            "--save",
            "",
            "--protected-mode",
            "no",
        ],
        "redis-server",
    );
    wait_for_port(port);
    (server, format!("redis://127.0.0.1:{port}"))
}

/// `per_writer` appends to room `room`, each waiting for the last.
fn redis_writer(url: &str, room: usize, per_writer: usize) -> Vec<Duration> {
    let client = redis::Client::open(url).expect("a Redis URL");
    let mut conn = client.get_connection().expect("the engine answers");
    let script = redis::Script::new(APPEND);
    let (head, log) = (format!("m:{{{room}}}:head"), format!("m:{{{room}}}:log"));
    let mut latencies = Vec::with_capacity(per_writer);
    for rev in 1..=per_writer {
        let start = Instant::now();
        let reply: Vec<redis::Value> = script
            .key(&head)
            .key(&log)
            .arg(rev)
            .arg("o")
            .arg(PAYLOAD)
            .invoke(&mut conn)
            .expect("the append answers");
        latencies.push(start.elapsed());
        assert_eq!(
            reply.first(),
            Some(&redis::Value::Int(rev as i64 - 1)),
            "the append was refused"
        );
    }
    latencies
}

fn redis_run(fsync: &str, writers: usize) -> Figures {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (_server, url) = redis_server(dir.path(), fsync);
    let per_writer = APPENDS / writers;
    let start = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|room| {
            let url = url.clone();
            std::thread::spawn(move || redis_writer(&url, room, per_writer))
        })
        .collect();
    let latencies = threads
        .into_iter()
        .flat_map(|t| t.join().expect("a writer"))
        .collect();
    Figures {
        appends: per_writer * writers,
        elapsed: start.elapsed(),
        latencies,
    }
}

// ---- JetStream ------------------------------------------------------------------------

fn nats_server(dir: &std::path::Path) -> (Server, String) {
    let port = free_port();
    let server = spawn(
        "nats-server",
        &[
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-js",
            "-sd",
            dir.to_str().expect("a UTF-8 path"),
        ],
        "nats-server",
    );
    wait_for_port(port);
    (server, format!("nats://127.0.0.1:{port}"))
}

async fn jetstream_writer(
    js: async_nats::jetstream::Context,
    room: usize,
    per_writer: usize,
) -> Vec<Duration> {
    let subject = format!("rooms.{room}");
    let mut latencies = Vec::with_capacity(per_writer);
    // The subject's last sequence: 0 before the first message, then the stream sequence
    // the last ack gave (the stream is shared by every room, as one stream per room
    // would cost JetStream a stream each).
    let mut last = 0u64;
    for _ in 0..per_writer {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            last.to_string().as_str(),
        );
        let start = Instant::now();
        let ack = js
            .publish_with_headers(subject.clone(), headers, bytes::Bytes::from_static(PAYLOAD))
            .await
            .expect("the publish is sent")
            .await
            .expect("the publish is acknowledged");
        latencies.push(start.elapsed());
        last = ack.sequence;
    }
    latencies
}

fn jetstream_run(writers: usize) -> Figures {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (_server, url) = nats_server(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client = async_nats::connect(&url).await.expect("nats answers");
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "rooms".into(),
            subjects: vec!["rooms.>".into()],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("the stream is created");
        // A refused publish must be refused: check the expectation is enforced.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Expected-Last-Subject-Sequence", "7");
        let refused = js
            .publish_with_headers("rooms.check".to_string(), headers, "x".into())
            .await
            .expect("sent")
            .await;
        assert!(refused.is_err(), "JetStream accepted a wrong expectation");
        let per_writer = APPENDS / writers;
        let start = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|room| tokio::spawn(jetstream_writer(js.clone(), room, per_writer)))
            .collect();
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.expect("a writer"));
        }
        Figures {
            appends: per_writer * writers,
            elapsed: start.elapsed(),
            latencies,
        }
    })
}

/// Every case, or the one named: `jetstream-measure [jetstream|redis-always|redis-everysec
/// WRITERS]` (one case alone, to count its system calls under `strace -f -c`).
fn main() {
    println!(
        "{APPENDS} appends of {} bytes per run, loopback",
        PAYLOAD.len()
    );
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [case, writers] = args.as_slice() {
        let writers: usize = writers.parse().expect("WRITERS is a number");
        run(case, writers);
        return;
    }
    for writers in [1, 10] {
        for case in ["jetstream", "redis-always", "redis-everysec"] {
            run(case, writers);
        }
    }
}

fn run(case: &str, writers: usize) {
    let figures = match case {
        "jetstream" => jetstream_run(writers),
        "redis-always" => redis_run("always", writers),
        "redis-everysec" => redis_run("everysec", writers),
        other => panic!("unknown case {other}: jetstream, redis-always or redis-everysec"),
    };
    figures.print(&format!("{case}, {writers} writer(s)"));
}
