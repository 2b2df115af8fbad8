//! `/health`, `/ready` and `/metrics` over real sockets: on the WebSocket port and on the
//! admin address, what each answers when, and (the proof) a scripted scenario whose every
//! sync counter moves by exactly what the script did, so that a metric cannot silently
//! stop counting.
// Probes during a shutdown are polled on real time.
#![allow(clippy::disallowed_methods)]
mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use common::{TestServer, Ws, eventually, update};
use deltasync::config::{Config, PublicEndpoints};
use deltasync::room::RoomConfig;
use deltasync::server::Server;
use deltasync::storage::{
    BackendDown, MemoryRevisions, MemoryStorage, Opened, Storage, StorageError,
};
use serde_json::json;

/// One plain HTTP exchange: the status line's code, the headers and the body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

fn request(addr: SocketAddr, method: &str, path: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(common::WAIT)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    let mut received = String::new();
    stream
        .read_to_string(&mut received)
        .expect("an answer, then the close");
    let (head, body) = received.split_once("\r\n\r\n").expect("a whole response");
    let status = head[9..12].parse().expect("a status code");
    Answer {
        status,
        head: format!("{head}\r\n"),
        body: body.to_owned(),
    }
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path)
}

/// A server with an admin address on an ephemeral loopback port.
fn with_admin(configure: impl FnOnce(&mut Config)) -> (TestServer, SocketAddr) {
    let server = TestServer::with(|config| {
        config.server.admin_listen = Some("127.0.0.1:0".parse().unwrap());
        configure(config);
    });
    let admin = server.server().admin_addr().expect("an admin address");
    (server, admin)
}

