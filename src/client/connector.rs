//! A blocking WebSocket connection that drives a [`Replica`]: for applications, tools and
//! tests.
//!
//! [`Connector::connect`] opens a connection (the native dialect unless told otherwise),
//! joins, and waits for the first state. [`Connector::update`] applies a change at once and
//! sends it; [`Connector::poll`] reads what the server sent and applies it; after a
//! snapshot it resends what is still pending, and after a protocol violation it resumes.
//! [`Connector::reconnect`] opens a new connection that resumes from the replica's
//! revision and resends every pending update (the server applies each `clientReqId` at most
//! once, so resending is safe).
//!
//! URLs are `ws://` or, with the `tls` feature, `wss://`: TLS trusting the system's roots,
//! or only the CA of [`ConnectorOptions::ca_file`] (`with_ca_file`).
//!
//! ```no_run
//! use std::time::Duration;
//! use deltasync::client::Connector;
//! use deltasync::model::presence::{Patch, Presence, PresenceInput, Status};
//!
//! let mut client = Connector::<Presence>::connect("ws://127.0.0.1:7373/", "user-1", "Alice")?;
//! let away = PresenceInput { patch: Patch { status: Some(Status::Away), ..Patch::default() } };
//! let id = client.update(away)?;
//! client.poll_until(Duration::from_secs(5), |replica| replica.was_acked(&id))?;
//! # Ok::<(), deltasync::client::ConnectorError>(())
//! ```

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use super::backoff::{Backoff, Jitter};
use super::report::{ConnectorEvent, ConnectorStatus, ResumeReport};
use super::retry::{self, Verdict};
use super::transport::{self, Stream, Target};
use super::{Replica, ReplicaError, ReplicaEvent};
use crate::epoch::Epoch;
use crate::model::Model;
use crate::protocol::Dialect;
use crate::protocol::encode::GapInfo;

/// Why a connector failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// The URL is not a `ws://host:port/path` or `wss://host:port/path` URL.
    #[error("bad URL {url}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TCP connection failed.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The address tried.
        address: String,
        /// The error.
        source: io::Error,
    },
    /// TLS cannot be set up for a `wss://` URL: the CA file cannot be used, the host is
    /// not a valid server name. (A certificate the client does not trust fails the
    /// handshake: [`ConnectorError::WebSocket`].)
    #[error("TLS: {0}")]
    Tls(String),
    /// The WebSocket layer failed (handshake refused, connection lost, ...).
    #[error("WebSocket error: {0}")]
    WebSocket(#[from] tungstenite::Error),
    /// The server closed the connection.
    #[error("the server closed the connection ({code}: {reason})")]
    Closed {
        /// The close code (1000 when none was given).
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// The server refused the join.
    #[error("the server refused: {code}: {message}")]
    Refused {
        /// The error code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// Nothing came within the time allowed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connector is not connected (after a close or a failed reconnect).
    #[error("not connected")]
    NotConnected,
}

/// Options of a [`Connector`].
#[derive(Debug, Clone)]
pub struct ConnectorOptions {
    /// The dialect to ask for (default: native, `deltasync.v1`).
    pub dialect: Dialect,
    /// A token sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// How long `connect` and `reconnect` wait for the first state, and how long one
    /// TCP connect may take.
    pub join_timeout: Duration,
    /// Whether a lost connection is opened again by [`Connector::poll`] (default true);
    /// when false, `poll` returns the error and the connector stays disconnected until
    /// [`Connector::reconnect`].
    pub reconnect: bool,
    /// The bounds of the reconnect delays (default 250 ms, doubling up to 10 s).
    pub backoff: Backoff,
    /// Whether close 1001 (going away) is final: the server operator stopped it for good
    /// (`server.shutdown_close_code = "going-away"`). Default false: 1001 reconnects, as
    /// the TypeScript client does (older servers and proxies send 1001 on a restart).
    pub going_away_is_final: bool,
    /// The seed of the jitter (default: random): for tests that want the same delays on
    /// every run.
    pub jitter_seed: Option<u64>,
    /// For `wss://`: trust only the CA certificates of this PEM file (a private CA, a test
    /// server's), instead of the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl ConnectorOptions {
    /// These options, trusting only the CA certificates of the PEM file `path` for
    /// `wss://`.
    #[must_use]
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }
}

impl Default for ConnectorOptions {
    fn default() -> Self {
        Self {
            dialect: Dialect::Native,
            token: None,
            join_timeout: Duration::from_secs(10),
            reconnect: true,
            backoff: Backoff::default(),
            going_away_is_final: false,
            jitter_seed: None,
            ca_file: None,
        }
    }
}

impl ConnectorOptions {
    /// Sets [`dialect`](Self::dialect).
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// Sets [`token`](Self::token).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets [`join_timeout`](Self::join_timeout).
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.join_timeout = timeout;
        self
    }

    /// Sets [`reconnect`](Self::reconnect).
    pub fn reconnect(mut self, reconnect: bool) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// Sets the [`backoff`](Self::backoff) bounds: the first delay's and the largest.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Backoff { initial, max };
        self
    }

    /// Sets [`going_away_is_final`](Self::going_away_is_final).
    pub fn going_away_is_final(mut self, is_final: bool) -> Self {
        self.going_away_is_final = is_final;
        self
    }

    /// Sets [`jitter_seed`](Self::jitter_seed).
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }
}

