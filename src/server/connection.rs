//! One client connection on a shard: the HTTP upgrade, then WebSocket frames in and out
//! around its [`Session`], then an orderly close.
//!
//! Reads come from the shard's buffer (see `ws_io`); writes go out of the connection's
//! [`Outbox`] with one vectored write per flush. A connection never holds a queue of
//! operations: when its socket can take bytes and its outbox is empty, it asks its session
//! for everything due, which the session builds from shared buffers.
//!
//! The socket is a [`Transport`]: a mio `TcpStream` on the shards, an in-memory stream when
//! the fuzz target drives a connection without sockets (`server::fuzzing`).
//!
//! ## Flow control
//!
//! A connection reads at most [`READ_BUDGET`] bytes and handles at most
//! [`MESSAGES_PER_TURN`] messages per turn of its shard's loop, then says `ReadMore`. Its
//! first message over the rate is refused by the session (`RESOURCE_EXHAUSTED`,
//! `retryAfterMs`); from then on, until the peer has nothing more to send, a message that
//! finds no token is not handed over: the rest of the read is held and the connection
//! says `Paused` until its next token is due, and the shard does not read it before
//! then. A peer that trickles (four reads in a row of fewer than 64 bytes completing no
//! message) is paused for 20 ms the same way, and again after one read if that read is a
//! trickle too. Nothing read is lost: held input is handed over first when reading resumes.

use std::io;
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpStream;
use tungstenite::Message;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocketContext};

use super::endpoints::{Endpoints, Port};
use super::handshake::{self, Outcome, Policy};
use super::metrics::{Counted, ShardCounters};
use super::outbox::{Outbox, Written};
use super::shared::Shared;
use super::ws_io::WsIo;
use crate::frame;
use crate::model::Model;
use crate::room::Room;
use crate::session::{CloseReason, DeltaCache, Session};

/// How long a closing connection waits for the peer's side of the close.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// How many replies a pipelined batch may queue before they are written out mid-batch.
const REPLY_BATCH: usize = 16;
/// How many bytes one connection may read per event-loop turn before others get theirs:
/// one fill of the shard's read buffer. A message of the largest allowed size may need
/// several turns; each turn decodes at most this much of it.
pub(super) const READ_BUDGET: usize = 64 * 1024;
/// How many WebSocket messages (control frames included) one connection may have handled
/// per event-loop turn before others get theirs. Handling a small message costs a few
/// microseconds (decode, commit, reply), so a pipelining client holds its shard for at
/// most a few hundred microseconds per turn; then it waits behind everyone else's events.
/// Not a configuration key: it trades nothing a user could want to tune (a client's
/// throughput is bounded by its message rate, not by this).
pub(super) const MESSAGES_PER_TURN: usize = 32;
/// A read of fewer bytes than this that completes no message is a trickle.
const TRICKLE_BYTES: usize = 64;
/// After this many trickles in a row, the connection is not read for `TRICKLE_PAUSE`.
const TRICKLE_READS: u8 = 4;
/// How long a trickling connection is left unread, so that its bytes arrive in one read
/// instead of one event and two system calls each (a client sending a frame a byte at a
/// time). A well-behaved client sends a message in one or two writes and never trickles
/// four times in a row; if it did, its message would be 20 ms late, no more.
const TRICKLE_PAUSE: Duration = Duration::from_millis(20);
/// The granularity of a rate pause: a connection resumes at the first whole millisecond
/// after its next token is due (mio's poll timeout has millisecond resolution, and a
/// resume a hair early would find no token and pause again).
const PAUSE_GRANULARITY: Duration = Duration::from_millis(1);

/// The shard's scratch space, shared by its connections one at a time.
pub(super) struct Scratch {
    /// Where sockets are read into.
    pub(super) read: Box<[u8]>,
    /// Everything else.
    pub(super) work: Work,
}

/// The scratch space besides the read buffer.
pub(super) struct Work {
    /// Frames tungstenite wrote (pongs, close frames).
    pub(super) control: Vec<u8>,
    /// Messages a session has due.
    pub(super) transmit: Vec<Bytes>,
    /// The shard's shared delta messages.
    pub(super) cache: DeltaCache,
    /// What the shard counts (`/metrics`).
    pub(super) counters: Arc<ShardCounters>,
}