/// The samples of a `/metrics` page, by name with labels (`deltasync_resumes_total{result="gap"}`).
fn samples(page: &str) -> HashMap<String, f64> {
    assert!(page.ends_with("# EOF\n"), "an OpenMetrics page: {page}");
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("name value");
            (name.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

fn scrape(admin: SocketAddr) -> HashMap<String, f64> {
    let answer = get(admin, "/metrics");
    assert_eq!(answer.status, 200, "{}", answer.body);
    samples(&answer.body)
}

/// The sum of every sample of `name` (one per shard, or the one).
fn sum(samples: &HashMap<String, f64>, name: &str) -> f64 {
    samples
        .iter()
        .filter(|(key, _)| *key == name || key.starts_with(&format!("{name}{{")))
        .map(|(_, value)| value)
        .sum()
}

#[test]
fn the_metrics_count_exactly_what_a_scripted_scenario_did() {
    let (server, admin) = with_admin(|config| {
        config.room = RoomConfig::with_ring_capacity(4).unwrap();
        config.limits.messages_per_second = 1;
        config.limits.message_burst = 20;
    });
    let url = server.url("/rooms/proof");
    let before = scrape(admin);

    // Two joins (snapshots), each moving the other connected client by one revision.
    let mut a = Ws::connect_native(&url);
    let snapshot = a.join("a", "A");
    assert_eq!(snapshot["payload"]["rev"], 1, "{snapshot}");
    let epoch = snapshot["payload"]["epoch"].as_str().unwrap().to_owned();
    let mut b = Ws::connect(&url);
    assert_eq!(b.join("b", "B")["payload"]["rev"], 2);
    assert_eq!(a.recv()["payload"]["toRev"], 2);
    // An update, acknowledged to its sender and sent to the other; then its duplicate.
    a.send(update("away", "r1"));
    assert_eq!(a.recv()["payload"]["toRev"], 3);
    assert_eq!(b.recv()["payload"]["toRev"], 3);
    a.send(update("away", "r1"));
    assert_eq!(a.recv()["payload"]["code"], "FAILED_PRECONDITION");
    // A rejected update: no JOIN first.
    let mut c = Ws::connect(&url);
    c.send(update("away", "r-c"));
    assert_eq!(c.recv()["payload"]["code"], "UNAUTHENTICATED");
    // A resume answered with deltas (empty: nothing moved while A was away). The server
    // drops A's first connection before anything moves, so no flush counts it.
    drop(a);
    eventually("A's first connection is dropped", || {
        server.server().connections() == 2
    });
    let mut a = Ws::connect_native(&url);
    a.send(json!({"type": "JOIN", "payload": {"participantId": "a", "name": "A", "rev": 3, "epoch": epoch}}));
    let resumed = a.recv();
    assert_eq!(
        (
            &resumed["type"],
            &resumed["payload"]["fromRev"],
            &resumed["payload"]["toRev"]
        ),
        (&json!("SYNC.DELTAS"), &json!(3), &json!(3))
    );
    // Five updates of B, each seen by B and A before the next: revisions 4..=8.
    for (i, status) in ["away", "online", "away", "online", "away"]
        .iter()
        .enumerate()
    {
        b.send(update(status, &format!("rb{i}")));
        let rev = 4 + i as u64;
        assert_eq!(b.recv()["payload"]["toRev"], rev);
        assert_eq!(a.recv()["payload"]["toRev"], rev);
    }
    // A resume from revision 1, out of the ring (4 operations: 5..=8): gap, then snapshot.
    let mut d = Ws::connect_native(&url);
    d.send(json!({"type": "JOIN", "payload": {"participantId": "d", "name": "D", "rev": 1, "epoch": epoch}}));
    assert_eq!(d.recv()["type"], "REVISION_GAP");
    assert_eq!(d.recv()["payload"]["rev"], 9);
    assert_eq!(a.recv()["payload"]["toRev"], 9);
    assert_eq!(b.recv()["payload"]["toRev"], 9);
    // A burst over the rate: 20 messages of burst, the 21st refused by name. One write,
    // so that the server reads them at one instant (no token comes back in between).
    let mut e = Ws::connect(&url);
    for _ in 0..21 {
        let heartbeat = json!({"type": "HEARTBEAT"}).to_string();
        e.socket
            .write(tungstenite::Message::text(heartbeat))
            .unwrap();
    }
    e.socket.flush().unwrap();
    let refused = e.recv();
    assert_eq!(
        refused["payload"]["code"], "RESOURCE_EXHAUSTED",
        "{refused}"
    );
    assert!(
        refused["payload"]["retryAfterMs"].as_u64().is_some(),
        "{refused}"
    );

    // B, A, C, D and E are connected.
    let after = scrape(admin);
    let delta = |name: &str| sum(&after, name) - sum(&before, name);
    let expected = [
        // a, b, r1, rb0..rb4, d joined.
        ("deltasync_commits_total", 9.0),
        ("deltasync_updates_committed_total", 6.0),
        ("deltasync_updates_duplicate_total", 1.0),
        (
            "deltasync_updates_rejected_total{code=\"UNAUTHENTICATED\"}",
            1.0,
        ),
        ("deltasync_updates_rejected_total", 1.0),
        ("deltasync_resumes_total{result=\"deltas\"}", 1.0),
        ("deltasync_resumes_total{result=\"gap\"}", 1.0),
        ("deltasync_snapshots_sent_total{cause=\"join\"}", 2.0),
        ("deltasync_snapshots_sent_total{cause=\"resume_gap\"}", 1.0),
        ("deltasync_snapshots_sent_total{cause=\"lagged\"}", 0.0),
        // The room's first snapshot (rev 0), A's (1), B's (2), D's (9).
        ("deltasync_snapshot_encodings_total", 4.0),
        ("deltasync_messages_rate_limited_total", 1.0),
        // Every flush found its connection one revision behind: A at 2; A and B at 3;
        // B and A at 4..=8; A and B at 9.
        ("deltasync_connection_lag_revisions_count", 15.0),
        ("deltasync_connection_lag_revisions_sum", 15.0),
        (
            "deltasync_connection_lag_revisions_bucket{le=\"1.0\"}",
            15.0,
        ),
        ("deltasync_frame_operations_count", 15.0),
        ("deltasync_frame_operations_sum", 15.0),
        ("deltasync_commit_latency_seconds_count", 6.0),
        ("deltasync_connections", 5.0),
        ("deltasync_rooms", 1.0),
        // The room on each of the two shards.
        ("deltasync_shard_rooms", 2.0),
        ("deltasync_healthy", 0.0),
        ("deltasync_ready", 0.0),
    ];
    let found: Vec<(&str, f64)> = expected
        .iter()
        .map(|(name, _)| (*name, delta(name)))
        .collect();
    assert_eq!(found, expected);
    assert_eq!(sum(&after, "deltasync_healthy"), 1.0);
    for name in [
        "deltasync_written_bytes_total",
        "deltasync_write_syscalls_total",
        "deltasync_read_bytes_total",
        "deltasync_read_syscalls_total",
    ] {
        assert!(delta(name) > 0.0, "{name} moved");
    }
}

#[test]
fn the_websocket_port_answers_the_probes_and_still_426_elsewhere() {
    let server = TestServer::start();
    let health = get(server.addr(), "/health");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert!(
        health
            .head
            .contains("Content-Type: text/plain; charset=utf-8\r\n"),
        "{}",
        health.head
    );
    let ready = get(server.addr(), "/ready?probe=lb");
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    let metrics = get(server.addr(), "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.head.contains(
            "Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"
        ),
        "{}",
        metrics.head
    );
    assert!(
        metrics.body.contains("# TYPE deltasync_commits counter\n"),
        "{}",
        metrics.body
    );
    let head = request(server.addr(), "HEAD", "/health");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert!(head.head.contains("Content-Length: 3\r\n"), "{}", head.head);
    let post = request(server.addr(), "POST", "/metrics");
    assert_eq!(
        (post.status, post.body.as_str()),
        (405, "/metrics answers GET and HEAD only\n")
    );
    assert!(post.head.contains("Allow: GET, HEAD\r\n"), "{}", post.head);
    // Any other plain request is refused as before: every other path is a room.
    assert_eq!(get(server.addr(), "/nowhere").status, 426);
    // A WebSocket upgrade to /health is the room of that path, as any path.
    let mut ws = Ws::connect(&server.url("/health"));
    assert_eq!(ws.join("p", "P")["type"], "SYNC.SNAPSHOT");
    assert_eq!(server.server().room("/health").unwrap().rev(), 1);
}

#[test]
fn the_admin_address_answers_only_the_endpoints() {
    let (server, admin) = with_admin(|_| {});
    assert_eq!(get(admin, "/health").body, "ok\n");
    assert_eq!(get(admin, "/ready").body, "ready\n");
    assert!(
        get(admin, "/metrics")
            .body
            .contains("deltasync_connections{shard=\"1\"} 0\n")
    );
    let missing = get(admin, "/rooms/a");
    assert_eq!(
        (missing.status, missing.body.as_str()),
        (404, "no such endpoint: /rooms/a\n")
    );
    assert_eq!(request(admin, "DELETE", "/health").status, 405);
    // No upgrade there: the admin address is not a WebSocket server.
    assert!(Ws::try_connect(&format!("ws://{admin}/"), &[]).is_err());
    assert!(server.server().connections() == 0);
}

#[test]
fn metrics_can_be_kept_off_the_websocket_port() {
    let (server, admin) =
        with_admin(|config| config.server.public_endpoints = PublicEndpoints::Health);
    assert_eq!(get(server.addr(), "/metrics").status, 426);
    assert_eq!(get(server.addr(), "/health").status, 200);
    assert_eq!(get(admin, "/metrics").status, 200);
    let (server, admin) =
        with_admin(|config| config.server.public_endpoints = PublicEndpoints::None);
    assert_eq!(get(server.addr(), "/health").status, 426);
    assert_eq!(get(server.addr(), "/ready").status, 426);
    assert_eq!(get(admin, "/health").status, 200);
}

#[test]
fn a_full_server_is_healthy_but_not_ready() {
    let (server, admin) = with_admin(|config| config.limits.max_connections = 1);
    let _ws = Ws::connect(&server.url("/"));
    eventually("the connection counts", || {
        server.server().connections() == 1
    });
    let ready = get(admin, "/ready");
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (503, "the connection limit (1) is reached\n")
    );
    assert_eq!(get(admin, "/health").status, 200);
}