/// The `JOIN` of the current connection, until it is answered.
struct Joining {
    /// The revision it resumed from; `None` when it asked for a first snapshot.
    resumed_from: Option<u64>,
    /// The replica's history when it was sent.
    epoch: Option<Epoch>,
    /// The `REVISION_GAP` that answered it, if one did.
    gap: Option<GapInfo>,
}

/// A replica kept current over one WebSocket connection at a time (see the
/// [module documentation](super) for the replica's rules).
///
/// # Reconnecting by itself
///
/// Once connected, a connector whose connection ends reconnects by itself, inside
/// [`Connector::poll`] (a blocking client has no other thread): after a delay drawn with
/// full jitter from the [`ConnectorOptions`]' `backoff` (see [`Backoff`]), and never sooner than
/// the server asked (`Retry-After` on a refused upgrade, `retryAfterMs` on a refused
/// `JOIN`). The new connection resumes from the replica's revision and epoch and resends
/// every pending update as first sent; the server applies each `clientReqId` at most once
/// and the replica settles each update exactly once. Updates made meanwhile stay pending
/// and go out with the resends. A refusal (HTTP 401, close 1008 or 4400-4499, a `JOIN`
/// refused for good) or, when [`ConnectorOptions::going_away_is_final`] says so, close
/// 1001 stops it: `poll` returns that error once, then [`ConnectorError::NotConnected`].
/// The full table is in `docs/protocol.md`, "Close codes".
///
/// [`Connector::take_events`] says what happened: each [`ConnectorEvent::Reconnect`]
/// (attempt, delay, cause) and each answered `JOIN` ([`ConnectorEvent::Resume`]: resumed
/// with N operations, or reset by a snapshot after a gap or a new history).
///
/// An update the server deferred (a rate limit: [`ReplicaEvent::Deferred`]) is sent again
/// by `poll` after the `retryAfterMs` it asked for.
pub struct Connector<M: Model + PartialEq> {
    url: String,
    participant: String,
    name: String,
    options: ConnectorOptions,
    replica: Replica<M>,
    socket: Option<WebSocket<Stream>>,
    started: Instant,
    /// The `JOIN` of the current connection, until answered.
    joining: Option<Joining>,
    /// When the next reconnect is due (`None` while connected or stopped).
    retry_at: Option<Instant>,
    /// Reconnect attempts since the last answered `JOIN`.
    attempt: u32,
    jitter: Jitter,
    events: Vec<ConnectorEvent>,
    /// Deferred updates by id, and when to send them again.
    deferred: Vec<(Instant, String)>,
    /// The `retryAfterMs` of the `ERROR` that refused the last `JOIN`.
    join_retry_after_ms: Option<u64>,
}

/// The shell's clock: the connector is part of the I/O shell.
fn now() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

