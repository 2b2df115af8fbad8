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

use super::transport::{self, Stream, Target};
use super::{Replica, ReplicaError, ReplicaEvent};
use crate::model::Model;
use crate::protocol::Dialect;

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
    /// How long `connect` and `reconnect` wait for the first state.
    pub join_timeout: Duration,
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
            ca_file: None,
        }
    }
}

/// A replica kept current over one WebSocket connection at a time.
pub struct Connector<M: Model + PartialEq> {
    url: String,
    participant: String,
    name: String,
    options: ConnectorOptions,
    replica: Replica<M>,
    socket: Option<WebSocket<Stream>>,
    started: Instant,
}

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
        // The connector is part of the I/O shell: it keeps real time for the replica.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        let mut connector = Self {
            url: url.to_owned(),
            participant: participant.to_owned(),
            name: name.to_owned(),
            options,
            replica: Replica::new(participant),
            socket: None,
            started,
        };
        connector.reconnect()?;
        Ok(connector)
    }

    /// The replica: server state, revision, pending updates, visible state.
    pub fn replica(&self) -> &Replica<M> {
        &self.replica
    }

    /// Milliseconds since the connector started (the replica's clock).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn socket(&mut self) -> Result<&mut WebSocket<Stream>, ConnectorError> {
        self.socket.as_mut().ok_or(ConnectorError::NotConnected)
    }

    /// Opens a new connection that resumes from the replica's revision (or asks for a
    /// snapshot the first time) and resends every pending update; waits for the state.
    ///
    /// # Errors
    ///
    /// If the connection fails or no state comes within the join timeout.
    pub fn reconnect(&mut self) -> Result<(), ConnectorError> {
        if let Some(mut old) = self.socket.take() {
            let _ = old.close(None);
            let _ = old.flush();
            self.replica.disconnected();
        }
        self.socket = Some(self.open()?);
        self.send_join()?;
        // The join is answered by a snapshot, or by deltas for a resume; an error first
        // means the server refused it.
        let timeout = self.options.join_timeout;
        #[allow(clippy::disallowed_methods)]
        let deadline = Instant::now() + timeout;
        loop {
            #[allow(clippy::disallowed_methods)]
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ConnectorError::Timeout(timeout));
            }
            for event in self.poll(left)? {
                match event {
                    ReplicaEvent::Snapshot { .. } | ReplicaEvent::Applied { .. } => return Ok(()),
                    ReplicaEvent::Error { code, message } => {
                        return Err(ConnectorError::Refused { code, message });
                    }
                    _ => {}
                }
            }
        }
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
        let stream = transport::connect(&self.url, &target, self.options.ca_file.as_deref())?;
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
        let socket = self.socket()?;
        socket.send(text(&join))?;
        for message in resend {
            socket.send(text(&message))?;
        }
        Ok(())
    }

    /// Applies `input` to the visible state at once and sends it; returns its
    /// `clientReqId`. The update stays pending until the server acknowledges or rejects
    /// it, across reconnects.
    ///
    /// # Errors
    ///
    /// If the connection fails (the update stays pending and is resent on reconnect).
    pub fn update(&mut self, input: M::Input) -> Result<String, ConnectorError> {
        let now = self.now_ms();
        let (id, message) = self.replica.update(input, now);
        self.socket()?.send(text(&message))?;
        Ok(id)
    }

    /// Sends `HEARTBEAT`.
    ///
    /// # Errors
    ///
    /// If the connection fails.
    pub fn heartbeat(&mut self) -> Result<(), ConnectorError> {
        self.socket()?
            .send(Message::text(r#"{"type":"HEARTBEAT","meta":{}}"#))?;
        Ok(())
    }

    /// Waits up to `timeout` for one message and applies it. Returns its events (none
    /// when nothing came in time).
    ///
    /// # Errors
    ///
    /// If the connection fails or the server closes it.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<ReplicaEvent>, ConnectorError> {
        let socket = self.socket()?;
        socket
            .get_ref()
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
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
            Err(e) => {
                self.socket = None;
                self.replica.disconnected();
                return Err(e.into());
            }
        };
        match message {
            Message::Text(body) => self.apply(body.as_bytes()),
            Message::Close(frame) => {
                self.socket = None;
                self.replica.disconnected();
                Err(ConnectorError::Closed {
                    code: frame.as_ref().map_or(1000, |f| u16::from(f.code)),
                    reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                })
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Applies one server message; resends after snapshots and resumes after a protocol
    /// violation.
    fn apply(&mut self, body: &[u8]) -> Result<Vec<ReplicaEvent>, ConnectorError> {
        let now = self.now_ms();
        match self.replica.handle_text(body, now) {
            Ok(events) => {
                if events
                    .iter()
                    .any(|e| matches!(e, ReplicaEvent::Snapshot { .. }))
                {
                    let resend = self.replica.resend_messages();
                    let socket = self.socket()?;
                    for message in resend {
                        socket.send(text(&message))?;
                    }
                }
                Ok(events)
            }
            Err(error) => {
                tracing::warn!(%error, "the server broke the protocol; resuming");
                if matches!(error, ReplicaError::Decode(_)) && !self.replica.needs_resume() {
                    return Ok(Vec::new());
                }
                self.send_join()?;
                Ok(Vec::new())
            }
        }
    }

    /// Polls until `done` holds for the replica or `timeout` passes; returns whether it
    /// held.
    ///
    /// # Errors
    ///
    /// [`ConnectorError::Timeout`] if it did not hold in time; a connection error.
    pub fn poll_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Replica<M>) -> bool,
    ) -> Result<(), ConnectorError> {
        #[allow(clippy::disallowed_methods)]
        let deadline = Instant::now() + timeout;
        while !done(&self.replica) {
            #[allow(clippy::disallowed_methods)]
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ConnectorError::Timeout(timeout));
            }
            self.poll(left)?;
        }
        Ok(())
    }

    /// Closes the connection (close frame 1000).
    pub fn close(mut self) {
        if let Some(mut socket) = self.socket.take() {
            let _ = socket.close(None);
            let _ = socket.flush();
        }
    }
}

fn text(message: &[u8]) -> Message {
    Message::text(String::from_utf8_lossy(message).into_owned())
}