/// The byte stream a connection reads and writes: non-blocking (`WouldBlock` when it has
/// nothing to give or can take nothing more).
pub(super) trait Transport: io::Read + io::Write {
    /// Ends our side of the stream (TCP `shutdown(Write)`), after the last bytes.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Writes out bytes the stream itself still holds from earlier writes it took (TLS
    /// records the socket could not take yet); `Ok(false)` while the socket cannot take
    /// them all. A plain socket holds nothing.
    fn write_held(&mut self) -> io::Result<bool> {
        Ok(true)
    }
}

impl Transport for TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// One connection.
pub(super) struct Connection<M: Model, S = TcpStream> {
    stream: S,
    phase: Phase<M>,
    outbox: Outbox,
    /// The last write hit `WouldBlock`: nothing more is written before `WRITABLE`.
    write_blocked: bool,
}

enum Phase<M: Model> {
    /// Waiting for the whole HTTP upgrade request.
    Handshake { request: Vec<u8>, deadline: Instant },
    /// A WebSocket with its session.
    Open(Box<Open<M>>),
    /// Our last bytes are going out; then we wait for the peer to close, up to `deadline`.
    /// `room` is the room the connection still counts in (none for a refused upgrade),
    /// until it is dropped.
    Closing {
        deadline: Instant,
        shut: bool,
        room: Option<Arc<Room<M>>>,
    },
}

struct Open<M: Model> {
    ws: WebSocketContext,
    session: Session<M>,
    /// The answer to the latest ping, not written yet. Only the latest is kept (RFC 6455
    /// §5.5.3 allows it): a peer that pings without reading must not grow a queue.
    pong: Option<Bytes>,
    /// Input read from the socket and not yet handed to tungstenite: the connection
    /// stopped in the middle of a read (its turn's budget or its rate budget was spent).
    /// At most one read's worth: the socket is not read again while input is held.
    held: Vec<u8>,
    /// Whether input is held, in `held` or in tungstenite's own buffer (which may hold
    /// whole frames): the next read hands it over before reading the socket.
    holding: bool,
    /// Reading is paused until then: the rate budget is spent, or the peer trickles.
    paused_until: Option<Instant>,
    /// The peer was refused a message over the rate and has not run out of input since:
    /// its next messages wait for tokens (the socket is not read meanwhile) instead of
    /// being refused one by one.
    throttled: bool,
    /// Trickles in a row (reads of a few bytes that complete no message).
    trickles: u8,
}

/// What the shard should do with a connection after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Keep it; nothing special.
    Keep,
    /// Keep it; it used its turn's budget and has more to read.
    ReadMore,
    /// Keep it; read it again at this instant, not before (it spent its rate budget, or
    /// it trickles).
    Paused(Instant),
    /// Drop it.
    Drop,
}

impl<M: Model, S: Transport> Connection<M, S> {
    pub(super) fn new(stream: S, now: Instant, handshake_timeout: Duration) -> Self {
        Self {
            stream,
            phase: Phase::Handshake {
                request: Vec::new(),
                deadline: now + handshake_timeout,
            },
            outbox: Outbox::default(),
            write_blocked: false,
        }
    }

    pub(super) fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Whether the connection is still waiting for its whole HTTP upgrade request.
    pub(super) fn is_upgrading(&self) -> bool {
        matches!(self.phase, Phase::Handshake { .. })
    }

    /// The room the connection counts in: from its upgrade until it is dropped, closing
    /// included.
    pub(super) fn room(&self) -> Option<&Arc<Room<M>>> {
        match &self.phase {
            Phase::Open(open) => Some(open.session.room()),
            Phase::Closing { room, .. } => room.as_ref(),
            Phase::Handshake { .. } => None,
        }
    }

