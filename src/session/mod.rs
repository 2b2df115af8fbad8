//! One connection's protocol state, with no I/O.
//!
//! A [`Session`] is what the server knows about one connection: the room it talks to, the
//! dialect, the participant it joined as, the last revision it was sent, its message-rate
//! budget and when it was last heard from. It consumes decoded client messages and
//! produces the messages to send; commits go straight to the [`Room`].
//!
//! # Driving a session
//!
//! The I/O shell calls, in any order and as often as it likes:
//!
//! 1. [`Session::handle_message`] for every text message received (and
//!    [`Session::reject_oversized`] for a message over the size limit);
//! 2. [`Session::poll_transmit`] when the socket can take bytes: it appends every
//!    message due, in order; then nothing is due until the room moves or a message
//!    arrives ([`Session::wants_transmit`] says which);
//! 3. [`Session::poll_timeout`] / [`Session::handle_timeout`] for the idle deadline;
//! 4. [`Session::close`] once when the connection goes away.
//!
//! # Backpressure
//!
//! There is no queue of operations per connection. A session remembers `lastSentRev`;
//! when polled it sends one `SYNC.DELTAS` covering everything from there to the head (a
//! slow connection's deltas coalesce by themselves), or, when the ring no longer holds
//! that range, `REVISION_GAP` then `SYNC.SNAPSHOT`. Replies of its own (errors) are
//! queued, and a connection that lets more than `max_queued_replies` pile up is closed.
//!
//! # Acknowledgements
//!
//! An accepted `UPDATE` is acknowledged by its operation, which carries the
//! `clientReqId`, in the connection's stream of deltas. A rejected one gets an `ERROR`
//! whose `details.clientReqId` names it. An `UPDATE` whose `clientReqId` was already
//! applied is not applied again; if its operation is already behind the connection's
//! stream (the client resent it after a snapshot that contained it), the session answers
//! `ERROR FAILED_PRECONDITION` with `details {clientReqId, appliedRev}` so the client can
//! drop it; otherwise the operation is still to come in the stream and acknowledges it.

pub(crate) mod counters;
mod delta_cache;
pub(crate) mod rate;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::model::{Model, Rejection};
use crate::protocol::decode::{ClientMessage, DecodeError, DecodeLimits, decode_client};
use crate::protocol::encode::{self, ErrorMessage};
use crate::protocol::{Dialect, ErrorCode};
use crate::room::{ClientInput, Room};

use counters::{SessionCounters, SnapshotCause};
pub use delta_cache::DeltaCache;
use rate::{TokenBucket, retry_after_ms};

/// The per-connection limits a session enforces.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Bounds on the strings of client messages.
    pub decode: DecodeLimits,
    /// Average messages per second a connection may send.
    pub messages_per_second: u32,
    /// Messages a connection may send at once before the average applies.
    pub message_burst: u32,
    /// A connection that sends nothing (not even `HEARTBEAT`) for this long is closed.
    pub idle_timeout: Duration,
    /// Replies (errors) a connection may leave unread before it is closed.
    pub max_queued_replies: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            decode: DecodeLimits::default(),
            messages_per_second: 100,
            message_burst: 200,
            idle_timeout: Duration::from_secs(60),
            max_queued_replies: 64,
        }
    }
}

/// Why a session wants its connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Nothing was received within the idle timeout.
    Idle,
    /// The peer left too many replies unread (it floods and does not read).
    TooManyQueuedReplies,
}

/// One connection's protocol state. See the [module documentation](self).
pub struct Session<M: Model> {
    room: Arc<Room<M>>,
    dialect: Dialect,
    /// Shared by every session of a server: one copy, not one per connection.
    config: Arc<SessionConfig>,
    participant: Option<String>,
    /// The revision the connection's stream has reached; `None` until the first `JOIN`.
    last_sent_rev: Option<u64>,
    replies: VecDeque<Bytes>,
    /// The newest room rejection this session has looked at.
    rejections_seen: u64,
    rate: TokenBucket,
    last_heard: Instant,
    close: Option<CloseReason>,
    /// Where this session counts what it does (its shard's counters); `None`: nowhere.
    counters: Option<Arc<SessionCounters>>,
}

