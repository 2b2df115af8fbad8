//! The load generator's client side: one `mio` event loop per thread over many
//! connections, with non-blocking connects and upgrades.
//!
//! Each socket is read into one buffer per thread; whole frames are handled in place and
//! only a partial frame's bytes are kept by its connection, so a received message costs
//! no allocation. Each event takes the clock once, so a message's receive time is when
//! the loop read it. Writes (the upgrade request, `JOIN`, updates, heartbeats, pongs)
//! go into the connection's output buffer and out until the socket would block.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

mod held;
mod phases;
mod stream;

use stream::Stream as Socket;
pub(crate) use stream::TlsTarget;

use super::writer::Plan;

use super::check::Stream;
use super::check::{AckCounts, Violations};
use super::control::{Control, Phase, now};
use super::game::TickTracker;
use super::metrics::{self, Metrics};
use super::receive::{Received, Receiver, Recorder};
use super::scenario::{Load, Mode, Rate};
use super::upgrade::{self, Upgraded};
use deltasync::frame;

/// The largest message a generator client accepts (a snapshot of many participants).
const MAX_MESSAGE: usize = 64 << 20;
/// The thread's socket read buffer.
const READ_BUFFER: usize = 256 * 1024;
/// Connection attempts per client before it is given up.
const ATTEMPTS: u8 = 3;
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// How often heartbeats, progress and "current" are looked at.
const HOUSEKEEPING: Duration = Duration::from_millis(20);

/// One server the clients connect to.
#[derive(Debug, Clone)]
pub(crate) struct NodeAddr {
    pub(crate) addr: SocketAddr,
    /// The `Host` header.
    pub(crate) host: String,
}

/// Where the clients connect.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The servers: one, or the nodes of a cluster, client `c` on node `c mod N`
    pub(crate) nodes: Vec<NodeAddr>,
    /// The request target of each room.
    pub(crate) targets: Vec<String>,
    /// `wss://`: how connections start TLS.
    pub(crate) tls: Option<TlsTarget>,
}

impl Endpoint {
    /// The server client `client` connects to: node `client mod N`.
    pub(crate) fn node(&self, client: usize) -> &NodeAddr {
        &self.nodes[client % self.nodes.len()]
    }
}

/// How a writer's updates ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterReport {
    pub(crate) room: usize,
    pub(crate) all: AckCounts,
    pub(crate) measured: AckCounts,
}

/// What one generator thread hands back.
#[derive(Debug)]
pub(crate) struct ThreadReport {
    pub(crate) metrics: Metrics,
    pub(crate) violations: Violations,
    pub(crate) writers: Vec<WriterReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not connected: waiting its turn to connect (or to reconnect).
    Waiting,
    Connecting,
    Upgrading,
    Open,
    /// Gone for good (closed by the server, or given up).
    Closed,
}

#[derive(Debug)]
struct Conn {
    stream: Option<Socket>,
    state: State,
    key: String,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    fragment: Option<Vec<u8>>,
    attempts: u8,
    retry_at: Option<Instant>,
    last_sent: Instant,
    /// Reconnect runs: away on purpose, then catching up.
    away: bool,
    catching_up: bool,
    rx: Receiver,
}

/// One generator thread.
pub(crate) struct Generator {
    index: usize,
    load: Arc<Load>,
    endpoint: Arc<Endpoint>,
    control: Arc<Control>,
    poll: Poll,
    conns: Vec<Conn>,
    writers: Vec<usize>,
    to_connect: VecDeque<usize>,
    handshakes: usize,
    connect_credit: f64,
    credit_at: Instant,
    read_buf: Vec<u8>,
    /// Large buffers for partial frames, reused from one connection to the next.
    spares: held::Spares,
    rec: Recorder,
    scratch: Vec<u8>,
    rng: u64,
    window: Option<(Instant, Instant)>,
    plan: Option<Plan>,
    back_target: Vec<u64>,
    published: [u64; 5],
    /// Bytes read from every socket since the start.
    received: u64,
    next_housekeeping: Instant,
    next_heartbeats: Instant,
}