    /// Reads what the socket has and acts on it, within the turn's budget
    /// ([`READ_BUDGET`] bytes, [`MESSAGES_PER_TURN`] messages) and the rate budget: input
    /// held since the connection last stopped comes first; while it is paused (for its
    /// rate, or because it trickles), nothing is read at all (TCP then slows the peer
    /// down).
    pub(super) fn on_readable(
        &mut self,
        shared: &Shared<M>,
        scratch: &mut Scratch,
        now: Instant,
    ) -> Next {
        if self.is_paused(now) {
            return Next::Keep;
        }
        let Scratch { read, work } = scratch;
        let mut messages = MESSAGES_PER_TURN;
        let mut next = self.resume_held(work, now, &mut messages);
        if next == Next::Keep {
            next = self.read_socket(read, shared, work, now, &mut messages);
        }
        if next == Next::Drop || self.flush(work) == Next::Drop {
            return Next::Drop;
        }
        next
    }

    /// Whether reading is paused at `now` (for its rate, or because it trickles).
    pub(super) fn is_reading_paused(&self, now: Instant) -> bool {
        match &self.phase {
            Phase::Open(open) => open.paused_until.is_some_and(|until| now < until),
            _ => false,
        }
    }

    /// Whether reading is paused at `now`; a pause that is over is cleared.
    fn is_paused(&mut self, now: Instant) -> bool {
        let Phase::Open(open) = &mut self.phase else {
            return false;
        };
        match open.paused_until {
            Some(until) if now < until => true,
            Some(_) => {
                open.paused_until = None;
                false
            }
            None => false,
        }
    }

    /// Hands over the input held since the connection last stopped, if any.
    fn resume_held(&mut self, work: &mut Work, now: Instant, messages: &mut usize) -> Next {
        let Phase::Open(open) = &mut self.phase else {
            return Next::Keep;
        };
        if !open.holding {
            return Next::Keep;
        }
        let held = std::mem::take(&mut open.held);
        self.frames_input(&held, work, now, messages)
    }