/// The instant `wait` from now; a wait too long to represent (`Duration::MAX`) is a year,
/// which no caller outlives.
fn after(wait: Duration) -> Instant {
    let now = now();
    now.checked_add(wait)
        .or_else(|| now.checked_add(YEAR))
        .unwrap_or(now)
}

/// A year, the longest wait the connector keeps track of.
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

impl<M: Model + PartialEq> Connector<M> {
    /// Connects to `url` in the native dialect, joins as `participant` called `name`, and
    /// waits for the first state.
    ///
    /// # Errors
    ///
    /// If the connection or the join fails, or no state comes within the join timeout.
    pub fn connect(url: &str, participant: &str, name: &str) -> Result<Self, ConnectorError> {
        Self::connect_with(url, participant, name, ConnectorOptions::default())
    }

    /// Like [`Connector::connect`], with options.
    ///
    /// # Errors
    ///
    /// As [`Connector::connect`].
    pub fn connect_with(
        url: &str,
        participant: &str,
        name: &str,
        options: ConnectorOptions,
    ) -> Result<Self, ConnectorError> {
        let jitter = options
            .jitter_seed
            .map_or_else(Jitter::from_entropy, Jitter::seeded);
        let mut connector = Self {
            url: url.to_owned(),
            participant: participant.to_owned(),
            name: name.to_owned(),
            options,
            replica: Replica::new(participant),
            socket: None,
            started: now(),
            joining: None,
            retry_at: None,
            attempt: 0,
            jitter,
            events: Vec::new(),
            deferred: Vec::new(),
            join_retry_after_ms: None,
        };
        connector.reconnect()?;
        Ok(connector)
    }

    /// The replica: server state, revision, pending updates, visible state.
    pub fn replica(&self) -> &Replica<M> {
        &self.replica
    }

    /// Where the connector is.
    pub fn status(&self) -> ConnectorStatus {
        match (&self.socket, &self.joining, self.retry_at) {
            (Some(_), None, _) => ConnectorStatus::Live,
            (Some(_), Some(_), _) => ConnectorStatus::Joining,
            (None, _, Some(_)) => ConnectorStatus::Reconnecting,
            (None, _, None) => ConnectorStatus::Stopped,
        }
    }

    /// What happened since the last call: reconnects scheduled, `JOIN`s answered, the
    /// stop. Oldest first.
    pub fn take_events(&mut self) -> Vec<ConnectorEvent> {
        std::mem::take(&mut self.events)
    }

    /// Milliseconds since the connector started (the replica's clock).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Opens a new connection now that resumes from the replica's revision (or asks for
    /// a snapshot the first time) and resends every pending update; waits for the state.
    /// A failure of this first connection is returned, not retried; once it is made, a
    /// lost connection is retried within the join timeout as [`Connector::poll`] does.
    ///
    /// # Errors
    ///
    /// If the connection fails, the server refuses the `JOIN`, or no state comes within
    /// the join timeout.
    pub fn reconnect(&mut self) -> Result<(), ConnectorError> {
        self.drop_socket();
        self.retry_at = None;
        self.open_and_join()?;
        let timeout = self.options.join_timeout;
        let deadline = after(timeout);
        while self.status() != ConnectorStatus::Live {
            let left = deadline.saturating_duration_since(now());
            if left.is_zero() {
                return Err(ConnectorError::Timeout(timeout));
            }
            self.poll(left)?;
        }
        Ok(())
    }

    /// Closes the current connection, if any; pending updates stay.
    fn drop_socket(&mut self) {
        if let Some(mut old) = self.socket.take() {
            let _ = old.close(None);
            let _ = old.flush();
            self.replica.disconnected();
        }
        self.joining = None;
        self.deferred.clear();
    }

    /// Opens a connection and sends the `JOIN` and the pending updates.
    fn open_and_join(&mut self) -> Result<(), ConnectorError> {
        let socket = self.open()?;
        self.socket = Some(socket);
        self.send_join()
    }