impl Generator {
    /// A thread that drives `clients` (global client numbers).
    ///
    /// # Errors
    ///
    /// If the poller cannot be created.
    pub(crate) fn new(
        index: usize,
        clients: Vec<usize>,
        load: Arc<Load>,
        endpoint: Arc<Endpoint>,
        control: Arc<Control>,
        run: u32,
    ) -> io::Result<Self> {
        let at = now();
        let conns: Vec<Conn> = clients
            .iter()
            .map(|&client| new_conn(&load, client, at))
            .collect();
        let writers = (0..conns.len())
            .filter(|&k| conns[k].rx.writer.is_some())
            .collect();
        Ok(Self {
            index,
            to_connect: (0..conns.len()).collect(),
            conns,
            writers,
            poll: Poll::new()?,
            handshakes: 0,
            connect_credit: 1.0,
            credit_at: at,
            read_buf: vec![0; READ_BUFFER],
            spares: held::Spares::default(),
            rec: recorder(run, &load, &control),
            scratch: Vec::with_capacity(256),
            rng: u64::from(run) << 16 | index as u64 | 1,
            window: None,
            plan: None,
            back_target: Vec::new(),
            published: [0; 5],
            received: 0,
            next_housekeeping: at,
            next_heartbeats: at,
            load,
            endpoint,
            control,
        })
    }