    /// Reads the socket until it has nothing more, the turn's budget is spent or the
    /// connection stops.
    fn read_socket(
        &mut self,
        read: &mut [u8],
        shared: &Shared<M>,
        work: &mut Work,
        now: Instant,
        messages: &mut usize,
    ) -> Next {
        let mut total = 0;
        loop {
            if total >= READ_BUDGET {
                return Next::ReadMore;
            }
            let limit = read.len().min(READ_BUDGET - total);
            let n = match self.stream.read(&mut read[..limit]) {
                Ok(0) => return Next::Drop,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained();
                    return Next::Keep;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "read failed");
                    return Next::Drop;
                }
            };
            total += n;
            work.counters.reads.incr();
            work.counters.bytes_read.add(n as u64);
            let input = &read[..n];
            let before = *messages;
            let step = match &mut self.phase {
                Phase::Handshake { .. } => self.handshake_input(input, shared, work, now, messages),
                Phase::Open(_) => self.frames_input(input, work, now, messages),
                // Whatever a closing peer still sends is discarded.
                Phase::Closing { .. } => Next::Keep,
            };
            if step != Next::Keep {
                return step;
            }
            if let Some(until) = self.trickled(n, *messages < before, now) {
                return Next::Paused(until);
            }
        }
    }

    /// Counts a read of `n` bytes that did or did not complete a `message`; after
    /// `TRICKLE_READS` trickles in a row, pauses reading for `TRICKLE_PAUSE` and says until
    /// when.
    ///
    /// A paused trickler stays one trickle short of the next pause, so that if the first
    /// read after the pause is a trickle too it is paused again at once: one read per
    /// pause, instead of a few events and two reads per byte until the count is full
    /// again. A short read that completes a message (assembled from trickles) takes one
    /// off the count; a read of `TRICKLE_BYTES` or more clears it.
    fn trickled(&mut self, n: usize, message: bool, now: Instant) -> Option<Instant> {
        let Phase::Open(open) = &mut self.phase else {
            return None;
        };
        if n >= TRICKLE_BYTES {
            open.trickles = 0;
            return None;
        }
        if message {
            open.trickles = open.trickles.saturating_sub(1);
            return None;
        }
        open.trickles += 1;
        if open.trickles < TRICKLE_READS {
            return None;
        }
        open.trickles = TRICKLE_READS - 1;
        let until = now + TRICKLE_PAUSE;
        open.paused_until = Some(until);
        Some(until)
    }

    /// The peer has nothing more to send for now: a throttled connection that caught up
    /// is refused by name again the next time it goes over its rate.
    fn drained(&mut self) {
        if let Phase::Open(open) = &mut self.phase {
            open.throttled = false;
        }
    }

    fn handshake_input(
        &mut self,
        input: &[u8],
        shared: &Shared<M>,
        work: &mut Work,
        now: Instant,
        messages: &mut usize,
    ) -> Next {
        let Phase::Handshake { request, .. } = &mut self.phase else {
            return Next::Keep;
        };
        request.extend_from_slice(input);
        let policy = Policy {
            token: shared.token(),
            max_request_bytes: shared.max_request_bytes,
        };
        match handshake::handshake(request, policy) {
            Outcome::Partial => Next::Keep,
            Outcome::Refused(refusal) => {
                tracing::debug!(status = refusal.status, "upgrade refused");
                self.refuse(refusal.response, now)
            }
            Outcome::Plain {
                method,
                path,
                otherwise,
            } => {
                let answer = shared
                    .answer(Port::Public, &method, &path)
                    .unwrap_or(otherwise);
                self.refuse(answer.response, now)
            }
            Outcome::Upgrade { upgrade, consumed } => {
                let leftover = request.split_off(consumed);
                let room = match shared.registry.connect(&upgrade.room) {
                    Ok(room) => room,
                    Err(refused) => {
                        let body = refused.describe(shared.max_rooms);
                        let refusal = handshake::refusal(503, &body, &[("Retry-After", "5")]);
                        return self.refuse(refusal.response, now);
                    }
                };
                self.outbox.push_raw(upgrade.response);
                let ws = WebSocketContext::new(Role::Server, Some(shared.ws_config()));
                let mut session = Session::new(room, upgrade.dialect, shared.session.clone(), now);
                session.count_into(Arc::clone(&work.counters.session));
                self.phase = Phase::Open(Box::new(Open {
                    ws,
                    session,
                    pong: None,
                    held: Vec::new(),
                    holding: false,
                    paused_until: None,
                    throttled: false,
                    trickles: 0,
                }));
                if leftover.is_empty() {
                    return Next::Keep;
                }
                self.frames_input(&leftover, work, now, messages)
            }
        }
    }

    /// Sends an HTTP refusal and closes.
    fn refuse(&mut self, response: Bytes, now: Instant) -> Next {
        self.outbox.push_raw(response);
        self.phase = Phase::Closing {
            deadline: now + CLOSE_LINGER,
            shut: false,
            room: None,
        };
        Next::Keep
    }

    /// Hands WebSocket bytes to tungstenite and the messages to the session, until the
    /// input runs out (`Keep`), the turn's message budget is spent (`ReadMore`) or the
    /// rate budget of a throttled connection is (`Paused`); when it stops early, the rest
    /// of `input` is held for the next read.
    ///
    /// A message over the rate is refused by name (the session's `RESOURCE_EXHAUSTED`
    /// with `retryAfterMs`) when the connection was reading freely; the connection is then
    /// throttled, and its next messages wait for tokens instead, until it has nothing
    /// more to send (see `drained`).
    fn frames_input(
        &mut self,
        input: &[u8],
        work: &mut Work,
        now: Instant,
        messages: &mut usize,
    ) -> Next {
        let Phase::Open(open) = &mut self.phase else {
            return Next::Keep;
        };
        let mut io = WsIo::new(input, &mut work.control);
        let ended = loop {
            if let Some(stop) = stop_reason(open, now, *messages) {
                open.held.extend_from_slice(io.rest());
                open.holding = true;
                if let Next::Paused(until) = stop {
                    open.paused_until = Some(until);
                }
                break Ended::Stopped(stop);
            }
            // Replies to a long pipelined batch go out as they pile up, so that only a
            // peer that does not read them reaches the session's limit of unread replies.
            if open.session.queued_replies() >= REPLY_BATCH && !self.write_blocked {
                queue_due(open, &mut self.outbox, &mut work.cache, &mut work.transmit);
                let mut stream = Counted::new(&mut self.stream, &work.counters);
                match self.outbox.write_to(&mut stream) {
                    Ok(Written::All) => {}
                    Ok(Written::Blocked) => self.write_blocked = true,
                    Err(_) => return Next::Drop,
                }
            }
            let message = match open.ws.read(&mut io) {
                Ok(message) => message,
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    open.holding = false;
                    break Ended::Input;
                }
                Err(e) => break Ended::Closed(read_error(open, e, now)),
            };
            *messages = messages.saturating_sub(1);
            match message {
                Message::Text(text) => {
                    if open.session.rate_wait(now).is_some() {
                        // Refused by the session, by name; the next ones wait.
                        open.throttled = true;
                    }
                    let commits = work.counters.session.updates_committed.get();
                    open.session.handle_message(text.as_bytes(), now);
                    if work.counters.session.updates_committed.get() != commits {
                        work.counters.committed_since(now);
                    }
                }
                Message::Binary(_) => open.session.reject_binary(now),
                // Control frames show the peer is alive, as any message does.
                Message::Ping(_) | Message::Pong(_) => open.session.heard(now),
                Message::Frame(_) => {}
                // tungstenite has queued its answer; `end` writes it out.
                Message::Close(_) => break Ended::Closed(None),
            }
        };
        self.take_control(work);
        if let Some(reason) = open_close_reason(&self.phase) {
            return self.close(reason.0, reason.1, work, now);
        }
        match ended {
            Ended::Input => Next::Keep,
            Ended::Stopped(next) => next,
            Ended::Closed(None) => self.end(None, work, now),
            Ended::Closed(Some((code, reason))) => self.close(code, reason, work, now),
        }
    }

    /// Takes the frames tungstenite wrote: a pong becomes the one pong due (replacing an
    /// older one not written yet), anything else (a close frame) goes to the outbox.
    fn take_control(&mut self, work: &mut Work) {
        let mut rest = &work.control[..];
        while let Some(control) = control_frame(rest) {
            let (bytes, tail) = rest.split_at(control.len());
            match &mut self.phase {
                Phase::Open(open) if control.opcode == frame::PONG => {
                    open.pong = Some(Bytes::copy_from_slice(bytes));
                }
                _ => self.outbox.push_raw(Bytes::copy_from_slice(bytes)),
            }
            rest = tail;
        }
        // tungstenite only writes control frames; anything else would go out as it is.
        self.outbox.push_raw(Bytes::copy_from_slice(rest));
        work.control.clear();
    }

    /// Closes with `code`: the session's last replies, then the close frame.
    pub(super) fn close(
        &mut self,
        code: CloseCode,
        reason: &str,
        work: &mut Work,
        now: Instant,
    ) -> Next {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        self.end(Some(frame), work, now)
    }

    /// Ends the WebSocket: the session's last messages, then a close frame: `frame`, or,
    /// when the peer closed first, the answer tungstenite queued for its close frame.
    fn end(&mut self, frame: Option<CloseFrame>, work: &mut Work, now: Instant) -> Next {
        let Phase::Open(open) = &mut self.phase else {
            return Next::Keep;
        };
        // A ping received before the close is still owed its pong.
        queue_due(open, &mut self.outbox, &mut work.cache, &mut work.transmit);
        let mut io = WsIo::new(&[], &mut work.control);
        // While the WebSocket is active this queues and writes `frame`; after the peer's
        // close it writes the queued answer (a queued frame is only written by a later
        // call, never by the `read` that returned the peer's close) and then reports the
        // connection closed, which we know.
        let _ = open.ws.close(&mut io, frame);
        self.take_control(work);
        self.begin_closing(work, now)
    }

    fn begin_closing(&mut self, work: &mut Work, now: Instant) -> Next {
        self.take_control(work);
        let room = self.room().cloned();
        // Dropping the session detaches its participant; the connection still counts in
        // its room (`Registry::disconnect`) until the shard drops it.
        self.phase = Phase::Closing {
            deadline: now + CLOSE_LINGER,
            shut: false,
            room,
        };
        Next::Keep
    }

    /// The socket can take bytes again.
    pub(super) fn on_writable(&mut self, work: &mut Work) -> Next {
        self.write_blocked = false;
        self.flush(work)
    }

    /// Whether the connection should be flushed when its room moves.
    pub(super) fn can_flush(&self) -> bool {
        !self.write_blocked && matches!(self.phase, Phase::Open(_))
    }

    /// Writes what is due: the outbox, and (when it is empty) the pong due and everything
    /// the session has due, as one vectored write.
    pub(super) fn flush(&mut self, work: &mut Work) -> Next {
        loop {
            if self.write_blocked {
                return Next::Keep;
            }
            if self.outbox.is_empty() {
                match &mut self.phase {
                    Phase::Open(open) if open.pong.is_some() || open.session.wants_transmit() => {
                        queue_due(open, &mut self.outbox, &mut work.cache, &mut work.transmit);
                    }
                    Phase::Closing { .. } => return self.shut_when_written(),
                    _ => return self.write_out_held(),
                }
            }
            match self
                .outbox
                .write_to(&mut Counted::new(&mut self.stream, &work.counters))
            {
                Ok(Written::All) => {}
                Ok(Written::Blocked) => {
                    self.write_blocked = true;
                    return Next::Keep;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "write failed");
                    return Next::Drop;
                }
            }
        }
    }

    /// Writes out what the stream still holds (TLS records), now that the outbox is
    /// empty: a write the stream took whole may not have reached the socket whole.
    /// Inlined: on every flush of a plain connection it is one comparison.
    #[inline]
    fn write_out_held(&mut self) -> Next {
        match self.stream.write_held() {
            Ok(true) => Next::Keep,
            Ok(false) => {
                self.write_blocked = true;
                Next::Keep
            }
            Err(e) => {
                tracing::debug!(error = %e, "write failed");
                Next::Drop
            }
        }
    }

    /// A closing connection whose outbox is empty: once the stream holds nothing more,
    /// ends our side of it.
    fn shut_when_written(&mut self) -> Next {
        let next = self.write_out_held();
        if next == Next::Drop || self.write_blocked {
            return next;
        }
        if let Phase::Closing { shut, .. } = &mut self.phase {
            if !*shut {
                *shut = true;
                let _ = self.stream.shutdown_write();
            }
        }
        Next::Keep
    }

    /// Checks the handshake, idle and closing deadlines.
    pub(super) fn on_tick(&mut self, work: &mut Work, now: Instant) -> Next {
        match &mut self.phase {
            Phase::Handshake { deadline, .. } if now >= *deadline => {
                tracing::debug!("handshake timed out");
                Next::Drop
            }
            Phase::Closing { deadline, .. } if now >= *deadline => Next::Drop,
            Phase::Open(open) => match open.session.handle_timeout(now) {
                Some(reason) => {
                    let (code, text) = close_code(reason);
                    let next = self.close(code, text, work, now);
                    if next == Next::Drop {
                        next
                    } else {
                        self.flush(work)
                    }
                }
                None => Next::Keep,
            },
            _ => Next::Keep,
        }
    }

    /// The server is stopping: everything due (up to the room's head), then a close frame
    /// with `code` and `reason`.
    pub(super) fn shut_down(
        &mut self,
        (code, reason): (CloseCode, &str),
        work: &mut Work,
        now: Instant,
    ) -> Next {
        match self.phase {
            Phase::Open(_) => {
                self.close(code, reason, work, now);
                self.flush(work)
            }
            Phase::Handshake { .. } => Next::Drop,
            Phase::Closing { .. } => Next::Keep,
        }
    }

    /// Releases what the connection holds before it is dropped.
    pub(super) fn release(&mut self) {
        self.outbox.clear();
        if let Phase::Open(open) = &mut self.phase {
            open.session.close();
        }
    }
}