impl<M: Model> Session<M> {
    /// A session for a new connection to `room`, speaking `dialect`.
    pub fn new(
        room: Arc<Room<M>>,
        dialect: Dialect,
        config: impl Into<Arc<SessionConfig>>,
        now: Instant,
    ) -> Self {
        let config = config.into();
        let rate = TokenBucket::new(config.messages_per_second, config.message_burst, now);
        let rejections_seen = room.rejection_seq();
        Self {
            room,
            dialect,
            config,
            participant: None,
            last_sent_rev: None,
            replies: VecDeque::new(),
            rejections_seen,
            rate,
            last_heard: now,
            close: None,
            counters: None,
        }
    }

    /// Counts what this session does into `counters` (its thread's: see
    /// [`crate::counters`]).
    pub(crate) fn count_into(&mut self, counters: Arc<SessionCounters>) {
        self.counters = Some(counters);
    }

    /// Bumps a count, if this session counts.
    #[inline]
    fn count(&self, bump: impl FnOnce(&SessionCounters)) {
        if let Some(counters) = &self.counters {
            bump(counters);
        }
    }

    /// The room this connection talks to.
    pub fn room(&self) -> &Arc<Room<M>> {
        &self.room
    }

    /// The participant this connection joined as, if it has.
    pub fn participant(&self) -> Option<&str> {
        self.participant.as_deref()
    }

    /// The revision the connection's stream has reached (`lastSentRev`).
    pub fn last_sent_rev(&self) -> Option<u64> {
        self.last_sent_rev
    }

    /// Binds the connection to `participant` as if it had joined and been sent the state
    /// at `rev`, without committing anything (restoring a connection, fixtures' `STATE`).
    pub fn bind(&mut self, participant: &str, rev: u64) {
        self.set_participant(Some(participant.to_owned()));
        self.last_sent_rev = Some(rev);
    }

    /// Handles one text message from the client, read at `now`.
    ///
    /// A message over the rate limit is refused with a `retryAfterMs` counted from `now`
    /// and rounded up: the client that waits that long after the refusal reaches it is
    /// admitted, as long as `now` is no later than the moment the refusal is sent (the
    /// shell passes the time it read the socket).
    pub fn handle_message(&mut self, text: &[u8], now: Instant) {
        self.last_heard = now;
        let decoded = decode_client::<M::Input>(text, &self.config.decode);
        if let Err(wait) = self.rate.take(now) {
            // A message that does not decode names its update as its decode error would
            // (a marked prefix of an over-long `clientReqId`).
            let (client_req_id, details, correlation_id) = match &decoded {
                Ok(envelope) => (
                    client_req_id(&envelope.message).map(str::to_owned),
                    None,
                    envelope.correlation_id.clone(),
                ),
                Err(error) => (None, error.details(), error.correlation_id.clone()),
            };
            let mut error = ErrorMessage::new(
                ErrorCode::ResourceExhausted,
                "message rate limit exceeded; slow down",
            );
            error.retry_after_ms = Some(retry_after_ms(wait));
            error.details = details.as_ref();
            self.count(|c| c.rate_limited.incr());
            return self.reply(error, client_req_id.as_deref(), correlation_id.as_deref());
        }
        let envelope = match decoded {
            Ok(envelope) => envelope,
            Err(error) => return self.reply_decode_error(&error),
        };
        let correlation_id = envelope.correlation_id.as_deref();
        let client_req_id = client_req_id(&envelope.message);
        let outcome = match &envelope.message {
            ClientMessage::Join {
                participant_id,
                name,
                rev,
                epoch,
            } => self.join(participant_id, name, *rev, epoch.as_deref()),
            ClientMessage::Update {
                input,
                base_rev,
                client_req_id,
            } => self.update(input, *base_rev, client_req_id),
            ClientMessage::Leave => self.leave(),
            ClientMessage::Heartbeat => Ok(()),
        };
        if let Err(refusal) = outcome {
            let error = ErrorMessage {
                details: refusal.details.as_ref(),
                ..ErrorMessage::new(refusal.code, &refusal.message)
            };
            self.reply(error, client_req_id, correlation_id);
        }
    }