    /// Runs until the driver says `Stop`.
    pub(crate) fn run(mut self) -> ThreadReport {
        let mut events = Events::with_capacity(1024);
        let mut phase = Phase::Connect;
        loop {
            let timeout = self.timeout(now(), phase);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.control.broken.store(true, Ordering::Relaxed);
                    break;
                }
            }
            for event in events.iter() {
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                self.event(event.token().0, readable, event.is_writable());
            }
            let at = now();
            let current = self.control.phase();
            if current != phase {
                phase = current;
                self.enter(phase, at);
            }
            if phase == Phase::Stop {
                break;
            }
            self.start_connects(at);
            self.send_updates(at, phase);
            if at >= self.next_housekeeping {
                self.next_housekeeping = at + self.housekeeping_every();
                self.housekeeping(at, phase);
            }
        }
        self.finish()
    }

    /// Unlimited rates look at the room's slowest client often: it paces the writers.
    fn housekeeping_every(&self) -> Duration {
        if self.load.rate == Rate::Unlimited {
            Duration::from_millis(2)
        } else {
            HOUSEKEEPING
        }
    }

    fn timeout(&self, at: Instant, phase: Phase) -> Duration {
        let mut wake = self.next_housekeeping;
        if matches!(phase, Phase::Load | Phase::Drain) {
            if let Some(due) = self.next_due() {
                wake = wake.min(due);
            }
        }
        if self.to_connect.front().is_some() {
            wake = wake.min(at + Duration::from_millis(5));
        }
        wake.saturating_duration_since(at)
    }

    fn event(&mut self, key: usize, readable: bool, writable: bool) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        match conn.state {
            State::Connecting if readable || writable => self.on_connected(key),
            State::Upgrading | State::Open => {
                if writable {
                    self.flush(key);
                }
                if readable {
                    self.on_readable(key);
                }
            }
            _ => {}
        }
    }

    // ----- connecting -------------------------------------------------------------

    fn start_connects(&mut self, at: Instant) {
        if self.to_connect.is_empty() {
            return;
        }
        let per_thread = self.load.connect_concurrency.div_ceil(self.load.threads);
        if let Some(rate) = self.load.connect_rate {
            let rate = rate / self.load.threads as f64;
            let elapsed = at.saturating_duration_since(self.credit_at).as_secs_f64();
            self.connect_credit = (self.connect_credit + elapsed * rate).min(rate.max(1.0));
            self.credit_at = at;
        }
        while self.handshakes < per_thread {
            if self.load.connect_rate.is_some() && self.connect_credit < 1.0 {
                return;
            }
            let Some(&key) = self.to_connect.front() else {
                return;
            };
            if self.conns[key].retry_at.is_some_and(|t| t > at) {
                return;
            }
            self.to_connect.pop_front();
            self.connect_credit -= 1.0;
            self.connect(key);
        }
    }

    fn connect(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        conn.retry_at = None;
        conn.attempts += 1;
        let stream = TcpStream::connect(self.endpoint.node(conn.rx.client).addr)
            .and_then(|socket| stream::open(socket, self.endpoint.tls.as_ref()));
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(e) => return self.connect_failed(key, &format!("connect: {}", e.kind())),
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), interest)
        {
            return self.connect_failed(key, &format!("register: {}", e.kind()));
        }
        let conn = &mut self.conns[key];
        conn.stream = Some(stream);
        conn.state = State::Connecting;
        self.handshakes += 1;
    }

    fn on_connected(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let Some(stream) = conn.stream.as_ref().map(Socket::tcp) else {
            return;
        };
        if let Ok(Some(e)) | Err(e) = stream.take_error() {
            return self.connect_failed(key, &format!("connect: {}", e.kind()));
        }
        match stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return self.connect_failed(key, &format!("connect: {}", e.kind())),
        }
        let _ = stream.set_nodelay(true);
        conn.key = tungstenite::handshake::client::generate_key();
        let target = &self.endpoint.targets[conn.rx.room];
        let protocol = self.load.native.then_some("deltasync.v1");
        let host = &self.endpoint.node(conn.rx.client).host;
        let request = upgrade::upgrade_request(host, target, &conn.key, protocol);
        conn.outbuf.extend_from_slice(request.as_bytes());
        conn.state = State::Upgrading;
        self.flush(key);
    }

    fn connect_failed(&mut self, key: usize, reason: &str) {
        let at = now();
        let conn = &mut self.conns[key];
        if matches!(conn.state, State::Connecting | State::Upgrading) {
            self.handshakes -= 1;
        }
        self.drop_socket(key);
        let conn = &mut self.conns[key];
        *self
            .rec
            .metrics
            .connect_failures
            .entry(reason.to_owned())
            .or_default() += 1;
        if conn.attempts < ATTEMPTS {
            conn.state = State::Waiting;
            conn.retry_at = Some(at + RETRY_AFTER);
            self.to_connect.push_back(key);
        } else {
            conn.state = State::Closed;
            self.control.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn drop_socket(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if let Some(mut stream) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        conn.inbuf = Vec::new();
        conn.outbuf = Vec::new();
        conn.fragment = None;
    }

    /// The server ended a connection: a failed attempt while connecting, else a loss.
    fn closed(&mut self, key: usize, reason: &str) {
        let conn = &self.conns[key];
        if conn.state == State::Closed || conn.state == State::Waiting {
            return;
        }
        if !conn.rx.joined || (conn.catching_up && conn.state != State::Open) {
            return self.connect_failed(key, reason);
        }
        if self.control.phase() == Phase::Stop {
            return;
        }
        self.rec.metrics.closed += 1;
        *self
            .rec
            .metrics
            .errors
            .entry(format!("closed: {reason}"))
            .or_default() += 1;
        self.drop_socket(key);
        self.conns[key].state = State::Closed;
    }

    // ----- reading ----------------------------------------------------------------

    fn on_readable(&mut self, key: usize) {
        let mut buf = std::mem::take(&mut self.read_buf);
        while let Some(stream) = self.conns[key].stream.as_mut() {
            let n = match stream.read(&mut buf) {
                Ok(0) => {
                    self.closed(key, "end of stream");
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.closed(key, &format!("read: {}", e.kind()));
                    break;
                }
            };
            let at = now();
            let in_window = self.in_window(at);
            self.received += n as u64;
            if in_window {
                self.rec.metrics.window_bytes += n as u64;
            }
            self.ingest(key, &buf[..n], at, in_window);
            // A short read emptied the socket: what arrives later raises a new edge (epoll
            // is edge-triggered under mio), so the read that would only say `WouldBlock`
            // is saved, one system call per frame received (tokio does the same).
            if n < buf.len() {
                break;
            }
        }
        self.read_buf = buf;
        self.flush(key);
    }

    fn in_window(&self, at: Instant) -> bool {
        self.window.is_some_and(|(from, to)| at >= from && at < to)
    }

    /// Handles freshly read bytes, keeping an incomplete frame's for the next read.
    fn ingest(&mut self, key: usize, data: &[u8], at: Instant, in_window: bool) {
        let mut held = std::mem::take(&mut self.conns[key].inbuf);
        if held.is_empty() {
            let used = self.consume(key, data, at, in_window);
            let rest = &data[used.min(data.len())..];
            if !rest.is_empty() {
                self.spares.append(&mut held, rest);
            }
        } else {
            self.spares.append(&mut held, data);
            let used = self.consume(key, &held, at, in_window);
            held.drain(..used.min(held.len()));
        }
        self.spares.settle(&mut held);
        if self.conns[key].stream.is_some() {
            self.conns[key].inbuf = held;
        }
    }

    /// Handles what `data` holds whole; returns how many bytes that used.
    fn consume(&mut self, key: usize, data: &[u8], at: Instant, in_window: bool) -> usize {
        let mut used = 0;
        if self.conns[key].state == State::Upgrading {
            match upgrade::upgrade_response(data, &self.conns[key].key) {
                Upgraded::Partial => return 0,
                Upgraded::Refused(reason) => {
                    self.connect_failed(key, &reason);
                    return data.len();
                }
                Upgraded::Done(n) => {
                    used = n;
                    self.handshakes -= 1;
                    self.conns[key].state = State::Open;
                    self.send_join(key);
                }
            }
        }
        while self.conns[key].state == State::Open {
            let frame = match frame::parse(&data[used..], MAX_MESSAGE) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    self.closed(key, &error.to_string());
                    return data.len();
                }
            };
            let payload = &data[used + frame.payload_at..used + frame.len()];
            used += frame.len();
            self.frame(key, frame, payload, at, in_window);
        }
        used
    }

    fn frame(
        &mut self,
        key: usize,
        frame: frame::Frame,
        payload: &[u8],
        at: Instant,
        in_window: bool,
    ) {
        match (frame.opcode, frame.fin) {
            (frame::TEXT, true) => self.text(key, payload, at, in_window),
            (frame::TEXT, false) => self.conns[key].fragment = Some(payload.to_vec()),
            (frame::CONTINUATION, fin) => {
                let conn = &mut self.conns[key];
                let Some(fragment) = conn.fragment.as_mut() else {
                    return self.closed(key, "continuation without a first frame");
                };
                fragment.extend_from_slice(payload);
                if fin {
                    let whole = conn.fragment.take().unwrap_or_default();
                    self.text(key, &whole, at, in_window);
                }
            }
            (frame::PING, _) => {
                let mask = self.mask();
                let conn = &mut self.conns[key];
                frame::put_frame(&mut conn.outbuf, frame::PONG, payload, Some(mask));
            }
            (frame::CLOSE, _) => {
                let code = payload
                    .get(..2)
                    .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                self.closed(key, &format!("close frame {code}"));
            }
            _ => {}
        }
    }

    fn text(&mut self, key: usize, text: &[u8], at: Instant, in_window: bool) {
        if self.rec.start.is_none() {
            // Taken from the driver, not from this thread's view of the phase: a thread
            // that notices a new phase late must still count what arrives before.
            self.rec.start = self.control.start.get().copied();
        }
        let conn = &mut self.conns[key];
        if self.rec.message(&mut conn.rx, text, at, in_window) == Received::Ready {
            self.control.ready.fetch_add(1, Ordering::Relaxed);
            self.rec.metrics.last_ready = Some(at);
        }
        if conn.catching_up {
            let target = self.back_target.get(conn.rx.room).copied().unwrap_or(0);
            if conn.rx.stream.rev().is_some_and(|rev| rev >= target) {
                conn.catching_up = false;
                if let Some(back) = self.control.back.get() {
                    metrics::record(&mut self.rec.metrics.catchup, at - *back);
                }
                self.control.caught_up.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    // ----- writing ----------------------------------------------------------------

    fn mask(&mut self) -> [u8; 4] {
        next_mask(&mut self.rng)
    }

    /// Queues a text message the generator built in `scratch`.
    fn queue_scratch(&mut self, key: usize) {
        let mask = self.mask();
        let conn = &mut self.conns[key];
        frame::put_frame(&mut conn.outbuf, frame::TEXT, &self.scratch, Some(mask));
        conn.last_sent = now();
    }

    fn send_join(&mut self, key: usize) {
        let conn = &self.conns[key];
        let client = conn.rx.client;
        self.scratch.clear();
        let s = &mut self.scratch;
        s.extend_from_slice(br#"{"type":"JOIN","payload":{"participantId":"c"#);
        s.extend_from_slice(itoa::Buffer::new().format(client).as_bytes());
        s.extend_from_slice(br#"","name":"client "#);
        s.extend_from_slice(itoa::Buffer::new().format(client).as_bytes());
        s.push(b'"');
        if let Some(rev) = conn.rx.stream.rev() {
            s.extend_from_slice(br#","rev":"#);
            s.extend_from_slice(itoa::Buffer::new().format(rev).as_bytes());
            if let Some(epoch) = conn.rx.epoch.as_ref().filter(|_| self.load.native) {
                s.extend_from_slice(br#","epoch":""#);
                s.extend_from_slice(epoch);
                s.push(b'"');
            }
        }
        s.extend_from_slice(b"}}");
        self.queue_scratch(key);
    }

    fn heartbeat(&mut self, key: usize) {
        self.scratch.clear();
        self.scratch.extend_from_slice(br#"{"type":"HEARTBEAT"}"#);
        self.queue_scratch(key);
        self.flush(key);
    }

    /// Writes what the connection has queued, until the socket would block.
    fn flush(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let Some(stream) = conn.stream.as_mut() else {
            return;
        };
        let mut written = 0;
        let result = loop {
            if written == conn.outbuf.len() {
                // TLS: the records the socket could not take before.
                match stream.flush() {
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => break Err(e),
                    _ => break Ok(()),
                }
            }
            match stream.write(&conn.outbuf[written..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        conn.outbuf.drain(..written);
        if let Err(e) = result {
            self.closed(key, &format!("write: {}", e.kind()));
        }
    }
}

/// The recorder of a thread: which updates are measured follows from the scenario alone;
/// in the game scenario it also times frames by the game's ticks.
fn recorder(run: u32, load: &Load, control: &Control) -> Recorder {
    let mut rec = Recorder::new(run, load.rooms);
    rec.per_node(load.nodes);
    rec.ticks = control.game.clone().map(TickTracker::new);
    match load.mode {
        Mode::Load => {
            let from = load.warmup.as_micros() as u64;
            rec.measured_us = (from, from + load.duration.as_micros() as u64);
            rec.record_latency = true;
        }
        Mode::Reconnect { .. } => rec.measured_us = (0, u64::MAX),
        Mode::Idle => {}
    }
    rec
}

/// The next masking key (xorshift64: masking keys need not be secret between our own
/// processes).
fn next_mask(rng: &mut u64) -> [u8; 4] {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    (*rng as u32).to_le_bytes()
}

fn new_conn(load: &Load, client: usize, at: Instant) -> Conn {
    let writer = load
        .is_writer(client)
        .then(|| super::writer::new_writer(load, client));
    Conn {
        stream: None,
        state: State::Waiting,
        key: String::new(),
        inbuf: Vec::new(),
        outbuf: Vec::new(),
        fragment: None,
        attempts: 0,
        retry_at: None,
        last_sent: at,
        away: false,
        catching_up: false,
        rx: Receiver {
            client,
            room: load.room_of(client),
            stream: Stream::default(),
            joined: false,
            epoch: None,
            writer,
            samples_latency: client % load.latency_every == 0 && load.mode == Mode::Load,
            window_deltas: 0,
        },
    }
}
