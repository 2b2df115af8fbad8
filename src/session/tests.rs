// Tests pick an arbitrary origin for the session's virtual time.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::epoch::Epoch;
use crate::model::presence::Presence;
use crate::room::{Origin, RoomConfig};

struct Fixture {
    room: Arc<Room<Presence>>,
    cache: DeltaCache,
    now: Instant,
}

impl Fixture {
    fn new(capacity: usize) -> Self {
        let room = Room::builder("default", Presence::default())
            .config(RoomConfig::with_ring_capacity(capacity).unwrap())
            .clock(Arc::new(ManualClock::new(1000)) as Arc<dyn Clock>)
            .epoch(Epoch::new("epoch-1").unwrap())
            .build()
            .unwrap();
        Self {
            room: Arc::new(room),
            cache: DeltaCache::new(),
            now: Instant::now(),
        }
    }

    fn session(&self, dialect: Dialect) -> Session<Presence> {
        Session::new(
            Arc::clone(&self.room),
            dialect,
            SessionConfig::default(),
            self.now,
        )
    }

    fn send(&self, session: &mut Session<Presence>, message: Value) {
        session.handle_message(message.to_string().as_bytes(), self.now);
    }

    /// Everything the session sends now, parsed.
    fn poll(&mut self, session: &mut Session<Presence>) -> Vec<Value> {
        let mut out = Vec::new();
        let n = session.poll_transmit(&mut self.cache, &mut out);
        assert_eq!(n, out.len());
        out.iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect()
    }

    fn touch(&self, times: usize) {
        for _ in 0..times {
            self.room
                .commit(Presence::touch("user-1", 1000), Origin::SERVER)
                .unwrap();
        }
    }
}

fn join(id: &str, name: &str) -> Value {
    json!({"type": "JOIN", "payload": {"participantId": id, "name": name}})
}

fn update(status: &str, req: &str) -> Value {
    json!({"type": "UPDATE", "payload": {"patch": {"status": status}, "clientReqId": req}})
}

fn alice() -> Value {
    json!({"id": "user-1", "name": "Alice", "status": "online", "lastActive": 1000})
}

fn error(code: &str, message: &str, details: Value) -> Value {
    let mut payload = json!({"code": code, "message": message, "retryable": false});
    if !details.is_null() {
        payload["details"] = details;
    }
    json!({"type": "ERROR", "meta": {}, "payload": payload})
}

fn deltas(from: u64, to: u64, operations: Value) -> Value {
    json!({"type": "SYNC.DELTAS", "meta": {}, "payload": {
        "fromRev": from, "toRev": to, "operations": operations}})
}

#[test]
fn update_before_join_is_unauthenticated_and_changes_nothing() {
    let mut f = Fixture::new(8);
    let mut s = f.session(Dialect::WsKit);
    f.send(&mut s, update("away", "req-0"));
    assert_eq!(
        f.poll(&mut s),
        [error(
            "UNAUTHENTICATED",
            "UPDATE before JOIN: join the room first",
            json!({"clientReqId": "req-0"})
        )]
    );
    assert_eq!(f.room.rev(), 0);
    assert!(!s.wants_transmit());
}

#[test]
fn happy_path_snapshot_then_acknowledging_delta() {
    let mut f = Fixture::new(8);
    let mut s = f.session(Dialect::WsKit);
    f.send(&mut s, join("user-1", "Alice"));
    assert_eq!(
        f.poll(&mut s),
        [json!({"type": "SYNC.SNAPSHOT", "meta": {}, "payload": {
            "rev": 1, "participants": {"user-1": alice()}}})]
    );
    f.send(&mut s, update("away", "req-1"));
    assert_eq!(
        f.poll(&mut s),
        [deltas(
            1,
            2,
            json!([{"rev": 2, "type": "participant.updated",
                "payload": {"id": "user-1", "status": "away"}, "clientReqId": "req-1"}])
        )]
    );
    assert_eq!(s.last_sent_rev(), Some(2));
    assert!(f.poll(&mut s).is_empty());
}

#[test]
fn native_snapshot_carries_the_epoch() {
    let mut f = Fixture::new(8);
    let mut s = f.session(Dialect::Native);
    f.send(&mut s, join("user-1", "Alice"));
    let sent = f.poll(&mut s);
    assert_eq!(sent[0]["payload"]["epoch"], "epoch-1");
    assert_eq!(sent[0]["payload"]["rev"], 1);
}

