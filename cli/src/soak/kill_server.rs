//! `deltasync soak --kill-server`: the server is killed with SIGKILL at random moments
//! while writers and readers work, and restarted on its data directory, again and again.
//! At the end every acknowledged update must be in the room's history exactly once, at the
//! revision it was acknowledged at, every reader must have seen contiguous deltas of one
//! history and hold the room's final state, and every update must have been answered.
//!
//! Each client is a thread with a blocking socket (the native dialect). A writer sends one
//! update at a time with a fresh `clientReqId` and, when the connection drops, reconnects,
//! resumes with its revision and epoch, and sends the same update again until it is
//! answered: by its operation (the ack), by `FAILED_PRECONDITION` with `appliedRev`, or by
//! a snapshot that already holds it. A reader resumes the same way and checks the stream.
//! The checker then reads each room's whole history (the ring holds it all: its capacity is
//! above the run's operations) and counts:
//!
//! | counter | means |
//! |---|---|
//! | lost | an acknowledged update is not in the history |
//! | duplicated | an update is in the history more than once |
//! | non-contiguous | a reader got deltas that do not follow its revision |
//! | inconsistent | a reader's state differs from the room's, an ack's revision from the history's, or the epoch changed |
//! | unanswered | an update got no answer before the end |

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::wire::{Frame, Reader, text_frame, upgrade_request};

/// What a kill-server run does.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// How many times the server is killed and restarted.
    pub(crate) kills: u32,
    /// Rooms.
    pub(crate) rooms: usize,
    /// Writers per room.
    pub(crate) writers: usize,
    /// Readers per room.
    pub(crate) readers: usize,
    /// `storage.sync` of the server.
    pub(crate) sync: String,
    /// Keep the history on disk (`true`, the point), or in memory (to see the checker
    /// count what a server without durability loses).
    pub(crate) disk: bool,
    /// Seed of the kill schedule.
    pub(crate) seed: u64,
    /// The longest time between two kills, in ms (each wait is drawn from a quarter of
    /// it to all of it).
    pub(crate) interval_ms: u64,
    /// A writer's pause after each answered update, in ms (0: the next one at once).
    pub(crate) write_pause_ms: u64,
}

/// The checker's counters and the run's figures.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    pub(crate) kills: u32,
    pub(crate) acked: u64,
    pub(crate) operations: u64,
    pub(crate) reconnects: u64,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
    pub(crate) non_contiguous: u64,
    pub(crate) inconsistent: u64,
    pub(crate) unanswered: u64,
    pub(crate) details: Vec<String>,
    pub(crate) secs: f64,
    /// Reconnects that resumed (`JOIN` with a revision) and got deltas.
    pub(crate) resumes_deltas: u64,
    /// Reconnects that resumed and got `REVISION_GAP` or a snapshot instead.
    pub(crate) resumes_gap: u64,
    /// Updates sent again after an `ERROR` (retryable: `UNAVAILABLE` while the storage
    /// cannot keep commits, a rate limit).
    pub(crate) retries: u64,
    /// The `ERROR`s the writers got, by code.
    pub(crate) errors: BTreeMap<String, u64>,
}

impl Figures {
    /// Whether every counter is 0.
    pub(crate) fn clean(&self) -> bool {
        self.lost + self.duplicated + self.non_contiguous + self.inconsistent + self.unanswered == 0
    }
}

/// The report, one figure a line.
pub(crate) fn report(plan: &Plan, f: &Figures) -> String {
    let mut out = format!(
        "soak --kill-server: {} kills (SIGKILL) and restarts in {:.1} s, sync={}, {} rooms x ({} writers + {} readers)\n\
         acknowledged updates: {}\noperations in the histories: {}\nclient reconnects: {}\n\
         lost: {}\nduplicated: {}\nnon-contiguous: {}\ninconsistent: {}\nunanswered: {}\n",
        f.kills,
        f.secs,
        plan.sync,
        plan.rooms,
        plan.writers,
        plan.readers,
        f.acked,
        f.operations,
        f.reconnects,
        f.lost,
        f.duplicated,
        f.non_contiguous,
        f.inconsistent,
        f.unanswered
    );
    for detail in f.details.iter().take(20) {
        out.push_str(&format!("  {detail}\n"));
    }
    out.push_str(if f.clean() {
        "result: ok\n"
    } else {
        "result: VIOLATIONS\n"
    });
    out
}

