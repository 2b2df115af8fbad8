//! Several nodes sharing rooms through a real Redis engine (`deltasync serve --cluster`):
//! writers and readers on every node converge to the replay of the log with the checker's
//! invariants on every client; racing nodes never write one revision twice; a killed
//! node's clients resume on another with deltas; an engine outage refuses commits
//! retryably and loses nothing acknowledged.
//!
//! Needs `redis-server` (`apt-get install -y redis-server`); each test starts its own on a
//! free loopback port with a temporary directory.
// Child processes and real sockets: real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::{Engine, Node};
use common::sync::SyncClient;
use common::{Ws, rename};
use deltasync::client::Replica;
use deltasync::model::presence::Presence;
use serde_json::{Value, json};

/// A participant's client that keeps every operation it was sent, by revision.
struct Member {
    client: SyncClient,
    ops: BTreeMap<u64, Value>,
    sent: Vec<String>,
    errors: Vec<Value>,
}

impl Member {
    fn connect(node: &Node, room: &str, id: &str, native: bool) -> Self {
        let url = node.url(room);
        let client = if native {
            SyncClient::connect_native(&url, id)
        } else {
            SyncClient::connect(&url, id)
        };
        Self {
            client,
            ops: BTreeMap::new(),
            sent: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Joins (or resumes, under the name it has now: another name would commit a rename)
    /// and reads the first answer.
    fn join(&mut self) -> Value {
        let id = self.client.id.clone();
        let name = self
            .client
            .replica
            .server_state()
            .and_then(|state| state.participant(&id))
            .map_or(id.clone(), |p| p.name.clone());
        self.client.send_join(&name);
        self.recv()
    }

    fn recv(&mut self) -> Value {
        let message = self.client.recv();
        if message["type"] == "SYNC.DELTAS" {
            for op in message["payload"]["operations"].as_array().unwrap() {
                let rev = op["rev"].as_u64().unwrap();
                assert!(
                    self.ops.insert(rev, op.clone()).is_none(),
                    "{}: revision {rev} twice",
                    self.client.id
                );
            }
        }
        if message["type"] == "ERROR" {
            self.errors.push(message.clone());
        }
        message
    }

    fn rename(&mut self, name: &str) {
        let id = self.client.set_name(name);
        self.sent.push(id);
    }

    /// Reads until nothing this client sent is pending.
    fn settle(&mut self) {
        while !self.client.replica.pending().is_empty() {
            self.recv();
        }
    }

    fn until_rev(&mut self, rev: u64) {
        while self.client.stream.rev != Some(rev) {
            self.recv();
        }
    }
}

/// The room's head as the engine has it (the last stream entry's revision).
fn engine_head(engine: &Engine, room: &str) -> u64 {
    engine
        .stream(room)
        .last()
        .map_or(0, |(id, _)| id.trim_end_matches("-0").parse().unwrap())
}

/// The stream read back: its ids are exactly `1-0 ..= N-0`, each operation's `rev` is its
/// id's, and no `(participant, clientReqId)` is in it twice. Returns the operations.
fn log_checked(engine: &Engine, room: &str) -> Vec<Value> {
    let stream = engine.stream(room);
    let mut seen = BTreeSet::new();
    for (i, (id, op)) in stream.iter().enumerate() {
        let rev = i as u64 + 1;
        assert_eq!(
            id,
            &format!("{rev}-0"),
            "the stream skips or repeats a revision"
        );
        assert_eq!(op["rev"], rev, "{op}");
        if let Some(req) = op["clientReqId"].as_str() {
            let actor = op["payload"]["id"].as_str().unwrap().to_owned();
            assert!(seen.insert((actor, req.to_owned())), "applied twice: {op}");
        }
    }
    stream.into_iter().map(|(_, op)| op).collect()
}

/// The state the log's operations make from the empty room, through the client replica.
fn replay(ops: &[Value]) -> Presence {
    let mut replica: Replica<Presence> = Replica::new("replay");
    let snapshot = json!({"type": "SYNC.SNAPSHOT", "payload": {"rev": 0, "participants": {}}});
    let deltas = json!({"type": "SYNC.DELTAS", "payload": {
        "fromRev": 0, "toRev": ops.len(), "operations": ops}});
    for message in [snapshot, deltas] {
        replica
            .handle_text(message.to_string().as_bytes(), 0)
            .expect("the log replays");
    }
    replica.server_state().expect("a state").clone()
}

/// Every member reached the head, holds the replay of the log, and was sent, at each
/// revision, the very operation the log holds there.
fn assert_converged(engine: &Engine, room: &str, members: &mut [Member]) -> Vec<Value> {
    let ops = log_checked(engine, room);
    let head = ops.len() as u64;
    let state = replay(&ops);
    for member in members.iter_mut() {
        member.until_rev(head);
        assert_eq!(member.client.state(), &state, "{}", member.client.id);
        for (rev, op) in &member.ops {
            assert_eq!(op, &ops[*rev as usize - 1], "{} at {rev}", member.client.id);
        }
    }
    ops
}

/// Every update a member sent is in the log exactly once (the checks of `log_checked`)
/// and was acknowledged to it.
fn assert_acked_once(members: &[Member], ops: &[Value]) {
    for member in members {
        let actor = &member.client.id;
        for id in &member.sent {
            let found = ops
                .iter()
                .filter(|op| {
                    op["clientReqId"] == id.as_str() && op["payload"]["id"] == actor.as_str()
                })
                .count();
            assert_eq!(found, 1, "{actor}'s {id} is in the log {found} times");
            assert!(
                member.client.replica.was_acked(id),
                "{actor}'s {id} was not acknowledged"
            );
        }
    }
}

#[test]
fn writers_and_readers_on_three_nodes_converge_to_the_replay_of_the_log() {
    let engine = Engine::start();
    let nodes: Vec<Node> = (0..3)
        .map(|_| Node::start(&engine, &["--set", "cluster.commit_retries=1000"]))
        .collect();
    assert!(
        nodes[0].line.contains(&format!(
            "with storage cluster on redis at {} (shared by every node on it",
            engine.url()
        )),
        "{}",
        nodes[0].line
    );
    let mut members = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        members.push(Member::connect(
            node,
            "doc",
            &format!("writer-{i}"),
            i % 2 == 0,
        ));
        members.push(Member::connect(
            node,
            "doc",
            &format!("reader-{i}"),
            i % 2 == 1,
        ));
    }
    for member in &mut members {
        assert_eq!(member.join()["type"], "SYNC.SNAPSHOT");
    }
    // Pipelined: every writer's updates race the others' on the engine.
    for round in 0..20 {
        for member in members.iter_mut().step_by(2) {
            let name = format!("{}-{round}", member.client.id);
            member.rename(&name);
        }
    }
    for member in members.iter_mut().step_by(2) {
        member.settle();
    }
    let ops = assert_converged(&engine, "doc", &mut members);
    assert_eq!(ops.len(), 6 + 3 * 20, "six joins and sixty renames");
    assert_acked_once(&members, &ops);
    for member in &members {
        assert_eq!(member.errors, Vec::<Value>::new(), "{}", member.client.id);
    }
}

#[test]
fn two_nodes_racing_on_one_room_never_write_one_revision_twice() {
    let engine = Engine::start();
    let nodes = [
        Node::start(&engine, &["--set", "cluster.commit_retries=1000"]),
        Node::start(&engine, &["--set", "cluster.commit_retries=1000"]),
    ];
    let mut members: Vec<Member> = (0..4)
        .map(|i| Member::connect(&nodes[i % 2], "race", &format!("w{i}"), false))
        .collect();
    for member in &mut members {
        member.join();
    }
    for round in 0..40 {
        for member in &mut members {
            let name = format!("{}-{round}", member.client.id);
            member.rename(&name);
        }
    }
    for member in &mut members {
        member.settle();
    }
    // The stream read back: revisions 1..=164, each once, each request once.
    let ops = log_checked(&engine, "race");
    assert_eq!(ops.len(), 4 + 4 * 40);
    assert_acked_once(&members, &ops);
    assert_converged(&engine, "race", &mut members);
}

#[test]
fn a_killed_nodes_clients_resume_on_another_node_with_deltas_and_pending_acked_once() {
    let engine = Engine::start();
    let survivor = Node::start(&engine, &[]);
    let mut doomed = Node::start(&engine, &[]);
    let mut reader = Member::connect(&survivor, "doc", "reader", true);
    reader.join();
    let mut writers = [
        Member::connect(&doomed, "doc", "native", true),
        Member::connect(&doomed, "doc", "wskit", false),
    ];
    for writer in &mut writers {
        writer.join();
    }
    for writer in &mut writers {
        for i in 0..5 {
            writer.rename(&format!("{}-{i}", writer.client.id));
        }
        writer.settle();
    }
    // More updates in flight, then SIGKILL: some committed, some not, none answered.
    for writer in &mut writers {
        for i in 5..10 {
            writer.rename(&format!("{}-{i}", writer.client.id));
        }
    }
    doomed.kill9();
    for writer in &mut writers {
        let ws = if writer.client.id == "native" {
            Ws::connect_native(&survivor.url("doc"))
        } else {
            Ws::connect(&survivor.url("doc"))
        };
        let at = writer.client.replica.server_rev();
        writer.client.reconnect(ws);
        // A resume: the new connection's stream continues from the replica's revision.
        writer.client.stream.rev = Some(at);
        let resumed = writer.join();
        assert_eq!(
            resumed["type"], "SYNC.DELTAS",
            "{}: {resumed}",
            writer.client.id
        );
        assert_eq!(resumed["payload"]["fromRev"], at, "{resumed}");
        for message in writer.client.replica.resend_messages() {
            writer
                .client
                .ws
                .send_text(std::str::from_utf8(&message).unwrap());
        }
        writer.settle();
    }
    let mut members: Vec<Member> = writers.into_iter().chain([reader]).collect();
    let ops = assert_converged(&engine, "doc", &mut members);
    assert_acked_once(&members, &ops);
    let renames = ops
        .iter()
        .filter(|op| op["clientReqId"].is_string())
        .count();
    assert_eq!(renames, 2 * 10, "twenty renames, none twice: {ops:#?}");
    // Three joins; a resume may also rename back to the name its replica knew, when the
    // killed node committed a later rename the replica had not seen acknowledged.
    assert!((3..=5).contains(&(ops.len() - renames)), "{ops:#?}");
}

#[test]
fn an_engine_outage_refuses_commits_retryably_and_loses_nothing_acknowledged() {
    let mut engine = Engine::start();
    let nodes = [Node::start(&engine, &[]), Node::start(&engine, &[])];
    let mut writer = Member::connect(&nodes[0], "doc", "writer", true);
    let mut reader = Member::connect(&nodes[1], "doc", "reader", false);
    writer.join();
    reader.join();
    let mut refused = Vec::new();
    let start = Instant::now();
    let mut phase = 0;
    // Updates every 20 ms for 3 s; the engine is killed at 1 s and back at 2.5 s.
    for i in 0.. {
        let elapsed = start.elapsed();
        if elapsed > Duration::from_secs(3) {
            break;
        }
        if phase == 0 && elapsed > Duration::from_secs(1) {
            engine.kill();
            phase = 1;
        }
        if phase == 1 && elapsed > Duration::from_millis(2500) {
            engine.restart();
            phase = 2;
        }
        writer.rename(&format!("n{i}"));
        let answer = writer.recv();
        if answer["type"] == "ERROR" {
            assert_eq!(answer["payload"]["code"], "UNAVAILABLE", "{answer}");
            assert_eq!(answer["payload"]["retryable"], true, "{answer}");
            let id = answer["payload"]["details"]["clientReqId"]
                .as_str()
                .unwrap();
            refused.push(id.to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // A refused update stays pending (deferred, as the server never applied it): wait for
    // the answers to all the others.
    while writer
        .client
        .replica
        .pending()
        .iter()
        .any(|p| !refused.contains(&p.client_req_id))
    {
        writer.recv();
    }
    assert!(!refused.is_empty(), "the outage refused nothing");
    // The refused updates, sent again with their ids, are applied exactly once.
    writer.sent.retain(|id| !refused.contains(id));
    for id in &refused {
        let message = rename(&format!("again {id}"), id);
        writer.client.ws.send(message);
    }
    // Each is acknowledged: by an operation carrying its id, or, if its first append did
    // reach the engine before the answer was lost, as a duplicate naming where it was applied.
    let mut retried = BTreeSet::new();
    while retried.len() < refused.len() {
        let message = writer.recv();
        for op in message["payload"]["operations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(id) = op["clientReqId"].as_str() {
                retried.insert(id.to_owned());
            }
        }
        if message["type"] == "ERROR" {
            assert_eq!(
                message["payload"]["code"], "FAILED_PRECONDITION",
                "{message}"
            );
            let id = message["payload"]["details"]["clientReqId"]
                .as_str()
                .unwrap();
            retried.insert(id.to_owned());
        }
    }
    let mut members = vec![writer, reader];
    let ops = assert_converged(&engine, "doc", &mut members);
    assert_acked_once(&members[..1], &ops);
    for id in &refused {
        assert_eq!(
            ops.iter()
                .filter(|op| op["clientReqId"] == id.as_str())
                .count(),
            1,
            "{id}"
        );
    }
    assert_eq!(engine_head(&engine, "doc"), ops.len() as u64);
}

#[test]
fn a_node_whose_engine_does_not_answer_does_not_start() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let output = common::serve(&["--listen", "127.0.0.1:0", "--cluster", &url])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "error: cannot open the storage: the cluster engine at {url} is unavailable: Connection refused (os error 111)\n"
        )
    );
    let output = common::serve(&["--cluster", &url, "--data-dir", "unused"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: cluster.url and storage.backend = \"disk\" exclude each other: a cluster keeps room histories in its engine\n"
    );
}

#[test]
fn a_nodes_storage_says_whether_the_engine_answers_and_since_when_not() {
    let mut engine = Engine::start();
    let mut config = deltasync::config::Config::default();
    config.cluster.url = Some(engine.url());
    let storage =
        deltasync::storage::RedisStorage::connect(&config.cluster, &config.storage).unwrap();
    assert_eq!(storage.engine_health().down, None);
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    engine.kill();
    // The tailer pings every 100 ms while no room is open. The pooled connection may
    // first see the kill as a reset; every new one is refused.
    let down = wait_for(|| storage.engine_health().down).expect("the outage is seen within 10 s");
    assert!(down.since_ms >= before_ms, "{down:?}");
    let refused = wait_for(|| {
        storage
            .engine_health()
            .down
            .filter(|d| d.reason == "Connection refused (os error 111)")
    })
    .expect("a new connection is refused");
    assert_eq!(
        refused.since_ms, down.since_ms,
        "one outage, dated by its first failure"
    );
    engine.restart();
    wait_for(|| storage.engine_health().down.is_none().then_some(()))
        .expect("the engine is seen again within 10 s");
}

#[test]
fn a_nodes_health_endpoint_is_503_naming_the_engine_while_it_does_not_answer() {
    let mut engine = Engine::start();
    let node = Node::start(&engine, &[]);
    assert_eq!(get(node.addr, "/health"), "HTTP/1.1 200 OK\n\nok");
    engine.kill();
    let down = wait_for(|| {
        let answer = get(node.addr, "/health");
        answer.starts_with("HTTP/1.1 503").then_some(answer)
    })
    .expect("/health says 503 within 10 s");
    let reason = format!(
        "storage is down: the cluster engine at {} does not answer: ",
        engine.url()
    );
    assert!(down.contains(&reason), "{down}");
    engine.restart();
    wait_for(|| (get(node.addr, "/health") == "HTTP/1.1 200 OK\n\nok").then_some(()))
        .expect("/health is 200 again within 10 s");
}

/// A plain `GET path`: the status line, then the body after an empty line.
fn get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or("");
    format!("{status}\n\n{}", body.trim_end())
}