#[test]
fn a_rejected_update_names_its_client_req_id() {
    let mut f = Fixture::new(8);
    let mut s = f.session(Dialect::WsKit);
    f.send(&mut s, join("user-1", "Alice"));
    f.poll(&mut s);
    let long = "x".repeat(65);
    f.send(
        &mut s,
        json!({"type": "UPDATE", "meta": {"correlationId": "c-9"},
            "payload": {"patch": {"name": long}, "clientReqId": "req-2"}}),
    );
    let mut expected = error(
        "INVALID_ARGUMENT",
        "name is 65 characters long; the limit is 64",
        json!({"clientReqId": "req-2"}),
    );
    expected["meta"] = json!({"correlationId": "c-9"});
    assert_eq!(f.poll(&mut s), [expected]);
    f.send(
        &mut s,
        json!({"type": "UPDATE", "payload": {"patch": {"id": "user-2", "status": "away"}, "clientReqId": "req-3"}}),
    );
    assert_eq!(
        f.poll(&mut s),
        [error(
            "PERMISSION_DENIED",
            "participant \"user-1\" may not update participant \"user-2\"",
            json!({"clientReqId": "req-3"})
        )]
    );
    assert_eq!(f.room.rev(), 1);
}

#[test]
fn malformed_input_is_invalid_argument_and_the_session_goes_on() {
    let mut f = Fixture::new(8);
    let mut s = f.session(Dialect::WsKit);
    s.handle_message(b"{not json", f.now);
    let sent = f.poll(&mut s);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["payload"]["code"], "INVALID_ARGUMENT");
    f.send(
        &mut s,
        json!({"type": "UPDATE", "payload": {"patch": {"status": "busy"}, "clientReqId": "r"}}),
    );
    let sent = f.poll(&mut s);
    assert_eq!(sent[0]["payload"]["code"], "INVALID_ARGUMENT");
    assert_eq!(sent[0]["payload"]["details"], json!({"clientReqId": "r"}));
    f.send(&mut s, join("user-1", "Alice"));
    assert_eq!(f.poll(&mut s)[0]["type"], "SYNC.SNAPSHOT");
}

#[test]
fn a_duplicate_is_applied_once_and_never_left_unanswered() {
    let mut f = Fixture::new(8);
    let mut s = f.session(Dialect::WsKit);
    f.send(&mut s, join("user-1", "Alice"));
    f.poll(&mut s);
    // Sent twice before the stream delivered it: the one operation acknowledges both.
    f.send(&mut s, update("away", "req-1"));
    f.send(&mut s, update("away", "req-1"));
    let sent = f.poll(&mut s);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0]["payload"]["operations"].as_array().unwrap().len(),
        1
    );
    // Resent after it was delivered: an explicit notice with the revision.
    f.send(&mut s, update("away", "req-1"));
    assert_eq!(
        f.poll(&mut s),
        [error(
            "FAILED_PRECONDITION",
            "clientReqId \"req-1\" was already applied at revision 2",
            json!({"clientReqId": "req-1", "appliedRev": 2})
        )]
    );
    assert_eq!(f.room.rev(), 2);
}

#[test]
fn resume_within_the_ring_gets_deltas_only() {
    let mut f = Fixture::new(8);
    let mut s = f.session(Dialect::Native);
    f.send(&mut s, join("user-1", "Alice"));
    f.poll(&mut s);
    drop(s);
    f.touch(3);
    let mut s = f.session(Dialect::Native);
    f.send(
        &mut s,
        json!({"type": "JOIN", "payload": {"participantId": "user-1", "name": "Alice", "rev": 1, "epoch": "epoch-1"}}),
    );
    let sent = f.poll(&mut s);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["type"], "SYNC.DELTAS");
    assert_eq!(
        (
            sent[0]["payload"]["fromRev"].as_u64(),
            sent[0]["payload"]["toRev"].as_u64()
        ),
        (Some(1), Some(4))
    );
    assert_eq!(f.room.rev(), 4, "the resume itself committed nothing");
}