/// Runs the plan against `deltasync serve` children on a temporary data directory.
///
/// # Errors
///
/// If the server cannot be started or a client thread cannot be spawned.
pub(crate) fn run(plan: &Plan) -> io::Result<Figures> {
    let started = Instant::now();
    let dir = DataDir::new()?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut server = Server::start(&dir.0, port, plan)?;
    let shared = Arc::new(Shared::default());
    let threads = spawn_clients(&[addr], plan, &shared)?;
    let mut rng = plan.seed.max(1);
    for _ in 0..plan.kills {
        let quarter = (plan.interval_ms / 4).max(1);
        std::thread::sleep(Duration::from_millis(
            quarter + next(&mut rng) % (3 * quarter),
        ));
        server.kill9();
        server = Server::start(&dir.0, port, plan)?;
    }
    let mut figures = stop_and_check(threads, addr, plan, &shared);
    figures.kills = plan.kills;
    figures.secs = started.elapsed().as_secs_f64();
    drop(server);
    Ok(figures)
}

/// Starts every room's writers and readers, client `k` first on server `k mod N` of
/// `addrs` (moving on to the next one each time its connection is lost).
///
/// # Errors
///
/// If a thread cannot be spawned.
pub(super) fn spawn_clients(
    addrs: &[SocketAddr],
    plan: &Plan,
    shared: &Arc<Shared>,
) -> io::Result<Vec<std::thread::JoinHandle<()>>> {
    let addrs: Arc<[SocketAddr]> = addrs.into();
    let mut threads = Vec::new();
    let mut index = 0;
    for room in 0..plan.rooms {
        let clients = (0..plan.writers)
            .map(|w| (true, format!("w{room}-{w}")))
            .chain((0..plan.readers).map(|r| (false, format!("r{room}-{r}"))));
        for (writes, name) in clients {
            let client = Client {
                addrs: Arc::clone(&addrs),
                node: index,
                room,
                id: name,
                pause: Duration::from_millis(plan.write_pause_ms),
            };
            let shared = Arc::clone(shared);
            index += 1;
            threads.push(std::thread::Builder::new().spawn(move || {
                if writes {
                    writer(client, &shared);
                } else {
                    reader(client, &shared);
                }
            })?);
        }
    }
    Ok(threads)
}

/// Lets the readers catch up, stops every client, then checks what the server at `addr`
/// holds against what they saw.
pub(super) fn stop_and_check(
    threads: Vec<std::thread::JoinHandle<()>>,
    addr: SocketAddr,
    plan: &Plan,
    shared: &Shared,
) -> Figures {
    std::thread::sleep(Duration::from_millis(300));
    shared.stop.store(true, Ordering::SeqCst);
    for thread in threads {
        let _ = thread.join();
    }
    check(addr, plan, shared)
}

/// One client: where it connects, as whom.
struct Client {
    /// The servers (one, or a cluster's nodes).
    addrs: Arc<[SocketAddr]>,
    /// The server it tries next: `node mod N`, moved on after each lost connection.
    node: usize,
    room: usize,
    id: String,
    /// A writer's pause after each answered update.
    pause: Duration,
}

