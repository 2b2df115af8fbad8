//! A cluster on this machine, as child processes on loopback: one `redis-server` (the
//! engine) on a free port with its data in a temporary directory, and N nodes, each this
//! very binary's `deltasync serve --set cluster.url=redis://...` (see
//! `bench::spawned`). `deltasync bench --cluster-nodes` and `deltasync soak --cluster`
//! run on it.
//!
//! Every process is killed when its handle is dropped, so a run that fails half-way
//! leaves nothing behind. A node can be killed with `SIGKILL` and restarted on the same
//! port (its clients come back to the same URL), and so can the engine, on the same port
//! and data directory (its append-only file is its memory: with `--appendfsync always`
//! every acknowledged update is in it).
//!
//! ## The engine's binary
//!
//! `redis-server` is found on `PATH`. When it is missing the harness says how to install
//! it (`apt-get install -y redis-server`); nothing is skipped silently.

// Child processes and real sockets: real time.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench::spawned::Spawned;

/// How long the engine may take to answer its first `PING`.
const ENGINE_START: Duration = Duration::from_secs(10);

/// When the engine's append-only file is fsynced (`appendfsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum EngineFsync {
    /// Before every answer: an acknowledged update survives the engine's machine.
    Always,
    /// Once a second: the last second may be lost if the engine's machine dies.
    Everysec,
    /// No append-only file at all: the engine forgets everything when it restarts (to
    /// see what a checker counts when the engine loses its history).
    Off,
}

impl EngineFsync {
    /// The value of `--appendfsync`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Everysec => "everysec",
            Self::Off => "off",
        }
    }

    /// The engine's persistence flags.
    fn args(self) -> [&'static str; 4] {
        match self {
            Self::Off => ["--appendonly", "no", "--appendfsync", "no"],
            on => ["--appendonly", "yes", "--appendfsync", on.as_str()],
        }
    }
}

/// A directory removed when dropped.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory in the system's temporary directory, named for `what`.
    ///
    /// # Errors
    ///
    /// A message when it cannot be created.
    pub(crate) fn new(what: &str) -> Result<Self, String> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a name: {e}"))?;
        let dir = std::env::temp_dir().join(format!(
            "deltasync-{what}-{}-{:016x}",
            std::process::id(),
            u64::from_le_bytes(bytes)
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Self(dir))
    }

    /// Where it is.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` child on a loopback port, its append-only file in a temporary
/// directory.
#[derive(Debug)]
pub(crate) struct Engine {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    fsync: EngineFsync,
}

impl Engine {
    /// Starts the engine on a free loopback port and waits until it answers `PING`.
    ///
    /// # Errors
    ///
    /// A message saying why: `redis-server` not installed (with the command that installs
    /// it), or not answering within 10 s.
    pub(crate) fn start(fsync: EngineFsync) -> Result<Self, String> {
        let mut engine = Self {
            child: None,
            port: free_port()?,
            dir: TempDir::new("engine")?,
            fsync,
        };
        engine.restart()?;
        Ok(engine)
    }

