//! Entry points for fuzzing the server's byte handling without sockets. Not part of the
//! API: hidden, and compiled only for `cargo fuzz` (`--cfg fuzzing`) and the crate's own
//! unit tests.
//!
//! - [`handshake`] runs the HTTP upgrade parser (the shard's, unchanged) on a request.
//! - [`connection`] drives one real connection (`Connection`: upgrade, tungstenite
//!   framing, the session, the outbox) over an in-memory stream that hands out the input
//!   in chunks and takes a bounded number of bytes per write, with commits from elsewhere
//!   in between if asked; it returns every byte the server wrote, parsed into a
//!   [`Transcript`] that checks the framing (one HTTP response; after a `101`, only whole,
//!   unmasked, unfragmented text, pong and close frames, the close frame last).
//!
//! The fuzz target `server_bytes` (`fuzz/fuzz_targets/server_bytes.rs`) checks the rest:
//! that every text message decodes and the stream keeps the delivery invariants.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use mio::{Poll, Token, Waker};

use crate::frame;

use super::connection::{Connection, Next, Scratch, Transport, Work};
use super::handshake::{self, Outcome, Policy};
use super::registry::{Registry, RoomSetup};
use super::shared::{Shared, Wakers};
use crate::clock::ManualClock;
use crate::config::Config;
use crate::model::presence::Presence;
use crate::room::{FlushPolicy, InputPolicy, Origin, RoomConfig};
use crate::session::DeltaCache;

/// What the upgrade parser made of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeOutcome {
    /// More bytes are needed.
    Partial,
    /// Upgraded to `room`; the request was `consumed` bytes long.
    Upgrade {
        /// The room the path selects.
        room: String,
        /// Whether the native dialect was selected.
        native: bool,
        /// The length of the HTTP request.
        consumed: usize,
        /// The `101` response.
        response: Vec<u8>,
    },
    /// Refused with this status and response.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The whole response.
        response: Vec<u8>,
    },
}

/// The longest upgrade request the fuzzed server accepts (the shards' limit).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// The most turns one read takes before the bench gives up on the input: enough for an
/// input of 64 KiB of the smallest messages, each waiting for a token of its own.
const READ_TURNS: usize = 1 << 16;

/// Runs the upgrade parser on `request`, with `token` as the server's secret.
pub fn handshake(request: &[u8], token: Option<&str>) -> HandshakeOutcome {
    let policy = Policy {
        token,
        max_request_bytes: MAX_REQUEST_BYTES,
    };
    match handshake::handshake(request, policy) {
        Outcome::Partial => HandshakeOutcome::Partial,
        Outcome::Upgrade { upgrade, consumed } => HandshakeOutcome::Upgrade {
            room: upgrade.room,
            native: upgrade.dialect == crate::protocol::Dialect::Native,
            consumed,
            response: upgrade.response.to_vec(),
        },
        Outcome::Refused(refusal)
        | Outcome::Plain {
            otherwise: refusal, ..
        } => HandshakeOutcome::Refused {
            status: refusal.status,
            response: refusal.response.to_vec(),
        },
    }
}

/// How [`connection`] feeds its input.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bytes the socket has readable per turn (at least 1).
    pub chunk: usize,
    /// Bytes the socket takes per turn before it blocks (at least 1).
    pub write_budget: usize,
    /// Whether the room moves (a server commit) between turns once someone joined.
    pub commits: bool,
    /// The server's shared secret.
    pub token: Option<String>,
    /// `limits.max_message_bytes`.
    pub max_message_bytes: usize,
    /// The room's ring capacity.
    pub ring_capacity: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            chunk: 4096,
            write_budget: usize::MAX,
            commits: false,
            token: None,
            max_message_bytes: 1024,
            ring_capacity: 4,
        }
    }
}

/// A socket in memory: reads give the input `readable` bytes at a time, then
/// `WouldBlock`, then end of stream once `eof`; writes take up to `writable` bytes.
#[derive(Debug, Default)]
struct MemoryStream {
    input: VecDeque<u8>,
    readable: usize,
    eof: bool,
    output: Vec<u8>,
    writable: usize,
    shut: bool,
    /// Calls of `read`, `WouldBlock` included: what a connection costs in system calls.
    reads: usize,
}

impl Read for MemoryStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        if self.input.is_empty() && self.eof {
            return Ok(0);
        }
        let n = buf.len().min(self.readable).min(self.input.len());
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        for (slot, byte) in buf.iter_mut().zip(self.input.drain(..n)) {
            *slot = byte;
        }
        self.readable -= n;
        Ok(n)
    }
}