#[test]
fn resume_beyond_the_ring_or_in_another_epoch_gets_gap_then_snapshot() {
    let mut f = Fixture::new(4);
    let mut s = f.session(Dialect::Native);
    f.send(&mut s, join("user-1", "Alice"));
    f.poll(&mut s);
    f.touch(6);
    let mut late = f.session(Dialect::Native);
    f.send(
        &mut late,
        json!({"type": "JOIN", "payload": {"participantId": "user-1", "name": "Alice", "rev": 1, "epoch": "epoch-1"}}),
    );
    let sent = f.poll(&mut late);
    assert_eq!(
        sent[0],
        json!({"type": "REVISION_GAP", "meta": {}, "payload": {
            "expectedRev": 1, "serverRev": 7, "bufferFirstRev": 3, "resumeFrom": 7, "epoch": "epoch-1"}})
    );
    assert_eq!(sent[1]["type"], "SYNC.SNAPSHOT");
    assert_eq!(sent[1]["payload"]["rev"], 7);
    assert_eq!(sent.len(), 2);

    let mut foreign = f.session(Dialect::Native);
    f.send(
        &mut foreign,
        json!({"type": "JOIN", "payload": {"participantId": "user-1", "name": "Alice", "rev": 6, "epoch": "old-history"}}),
    );
    let sent = f.poll(&mut foreign);
    assert_eq!(sent[0]["type"], "REVISION_GAP");
    assert_eq!(sent[0]["payload"]["expectedRev"], 6);
    assert_eq!(sent[1]["type"], "SYNC.SNAPSHOT");
}

#[test]
fn a_slow_connection_gets_one_coalesced_delta_or_a_gap() {
    let mut f = Fixture::new(8);
    let mut fast = f.session(Dialect::WsKit);
    let mut slow = f.session(Dialect::WsKit);
    let mut gone = f.session(Dialect::WsKit);
    f.send(&mut fast, join("user-1", "Alice"));
    f.send(&mut slow, join("user-2", "Bob"));
    f.send(&mut gone, join("user-3", "Carol"));
    f.poll(&mut fast);
    f.poll(&mut slow);
    f.poll(&mut gone);
    f.poll(&mut fast);
    f.poll(&mut slow);
    for _ in 0..5 {
        f.touch(1);
        let sent = f.poll(&mut fast);
        assert_eq!(
            sent.len(),
            1,
            "the fast one gets each operation as it comes"
        );
    }
    let sent = f.poll(&mut slow);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["payload"]["fromRev"], 3);
    assert_eq!(sent[0]["payload"]["toRev"], 8);
    assert_eq!(
        sent[0]["payload"]["operations"].as_array().unwrap().len(),
        5
    );
    f.touch(10);
    let sent = f.poll(&mut gone);
    assert_eq!(sent[0]["type"], "REVISION_GAP");
    assert_eq!(sent[0]["payload"]["expectedRev"], 3);
    assert_eq!(sent[1]["payload"]["rev"], 18);
    assert_eq!(gone.last_sent_rev(), Some(18));
}

#[test]
fn connections_at_the_same_revision_share_one_delta_buffer() {
    let mut f = Fixture::new(8);
    let mut sessions: Vec<_> = (0..3).map(|_| f.session(Dialect::WsKit)).collect();
    for (i, s) in sessions.iter_mut().enumerate() {
        f.send(s, join(&format!("user-{i}"), "P"));
    }
    for s in &mut sessions {
        f.poll(s);
        f.poll(s);
    }
    f.cache.clear();
    let built = f.cache.built();
    f.room
        .commit(Presence::touch("user-0", 5), Origin::SERVER)
        .unwrap();
    let frames: Vec<Bytes> = sessions
        .iter_mut()
        .map(|s| {
            let mut out = Vec::new();
            let _ = s.poll_transmit(&mut f.cache, &mut out);
            out.pop().unwrap()
        })
        .collect();
    assert_eq!(f.cache.built(), built + 1);
    assert!(frames.iter().all(|b| b.as_ptr() == frames[0].as_ptr()));
}