#[test]
fn probes_say_503_while_the_server_shuts_down() {
    let (mut server, admin) = with_admin(|_| {});
    // A client that never answers the close frame keeps the shards closing for a while.
    let mut ws = Ws::connect(&server.url("/"));
    ws.join("p", "P");
    let running = server.take();
    let handle = running.handle();
    handle.shutdown();
    let health = get(admin, "/health");
    assert_eq!(
        (health.status, health.body.as_str()),
        (503, "shutting down\n")
    );
    let ready = get(admin, "/ready");
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (503, "shutting down\n")
    );
    drop(ws);
    running.join();
    assert!(
        TcpStream::connect(admin).is_err(),
        "the admin address closed with the server"
    );
}

/// Memory storage whose backend says it is down.
struct DownStorage(MemoryStorage);

impl Storage for DownStorage {
    fn open(&self, name: &str, ring_capacity: usize) -> Result<Opened, StorageError> {
        self.0.open(name, ring_capacity)
    }

    fn describe(&self) -> String {
        "down".into()
    }

    fn health(&self) -> Result<(), BackendDown> {
        Err(BackendDown {
            reason: "the cluster has no quorum".into(),
        })
    }
}

#[test]
fn a_storage_backend_that_is_down_fails_the_probes() {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.shards = 1;
    let clock = deltasync::clock::ManualClock::new(1000);
    let storage = Arc::new(DownStorage(MemoryStorage::new(
        MemoryRevisions::FromZero,
        &clock,
    )));
    let server = Server::presence(config).storage(storage).start().unwrap();
    let health = get(server.local_addr(), "/health");
    assert_eq!(
        (health.status, health.body.as_str()),
        (503, "storage is down: the cluster has no quorum\n")
    );
    assert_eq!(get(server.local_addr(), "/ready").status, 503);
    let metrics = samples(&get(server.local_addr(), "/metrics").body);
    assert_eq!(
        (metrics["deltasync_healthy"], metrics["deltasync_ready"]),
        (0.0, 0.0)
    );
    server.shutdown();
}

