//! The server under test as a child process (`deltasync serve`, this very binary), so
//! that its resident memory is its own, and the reading of that memory.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// A `deltasync serve` child, killed when dropped.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `deltasync serve` on an ephemeral loopback port with `args` (flags of
    /// `serve`) and waits for the line saying where it listens.
    pub(crate) fn spawn(args: &[String]) -> io::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("deltasync listening on ws://")
            .and_then(|rest| rest.trim_end_matches('/').parse().ok());
        match addr {
            Some(addr) => Ok(Self { child, addr }),
            None => {
                let _ = child.kill();
                Err(io::Error::other(format!(
                    "the server did not say where it listens: {line:?}"
                )))
            }
        }
    }

    /// The server's resident memory (`VmRSS`), in bytes.
    pub(crate) fn rss_bytes(&self) -> io::Result<u64> {
        rss_of(&format!("/proc/{}/status", self.child.id()))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmRSS` of a `/proc/.../status` file, in bytes.
pub(crate) fn rss_of(status_path: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(status_path)?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::other(format!("no VmRSS in {status_path}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_our_own_resident_memory() {
        let rss = super::rss_of("/proc/self/status").unwrap();
        assert!(rss > 0);
    }
}