impl Write for MemoryStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.shut {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if self.writable == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut n = 0;
        for buf in bufs {
            let take = buf.len().min(self.writable - n);
            self.output.extend_from_slice(&buf[..take]);
            n += take;
        }
        self.writable -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for MemoryStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One connection of a one-shard server, with what it needs around it.
struct Bench {
    _poll: Poll,
    shared: Shared<Presence>,
    scratch: Scratch,
    connection: Connection<Presence, MemoryStream>,
    now: Instant,
    dropped: bool,
}

impl Bench {
    fn new(options: &Options) -> io::Result<Self> {
        let poll = Poll::new()?;
        let wakers = Arc::new(Wakers {
            shards: Vec::new(),
            acceptor: Waker::new(poll.registry(), Token(0))?,
            moved: Box::new([]),
            shutdown: AtomicBool::new(false),
        });
        let mut config = Config::default();
        config.server.token.clone_from(&options.token);
        config.limits.max_message_bytes = options.max_message_bytes;
        let room = RoomConfig::with_ring_capacity(options.ring_capacity.clamp(1, 1024))
            .map_err(io::Error::other)?;
        let setup = RoomSetup {
            config: room,
            max_participants: 0,
            factory: Arc::new(|_: &str| Presence::default()),
            clock: Arc::new(ManualClock::new(1000)),
            flush: FlushPolicy::Immediate,
            inputs: InputPolicy::Decide,
            storage: Arc::new(crate::storage::MemoryStorage::new(
                crate::storage::MemoryRevisions::FromZero,
                &ManualClock::new(1000),
            )),
        };
        let registry = Registry::new(4, setup, Arc::clone(&wakers));
        let shared = Shared::new(&config, registry, wakers);
        // The shell's clock: the connection's deadlines.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let stream = MemoryStream::default();
        let connection = Connection::new(stream, now, shared.handshake_timeout);
        Ok(Self {
            _poll: poll,
            shared,
            scratch: Scratch {
                read: vec![0; 16 * 1024].into_boxed_slice(),
                work: Work {
                    control: Vec::new(),
                    transmit: Vec::new(),
                    cache: DeltaCache::new(),
                    counters: Arc::default(),
                },
            },
            connection,
            now,
            dropped: false,
        })
    }

    /// Reads until the stream has nothing more, as the shard does (turn budget included;
    /// a rate pause moves the clock to its end, as the shard's timer would).
    fn read(&mut self) {
        for _ in 0..READ_TURNS {
            if self.dropped {
                return;
            }
            self.scratch.work.cache.clear();
            let next = self
                .connection
                .on_readable(&self.shared, &mut self.scratch, self.now);
            match next {
                Next::Drop => self.dropped = true,
                Next::ReadMore => continue,
                Next::Paused(until) => self.now = self.now.max(until),
                Next::Keep => return,
            }
        }
    }

    fn writable(&mut self, budget: usize) {
        if self.dropped {
            return;
        }
        self.connection.stream_mut().writable = budget;
        if self.connection.on_writable(&mut self.scratch.work) == Next::Drop {
            self.dropped = true;
        }
    }

    /// A commit from elsewhere (the first participant is touched), then the flush the
    /// shard makes when a room moves.
    fn commit(&mut self) {
        let Some(room) = self.connection.room().cloned() else {
            return;
        };
        let first = room.with_state(|state, _| state.participants().keys().next().cloned());
        if let Some(id) = first {
            let op = Presence::touch(&id, room.now_ms());
            let _ = room.commit(op, Origin::SERVER);
        }
        self.scratch.work.cache.clear();
        if !self.dropped
            && self.connection.can_flush()
            && self.connection.flush(&mut self.scratch.work) == Next::Drop
        {
            self.dropped = true;
        }
    }