#[test]
fn leave_commits_and_unbinds() {
    let mut f = Fixture::new(8);
    let mut s = f.session(Dialect::WsKit);
    f.send(&mut s, join("user-1", "Alice"));
    f.poll(&mut s);
    f.send(&mut s, json!({"type": "LEAVE"}));
    assert_eq!(
        f.poll(&mut s),
        [deltas(
            1,
            2,
            json!([{"rev": 2, "type": "participant.left", "payload": {"id": "user-1"}}])
        )]
    );
    assert_eq!(s.participant(), None);
    f.send(&mut s, update("away", "r"));
    assert_eq!(f.poll(&mut s)[0]["payload"]["code"], "UNAUTHENTICATED");
    f.send(&mut s, json!({"type": "LEAVE"}));
    assert_eq!(
        f.poll(&mut s),
        [error(
            "UNAUTHENTICATED",
            "LEAVE before JOIN: join the room first",
            Value::Null
        )]
    );
}

#[test]
fn joining_as_someone_else_on_a_bound_connection_is_refused() {
    let mut f = Fixture::new(8);
    let mut s = f.session(Dialect::WsKit);
    f.send(&mut s, join("user-1", "Alice"));
    f.poll(&mut s);
    f.send(&mut s, join("user-2", "Mallory"));
    assert_eq!(
        f.poll(&mut s),
        [error(
            "FAILED_PRECONDITION",
            "this connection has joined as \"user-1\"; LEAVE before joining as another participant",
            Value::Null
        )]
    );
    assert_eq!(f.room.rev(), 1);
}

#[test]
fn a_flood_is_rate_limited_with_a_retry_hint() {
    let mut f = Fixture::new(8);
    let mut s = Session::new(
        Arc::clone(&f.room),
        Dialect::WsKit,
        SessionConfig {
            messages_per_second: 10,
            message_burst: 2,
            ..SessionConfig::default()
        },
        f.now,
    );
    f.send(&mut s, json!({"type": "HEARTBEAT"}));
    f.send(&mut s, json!({"type": "HEARTBEAT"}));
    f.send(&mut s, update("away", "req-9"));
    assert_eq!(
        f.poll(&mut s),
        [json!({"type": "ERROR", "meta": {}, "payload": {
            "code": "RESOURCE_EXHAUSTED", "message": "message rate limit exceeded; slow down",
            "details": {"clientReqId": "req-9"}, "retryable": true, "retryAfterMs": 100}})]
    );
    s.handle_message(
        br#"{"type":"HEARTBEAT"}"#,
        f.now + Duration::from_millis(100),
    );
    assert!(f.poll(&mut s).is_empty());
}

/// A client that waits exactly `retryAfterMs` from the refusal is admitted, and one that
/// waits a millisecond less is not: the hint is rounded up, never down.
#[test]
fn a_client_that_waits_retry_after_ms_is_admitted() {
    // (messages per second, when the refused message is read, the hint it gets): refusals
    // at sub-millisecond instants, and token intervals of no whole number of milliseconds.
    let cases = [
        (2, 100_000_100, 400),
        (2, 1, 500),
        (3, 0, 334),
        (7, 42_857_143, 100),
        (1000, 499_900, 1),
    ];
    for (per_second, read_after_ns, expected) in cases {
        let mut f = Fixture::new(8);
        let config = SessionConfig {
            messages_per_second: per_second,
            message_burst: 1,
            ..SessionConfig::default()
        };
        let mut s = Session::new(Arc::clone(&f.room), Dialect::WsKit, config, f.now);
        let heartbeat = br#"{"type":"HEARTBEAT"}"#;
        s.handle_message(heartbeat, f.now);
        let refused_at = f.now + Duration::from_nanos(read_after_ns);
        s.handle_message(heartbeat, refused_at);
        let refusal = f.poll(&mut s);
        let case = format!("{per_second}/s, read at +{read_after_ns} ns: {refusal:?}");
        assert_eq!(refusal[0]["payload"]["retryAfterMs"], expected, "{case}");
        let early = refused_at + Duration::from_millis(expected - 1);
        s.handle_message(heartbeat, early);
        assert_eq!(f.poll(&mut s)[0]["payload"]["retryAfterMs"], 1, "{case}");
        s.handle_message(heartbeat, refused_at + Duration::from_millis(expected));
        assert_eq!(f.poll(&mut s), Vec::<Value>::new(), "{case}");
    }
}