    fn open(&self) -> Result<WebSocket<Stream>, ConnectorError> {
        let url_error = |reason: String| ConnectorError::Url {
            url: self.url.clone(),
            reason,
        };
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| url_error(e.to_string()))?;
        let headers = request.headers_mut();
        if self.options.dialect == Dialect::Native {
            headers.insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static(Dialect::NATIVE_SUBPROTOCOL),
            );
        }
        if let Some(token) = &self.options.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| url_error(format!("the token cannot be sent: {e}")))?;
            headers.insert("Authorization", value);
        }
        let target = Target::of(request.uri()).map_err(url_error)?;
        let stream = transport::connect(
            &self.url,
            &target,
            self.options.ca_file.as_deref(),
            self.options.join_timeout,
        )?;
        let config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .max_message_size(None)
            .max_frame_size(None);
        let (socket, _) = tungstenite::client::client_with_config(request, stream, Some(config))
            .map_err(|e| match e {
                tungstenite::HandshakeError::Failure(e) => ConnectorError::WebSocket(e),
                tungstenite::HandshakeError::Interrupted(_) => ConnectorError::WebSocket(
                    tungstenite::Error::Io(io::ErrorKind::WouldBlock.into()),
                ),
            })?;
        Ok(socket)
    }

    /// Sends `JOIN` (a resume once the replica has a state) and every pending update.
    fn send_join(&mut self) -> Result<(), ConnectorError> {
        let join = self
            .replica
            .join_message(&self.participant, &self.name, self.options.dialect);
        let resend = self.replica.resend_messages();
        self.joining = Some(Joining {
            resumed_from: self
                .replica
                .server_state()
                .map(|_| self.replica.server_rev()),
            epoch: self.replica.epoch().cloned(),
            gap: None,
        });
        let socket = self.socket()?;
        socket.send(text(&join))?;
        for message in resend {
            socket.send(text(&message))?;
        }
        Ok(())
    }

    fn socket(&mut self) -> Result<&mut WebSocket<Stream>, ConnectorError> {
        self.socket.as_mut().ok_or(ConnectorError::NotConnected)
    }

    /// Sends `message` on the current connection; a failure is a lost connection.
    fn send(&mut self, message: &[u8]) -> Result<(), ConnectorError> {
        let sent = match self.socket.as_mut() {
            Some(socket) => socket.send(text(message)).map_err(ConnectorError::from),
            None => return Ok(()),
        };
        match sent {
            Ok(()) => Ok(()),
            Err(error) => self.lost(error),
        }
    }

    /// Applies `input` to the visible state at once and sends it; returns its
    /// `clientReqId`. The update stays pending until the server acknowledges or rejects
    /// it, across reconnects; while the connector is reconnecting it is kept for the next
    /// connection.
    ///
    /// # Errors
    ///
    /// [`ConnectorError::NotConnected`] once the connector stopped, or the error that
    /// stopped it (the update stays pending and is resent by [`Connector::reconnect`]).
    pub fn update(&mut self, input: M::Input) -> Result<String, ConnectorError> {
        let now = self.now_ms();
        let (id, message) = self.replica.update(input, now);
        if self.status() == ConnectorStatus::Stopped {
            return Err(ConnectorError::NotConnected);
        }
        self.send(&message)?;
        Ok(id)
    }

    /// Sends `HEARTBEAT` (nothing while reconnecting).
    ///
    /// # Errors
    ///
    /// [`ConnectorError::NotConnected`] once the connector stopped, or the error that
    /// stopped it.
    pub fn heartbeat(&mut self) -> Result<(), ConnectorError> {
        if self.status() == ConnectorStatus::Stopped {
            return Err(ConnectorError::NotConnected);
        }
        self.send(br#"{"type":"HEARTBEAT","meta":{}}"#)
    }

    /// Waits up to `timeout` for one message and applies it; returns its events (none
    /// when nothing came in time). When the connection is lost it returns at once, with no
    /// events, the reconnect scheduled; while the connection is down it waits for the
    /// reconnect and makes it, within `timeout` (see
    /// [Reconnecting by itself](Connector#reconnecting-by-itself)).
    ///
    /// # Errors
    ///
    /// The error that stopped the connector (a refusal, a final close, or any lost
    /// connection when [`ConnectorOptions::reconnect`] is false), then
    /// [`ConnectorError::NotConnected`].
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<ReplicaEvent>, ConnectorError> {
        let deadline = after(timeout);
        loop {
            if self.socket.is_some() {
                return self.read_one(deadline);
            }
            let Some(at) = self.retry_at else {
                return Err(ConnectorError::NotConnected);
            };
            if at > deadline {
                std::thread::sleep(deadline.saturating_duration_since(now()));
                return Ok(Vec::new());
            }
            std::thread::sleep(at.saturating_duration_since(now()));
            self.retry_at = None;
            if let Err(error) = self.open_and_join() {
                self.lost(error)?;
            }
            if self.socket.is_none() && now() >= deadline {
                return Ok(Vec::new());
            }
        }
    }

    /// Reads one message, waiting at most until `deadline` (or until a deferred update is
    /// due, which is then sent again).
    fn read_one(&mut self, deadline: Instant) -> Result<Vec<ReplicaEvent>, ConnectorError> {
        self.send_deferred_due()?;
        let Some(socket) = self.socket.as_mut() else {
            return Ok(Vec::new());
        };
        let mut wait = deadline.saturating_duration_since(now());
        if let Some(due) = self.deferred.iter().map(|(at, _)| *at).min() {
            wait = wait.min(due.saturating_duration_since(now()));
        }
        socket
            .get_ref()
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .map_err(tungstenite::Error::Io)?;
        let message = match socket.read() {
            Ok(message) => message,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return self.lost(e.into()).map(|()| Vec::new()),
        };
        match message {
            Message::Text(body) => self.apply(body.as_bytes()),
            Message::Close(frame) => {
                // tungstenite queued the answer to the close; send it before hanging up.
                let _ = socket.flush();
                let closed = ConnectorError::Closed {
                    code: frame.as_ref().map_or(1000, |f| u16::from(f.code)),
                    reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                };
                self.lost(closed).map(|()| Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Sends again the deferred updates whose time came (those still pending).
    fn send_deferred_due(&mut self) -> Result<(), ConnectorError> {
        let now = now();
        let (due, later) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition::<Vec<_>, _>(|(at, _)| *at <= now);
        self.deferred = later;
        for (_, id) in due {
            if let Some(message) = self.replica.message_of(&id) {
                self.send(&message)?;
            }
        }
        Ok(())
    }

    /// The connection is gone with `error`: schedules a reconnect, or stops and returns
    /// the error (a refusal, a final close, or reconnecting is off).
    fn lost(&mut self, error: ConnectorError) -> Result<(), ConnectorError> {
        self.drop_socket();
        let verdict = match self.options.reconnect {
            true => self.verdict(&error),
            false => Verdict::Stop,
        };
        let Verdict::Retry { at_least } = verdict else {
            self.retry_at = None;
            tracing::debug!(%error, "the connector stops");
            self.events.push(ConnectorEvent::Stopped {
                cause: error.to_string(),
            });
            return Err(error);
        };
        let delay = at_least.max(self.options.backoff.delay(self.attempt, &mut self.jitter));
        self.attempt = self.attempt.saturating_add(1);
        self.retry_at = Some(after(delay));
        tracing::debug!(%error, ?delay, attempt = self.attempt, "reconnecting");
        self.events.push(ConnectorEvent::Reconnect {
            attempt: self.attempt,
            delay,
            cause: error.to_string(),
        });
        Ok(())
    }

    /// Whether to come back after `error` (see the `retry` module).
    fn verdict(&self, error: &ConnectorError) -> Verdict {
        match error {
            ConnectorError::Closed { code, .. } => {
                retry::after_close(*code, self.options.going_away_is_final)
            }
            ConnectorError::WebSocket(tungstenite::Error::Http(response)) => {
                let retry_after = response.headers().get("retry-after");
                let retry_after = retry_after.and_then(|value| value.to_str().ok());
                retry::after_refused_upgrade(response.status().as_u16(), retry_after)
            }
            ConnectorError::Refused { code, .. } => {
                retry::after_join_error(code, self.join_retry_after_ms)
            }
            ConnectorError::WebSocket(_)
            | ConnectorError::Connect { .. }
            | ConnectorError::Timeout(_) => Verdict::Retry {
                at_least: Duration::ZERO,
            },
            // A TLS configuration or a certificate the client does not trust does not
            // change by retrying.
            ConnectorError::Url { .. } | ConnectorError::NotConnected | ConnectorError::Tls(_) => {
                Verdict::Stop
            }
        }
    }

    /// Applies one server message; resends after snapshots, resumes after a protocol
    /// violation, reports the answer to a `JOIN`.
    fn apply(&mut self, body: &[u8]) -> Result<Vec<ReplicaEvent>, ConnectorError> {
        let now_ms = self.now_ms();
        let events = match self.replica.handle_text(body, now_ms) {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, "the server broke the protocol; resuming");
                if matches!(error, ReplicaError::Decode(_)) && !self.replica.needs_resume() {
                    return Ok(Vec::new());
                }
                if let Err(error) = self.send_join() {
                    self.lost(error)?;
                }
                return Ok(Vec::new());
            }
        };
        for event in &events {
            self.react(event)?;
        }
        Ok(events)
    }

    /// What the connector does about one replica event.
    fn react(&mut self, event: &ReplicaEvent) -> Result<(), ConnectorError> {
        match event {
            ReplicaEvent::Snapshot { rev, after_gap } => {
                self.answered(|joining, replica| match joining.resumed_from {
                    None if !after_gap => ResumeReport::Joined { rev: *rev },
                    _ => ResumeReport::Reset {
                        rev: *rev,
                        gap: joining.gap,
                        epoch_changed: joining.epoch.is_some()
                            && replica.epoch() != joining.epoch.as_ref(),
                    },
                });
                // A snapshot skips the acks its deltas carried: resend what is pending.
                for message in self.replica.resend_messages() {
                    self.send(&message)?;
                }
            }
            ReplicaEvent::Applied { from, to } => {
                self.answered(|_, _| ResumeReport::Resumed {
                    from_rev: *from,
                    to_rev: *to,
                    operations: to - from,
                });
            }
            ReplicaEvent::Gap(info) => {
                if let Some(joining) = self.joining.as_mut() {
                    joining.gap = Some(*info);
                }
            }
            ReplicaEvent::Deferred {
                client_req_id,
                retry_after_ms,
                ..
            } => {
                let wait =
                    retry_after_ms.map_or(self.options.backoff.initial, Duration::from_millis);
                self.deferred.push((after(wait), client_req_id.clone()));
            }
            ReplicaEvent::Error {
                code,
                message,
                retry_after_ms,
            } if self.joining.is_some() => {
                self.join_retry_after_ms = *retry_after_ms;
                let refused = ConnectorError::Refused {
                    code: code.clone(),
                    message: message.clone(),
                };
                self.lost(refused)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The `JOIN` was answered: reports how (`report` is given the `JOIN` and the
    /// replica after the answer).
    fn answered(&mut self, report: impl FnOnce(&Joining, &Replica<M>) -> ResumeReport) {
        let Some(joining) = self.joining.take() else {
            return;
        };
        self.attempt = 0;
        let report = report(&joining, &self.replica);
        self.events.push(ConnectorEvent::Resume(report));
    }

    /// Polls until `done` holds for the replica or `timeout` passes; returns whether it
    /// held.
    ///
    /// # Errors
    ///
    /// [`ConnectorError::Timeout`] if it did not hold in time; the error that stopped the
    /// connector.
    pub fn poll_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Replica<M>) -> bool,
    ) -> Result<(), ConnectorError> {
        let deadline = after(timeout);
        while !done(&self.replica) {
            let left = deadline.saturating_duration_since(now());
            if left.is_zero() {
                return Err(ConnectorError::Timeout(timeout));
            }
            self.poll(left)?;
        }
        Ok(())
    }

    /// Closes the connection (close frame 1000).
    pub fn close(mut self) {
        self.drop_socket();
    }
}

fn text(message: &[u8]) -> Message {
    Message::text(String::from_utf8_lossy(message).into_owned())
}