    fn tick(&mut self, after: Duration) {
        self.now += after;
        if !self.dropped && self.connection.on_tick(&mut self.scratch.work, self.now) == Next::Drop
        {
            self.dropped = true;
        }
    }
}

/// Drives one connection with `input` as everything the client sends, then the client's
/// end of stream; returns what the server wrote.
///
/// # Errors
///
/// What is wrong with the server's bytes (see [`Transcript::parse`]), or an I/O error
/// setting up the poller.
pub fn connection(input: &[u8], options: &Options) -> Result<Transcript, String> {
    let mut bench = Bench::new(options).map_err(|e| e.to_string())?;
    let chunk = options.chunk.max(1);
    let budget = options.write_budget.max(1);
    for piece in input.chunks(chunk) {
        if bench.dropped {
            break;
        }
        let stream = bench.connection.stream_mut();
        stream.input.extend(piece);
        stream.readable = piece.len();
        bench.read();
        if options.commits {
            bench.commit();
        }
        bench.writable(budget);
        bench.tick(Duration::from_millis(1));
    }
    // The client reads everything, then goes; deadlines pass.
    let server_ended = bench.dropped;
    bench.writable(usize::MAX);
    bench.connection.stream_mut().eof = true;
    bench.connection.stream_mut().readable = usize::MAX;
    bench.read();
    bench.writable(usize::MAX);
    bench.tick(Duration::from_secs(10));
    bench.connection.release();
    let output = std::mem::take(&mut bench.connection.stream_mut().output);
    let transcript = Transcript::parse(&output)?;
    if transcript.cut && !server_ended {
        return Err(
            "the output ends in the middle of a frame, and the server had not given up".into(),
        );
    }
    Ok(transcript)
}

/// What a server wrote on one connection, parsed and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    /// The HTTP status of the response, if one was written.
    pub status: Option<u16>,
    /// The payloads of the text frames, in order.
    pub texts: Vec<Vec<u8>>,
    /// How many pongs were written.
    pub pongs: usize,
    /// The close frame's code (1005 for a close frame without one), if one was written.
    pub close: Option<u16>,
    /// The output ends in the middle of a response head or a frame: the server dropped
    /// the connection before all of it was written (a peer too slow to read what was
    /// due before a deadline: the close linger, after a close for too many unread replies).
    pub cut: bool,
}

impl Transcript {
    /// Parses a server's bytes: nothing, or one HTTP response head; after a `101`, only
    /// WebSocket frames (whole, unmasked, final, text / pong / close, the close last);
    /// after any other status, a body of its `Content-Length` and nothing more. The last
    /// head, frame or body may be cut short ([`Transcript::cut`]).
    ///
    /// # Errors
    ///
    /// What breaks those rules, and where.
    pub fn parse(output: &[u8]) -> Result<Self, String> {
        let mut transcript = Self::default();
        if output.is_empty() {
            return Ok(transcript);
        }
        let Some(head_end) = find(output, b"\r\n\r\n").map(|at| at + 4) else {
            transcript.cut = true;
            return Ok(transcript);
        };
        let head = std::str::from_utf8(&output[..head_end]).map_err(|e| e.to_string())?;
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| format!("not an HTTP/1.1 status line: {head:?}"))?;
        transcript.status = Some(status);
        let rest = &output[head_end..];
        if status != 101 {
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("Content-Length: "))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("a refusal without Content-Length: {head:?}"))?;
            if rest.len() > length {
                return Err(format!(
                    "a body of {} bytes after a Content-Length of {length}",
                    rest.len()
                ));
            }
            transcript.cut = rest.len() < length;
            return Ok(transcript);
        }
        transcript.frames(rest)?;
        Ok(transcript)
    }

    fn frames(&mut self, mut rest: &[u8]) -> Result<(), String> {
        while !rest.is_empty() {
            if self.close.is_some() {
                return Err(format!("{} bytes after the close frame", rest.len()));
            }
            let Some((found, payload)) = frame(rest)? else {
                self.cut = true;
                return Ok(());
            };
            match found.opcode {
                frame::TEXT => {
                    std::str::from_utf8(payload).map_err(|e| format!("a text frame: {e}"))?;
                    self.texts.push(payload.to_vec());
                }
                frame::PONG => self.pongs += 1,
                frame::CLOSE => {
                    self.close = Some(close_code(payload)?);
                }
                other => return Err(format!("a server frame of opcode {other:#x}")),
            }
            rest = &rest[found.len()..];
        }
        Ok(())
    }
}

/// The first whole frame of `bytes` with its payload, checked as a server frame; `None`
/// when it is cut short.
fn frame(bytes: &[u8]) -> Result<Option<(frame::Frame, &[u8])>, String> {
    let Some(found) = frame::parse(bytes, usize::MAX).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    found.check_from_server().map_err(|e| e.to_string())?;
    Ok(Some((found, found.payload(bytes))))
}

/// The code of a close frame's payload: empty (1005), or a code and a UTF-8 reason.
fn close_code(payload: &[u8]) -> Result<u16, String> {
    let code = frame::close_code(payload).map_err(|e| e.to_string())?;
    std::str::from_utf8(payload.get(2..).unwrap_or_default())
        .map_err(|e| format!("a close reason: {e}"))?;
    match code {
        // The codes of the IANA registry an endpoint may send (1012 to 1014 too:
        // tungstenite echoes the peer's code when it answers a close), or none.
        1005 if payload.is_empty() => Ok(code),
        1000..=1003 | 1007..=1014 | 3000..=4999 => Ok(code),
        other => Err(format!("a close code a server may not send: {other}")),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(all(test, not(loom)))]
mod tests;
