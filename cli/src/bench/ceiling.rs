//! The ceiling: a minimal WebSocket fan-out server that does only the work fan-out
//! cannot avoid, to tell what this machine can do at best for a given load.
//!
//! Same shape as the real server (one acceptor thread, `shards` event-loop threads, a
//! connection on one shard for life, one vectored write per connection per loop turn)
//! but no rooms engine, no ring, no sessions, no JSON: a `JOIN` is answered with an
//! empty snapshot at the room's revision; an `UPDATE` is scanned for its `clientReqId`
//! and name (the bench's byte scanner), given the room's next revision under one short
//! lock, and turned once into a whole frame (a template and three copies) that is the
//! same size, byte for byte, as the `SYNC.DELTAS` the real server sends for that update
//! alone. Each shard, once per loop turn, appends the frames of that turn to one buffer
//! per room and hands that one shared buffer to every client of the room: one write per
//! connection per turn, no byte produced per connection. The generator's checks pass
//! unchanged against it, so its figures are comparable with the server's.
//!
//! It never merges updates (one frame per update per client: what the clients parse is
//! the same work whatever the server), keeps an unbounded queue of shared buffers per
//! slow connection instead of backpressure, and has no limits: a yardstick, not a
//! server.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;
use slab::Slab;

use super::scan::{self, ClientMessage};
use super::upgrade;
use deltasync::frame;

const WAKER: Token = Token(usize::MAX);
const LISTENER: Token = Token(0);
const READ_BUFFER: usize = 64 * 1024;
const MAX_CLIENT_FRAME: usize = 1 << 20;
const FRAMES_PER_WRITE: usize = 64;

/// What a shard is handed.
enum Input {
    Connection(TcpStream),
    /// The frame of revision `rev` of room `room`.
    Frame {
        room: usize,
        rev: u64,
        frame: Bytes,
    },
}

struct ShardLink {
    sender: Sender<Input>,
    waker: Waker,
    pending: AtomicBool,
}

