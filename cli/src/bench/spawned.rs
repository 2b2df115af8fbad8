//! The server under test in a process of its own (`--server-process separate`): this
//! binary's `serve` on an ephemeral loopback port, configured with the same keys the
//! in-process server would get, stopped when the run is over.
//!
//! On a machine of two cores the generator and the server fight for them whichever way
//! they run; in separate processes they at least share no allocator, no page cache of
//! the other's heap, and each one's CPU time and write system calls are read from its
//! own `/proc` entry (see `cpu`), so the figures are the server's alone.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};

/// A `deltasync serve` child process.
#[derive(Debug)]
pub(crate) struct Spawned {
    child: Child,
    addr: SocketAddr,
    /// Kept open: the child's later lines must not fail on a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Spawned {
    /// Starts `deltasync serve --set KEY=VALUE...` with `sets` (`server.listen` among them)
    /// and waits for the line that says where it listens.
    ///
    /// # Errors
    ///
    /// A message saying why the server did not start, with what it wrote on stderr.
    pub(crate) fn start(sets: &[String]) -> Result<Self, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this program to run its server: {e}"))?;
        let mut command = Command::new(exe);
        command.arg("serve");
        for set in sets {
            command.arg("--set").arg(set);
        }
        // Like the in-process server, it reads no configuration file or environment.
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("DELTASYNC_") {
                command.env_remove(var);
            }
        }
        command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start the server process: {e}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or("the server process has no stdout")?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        match listening_addr(&line) {
            Some(addr) => {
                drain_stderr(&mut child);
                Ok(Self {
                    child,
                    addr,
                    _stdout: stdout,
                })
            }
            None => {
                let _ = child.kill();
                let output = child.wait_with_output().ok();
                let stderr = output.map_or_else(String::new, |o| {
                    String::from_utf8_lossy(&o.stderr).trim().to_owned()
                });
                Err(format!("the server process did not start: {stderr}"))
            }
        }
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the child's stderr until it closes, on a thread of its own, so that a server
/// that logs a lot (warnings while its cluster engine is down, clients cut off) never
/// blocks on a full pipe. What it says there is dropped: the run's figures come from
/// elsewhere.
fn drain_stderr(child: &mut Child) {
    if let Some(mut stderr) = child.stderr.take() {
        let _ = std::thread::Builder::new()
            .name("spawned-stderr".into())
            .spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    }
}

/// The address in `deltasync listening on ws://ADDR/ with storage ...` (or `wss://`).
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("deltasync listening on ")?;
    let rest = rest
        .strip_prefix("ws://")
        .or_else(|| rest.strip_prefix("wss://"))?;
    rest.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_read_from_the_first_line() {
        assert_eq!(
            listening_addr("deltasync listening on ws://127.0.0.1:4321/ with storage memory\n"),
            Some(SocketAddr::from(([127, 0, 0, 1], 4321)))
        );
        assert_eq!(
            listening_addr("deltasync listening on wss://127.0.0.1:4321/ with storage memory\n"),
            Some(SocketAddr::from(([127, 0, 0, 1], 4321)))
        );
        assert_eq!(listening_addr("error: cannot serve\n"), None);
        assert_eq!(listening_addr(""), None);
    }
}