#[test]
fn idle_and_flooding_connections_are_asked_to_close() {
    let f = Fixture::new(8);
    let mut s = f.session(Dialect::WsKit);
    assert_eq!(s.poll_timeout(), f.now + Duration::from_secs(60));
    assert_eq!(s.handle_timeout(f.now + Duration::from_secs(59)), None);
    s.handle_message(br#"{"type":"HEARTBEAT"}"#, f.now + Duration::from_secs(30));
    assert_eq!(s.handle_timeout(f.now + Duration::from_secs(60)), None);
    assert_eq!(
        s.handle_timeout(f.now + Duration::from_secs(90)),
        Some(CloseReason::Idle)
    );

    let mut flood = Session::new(
        Arc::clone(&f.room),
        Dialect::WsKit,
        SessionConfig {
            max_queued_replies: 3,
            ..SessionConfig::default()
        },
        f.now,
    );
    for _ in 0..3 {
        flood.handle_message(b"garbage", f.now);
    }
    assert_eq!(flood.close_reason(), None);
    flood.handle_message(b"garbage", f.now);
    assert_eq!(
        flood.close_reason(),
        Some(CloseReason::TooManyQueuedReplies)
    );
}

#[test]
fn closing_detaches_the_participant_who_stays_until_the_ttl() {
    let mut f = Fixture::new(8);
    let mut s = f.session(Dialect::WsKit);
    f.send(&mut s, join("user-1", "Alice"));
    f.poll(&mut s);
    assert_eq!(f.room.connections("user-1"), 1);
    drop(s);
    assert_eq!(f.room.connections("user-1"), 0);
    assert_eq!(f.room.expire_detached(10).unwrap(), Vec::<u64>::new());
    assert_eq!(f.room.rev(), 1);
    assert_eq!(f.room.expire_detached(0).unwrap(), vec![2]);
    f.room
        .with_state(|state, _| assert!(state.participant("user-1").is_none()));
}

#[test]
fn oversized_messages_are_answered_without_being_read() {
    let mut f = Fixture::new(8);
    let mut s = f.session(Dialect::WsKit);
    s.reject_oversized(70_000, 65_536, f.now);
    assert_eq!(
        f.poll(&mut s),
        [json!({"type": "ERROR", "meta": {}, "payload": {
            "code": "RESOURCE_EXHAUSTED",
            "message": "message of 70000 bytes exceeds the limit of 65536 bytes",
            "retryable": true}})]
    );
}

mod policies {
    //! Sessions under the `Tick` flush policy and the `Forward` input policy.

    use super::*;
    use crate::model::arena::{Arena, ArenaInput, ArenaOp, Step};
    use crate::room::{ClientInput, FlushPolicy, InputPolicy};

    fn arena(flush: FlushPolicy, inputs: InputPolicy) -> Arc<Room<Arena>> {
        let room = Room::builder("arena", Arena::default())
            .clock(Arc::new(ManualClock::new(1000)) as Arc<dyn Clock>)
            .epoch(Epoch::new("e").unwrap())
            .flush_policy(flush)
            .input_policy(inputs)
            .build()
            .unwrap();
        Arc::new(room)
    }

    fn session(room: &Arc<Room<Arena>>, now: Instant) -> Session<Arena> {
        Session::new(
            Arc::clone(room),
            Dialect::WsKit,
            SessionConfig::default(),
            now,
        )
    }

    fn poll(session: &mut Session<Arena>, cache: &mut DeltaCache) -> Vec<Value> {
        let mut out = Vec::new();
        let _ = session.poll_transmit(cache, &mut out);
        out.iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect()
    }

    fn send(session: &mut Session<Arena>, message: Value, now: Instant) {
        session.handle_message(message.to_string().as_bytes(), now);
    }

    fn moves(room: &Room<Arena>, id: u32, count: usize) {
        for _ in 0..count {
            let op = room.with_state(|state, _| state.step(id, 1, 0)).unwrap();
            room.commit(op, Origin::SERVER).unwrap();
        }
    }

    #[test]
    fn under_tick_a_connection_gets_one_frame_per_flush_with_every_operation() {
        let room = arena(FlushPolicy::Tick, InputPolicy::Decide);
        let (now, mut cache) = (Instant::now(), DeltaCache::new());
        let mut s = session(&room, now);
        send(
            &mut s,
            json!({"type": "JOIN", "payload": {"participantId": "p1", "name": "P"}}),
            now,
        );
        // The joining client's snapshot is at the head, flushed or not.
        let sent = poll(&mut s, &mut cache);
        assert_eq!((sent.len(), &sent[0]["payload"]["rev"]), (1, &json!(1)));
        moves(&room, 1, 100);
        assert_eq!(
            (room.rev(), room.published_rev()),
            (101, 0),
            "nothing published yet"
        );
        assert!(!s.wants_transmit());
        assert!(poll(&mut s, &mut cache).is_empty());
        assert_eq!(room.flush(), 101);
        let sent = poll(&mut s, &mut cache);
        assert_eq!(sent.len(), 1, "one frame for the tick");
        assert_eq!(
            (&sent[0]["payload"]["fromRev"], &sent[0]["payload"]["toRev"]),
            (&json!(1), &json!(101))
        );
        assert_eq!(
            sent[0]["payload"]["operations"].as_array().unwrap().len(),
            100
        );
        assert_eq!(
            room.flush(),
            101,
            "a flush with nothing new publishes nothing"
        );
        assert!(poll(&mut s, &mut cache).is_empty());
    }

    #[test]
    fn a_resume_under_tick_sees_only_what_was_flushed() {
        let room = arena(FlushPolicy::Tick, InputPolicy::Decide);
        let (now, mut cache) = (Instant::now(), DeltaCache::new());
        let mut s = session(&room, now);
        send(
            &mut s,
            json!({"type": "JOIN", "payload": {"participantId": "p1", "name": "P"}}),
            now,
        );
        poll(&mut s, &mut cache);
        room.flush();
        moves(&room, 1, 3);
        room.flush();
        moves(&room, 1, 2);
        let mut back = session(&room, now);
        send(
            &mut back,
            json!({"type": "JOIN", "payload": {"participantId": "p1", "name": "P", "rev": 1}}),
            now,
        );
        let sent = poll(&mut back, &mut cache);
        assert_eq!(
            (&sent[0]["payload"]["fromRev"], &sent[0]["payload"]["toRev"]),
            (&json!(1), &json!(4))
        );
    }

    #[test]
    fn forwarded_inputs_reach_the_owner_and_come_back_as_acks_or_rejections() {
        let room = arena(FlushPolicy::Immediate, InputPolicy::Forward { capacity: 2 });
        let (now, mut cache) = (Instant::now(), DeltaCache::new());
        let mut s = session(&room, now);
        send(
            &mut s,
            json!({"type": "JOIN", "payload": {"participantId": "p1", "name": "P"}}),
            now,
        );
        poll(&mut s, &mut cache);
        let update = |dx: i32, req: &str| json!({"type": "UPDATE", "payload": {"move": {"dx": dx, "dy": 0}, "baseRev": 1, "clientReqId": req}});
        send(&mut s, update(1, "ok"), now);
        send(&mut s, update(2, "refused"), now);
        send(&mut s, update(3, "full"), now);
        assert_eq!(room.rev(), 1, "nothing is decided by the room");
        assert_eq!(
            poll(&mut s, &mut cache),
            [json!({"type": "ERROR", "meta": {}, "payload": {
                "code": "RESOURCE_EXHAUSTED", "message": "the room's input queue is full; try again",
                "details": {"clientReqId": "full"}, "retryable": true}})]
        );
        let mut inputs = Vec::new();
        room.drain_inputs(&mut inputs);
        let expected = |dx, req: &str| ClientInput {
            actor: "p1".into(),
            client_req_id: req.into(),
            base_rev: Some(1),
            input: ArenaInput {
                step: Step { dx, dy: 0 },
            },
        };
        assert_eq!(inputs, [expected(1, "ok"), expected(2, "refused")]);
        // The game accepts the first on its own terms (a longer move) and refuses the second.
        let op = room.with_state(|state, _| state.step(1, 10, 0)).unwrap();
        let origin = Origin {
            actor: Some("p1"),
            client_req_id: Some("ok"),
        };
        assert_eq!(room.commit(op, origin).unwrap().rev, 2);
        room.reject(&inputs[1], &Rejection::denied("frozen this turn"));
        assert_eq!(
            poll(&mut s, &mut cache),
            [
                json!({"type": "ERROR", "meta": {}, "payload": {
                    "code": "PERMISSION_DENIED", "message": "frozen this turn",
                    "details": {"clientReqId": "refused"}, "retryable": false}}),
                json!({"type": "SYNC.DELTAS", "meta": {}, "payload": {"fromRev": 1, "toRev": 2, "operations": [
                    {"rev": 2, "type": "entity.moved", "payload": {"id": 1, "x": 10, "y": 0}, "clientReqId": "ok"}]}}),
            ]
        );
        // Resent after its ack: not forwarded again, answered with its revision.
        send(&mut s, update(1, "ok"), now);
        let sent = poll(&mut s, &mut cache);
        assert_eq!(
            sent[0]["payload"]["details"],
            json!({"clientReqId": "ok", "appliedRev": 2})
        );
        room.drain_inputs(&mut inputs);
        assert_eq!(inputs.len(), 2, "nothing new was queued");
        // Rejections go to their actor only.
        let mut other = session(&room, now);
        send(
            &mut other,
            json!({"type": "JOIN", "payload": {"participantId": "p2", "name": "Q"}}),
            now,
        );
        poll(&mut other, &mut cache);
        room.reject(&inputs[0], &Rejection::denied("late"));
        assert!(
            poll(&mut other, &mut cache)
                .iter()
                .all(|m| m["type"] != "ERROR")
        );
        assert_eq!(
            poll(&mut s, &mut cache)
                .iter()
                .filter(|m| m["type"] == "ERROR")
                .count(),
            1
        );
        let _: Option<ArenaOp> = None;
    }
}

#[test]
fn counters_see_lag_coalesced_frames_lagged_snapshots_and_rejections_by_code() {
    let mut f = Fixture::new(8);
    let counters = Arc::new(counters::SessionCounters::default());
    let mut slow = f.session(Dialect::WsKit);
    let mut gone = f.session(Dialect::WsKit);
    slow.count_into(Arc::clone(&counters));
    gone.count_into(Arc::clone(&counters));
    f.send(&mut slow, join("user-1", "Alice"));
    f.send(&mut gone, join("user-2", "Bob"));
    f.poll(&mut slow);
    f.poll(&mut gone);
    // The first flush found Alice 1 behind (Bob's join); then 5 operations in one frame.
    f.touch(5);
    assert_eq!(f.poll(&mut slow)[0]["payload"]["toRev"], 7);
    // The other falls out of the ring (8 operations): gap, then a snapshot.
    f.touch(10);
    assert_eq!(f.poll(&mut gone)[0]["type"], "REVISION_GAP");
    // Refused by the model: a name too long, another participant; refused by the session:
    // an update before JOIN (a third session).
    f.send(&mut slow, json!({"type": "UPDATE", "payload": {"patch": {"name": "x".repeat(65)}, "clientReqId": "r1"}}));
    f.send(&mut slow, json!({"type": "UPDATE", "payload": {"patch": {"id": "user-2", "status": "away"}, "clientReqId": "r2"}}));
    let mut stranger = f.session(Dialect::WsKit);
    stranger.count_into(Arc::clone(&counters));
    f.send(&mut stranger, update("away", "r3"));
    // Refused by the decoder: an UPDATE with a key the protocol does not have (counted),
    // and a message that is no UPDATE at all (not counted).
    f.send(&mut slow, json!({"type": "UPDATE", "payload": {"patch": {"status": "away"}, "clientReqId": "r4", "extra": 1}}));
    f.send(&mut slow, json!({"type": "NOPE"}));
    let read = counters.read();
    assert_eq!(read.snapshots, [2, 0, 1], "join, resume_gap, lagged");
    // Alice 1 and then 5 behind, Bob 15 (2 -> 17).
    assert_eq!((read.lag.count(), read.lag.sum), (3, 1 + 5 + 15));
    assert_eq!(read.lag.counts[..6], [1, 0, 0, 1, 1, 0]);
    assert_eq!(
        (read.ops_per_frame.count(), read.ops_per_frame.sum),
        (2, 1 + 5)
    );
    let by_code: Vec<(ErrorCode, u64)> = ErrorCode::ALL
        .into_iter()
        .zip(read.updates_rejected)
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(
        by_code,
        [
            (ErrorCode::Unauthenticated, 1),
            (ErrorCode::PermissionDenied, 1),
            (ErrorCode::InvalidArgument, 2)
        ]
    );
    assert_eq!((read.updates_committed, read.updates_duplicate), (0, 0));
}