#[test]
fn the_admin_address_must_be_free() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.admin_listen = Some(taken.local_addr().unwrap());
    let error = Server::presence(config).start().err().expect("refused");
    assert_eq!(
        error.to_string(),
        format!(
            "cannot listen on server.admin_listen {}: Address already in use (os error 98)",
            taken.local_addr().unwrap()
        )
    );
}

#[test]
fn the_disk_backend_reports_its_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (server, admin) = with_admin(|config| {
        config.storage.backend = deltasync::storage::Backend::Disk;
        config.storage.dir = dir.path().to_owned();
        config.storage.sync = deltasync::storage::SyncPolicy::Always;
    });
    let mut ws = Ws::connect(&server.url("/rooms/durable"));
    // Under `always` the snapshot waits for the join's fsync.
    assert_eq!(ws.join("p", "P")["payload"]["rev"], 1);
    let metrics = scrape(admin);
    assert!(
        metrics["deltasync_storage_fsync_seconds_count"] >= 1.0,
        "{metrics:?}"
    );
    assert!(
        metrics["deltasync_storage_sync_batches_total"] >= 1.0,
        "{metrics:?}"
    );
    assert_eq!(metrics["deltasync_commits_total"], 1.0);
    assert_eq!(get(admin, "/health").body, "ok\n");
}