    /// Answers a message the shell refused because it exceeded the size limit (the
    /// session never saw its content).
    pub fn reject_oversized(&mut self, len: usize, limit: usize, now: Instant) {
        self.last_heard = now;
        let message = format!("message of {len} bytes exceeds the limit of {limit} bytes");
        self.reply(
            ErrorMessage::new(ErrorCode::ResourceExhausted, &message),
            None,
            None,
        );
    }

    /// How long until the rate limit admits another message, at `now`: `None` when it
    /// would admit one now. A shell that does not want to refuse messages over the rate
    /// stops reading the connection for this long (see `server::connection`).
    pub fn rate_wait(&self, now: Instant) -> Option<Duration> {
        self.rate.wait(now)
    }

    /// The peer showed it is alive without a message (a WebSocket ping or pong).
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// How many replies (errors) wait to be sent.
    pub fn queued_replies(&self) -> usize {
        self.replies.len()
    }

    /// Answers a binary message: the protocol is JSON text.
    pub fn reject_binary(&mut self, now: Instant) {
        self.last_heard = now;
        self.reply(
            ErrorMessage::new(
                ErrorCode::InvalidArgument,
                "binary messages are not supported: send JSON text",
            ),
            None,
            None,
        );
    }

    fn join(
        &mut self,
        participant_id: &str,
        name: &str,
        rev: Option<u64>,
        epoch: Option<&str>,
    ) -> Result<(), Refusal> {
        if let Some(bound) = self.participant.as_deref() {
            if bound != participant_id {
                return Err(Refusal::new(
                    ErrorCode::FailedPrecondition,
                    format!(
                        "this connection has joined as {bound:?}; LEAVE before joining as another participant"
                    ),
                ));
            }
        }
        if self.participant.is_some() {
            self.room.join(participant_id, name)?;
        } else {
            // Attached in the same step as the room's participant limit is checked.
            self.room.join_attached(participant_id, name)?;
            self.participant = Some(participant_id.to_owned());
        }
        match rev {
            Some(rev) => self.resume(rev, epoch),
            None => self.send_snapshot(self.room.snapshot_for_join(), SnapshotCause::Join),
        }
    }

    /// Resumes the stream at the client's `rev`: `SYNC.DELTAS` from there (empty when the
    /// client is current) if the ring holds them and the epoch is the room's, else
    /// `REVISION_GAP` and a snapshot.
    fn resume(&mut self, rev: u64, epoch: Option<&str>) -> Result<(), Refusal> {
        match self.room.since(rev, epoch) {
            Ok(deltas) => {
                // Sent even when empty: it tells the client its resume succeeded.
                self.queue(encode::deltas(deltas.from, deltas.to, &deltas.operations));
                self.last_sent_rev = Some(deltas.to);
                self.count(|c| c.resumes_deltas.incr());
                Ok(())
            }
            Err(gap) => {
                self.queue(encode::gap(self.dialect, &gap, self.room.epoch().as_str()));
                self.count(|c| c.resumes_gap.incr());
                self.send_snapshot(self.room.snapshot(), SnapshotCause::ResumeGap)
            }
        }
    }

    fn send_snapshot(
        &mut self,
        snapshot: Result<Arc<crate::room::Snapshot>, crate::room::SnapshotError>,
        cause: SnapshotCause,
    ) -> Result<(), Refusal> {
        let snapshot = snapshot.map_err(|e| Refusal::from(&Rejection::from(&e)))?;
        self.queue(snapshot.message(self.dialect).clone());
        self.last_sent_rev = Some(snapshot.rev());
        self.count(|c| c.snapshot(cause));
        Ok(())
    }