/// The whole control frame (final, unmasked, a payload of at most 125 bytes) at the start
/// of `bytes`, if one is there.
fn control_frame(bytes: &[u8]) -> Option<frame::Frame> {
    frame::parse(bytes, frame::MAX_CONTROL_PAYLOAD)
        .ok()
        .flatten()
        .filter(|found| found.fin && found.is_control() && found.mask.is_none())
}

/// Moves everything due to `outbox`: the pong owed, then the session's messages.
fn queue_due<M: Model>(
    open: &mut Open<M>,
    outbox: &mut Outbox,
    cache: &mut DeltaCache,
    transmit: &mut Vec<Bytes>,
) {
    if let Some(pong) = open.pong.take() {
        outbox.push_raw(pong);
    }
    let _ = open.session.poll_transmit(cache, transmit);
    for message in transmit.drain(..) {
        outbox.push_text(message);
    }
}

/// How the handling of a connection's input ended.
enum Ended {
    /// The input ran out.
    Input,
    /// It stopped early (`ReadMore` or `Paused`); the rest of the input is held.
    Stopped(Next),
    /// The WebSocket ends: the peer closed (`None`) or we close with this code.
    Closed(Option<(CloseCode, &'static str)>),
}

/// Why an open connection must stop handling input now, if it must: its turn's message
/// budget is spent (`ReadMore`), or it is throttled and has no token (`Paused` until the
/// next one is due).
fn stop_reason<M: Model>(open: &Open<M>, now: Instant, messages: usize) -> Option<Next> {
    if messages == 0 {
        return Some(Next::ReadMore);
    }
    if !open.throttled {
        return None;
    }
    let wait = open.session.rate_wait(now)?;
    Some(Next::Paused(now + wait + PAUSE_GRANULARITY))
}

/// What a read error of tungstenite means: the peer closed (`None`), or the code and
/// reason we close with. A message over the size limit is answered first.
fn read_error<M: Model>(
    open: &mut Open<M>,
    error: tungstenite::Error,
    now: Instant,
) -> Option<(CloseCode, &'static str)> {
    match error {
        tungstenite::Error::Capacity(e) => {
            if let tungstenite::error::CapacityError::MessageTooLong { size, max_size } = e {
                open.session.reject_oversized(size, max_size, now);
            }
            Some((CloseCode::Size, "message too large"))
        }
        tungstenite::Error::Utf8(_) => Some((CloseCode::Invalid, "invalid UTF-8")),
        tungstenite::Error::Protocol(e) => {
            tracing::debug!(error = %e, "WebSocket protocol error");
            Some((CloseCode::Protocol, "WebSocket protocol error"))
        }
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => None,
        e => {
            tracing::debug!(error = %e, "WebSocket error");
            Some((CloseCode::Error, "internal error"))
        }
    }
}

fn open_close_reason<M: Model>(phase: &Phase<M>) -> Option<(CloseCode, &'static str)> {
    match phase {
        Phase::Open(open) => open.session.close_reason().map(close_code),
        _ => None,
    }
}

fn close_code(reason: CloseReason) -> (CloseCode, &'static str) {
    match reason {
        CloseReason::Idle => (CloseCode::Normal, "idle timeout"),
        CloseReason::TooManyQueuedReplies => (CloseCode::Policy, "too many unread replies"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_frames_are_told_apart_and_measured() {
        // A pong of 2 bytes, then a close with a code and no reason.
        let bytes = [0x8a, 2, b'h', b'i', 0x88, 2, 0x03, 0xe8];
        let len = |bytes: &[u8]| control_frame(bytes).map(|found| found.len());
        assert_eq!(len(&bytes), Some(4));
        assert_eq!(control_frame(&bytes).unwrap().opcode, frame::PONG);
        assert_eq!(len(&bytes[4..]), Some(4));
        assert_eq!(control_frame(&bytes[4..]).unwrap().opcode, frame::CLOSE);
        assert_eq!(len(&bytes[..3]), None, "cut short");
        assert_eq!(len(&[]), None);
        // Not a control frame: a text frame, a fragment, a long length.
        assert_eq!(len(&[0x81, 0]), None);
        assert_eq!(len(&[0x0a, 0]), None);
        assert_eq!(len(&[0x8a, 126, 0, 200]), None);
    }
}