/// What the clients tell the checker.
#[derive(Default)]
pub(super) struct Shared {
    stop: AtomicBool,
    reconnects: AtomicU64,
    resumes_deltas: AtomicU64,
    resumes_gap: AtomicU64,
    retries: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    /// Per room: clientReqId -> the revision it was acknowledged at (0: by a snapshot).
    acked: Mutex<HashMap<usize, HashMap<String, u64>>>,
    /// Per room: where each reader ended.
    finals: Mutex<HashMap<usize, Vec<ReaderEnd>>>,
    violations: Mutex<Vec<(Counter, String)>>,
}

/// A reader's final revision, epoch and participants' names.
#[derive(Clone)]
struct ReaderEnd {
    rev: u64,
    epoch: String,
    names: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    NonContiguous,
    Inconsistent,
    Unanswered,
}

impl Shared {
    fn violation(&self, counter: Counter, detail: String) {
        if let Ok(mut v) = self.violations.lock() {
            v.push((counter, detail));
        }
    }
}

/// xorshift64: the kill schedule, reproducible from the seed.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct DataDir(PathBuf);

impl DataDir {
    fn new() -> io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "deltasync-kill-soak-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Counts how a resume was answered: the first of deltas, a gap or a snapshot after a
/// `JOIN` with a revision (`resuming` is then cleared).
fn count_resume(resuming: &mut bool, message: &Value, shared: &Shared) {
    if !*resuming {
        return;
    }
    let counter = match message["type"].as_str() {
        Some("SYNC.DELTAS") => &shared.resumes_deltas,
        Some("REVISION_GAP" | "SYNC.SNAPSHOT") => &shared.resumes_gap,
        _ => return,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    *resuming = false;
}

/// Counts an `ERROR` a writer got, by code, and the update it sends again.
fn count_error(message: &Value, shared: &Shared) {
    shared.retries.fetch_add(1, Ordering::Relaxed);
    let code = message["payload"]["code"].as_str().unwrap_or("(none)");
    if let Ok(mut errors) = shared.errors.lock() {
        *errors.entry(code.to_owned()).or_default() += 1;
    }
}

/// A `deltasync serve` child on the data directory and a fixed port.
struct Server(Child);

impl Server {
    fn start(dir: &std::path::Path, port: u16, plan: &Plan) -> io::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut command = Command::new(exe);
        command
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}"), "--shards", "2"]);
        if plan.disk {
            command.arg("--data-dir").arg(dir);
        }
        let mut child = command
            .args(["--ring-capacity", "1000000", "--set"])
            .arg(format!("storage.sync={}", plan.sync))
            .args(["--set", "timeouts.participant_ttl_ms=600000"])
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let mut first = [0u8; 1];
        // The first byte of "deltasync listening on ...": the server is accepting.
        stdout.read_exact(&mut first)?;
        Ok(Self(child))
    }