    /// An `UPDATE`: decided and committed at once, or forwarded to the room's owner (see
    /// [`InputPolicy`](crate::room::InputPolicy)). Either way a `clientReqId` already
    /// applied is not applied again.
    fn update(
        &mut self,
        input: &M::Input,
        base_rev: Option<u64>,
        client_req_id: &str,
    ) -> Result<(), Refusal> {
        let Some(actor) = self.participant.as_deref() else {
            self.count(|c| c.rejected(ErrorCode::Unauthenticated));
            return Err(Refusal::new(
                ErrorCode::Unauthenticated,
                "UPDATE before JOIN: join the room first",
            ));
        };
        let refused = |rejection: Rejection| {
            self.count(|c| c.rejected(rejection.code));
            Refusal::from(rejection)
        };
        let applied = if self.room.forwards_inputs() {
            let applied = self.room.applied_rev(actor, client_req_id);
            if applied.is_none() {
                self.room
                    .forward(ClientInput {
                        actor: actor.to_owned(),
                        client_req_id: client_req_id.to_owned(),
                        base_rev,
                        input: input.clone(),
                    })
                    .map_err(refused)?;
            }
            applied
        } else {
            let commit = self
                .room
                .submit(actor, input, Some(client_req_id))
                .map_err(refused)?;
            if !commit.duplicate {
                self.count(|c| c.updates_committed.incr());
            }
            commit.duplicate.then_some(commit.rev)
        };
        if applied.is_some() {
            self.count(|c| c.updates_duplicate.incr());
        }
        // A duplicate whose operation is still to come in the stream is acknowledged by it;
        // one already sent (the client resent it after a snapshot) gets a notice.
        let delivered = |rev: &u64| self.last_sent_rev.is_some_and(|sent| *rev <= sent);
        if let Some(rev) = applied.filter(delivered) {
            let mut details = Map::new();
            details.insert("appliedRev".into(), Value::from(rev));
            return Err(Refusal {
                code: ErrorCode::FailedPrecondition,
                message: format!(
                    "clientReqId {client_req_id:?} was already applied at revision {rev}"
                ),
                details: Some(details),
            });
        }
        Ok(())
    }

    fn leave(&mut self) -> Result<(), Refusal> {
        let Some(actor) = self.participant.clone() else {
            return Err(Refusal::new(
                ErrorCode::Unauthenticated,
                "LEAVE before JOIN: join the room first",
            ));
        };
        self.set_participant(None);
        self.room.leave(&actor)?;
        Ok(())
    }

    fn set_participant(&mut self, participant: Option<String>) {
        if self.participant == participant {
            return;
        }
        if let Some(old) = self.participant.take() {
            self.room.detach(&old);
        }
        if let Some(new) = &participant {
            self.room.attach(new);
        }
        self.participant = participant;
    }

    /// Answers a message that does not decode, naming its update when it can (whole, or
    /// by a marked prefix: [`DecodeError::details`]).
    fn reply_decode_error(&mut self, error: &DecodeError) {
        // A message that names a `clientReqId` is an `UPDATE`: a rejected one.
        if error.client_req_id.is_some() {
            self.count(|c| c.rejected(error.code()));
        }
        let details = error.details();
        let message = ErrorMessage {
            details: details.as_ref(),
            ..ErrorMessage::new(error.code(), &error.message)
        };
        self.reply(message, None, error.correlation_id.as_deref());
    }

    /// Queues an `ERROR`, adding `clientReqId` to its details when the request had one.
    fn reply(
        &mut self,
        error: ErrorMessage<'_>,
        client_req_id: Option<&str>,
        correlation_id: Option<&str>,
    ) {
        let mut details = error.details.cloned();
        if let Some(id) = client_req_id {
            details
                .get_or_insert_with(Map::new)
                .insert("clientReqId".into(), Value::from(id));
        }
        let message = encode::error(&ErrorMessage {
            details: details.as_ref(),
            correlation_id,
            ..error
        });
        self.queue(message);
    }

