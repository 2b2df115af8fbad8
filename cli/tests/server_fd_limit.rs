//! A server out of file descriptors: connections beyond what it can accept wait in the
//! listen backlog, and are served as soon as descriptors are free again, without needing
//! another connection to arrive.
// The server's exhaustion is found by waiting on real time.
#![allow(clippy::disallowed_methods)]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::raw::upgrade_request;

/// `deltasync serve` with at most `files` open file descriptors.
fn serve_with_file_limit(files: u64) -> (Child, SocketAddr) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deltasync"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "2"])
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the child between fork and exec, and only makes the
    // setrlimit system call (async-signal-safe), allocating nothing.
    unsafe {
        command.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, files, files));
    }
    let mut child = command.spawn().expect("the binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("deltasync listening on ws://")
        .and_then(|rest| rest.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

/// Opens a connection and sends an upgrade request.
fn upgrade(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(upgrade_request("/", "").as_bytes())
        .unwrap();
    stream
}

/// Whether a `101` comes on `stream` within `within`.
fn switched(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 101"
}

#[test]
fn connections_waiting_while_descriptors_ran_out_are_served_once_some_are_freed() {
    let (mut child, addr) = serve_with_file_limit(64);
    // Fill the server up: connections are answered until its descriptors run out.
    let mut served = Vec::new();
    let first_waiting = loop {
        let mut stream = upgrade(addr);
        if switched(&mut stream, Duration::from_secs(2)) {
            served.push(stream);
            assert!(served.len() < 64, "the file limit was not reached");
        } else {
            break stream;
        }
    };
    let mut waiting = vec![first_waiting];
    waiting.extend((0..4).map(|_| upgrade(addr)));
    // Ten served clients go; no new connection arrives after that.
    served.truncate(served.len() - 10);
    // regression: the acceptor gave up at EMFILE until the listener's next readiness
    // event, so these waited until some other connection arrived, however many
    // descriptors had been freed meanwhile.
    for stream in &mut waiting {
        assert!(
            switched(stream, common::WAIT),
            "a waiting connection was not served after descriptors were freed"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