    /// The URL nodes are given.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The engine's process id while it runs (to read its CPU time).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the engine with `SIGKILL`: only what it fsynced survives.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the engine (again) on its port and data directory; waits until it answers.
    ///
    /// # Errors
    ///
    /// As [`Engine::start`].
    pub(crate) fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let spawned = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir.0)
            .args(self.fsync.args())
            .args(["--save", "", "--protected-mode", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        self.child = Some(match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(
                    "redis-server is not installed (the cluster's engine): apt-get install -y redis-server"
                        .into(),
                );
            }
            Err(e) => return Err(format!("cannot start redis-server: {e}")),
        });
        let deadline = Instant::now() + ENGINE_START;
        while !self.answers() {
            if let Some(Some(status)) = self.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                return Err(format!("redis-server exited at start: {status}"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server did not answer within {ENGINE_START:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Whether the engine answers `PING` with `+PONG` (after loading its file).
    fn answers(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut socket) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = socket.set_read_timeout(Some(Duration::from_millis(500)));
        let mut answer = [0u8; 7];
        socket.write_all(b"PING\r\n").is_ok()
            && socket.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `deltasync serve` node of the cluster, killable and restartable on its port.
#[derive(Debug)]
pub(crate) struct Node {
    process: Option<Spawned>,
    addr: SocketAddr,
    /// Its `--set KEY=VALUE`s, `server.listen` pinned to its port after the first start.
    sets: Vec<String>,
}

impl Node {
    /// Starts a node on `engine_url` with `sets` (which must not set `server.listen` or
    /// `cluster.url`), on a free loopback port.
    ///
    /// # Errors
    ///
    /// A message saying why the node did not start.
    pub(crate) fn start(engine_url: &str, sets: &[String]) -> Result<Self, String> {
        let mut all = vec![
            "server.listen=127.0.0.1:0".to_owned(),
            format!("cluster.url={engine_url}"),
        ];
        all.extend(sets.iter().cloned());
        let process = Spawned::start(&all)?;
        let addr = process.addr();
        all[0] = format!("server.listen={addr}");
        Ok(Self {
            process: Some(process),
            addr,
            sets: all,
        })
    }

    /// Where it listens (the same across restarts).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Spawned::pid)
    }

    /// `SIGKILL`: no chance to close anything.
    pub(crate) fn kill9(&mut self) {
        self.process = None;
    }

    /// Starts it again on the same port (killing it first if it runs).
    ///
    /// # Errors
    ///
    /// A message saying why it did not start (the engine must answer).
    pub(crate) fn restart(&mut self) -> Result<(), String> {
        self.kill9();
        self.process = Some(Spawned::start(&self.sets)?);
        Ok(())
    }
}

/// The engine and its nodes.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) engine: Engine,
    pub(crate) nodes: Vec<Node>,
}

impl Cluster {
    /// Starts the engine, then `nodes` nodes on it, each with `sets`.
    ///
    /// # Errors
    ///
    /// The first process that did not start, and why.
    pub(crate) fn start(nodes: usize, fsync: EngineFsync, sets: &[String]) -> Result<Self, String> {
        let engine = Engine::start(fsync)?;
        let url = engine.url();
        let nodes = (0..nodes)
            .map(|i| Node::start(&url, sets).map_err(|e| format!("node {i}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { engine, nodes })
    }

    /// The process ids of the running nodes and of the engine.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(Node::pid)
            .chain(self.engine.pid())
            .collect()
    }
}

/// A free loopback port (bound, read, released: the engine takes it right after).
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// The counter `name` of a node's `/metrics` page (`name` with its `_total` suffix), read
/// with one plain `GET` on its WebSocket port.
///
/// # Errors
///
/// A message when the node does not answer or the page has no such counter.
pub(crate) fn node_counter(addr: SocketAddr, name: &str) -> Result<u64, String> {
    let page = metrics_page(addr)?;
    page.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .map(|value| value as u64)
        .ok_or_else(|| format!("{addr}/metrics has no {name}"))
}

fn metrics_page(addr: SocketAddr) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("GET http://{addr}/metrics: {e}");
    let mut socket = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(fail)?;
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(fail)?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).map_err(fail)?;
    let mut page = String::new();
    socket.read_to_string(&mut page).map_err(fail)?;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_choices_are_redis_words() {
        assert_eq!(EngineFsync::Always.as_str(), "always");
        assert_eq!(EngineFsync::Everysec.as_str(), "everysec");
        assert_eq!(
            EngineFsync::Off.args(),
            ["--appendonly", "no", "--appendfsync", "no"]
        );
    }

    #[test]
    fn a_temporary_directory_goes_away_with_its_handle() {
        let dir = TempDir::new("harness-test").unwrap();
        let path = dir.0.clone();
        assert!(path.is_dir());
        drop(dir);
        assert!(!path.exists());
    }
}