    fn queue(&mut self, message: Bytes) {
        self.replies.push_back(message);
        if self.replies.len() > self.config.max_queued_replies {
            self.close.get_or_insert(CloseReason::TooManyQueuedReplies);
        }
    }

    /// Whether [`Session::poll_transmit`] would produce anything now.
    pub fn wants_transmit(&self) -> bool {
        !self.replies.is_empty()
            || self
                .last_sent_rev
                .is_some_and(|sent| sent < self.room.published_rev())
            || (self.participant.is_some() && self.room.rejection_seq() != self.rejections_seen)
    }

    /// Appends every message due to `out`, in order: queued replies, then one message
    /// bringing the stream to the head (`SYNC.DELTAS` from `cache`, or `REVISION_GAP` and
    /// `SYNC.SNAPSHOT`). Returns how many messages it appended.
    #[must_use = "the messages appended must be sent"]
    pub fn poll_transmit(&mut self, cache: &mut DeltaCache, out: &mut Vec<Bytes>) -> usize {
        let before = out.len();
        out.extend(self.replies.drain(..));
        self.poll_rejections(out);
        if let Some(sent) = self.last_sent_rev {
            let head = self.room.published_rev();
            if sent < head {
                self.count(|c| c.lag.observe(head - sent));
                match cache.deltas(&self.room, sent) {
                    Ok((to, message)) => {
                        out.push(message);
                        self.last_sent_rev = Some(to);
                        self.count(|c| c.ops_per_frame.observe(to - sent));
                    }
                    Err(gap) => {
                        out.push(encode::gap(self.dialect, &gap, self.room.epoch().as_str()));
                        self.poll_snapshot(out);
                    }
                }
            }
        }
        out.len() - before
    }

    /// The owner's rejections of this participant's forwarded inputs.
    fn poll_rejections(&mut self, out: &mut Vec<Bytes>) {
        let seq = self.room.rejection_seq();
        if seq == self.rejections_seen {
            return;
        }
        self.rejections_seen = match self.participant.as_deref() {
            Some(actor) => self.room.rejections_for(actor, self.rejections_seen, out),
            None => seq,
        };
    }

    fn poll_snapshot(&mut self, out: &mut Vec<Bytes>) {
        match self.room.snapshot() {
            Ok(snapshot) => {
                out.push(snapshot.message(self.dialect).clone());
                self.last_sent_rev = Some(snapshot.rev());
                self.count(|c| c.snapshot(SnapshotCause::Lagged));
            }
            Err(error) => {
                let message = error.to_string();
                out.push(encode::error(&ErrorMessage::new(
                    ErrorCode::Internal,
                    &message,
                )));
            }
        }
    }

    /// When [`Session::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Instant {
        self.last_heard + self.config.idle_timeout
    }

    /// Checks the idle deadline; returns why the connection must close, if it must.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<CloseReason> {
        if now >= self.poll_timeout() {
            self.close.get_or_insert(CloseReason::Idle);
        }
        self.close
    }

    /// Why the connection must be closed, if it must (checked after each input).
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close
    }

    /// The connection is gone: the participant loses this connection (it stays in the room
    /// until its time-to-live passes with no connection).
    pub fn close(&mut self) {
        self.set_participant(None);
        self.last_sent_rev = None;
    }
}

impl<M: Model> Drop for Session<M> {
    fn drop(&mut self) {
        self.close();
    }
}

/// The `clientReqId` of a message that has one.
fn client_req_id<I>(message: &ClientMessage<I>) -> Option<&str> {
    match message {
        ClientMessage::Update { client_req_id, .. } => Some(client_req_id),
        _ => None,
    }
}

/// A request the session refuses: the `ERROR` it becomes.
#[derive(Debug)]
struct Refusal {
    code: ErrorCode,
    message: String,
    details: Option<Map<String, Value>>,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
        }
    }
}

impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Self {
        Self::new(rejection.code, rejection.message)
    }
}

impl From<&Rejection> for Refusal {
    fn from(rejection: &Rejection) -> Self {
        Self::new(rejection.code, rejection.message.clone())
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