/// Polls `probe` every 20 ms for up to 10 s.
fn wait_for<T>(mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(value) = probe() {
            return Some(value);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Waits until room `trim`'s snapshot at 30 is stored (in the background), then checks
/// that the stream was trimmed behind it to what a ring of 4 needs: entries 26 to 31.
fn assert_trimmed_to_26(engine: &Engine) {
    let snaprev_key = common::cluster::stream_key("trim").replace(":log", ":snaprev");
    let stored = wait_for(|| {
        let snap_rev: Option<u64> = redis::cmd("GET")
            .arg(&snaprev_key)
            .query(&mut engine.connection())
            .unwrap();
        (snap_rev == Some(30)).then_some(())
    });
    assert_eq!(stored, Some(()), "the snapshot at 30 is stored");
    let ids: Vec<String> = engine
        .stream("trim")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["26-0", "27-0", "28-0", "29-0", "30-0", "31-0"]);
}

#[test]
fn a_node_opening_a_trimmed_room_starts_from_the_stored_snapshot_and_the_tail() {
    let engine = Engine::start();
    let flags = ["--ring-capacity", "4", "--set", "storage.snapshot_every=5"];
    let first = Node::start(&engine, &flags);
    let mut writer = Ws::connect_native(&first.url("trim"));
    let epoch = writer.join("user-1", "user-1")["payload"]["epoch"].clone();
    for i in 2..=31 {
        writer.send(rename(&format!("A{i}"), &format!("r{i}")));
    }
    // With a ring of 4 the writer may get a gap and a snapshot: read up to revision 31.
    loop {
        let message = writer.recv();
        if message["payload"]["toRev"] == 31 || message["payload"]["rev"] == 31 {
            break;
        }
    }
    // Snapshots at 5, 10, ..., 30 (stored in the background), the stream trimmed behind
    // the last one to what a ring of 4 needs: entries from 26 on.
    assert_trimmed_to_26(&engine);

    let second = Node::start(&engine, &flags);
    let mut fresh = Ws::connect_native(&second.url("trim"));
    let snapshot = fresh.join("user-2", "user-2");
    // user-2's join is revision 32, on the state rebuilt from the snapshot at 30 and 31.
    assert_eq!(snapshot["payload"]["rev"], 32, "{snapshot}");
    assert_eq!(snapshot["payload"]["epoch"], epoch);
    assert_eq!(snapshot["payload"]["participants"]["user-1"]["name"], "A31");
    // Within the second node's ring (27..=31 after user-2's join at 32): deltas.
    let mut near = Ws::connect(&second.url("trim"));
    let mut join = common::join("user-1", "A31");
    join["payload"]["rev"] = json!(29);
    near.send(join.clone());
    let deltas = near.recv();
    assert_eq!(
        (
            &deltas["type"],
            &deltas["payload"]["fromRev"],
            &deltas["payload"]["toRev"]
        ),
        (&json!("SYNC.DELTAS"), &json!(29), &json!(32)),
        "{deltas}"
    );
    // Before it: a gap, then the snapshot.
    let mut far = Ws::connect(&second.url("trim"));
    join["payload"]["rev"] = json!(1);
    far.send(join);
    let gap = far.recv();
    assert_eq!(gap["type"], "REVISION_GAP", "{gap}");
    assert_eq!(far.recv()["payload"]["rev"], 32);
}

/// Sends `signal` (`STOP`, `CONT`) to a node's process.
fn signal(node: &Node, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(node.child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal}");
}

#[test]
fn a_paused_node_whose_room_was_trimmed_rebuilds_it_in_place_and_commits_again() {
    let engine = Engine::start();
    let flags = ["--ring-capacity", "4", "--set", "storage.snapshot_every=5"];
    let first = Node::start(&engine, &flags);
    let paused = Node::start(&engine, &flags);
    let mut writer = Ws::connect_native(&first.url("trim"));
    let epoch = writer.join("user-1", "user-1")["payload"]["epoch"].clone();
    let mut reader = Ws::connect_native(&paused.url("trim"));
    let joined = reader.join("user-2", "user-2");
    assert_eq!(joined["payload"]["rev"], 2, "{joined}");
    writer.recv_until_rev(2);
    // The paused node sees nothing while the other commits to 31: snapshots at 5, ...,
    // 30, and the stream trimmed behind the last one to what a ring of 4 needs.
    signal(&paused, "STOP");
    for i in 3..=31 {
        writer.send(rename(&format!("A{i}"), &format!("r{i}")));
    }
    loop {
        let message = writer.recv();
        if message["payload"]["toRev"] == 31 || message["payload"]["rev"] == 31 {
            break;
        }
    }
    assert_trimmed_to_26(&engine);
    signal(&paused, "CONT");
    // The reader is behind the rebuilt ring (28..=31): a gap, then the snapshot at 31.
    // (The paused node's tailer may have had revision 3 in hand already: the reader's
    // revision is whatever it was last sent.)
    let mut at = 2;
    let gap = loop {
        let message = reader.recv();
        match message["type"].as_str() {
            Some("SYNC.DELTAS") => at = message["payload"]["toRev"].as_u64().unwrap(),
            Some("REVISION_GAP") => break message,
            _ => panic!("{message}"),
        }
    };
    assert_eq!(
        gap["payload"],
        json!({"expectedRev": at, "serverRev": 31, "bufferFirstRev": 27, "resumeFrom": 31,
            "epoch": epoch}),
        "{gap}"
    );
    let snapshot = reader.recv();
    assert_eq!(snapshot["type"], "SYNC.SNAPSHOT", "{snapshot}");
    assert_eq!(snapshot["payload"]["rev"], 31, "{snapshot}");
    assert_eq!(snapshot["payload"]["epoch"], epoch, "the same history");
    assert_eq!(snapshot["payload"]["participants"]["user-1"]["name"], "A31");
    // Commits go on from the paused node without reopening the room.
    reader.send(rename("B32", "b32"));
    let ack = reader.recv();
    assert_eq!(
        (
            &ack["type"],
            &ack["payload"]["fromRev"],
            &ack["payload"]["toRev"]
        ),
        (&json!("SYNC.DELTAS"), &json!(31), &json!(32)),
        "{ack}"
    );
    assert_eq!(ack["payload"]["operations"][0]["clientReqId"], "b32");
    let seen = writer.recv_until_rev(32);
    assert_eq!(
        seen.last().unwrap()["payload"]["operations"][0],
        ack["payload"]["operations"][0],
        "the other node got the very operation"
    );
    assert_eq!(engine_head(&engine, "trim"), 32);
}

#[test]
fn the_participants_of_a_killed_node_leave_once_its_heartbeat_has_expired() {
    let engine = Engine::start();
    let flags = ["--set", "cluster.node_ttl_ms=1000"];
    let mut doomed = Node::start(&engine, &flags);
    let watching = Node::start(&engine, &flags);
    let living = Node::start(&engine, &flags);
    let mut orphans: Vec<Member> = ["a1", "a2"]
        .iter()
        .map(|id| Member::connect(&doomed, "doc", id, true))
        .collect();
    for member in &mut orphans {
        member.join();
    }
    let mut members = vec![
        Member::connect(&watching, "doc", "b1", false),
        Member::connect(&living, "doc", "c1", true),
    ];
    for member in &mut members {
        member.join();
    }
    for member in &mut members {
        member.until_rev(4);
    }
    doomed.kill9();
    drop(orphans);
    // Within the heartbeat's time-to-live and a sweep, a live node commits both leaves
    // (each read waits at most 10 s: a node that never does fails here).
    let mut left = BTreeSet::new();
    while left.len() < 2 {
        let message = members[0].recv();
        for op in message["payload"]["operations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(op["type"], "participant.left", "{op}");
            left.insert(op["payload"]["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(left, BTreeSet::from(["a1".to_owned(), "a2".to_owned()]));
    let ops = assert_converged(&engine, "doc", &mut members);
    assert_eq!(
        ops.len(),
        6,
        "four joins and two leaves, each once: {ops:#?}"
    );
    let present: BTreeSet<&str> = members[0]
        .client
        .state()
        .participants()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        present,
        BTreeSet::from(["b1", "c1"]),
        "the live nodes' stay"
    );
}
