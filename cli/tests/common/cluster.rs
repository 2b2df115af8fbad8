//! A real Redis engine and `deltasync serve --cluster` nodes, as child processes on
//! loopback: started on free ports with temporary directories, killed when dropped.
// Child processes and real sockets: real time.
#![allow(clippy::disallowed_methods)]

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::streams::StreamRangeReply;
use serde_json::Value;

/// A `redis-server` child with append-only persistence fsynced at every write, on a free
/// loopback port, with its data in a temporary directory.
pub struct Engine {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    fsync: &'static str,
}

impl Engine {
    /// Starts the engine and waits until it answers.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not installed, with the command that installs it.
    pub fn start() -> Self {
        Self::start_with("always")
    }

    /// Starts the engine with `appendfsync` set to `fsync` (`always`, `everysec`, `no`).
    pub fn start_with(fsync: &'static str) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut engine = Self {
            child: None,
            port,
            dir,
            fsync,
        };
        engine.restart();
        engine
    }

    /// The engine's process id (to read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The URL nodes are given.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the engine (SIGKILL: only what it fsynced survives).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the engine again on the same port and data directory; waits until it
    /// answers.
    pub fn restart(&mut self) {
        self.kill();
        let spawned = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
                "--save",
                "",
            ])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed; these tests need a real engine: apt-get install -y redis-server"
            ),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.try_connection().is_none() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn try_connection(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        redis::cmd("PING").query::<String>(&mut conn).ok()?;
        Some(conn)
    }

    /// A connection to the engine, for a test to read what is stored.
    pub fn connection(&self) -> redis::Connection {
        self.try_connection().expect("the engine answers")
    }

    /// Every entry of room `room`'s stream: its id and its operation as JSON.
    pub fn stream(&self, room: &str) -> Vec<(String, Value)> {
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream_key(room))
            .arg("-")
            .arg("+")
            .query(&mut self.connection())
            .expect("XRANGE");
        reply
            .ids
            .iter()
            .map(|entry| {
                let op: Vec<u8> = entry.get("o").expect("an operation field");
                (entry.id.clone(), serde_json::from_slice(&op).expect("JSON"))
            })
            .collect()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The stream of room `room`: `deltasync:{r<name in hex>}:log`.
pub fn stream_key(room: &str) -> String {
    let hex: String = room.bytes().map(|b| format!("{b:02x}")).collect();
    format!("deltasync:{{r{hex}}}:log")
}

/// A free loopback port (bound, read, released: the engine takes it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A `deltasync serve --cluster` child on a loopback port.
pub struct Node {
    pub child: Child,
    pub addr: SocketAddr,
    /// The startup line.
    pub line: String,
}

impl Node {
    /// Starts a node on `engine`, with `extra` flags.
    pub fn start(engine: &Engine, extra: &[&str]) -> Self {
        let url = engine.url();
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "1",
            "--cluster",
            &url,
        ];
        args.extend_from_slice(extra);
        let mut child = super::serve(&args).spawn().expect("the binary starts");
        let (addr, line) = super::listening(&mut child);
        Self { child, addr, line }
    }

    /// The URL of room `room` on this node.
    pub fn url(&self, room: &str) -> String {
        format!("ws://{}/rooms/{room}", self.addr)
    }

    /// SIGKILL: no chance to close anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}