    fn kill9(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One blocking native-dialect connection.
struct Conn {
    stream: TcpStream,
    reader: Reader,
}

impl Conn {
    fn open(addr: SocketAddr, room: usize) -> io::Result<Self> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        stream.write_all(&upgrade_request(
            &addr.to_string(),
            &format!("/rooms/k{room}"),
        ))?;
        Ok(Self {
            stream,
            reader: Reader::default(),
        })
    }

    fn send(&mut self, message: &Value) -> io::Result<()> {
        self.stream
            .write_all(&text_frame(message.to_string().as_bytes(), [7, 1, 3, 9]))
    }

    /// The next message; `Ok(None)` after a read timeout; an error when the connection is
    /// gone.
    fn recv(&mut self) -> io::Result<Option<Value>> {
        loop {
            match self.reader.next().map_err(io::Error::other)? {
                Some(Frame::Text(text)) => {
                    return serde_json::from_slice(&text)
                        .map(Some)
                        .map_err(io::Error::other);
                }
                Some(Frame::Close(code)) => return Err(io::Error::other(format!("closed {code}"))),
                Some(Frame::Ping(_) | Frame::Other) => continue,
                None => {}
            }
            let mut buf = [0u8; 16 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.reader.push(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A client's replica: revision, epoch, participants by id (name only).
#[derive(Default)]
struct Replica {
    rev: Option<u64>,
    epoch: Option<String>,
    names: HashMap<String, Value>,
}

impl Replica {
    fn join_message(&self, id: &str) -> Value {
        let mut payload = json!({"participantId": id, "name": id});
        if let (Some(rev), Some(epoch)) = (self.rev, &self.epoch) {
            payload["rev"] = json!(rev);
            payload["epoch"] = json!(epoch);
        }
        json!({"type": "JOIN", "payload": payload})
    }

    /// Applies a server message; returns the clientReqIds it acknowledges.
    fn apply(&mut self, message: &Value, who: &str, shared: &Shared) -> Vec<(String, u64)> {
        let payload = &message["payload"];
        match message["type"].as_str() {
            Some("SYNC.SNAPSHOT") => {
                self.check_epoch(payload, who, shared);
                self.rev = payload["rev"].as_u64();
                self.names = payload["participants"]
                    .as_object()
                    .map(|p| {
                        p.iter()
                            .map(|(id, v)| (id.clone(), v["name"].clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                Vec::new()
            }
            Some("REVISION_GAP") => {
                self.check_epoch(payload, who, shared);
                Vec::new()
            }
            Some("SYNC.DELTAS") => self.apply_deltas(payload, who, shared),
            _ => Vec::new(),
        }
    }

    fn check_epoch(&mut self, payload: &Value, who: &str, shared: &Shared) {
        let Some(epoch) = payload["epoch"].as_str() else {
            return;
        };
        if let Some(old) = self.epoch.as_deref().filter(|old| *old != epoch) {
            shared.violation(
                Counter::Inconsistent,
                format!("{who}: epoch {old} became {epoch}"),
            );
        }
        self.epoch = Some(epoch.to_owned());
    }

    fn apply_deltas(&mut self, payload: &Value, who: &str, shared: &Shared) -> Vec<(String, u64)> {
        let (from, to) = (payload["fromRev"].as_u64(), payload["toRev"].as_u64());
        if from != self.rev {
            shared.violation(
                Counter::NonContiguous,
                format!("{who}: deltas from {from:?} at {:?}", self.rev),
            );
        }
        let mut acks = Vec::new();
        let mut expected = from.unwrap_or(0) + 1;
        for op in payload["operations"].as_array().into_iter().flatten() {
            if op["rev"].as_u64() != Some(expected) {
                shared.violation(
                    Counter::NonContiguous,
                    format!("{who}: op {} where {expected} was due", op["rev"]),
                );
            }
            expected += 1;
            let id = op["payload"]["id"].as_str().unwrap_or_default().to_owned();
            match op["type"].as_str() {
                Some("participant.left") => {
                    self.names.remove(&id);
                }
                _ => {
                    if let Some(name) = op["payload"].get("name") {
                        self.names.insert(id, name.clone());
                    }
                }
            }
            if let (Some(req), Some(rev)) = (op["clientReqId"].as_str(), op["rev"].as_u64()) {
                acks.push((req.to_owned(), rev));
            }
        }
        if to != Some(expected - 1) {
            shared.violation(
                Counter::NonContiguous,
                format!("{who}: toRev {to:?} after op {}", expected - 1),
            );
        }
        self.rev = to;
        acks
    }
}

/// Connects (retrying while the server restarts, moving on to the next server after
/// each failure) and joins with a resume.
fn connect(client: &mut Client, replica: &Replica, shared: &Shared) -> Option<Conn> {
    for _ in 0..400 {
        let addr = client.addrs[client.node % client.addrs.len()];
        if let Ok(mut conn) = Conn::open(addr, client.room) {
            if conn.send(&replica.join_message(&client.id)).is_ok() {
                return Some(conn);
            }
        }
        client.node += 1;
        if shared.stop.load(Ordering::SeqCst) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}

fn writer(mut client: Client, shared: &Shared) {
    let (room, id) = (client.room, client.id.clone());
    let id = id.as_str();
    let mut replica = Replica::default();
    let mut seq = 0u64;
    let mut pending: Option<String> = None;
    let born = Instant::now();
    let mut answered_at = born;
    let mut last_message = String::new();
    'connection: loop {
        let mut resuming = replica.rev.is_some();
        let Some(mut conn) = connect(&mut client, &replica, shared) else {
            break;
        };
        if let Some(req) = &pending {
            let _ = conn.send(&update(req));
        }
        loop {
            if pending.is_none() {
                if shared.stop.load(Ordering::SeqCst) {
                    break 'connection;
                }
                seq += 1;
                let req = format!("{id}-{seq}");
                if conn.send(&update(&req)).is_err() {
                    pending = Some(req);
                    continue 'connection;
                }
                pending = Some(req);
            }
            let message = match conn.recv() {
                Ok(Some(message)) => message,
                Ok(None) => {
                    if answered_at.elapsed() > Duration::from_secs(20) {
                        let addr = client.addrs[client.node % client.addrs.len()];
                        shared.violation(
                            Counter::Unanswered,
                            format!(
                                "{id}: {pending:?} unanswered for 20 s, {:.1} s after the start, on {addr}; the last message: {last_message}",
                                born.elapsed().as_secs_f64()
                            ),
                        );
                        break 'connection;
                    }
                    continue;
                }
                Err(_) => {
                    shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    client.node += 1;
                    continue 'connection;
                }
            };
            count_resume(&mut resuming, &message, shared);
            last_message = shown(&message);
            let acks = replica.apply(&message, id, shared);
            let Some(req) = pending.clone() else { continue };
            let acked = acknowledgement(&message, &acks, &replica, &req, id);
            match acked {
                Some(rev) => {
                    record_ack(shared, room, &req, rev, id);
                    pending = None;
                    answered_at = Instant::now();
                    std::thread::sleep(client.pause);
                }
                None if is_error_about(&message, &req) => {
                    // Retryable (the room's storage, a rate limit): send it again; after
                    // a refused JOIN (the engine was down), join first.
                    count_error(&message, shared);
                    std::thread::sleep(Duration::from_millis(20));
                    if message["payload"]["code"] == "UNAUTHENTICATED" {
                        let _ = conn.send(&replica.join_message(id));
                    }
                    let _ = conn.send(&update(&req));
                }
                None => {}
            }
        }
    }
    if let Some(req) = pending.filter(|_| !shared.stop.load(Ordering::SeqCst)) {
        shared.violation(Counter::Unanswered, format!("{id}: {req}"));
    }
}

/// Whether `message` is an `ERROR` answering update `req`: errors about an earlier
/// update (the answer to a copy of it sent twice, acknowledged since) are not this one's.
fn is_error_about(message: &Value, req: &str) -> bool {
    message["type"] == "ERROR" && message["payload"]["details"]["clientReqId"] == req
}

/// A message in a violation's detail: its first 200 characters.
fn shown(message: &Value) -> String {
    message.to_string().chars().take(200).collect()
}

/// The revision `req` is acknowledged at by `message`, if it is: its operation, a
/// duplicate's `appliedRev`, or a snapshot holding its name (0: revision unknown).
fn acknowledgement(
    message: &Value,
    acks: &[(String, u64)],
    replica: &Replica,
    req: &str,
    id: &str,
) -> Option<u64> {
    if let Some((_, rev)) = acks.iter().find(|(r, _)| r == req) {
        return Some(*rev);
    }
    let details = &message["payload"]["details"];
    if message["type"] == "ERROR" && details["clientReqId"] == req {
        return details["appliedRev"].as_u64();
    }
    let holds = replica.names.get(id).and_then(Value::as_str) == Some(req);
    (message["type"] == "SYNC.SNAPSHOT" && holds).then_some(0)
}

fn record_ack(shared: &Shared, room: usize, req: &str, rev: u64, id: &str) {
    let Ok(mut acked) = shared.acked.lock() else {
        return;
    };
    if acked
        .entry(room)
        .or_default()
        .insert(req.to_owned(), rev)
        .is_some()
    {
        shared.violation(
            Counter::Inconsistent,
            format!("{id}: {req} acknowledged twice"),
        );
    }
}

fn update(req: &str) -> Value {
    json!({"type": "UPDATE", "payload": {"patch": {"name": req}, "clientReqId": req}})
}

fn reader(mut client: Client, shared: &Shared) {
    let (room, id) = (client.room, client.id.clone());
    let id = id.as_str();
    let mut replica = Replica::default();
    'connection: loop {
        let mut resuming = replica.rev.is_some();
        let Some(mut conn) = connect(&mut client, &replica, shared) else {
            return;
        };
        let mut quiet_since = None;
        loop {
            match conn.recv() {
                Ok(Some(message)) if message["type"] == "ERROR" => {
                    // A refused JOIN (the engine was down): join again.
                    std::thread::sleep(Duration::from_millis(20));
                    let _ = conn.send(&replica.join_message(id));
                }
                Ok(Some(message)) => {
                    count_resume(&mut resuming, &message, shared);
                    replica.apply(&message, id, shared);
                    quiet_since = None;
                }
                Ok(None) if shared.stop.load(Ordering::SeqCst) => {
                    // Quiet for a while after the writers stopped: caught up.
                    let since = *quiet_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(600) {
                        break 'connection;
                    }
                }
                Ok(None) => {}
                Err(_) => {
                    shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    client.node += 1;
                    continue 'connection;
                }
            }
        }
    }
    let names = json!(replica.names);
    if let (Ok(mut finals), Some(rev)) = (shared.finals.lock(), replica.rev) {
        let epoch = replica.epoch.unwrap_or_default();
        finals
            .entry(room)
            .or_default()
            .push(ReaderEnd { rev, epoch, names });
    }
}

/// Reads each room's whole history and counts what is wrong.
fn check(addr: SocketAddr, plan: &Plan, shared: &Shared) -> Figures {
    let mut f = Figures {
        reconnects: shared.reconnects.load(Ordering::Relaxed),
        resumes_deltas: shared.resumes_deltas.load(Ordering::Relaxed),
        resumes_gap: shared.resumes_gap.load(Ordering::Relaxed),
        retries: shared.retries.load(Ordering::Relaxed),
        errors: shared.errors.lock().map(|e| e.clone()).unwrap_or_default(),
        ..Figures::default()
    };
    let acked = shared.acked.lock().map(|a| a.clone()).unwrap_or_default();
    let finals = shared.finals.lock().map(|a| a.clone()).unwrap_or_default();
    for room in 0..plan.rooms {
        let history = match history(addr, room) {
            Ok(history) => history,
            Err(e) => {
                f.inconsistent += 1;
                f.details
                    .push(format!("room {room}: cannot read its history: {e}"));
                continue;
            }
        };
        f.operations += history.ops.len() as u64;
        let mut seen: HashMap<&str, Vec<u64>> = HashMap::new();
        for (rev, req) in &history.ops {
            if let Some(req) = req {
                seen.entry(req).or_default().push(*rev);
            }
        }
        for (req, revs) in &seen {
            if revs.len() > 1 {
                f.duplicated += 1;
                f.details.push(format!("room {room}: {req} at {revs:?}"));
            }
        }
        for (req, rev) in acked.get(&room).into_iter().flatten() {
            f.acked += 1;
            match seen.get(req.as_str()) {
                None => {
                    f.lost += 1;
                    f.details.push(format!(
                        "room {room}: {req} acknowledged at {rev}, not in the history"
                    ));
                }
                Some(revs) if *rev != 0 && !revs.contains(rev) => {
                    f.inconsistent += 1;
                    f.details.push(format!(
                        "room {room}: {req} acknowledged at {rev}, stored at {revs:?}"
                    ));
                }
                Some(_) => {}
            }
        }
        for ReaderEnd { rev, epoch, names } in finals.get(&room).into_iter().flatten() {
            if (*rev, epoch.as_str(), names)
                != (history.rev, history.epoch.as_str(), &history.names)
            {
                f.inconsistent += 1;
                f.details.push(format!(
                    "room {room}: a reader ended at {rev} in {epoch}, the room is at {} in {}",
                    history.rev, history.epoch
                ));
            }
        }
    }
    for (counter, detail) in shared
        .violations
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default()
    {
        match counter {
            Counter::NonContiguous => f.non_contiguous += 1,
            Counter::Inconsistent => f.inconsistent += 1,
            Counter::Unanswered => f.unanswered += 1,
        }
        f.details.push(detail);
    }
    f
}

/// A room's whole history as the server serves it: every operation from revision 0.
#[derive(Debug, PartialEq)]
pub(super) struct History {
    pub(super) rev: u64,
    pub(super) epoch: String,
    pub(super) names: Value,
    pub(super) ops: Vec<(u64, Option<String>)>,
}

/// Room `room`'s whole history as the server at `addr` serves it.
pub(super) fn history(addr: SocketAddr, room: usize) -> io::Result<History> {
    let mut conn = Conn::open(addr, room)?;
    conn.send(
        &json!({"type": "JOIN", "payload": {"participantId": "checker", "name": "checker"}}),
    )?;
    let snapshot = wait_for(&mut conn, "SYNC.SNAPSHOT")?;
    let epoch = snapshot["payload"]["epoch"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let deltas = replay_from_the_start(addr, room, &epoch)?;
    let ops = deltas["payload"]["operations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|op| {
            (
                op["rev"].as_u64().unwrap_or(0),
                op["clientReqId"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let mut names: serde_json::Map<String, Value> = snapshot["payload"]["participants"]
        .as_object()
        .map(|p| {
            p.iter()
                .map(|(id, v)| (id.clone(), v["name"].clone()))
                .collect()
        })
        .unwrap_or_default();
    // The readers left before the checker joined.
    names.remove("checker");
    Ok(History {
        rev: snapshot["payload"]["rev"].as_u64().unwrap_or(0) - 1,
        epoch,
        names: Value::Object(names),
        ops,
    })
}

/// Every operation the room's ring holds: from revision 0, or (a history that does not
/// start at 0: in memory) from the `bufferFirstRev` a first try is told.
fn replay_from_the_start(addr: SocketAddr, room: usize, epoch: &str) -> io::Result<Value> {
    let mut from = 0;
    for _ in 0..2 {
        let mut replay = Conn::open(addr, room)?;
        let join = json!({"type": "JOIN", "payload":
            {"participantId": "checker", "name": "checker", "rev": from, "epoch": epoch}});
        replay.send(&join)?;
        let answer = wait_for_any(&mut replay, &["SYNC.DELTAS", "REVISION_GAP"])?;
        if answer["type"] == "SYNC.DELTAS" {
            return Ok(answer);
        }
        from = answer["payload"]["bufferFirstRev"].as_u64().unwrap_or(0);
    }
    Err(io::Error::other("the ring moved while the checker read it"))
}

fn wait_for(conn: &mut Conn, kind: &str) -> io::Result<Value> {
    wait_for_any(conn, &[kind])
}

fn wait_for_any(conn: &mut Conn, kinds: &[&str]) -> io::Result<Value> {
    for _ in 0..100 {
        if let Some(message) = conn.recv()? {
            if kinds.iter().any(|kind| message["type"] == *kind) {
                return Ok(message);
            }
        }
    }
    Err(io::Error::other(format!("no {kinds:?} within 20 s")))
}
