//! The binary as an operator runs it under watch: `--log-format json` writes one JSON
//! object per log line, and `server.admin_listen` is announced on stdout and answers the
//! probes and the metrics.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use common::serve;
use serde_json::Value;

/// `GET path` on `addr`: the whole answer.
fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn json_logs_and_the_admin_address() {
    let mut child = serve(&[
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "1",
        "--set",
        "server.admin_listen=127.0.0.1:0",
        "--log-format",
        "json",
    ])
    .env("RUST_LOG", "info")
    .spawn()
    .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = [String::new(), String::new()];
    for line in &mut lines {
        stdout.read_line(line).unwrap();
    }
    assert!(
        lines[0].starts_with("deltasync listening on ws://127.0.0.1:"),
        "{lines:?}"
    );
    let admin: SocketAddr = lines[1]
        .strip_prefix("health and metrics on http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("unexpected second line {:?}", lines[1]))
        .parse()
        .unwrap();
    assert!(get(admin, "/health").ends_with("\r\n\r\nok\n"));
    assert!(get(admin, "/metrics").contains("\ndeltasync_connections{shard=\"0\"} 0\n"));
    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let events: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect();
    let messages: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["level"].as_str().unwrap(),
                e["fields"]["message"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        messages,
        [
            ("INFO", "listening"),
            (
                "INFO",
                "stopping: flushing and closing every connection (restart)"
            ),
            ("INFO", "stopped"),
        ]
    );
    assert_eq!(events[0]["fields"]["shards"], 1, "{}", events[0]);
    assert_eq!(events[0]["target"], "deltasync::server");
}