impl ShardLink {
    fn send(&self, input: Input) {
        let _ = self.sender.send(input);
        // AcqRel: the shard's swap in `Shard::run` sees the input sent before this.
        if !self.pending.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

/// A room's id and its revision, behind the lock that orders its frames.
type RoomEntry = (usize, Arc<Mutex<u64>>);

/// What every thread of the ceiling shares.
struct Hub {
    shards: Vec<ShardLink>,
    /// Room ids by request path, and each room's revision behind its own lock.
    rooms: Mutex<HashMap<String, RoomEntry>>,
    stop: AtomicBool,
}

impl Hub {
    fn room(&self, path: &str) -> (usize, Arc<Mutex<u64>>) {
        let mut rooms = self.rooms.lock();
        let id = rooms.len();
        let (id, rev) = rooms
            .entry(path.to_owned())
            .or_insert_with(|| (id, Arc::new(Mutex::new(0))));
        (*id, Arc::clone(rev))
    }

    /// Gives room `room` its next revision and sends the update's frame to every shard,
    /// in revision order (the room's lock covers both).
    fn publish(&self, room: usize, rev_lock: &Mutex<u64>, body: impl FnOnce(u64) -> Bytes) {
        let mut rev = rev_lock.lock();
        *rev += 1;
        let frame = body(*rev);
        for shard in &self.shards {
            shard.send(Input::Frame {
                room,
                rev: *rev,
                frame: frame.clone(),
            });
        }
    }
}

/// A running ceiling server.
pub(crate) struct Ceiling {
    local_addr: SocketAddr,
    hub: Arc<Hub>,
    acceptor_waker: Arc<Waker>,
    threads: Vec<JoinHandle<()>>,
}

impl Ceiling {
    /// Binds `listen` and starts the acceptor and `shards` shard threads.
    ///
    /// # Errors
    ///
    /// If the address cannot be bound or a thread or poller cannot be created.
    pub(crate) fn start(listen: SocketAddr, shards: usize) -> io::Result<Self> {
        let mut listener = TcpListener::bind(listen)?;
        let local_addr = listener.local_addr()?;
        let mut polls = Vec::new();
        let mut links = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..shards.max(1) {
            let poll = Poll::new()?;
            let (sender, receiver) = crossbeam_channel::unbounded();
            links.push(ShardLink {
                sender,
                waker: Waker::new(poll.registry(), WAKER)?,
                pending: AtomicBool::new(false),
            });
            polls.push(poll);
            receivers.push(receiver);
        }
        let hub = Arc::new(Hub {
            shards: links,
            rooms: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
        });
        let mut threads = Vec::new();
        for (index, (poll, receiver)) in polls.into_iter().zip(receivers).enumerate() {
            let shard = Shard::new(index, poll, receiver, Arc::clone(&hub));
            threads.push(
                std::thread::Builder::new()
                    .name(format!("ceiling-shard-{index}"))
                    .spawn(move || shard.run())?,
            );
        }
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let acceptor_waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let accept_hub = Arc::clone(&hub);
        threads.push(
            std::thread::Builder::new()
                .name("ceiling-acceptor".into())
                .spawn(move || accept(poll, listener, &accept_hub))?,
        );
        Ok(Self {
            local_addr,
            hub,
            acceptor_waker,
            threads,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops every thread and waits for them; open connections are dropped.
    pub(crate) fn shutdown(self) {
        self.hub.stop.store(true, Ordering::Release);
        let _ = self.acceptor_waker.wake();
        for shard in &self.hub.shards {
            let _ = shard.waker.wake();
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

fn accept(mut poll: Poll, listener: TcpListener, hub: &Hub) {
    let mut events = Events::with_capacity(64);
    let mut next = 0usize;
    while !hub.stop.load(Ordering::Acquire) {
        if poll
            .poll(&mut events, Some(Duration::from_millis(250)))
            .is_err()
        {
            continue;
        }
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    hub.shards[next % hub.shards.len()].send(Input::Connection(stream));
                    next = next.wrapping_add(1);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
}

/// One connection of the ceiling.
struct Conn {
    stream: TcpStream,
    /// Until the upgrade: the request so far.
    request: Option<Vec<u8>>,
    inbuf: Vec<u8>,
    queue: VecDeque<Bytes>,
    written: usize,
    room: Option<(usize, Arc<Mutex<u64>>)>,
    /// Where the connection sits in its room's member list.
    slot: usize,
    native: bool,
    participant: Vec<u8>,
    /// Whether it has had its snapshot (frames go only to those that have).
    joined: bool,
    dirty: bool,
}

/// A room as one shard sees it: its members here and the last revision drained.
#[derive(Default)]
struct LocalRoom {
    members: Vec<usize>,
    rev: u64,
}

struct Shard {
    index: usize,
    poll: Poll,
    inputs: Receiver<Input>,
    hub: Arc<Hub>,
    conns: Slab<Conn>,
    rooms: HashMap<usize, LocalRoom>,
    /// This turn's frames, per room.
    batches: HashMap<usize, BytesMut>,
    dirty: Vec<usize>,
    read: Vec<u8>,
}

impl Shard {
    fn new(index: usize, poll: Poll, inputs: Receiver<Input>, hub: Arc<Hub>) -> Self {
        Self {
            index,
            poll,
            inputs,
            hub,
            conns: Slab::new(),
            rooms: HashMap::new(),
            batches: HashMap::new(),
            dirty: Vec::new(),
            read: vec![0; READ_BUFFER],
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        while !self.hub.stop.load(Ordering::Acquire) {
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(Duration::from_millis(250)))
            {
                if e.kind() != io::ErrorKind::Interrupted {
                    return;
                }
            }
            for event in events.iter() {
                let key = event.token().0;
                if event.token() == WAKER {
                    continue;
                }
                if event.is_writable() {
                    self.mark(key);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.readable(key);
                }
            }
            // AcqRel: pairs with the swap in `ShardLink::send`.
            self.hub.shards[self.index]
                .pending
                .swap(false, Ordering::AcqRel);
            while let Ok(input) = self.inputs.try_recv() {
                self.input(input);
            }
            self.hand_out();
            self.flush_dirty();
        }
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Connection(mut stream) => {
                let entry = self.conns.vacant_entry();
                let interest = Interest::READABLE | Interest::WRITABLE;
                if self
                    .poll
                    .registry()
                    .register(&mut stream, Token(entry.key()), interest)
                    .is_ok()
                {
                    entry.insert(Conn {
                        stream,
                        request: Some(Vec::new()),
                        inbuf: Vec::new(),
                        queue: VecDeque::new(),
                        written: 0,
                        room: None,
                        slot: 0,
                        native: false,
                        participant: Vec::new(),
                        joined: false,
                        dirty: false,
                    });
                }
            }
            Input::Frame { room, rev, frame } => {
                self.rooms.entry(room).or_default().rev = rev;
                self.batches
                    .entry(room)
                    .or_default()
                    .extend_from_slice(&frame);
            }
        }
    }

    /// Gives each room's frames of this turn, as one shared buffer, to its clients here.
    fn hand_out(&mut self) {
        for (room, batch) in self.batches.drain() {
            let Some(local) = self.rooms.get(&room) else {
                continue;
            };
            let batch = batch.freeze();
            for &key in &local.members {
                if let Some(conn) = self.conns.get_mut(key) {
                    if conn.joined {
                        conn.queue.push_back(batch.clone());
                        if !conn.dirty {
                            conn.dirty = true;
                            self.dirty.push(key);
                        }
                    }
                }
            }
        }
    }

    fn mark(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    fn flush_dirty(&mut self) {
        for key in std::mem::take(&mut self.dirty) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            if write_queue(conn).is_err() {
                self.remove(key);
            }
        }
    }

    fn readable(&mut self, key: usize) {
        let mut buf = std::mem::take(&mut self.read);
        while let Some(conn) = self.conns.get_mut(key) {
            match conn.stream.read(&mut buf) {
                Ok(0) => {
                    self.remove(key);
                    break;
                }
                Ok(n) => {
                    if self.ingest(key, &mut buf[..n]).is_err() {
                        self.remove(key);
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.remove(key);
                    break;
                }
            }
        }
        self.read = buf;
        self.mark(key);
    }

    fn ingest(&mut self, key: usize, data: &mut [u8]) -> Result<(), ()> {
        let conn = self.conns.get_mut(key).ok_or(())?;
        if let Some(request) = conn.request.as_mut() {
            request.extend_from_slice(data);
            let Some((upgrade, used)) = upgrade::parse_request(request).map_err(|_| ())? else {
                return Ok(());
            };
            let rest = request.split_off(used);
            conn.request = None;
            conn.native = upgrade.response.windows(12).any(|w| w == b"deltasync.v1");
            conn.queue.push_back(Bytes::from(upgrade.response));
            let (room, rev) = self.hub.room(&upgrade.path);
            conn.room = Some((room, rev));
            let local = self.rooms.entry(room).or_default();
            conn.slot = local.members.len();
            local.members.push(key);
            let mut rest = rest;
            return self.frames(key, &mut rest);
        }
        if conn.inbuf.is_empty() {
            self.frames(key, data)
        } else {
            let mut held = std::mem::take(&mut conn.inbuf);
            held.extend_from_slice(data);
            self.frames(key, &mut held)
        }
    }

    /// Handles every whole frame of `data`; keeps the rest for the next read.
    fn frames(&mut self, key: usize, data: &mut [u8]) -> Result<(), ()> {
        let mut at = 0;
        while let Some(f) = frame::parse(&data[at..], MAX_CLIENT_FRAME).map_err(|_| ())? {
            let body = &mut data[at + f.payload_at..at + f.len()];
            if let Some(mask) = f.mask {
                frame::apply_mask(body, mask);
            }
            match f.opcode {
                frame::TEXT => self.message(key, body),
                frame::CLOSE => return Err(()),
                _ => {}
            }
            at += f.len();
        }
        if let Some(conn) = self.conns.get_mut(key) {
            conn.inbuf.extend_from_slice(&data[at..]);
        }
        Ok(())
    }

    fn message(&mut self, key: usize, text: &[u8]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some((room, rev_lock)) = conn.room.clone() else {
            return;
        };
        match scan::client_message(text) {
            Ok(ClientMessage::Join { participant_id }) => {
                conn.participant = participant_id.to_vec();
                conn.joined = true;
                let rev = self.rooms.get(&room).map_or(0, |r| r.rev);
                conn.queue.push_back(snapshot(rev, conn.native));
            }
            Ok(ClientMessage::Update {
                client_req_id,
                name,
            }) => {
                let participant = &conn.participant;
                let name = name.unwrap_or_default();
                self.hub.publish(room, &rev_lock, |rev| {
                    deltas_frame(rev, participant, name, client_req_id)
                });
            }
            Ok(ClientMessage::Other) | Err(_) => {}
        }
    }

    fn remove(&mut self, key: usize) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        if let Some((room, _)) = conn.room {
            if let Some(local) = self.rooms.get_mut(&room) {
                local.members.swap_remove(conn.slot);
                if let Some(&moved) = local.members.get(conn.slot) {
                    if let Some(other) = self.conns.get_mut(moved) {
                        other.slot = conn.slot;
                    }
                }
            }
        }
    }
}

/// Writes the queued frames with vectored writes until done or the socket is full.
fn write_queue(conn: &mut Conn) -> io::Result<()> {
    while !conn.queue.is_empty() {
        let mut slices = [IoSlice::new(&[]); FRAMES_PER_WRITE];
        let mut count = 0;
        for (i, frame) in conn.queue.iter().take(FRAMES_PER_WRITE).enumerate() {
            let skip = if i == 0 { conn.written } else { 0 };
            slices[count] = IoSlice::new(&frame[skip..]);
            count += 1;
        }
        match conn.stream.write_vectored(&slices[..count]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(mut n) => {
                while let Some(front) = conn.queue.front() {
                    let left = front.len() - conn.written;
                    if n < left {
                        conn.written += n;
                        break;
                    }
                    n -= left;
                    conn.written = 0;
                    conn.queue.pop_front();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn server_frame(body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + 10);
    out.extend_from_slice(frame::Header::new(frame::TEXT, body.len(), None).as_bytes());
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// An empty `SYNC.SNAPSHOT` at `rev` (with an epoch in the native dialect).
fn snapshot(rev: u64, native: bool) -> Bytes {
    let epoch = if native { r#","epoch":"ceiling""# } else { "" };
    let body = format!(
        r#"{{"type":"SYNC.SNAPSHOT","meta":{{}},"payload":{{"rev":{rev}{epoch},"participants":{{}}}}}}"#
    );
    server_frame(body.as_bytes())
}

/// The `SYNC.DELTAS` frame of one update, byte for byte what the server sends for it
/// alone (`participant.updated` setting the name, with the update's `clientReqId`).
fn deltas_frame(rev: u64, participant: &[u8], name: &[u8], client_req_id: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(200 + name.len());
    let mut digits = itoa::Buffer::new();
    body.extend_from_slice(br#"{"type":"SYNC.DELTAS","meta":{},"payload":{"fromRev":"#);
    body.extend_from_slice(digits.format(rev - 1).as_bytes());
    body.extend_from_slice(br#","toRev":"#);
    body.extend_from_slice(digits.format(rev).as_bytes());
    body.extend_from_slice(br#","operations":[{"rev":"#);
    body.extend_from_slice(digits.format(rev).as_bytes());
    body.extend_from_slice(br#","type":"participant.updated","payload":{"id":""#);
    body.extend_from_slice(participant);
    body.extend_from_slice(br#"","name":""#);
    body.extend_from_slice(name);
    body.extend_from_slice(br#""},"clientReqId":""#);
    body.extend_from_slice(client_req_id);
    body.extend_from_slice(br#""}]}}"#);
    server_frame(&body)
}

#[cfg(test)]
mod tests {
    use deltasync::model::presence::{ParticipantChange, PresenceOp};
    use deltasync::protocol::encode;

    use super::*;

    #[test]
    fn the_frame_is_the_servers_own_message_for_that_update() {
        let op = PresenceOp::Updated(ParticipantChange {
            id: "c0".into(),
            name: Some("w0-xxxx".into()),
            ..ParticipantChange::default()
        });
        let encoded = encode::operation(42, &op, Some("b1.0.7.100")).unwrap();
        let server = encode::deltas(41, 42, &[encoded]);
        let ours = deltas_frame(42, b"c0", b"w0-xxxx", b"b1.0.7.100");
        let frame = frame::parse(&ours, 1 << 20).unwrap().unwrap();
        assert_eq!(&ours[frame.payload_at..], &server[..]);
    }
}
