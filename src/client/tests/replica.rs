use serde_json::json;

use super::*;
use crate::client::{ReplicaError, ReplicaEvent};
use crate::protocol::encode::GapInfo;

fn acked(id: &str, rev: u64) -> ReplicaEvent {
    ReplicaEvent::Acked {
        client_req_id: id.into(),
        rev,
    }
}

fn pending_ids(replica: &Replica<Presence>) -> Vec<&str> {
    replica
        .pending()
        .iter()
        .map(|p| p.client_req_id.as_str())
        .collect()
}

#[test]
fn fixture_001_happy_path() {
    let mut replica = Replica::<Presence>::with_id_suffix("user-1", "t");
    assert_eq!(
        json_of(&replica.join_message("user-1", "Alice", Dialect::WsKit)),
        json!({"type": "JOIN", "meta": {}, "payload": {"participantId": "user-1", "name": "Alice"}})
    );
    let events = replica.handle_text(
        &snapshot(Dialect::WsKit, 1, &presence([alice(Status::Online)])),
        1000,
    );
    assert_eq!(
        events,
        Ok(vec![ReplicaEvent::Snapshot {
            rev: 1,
            after_gap: false
        }])
    );
    let update = replica.update_with_id(status(Status::Away), "req-1".into(), None, 1000);
    assert_eq!(
        json_of(&update),
        json!({"type": "UPDATE", "meta": {}, "payload": {
            "patch": {"status": "away"}, "clientReqId": "req-1"}})
    );
    let op = updated("user-1", None, Some(Status::Away));
    let events = replica.handle_text(&deltas(1, 2, &[(2, op, Some("req-1"))]), 1001);
    assert_eq!(
        events,
        Ok(vec![
            ReplicaEvent::Applied { from: 1, to: 2 },
            acked("req-1", 2)
        ])
    );
    assert_eq!((replica.server_rev(), replica.pending().len()), (2, 0));
    assert_eq!(replica.visible(), Some(&presence([alice(Status::Away)])));
    assert_eq!(replica.server_state(), replica.visible());
    assert!(!replica.detected_gap());
}

#[test]
fn fixture_002_gap_then_snapshot() {
    let mut replica = replica_at(1);
    let info = GapInfo {
        expected_rev: 1,
        server_rev: 1051,
        buffer_first_rev: 27,
        resume_from: 1051,
    };
    let gap = encode::gap(Dialect::WsKit, &info, "e1");
    assert_eq!(
        replica.handle_text(&gap, 2000),
        Ok(vec![ReplicaEvent::Gap(info)])
    );
    assert!(replica.detected_gap());
    assert_eq!(replica.last_gap(), Some(&info));
    let later = presence([participant("user-1", "Alice", Status::Online)]);
    let events = replica.handle_text(&snapshot(Dialect::WsKit, 1051, &later), 2000);
    assert_eq!(
        events,
        Ok(vec![ReplicaEvent::Snapshot {
            rev: 1051,
            after_gap: true
        }])
    );
    assert_eq!((replica.server_rev(), replica.pending().len()), (1051, 0));
    assert!(replica.detected_gap(), "sticky");
    // The next snapshot is an ordinary one.
    let events = replica.handle_text(&snapshot(Dialect::WsKit, 1052, &later), 2001);
    assert_eq!(
        events,
        Ok(vec![ReplicaEvent::Snapshot {
            rev: 1052,
            after_gap: false
        }])
    );
}

#[test]
fn fixture_003_optimistic_update() {
    let mut replica = replica_at(5);
    let update = replica.update_with_id(status(Status::Away), "req-123".into(), Some(5), 1000);
    assert_eq!(
        json_of(&update),
        json!({"type": "UPDATE", "meta": {}, "payload": {
            "patch": {"status": "away"}, "baseRev": 5, "clientReqId": "req-123"}})
    );
    assert_eq!(replica.visible(), Some(&presence([alice(Status::Away)])));
    assert_eq!(
        replica.server_state(),
        Some(&presence([alice(Status::Online)]))
    );
    assert_eq!(pending_ids(&replica), ["req-123"]);
    assert_eq!(replica.pending()[0].base_rev, 5);
    let op = updated("user-1", None, Some(Status::Away));
    let events = replica.handle_text(&deltas(5, 6, &[(6, op, Some("req-123"))]), 1001);
    assert_eq!(
        events,
        Ok(vec![
            ReplicaEvent::Applied { from: 5, to: 6 },
            acked("req-123", 6)
        ])
    );
    assert_eq!((replica.server_rev(), replica.pending().len()), (6, 0));
    assert_eq!(replica.visible(), Some(&presence([alice(Status::Away)])));
    assert!(replica.was_acked("req-123"));
}

#[test]
fn visible_is_the_server_state_with_pending_updates_replayed_in_order() {
    let mut replica = replica_at(5);
    replica.update_with_id(status(Status::Away), "r1".into(), None, 1000);
    replica.update_with_id(rename("Alicia"), "r2".into(), None, 1000);
    replica.update_with_id(status(Status::Offline), "r3".into(), None, 1000);
    let expected = presence([participant("user-1", "Alicia", Status::Offline)]);
    assert_eq!(replica.visible(), Some(&expected));
    // Someone else's operation lands under the pending ones.
    let bob = participant("user-2", "Bob", Status::Online);
    let joined = PresenceOp::Joined(bob.clone());
    replica
        .handle_text(&deltas(5, 6, &[(6, joined, None)]), 1001)
        .unwrap();
    let expected = presence([
        participant("user-1", "Alicia", Status::Offline),
        bob.clone(),
    ]);
    assert_eq!(replica.visible(), Some(&expected));
    assert_eq!(
        replica.server_state(),
        Some(&presence([alice(Status::Online), bob]))
    );
    assert_eq!(pending_ids(&replica), ["r1", "r2", "r3"]);
}

#[test]
fn deltas_must_start_at_server_rev_or_nothing_is_applied() {
    let mut replica = replica_at(5);
    let op = updated("user-1", None, Some(Status::Away));
    let result = replica.handle_text(&deltas(6, 7, &[(7, op.clone(), None)]), 1000);
    assert_eq!(
        result,
        Err(ReplicaError::NonContiguous {
            expected_from: 5,
            got_from: 6
        })
    );
    assert_eq!(replica.server_rev(), 5);
    assert_eq!(status_in(replica.server_state()), Some(Status::Online));
    assert!(replica.needs_resume());
    // The resume's deltas are accepted and clear the flag.
    let result = replica.handle_text(&deltas(5, 6, &[(6, op, None)]), 1001);
    assert_eq!(result, Ok(vec![ReplicaEvent::Applied { from: 5, to: 6 }]));
    assert!(!replica.needs_resume());
}

#[test]
fn operations_must_be_exactly_from_plus_one_to_to_in_order() {
    let op = |rev: u64| (rev, updated("user-1", None, Some(Status::Away)), None);
    let cases = [
        (deltas(5, 4, &[]), ReplicaError::BadRange { from: 5, to: 4 }),
        (
            deltas(5, 7, &[op(6)]),
            ReplicaError::WrongOperationCount {
                from: 5,
                to: 7,
                count: 1,
            },
        ),
        (
            deltas(5, 6, &[op(6), op(7)]),
            ReplicaError::WrongOperationCount {
                from: 5,
                to: 6,
                count: 2,
            },
        ),
        (
            deltas(5, 7, &[op(7), op(6)]),
            ReplicaError::BadOperationRevs {
                from: 5,
                to: 7,
                index: 0,
                rev: 7,
                expected: 6,
            },
        ),
        (
            deltas(5, 7, &[op(6), op(6)]),
            ReplicaError::BadOperationRevs {
                from: 5,
                to: 7,
                index: 1,
                rev: 6,
                expected: 7,
            },
        ),
    ];
    for (message, expected) in cases {
        let mut replica = replica_at(5);
        assert_eq!(replica.handle_text(&message, 1000), Err(expected));
        assert_eq!(replica.server_rev(), 5);
        assert_eq!(status_in(replica.server_state()), Some(Status::Online));
        assert_eq!(status_in(replica.visible()), Some(Status::Online));
        assert!(replica.needs_resume());
    }
}

#[test]
fn error_messages_say_what_is_wrong() {
    let messages = [
        (
            ReplicaError::NonContiguous {
                expected_from: 5,
                got_from: 6,
            },
            "SYNC.DELTAS starts at revision 6, but the replica is at 5",
        ),
        (
            ReplicaError::WrongOperationCount {
                from: 5,
                to: 7,
                count: 1,
            },
            "SYNC.DELTAS 5->7 carries 1 operations instead of 2",
        ),
        (
            ReplicaError::BadOperationRevs {
                from: 5,
                to: 7,
                index: 1,
                rev: 6,
                expected: 7,
            },
            "operation 1 of SYNC.DELTAS 5->7 has rev 6; expected 7",
        ),
        (
            ReplicaError::DeltasWhileAwaitingSnapshot { from: 1, to: 2 },
            "SYNC.DELTAS 1->2 came after REVISION_GAP; a SYNC.SNAPSHOT must come first",
        ),
    ];
    for (error, text) in messages {
        assert_eq!(error.to_string(), text);
    }
    // regression: a hand-built count error with `to < from` must not overflow in Display.
    let odd = ReplicaError::WrongOperationCount {
        from: 5,
        to: 4,
        count: 1,
    };
    assert_eq!(
        odd.to_string(),
        "SYNC.DELTAS 5->4 carries 1 operations instead of 0"
    );
}

#[test]
fn deltas_at_the_top_of_the_revision_range_do_not_overflow() {
    let mut replica = replica_at(u64::MAX);
    assert_eq!(
        replica.handle_text(&deltas(u64::MAX, u64::MAX, &[]), 1000),
        Ok(vec![ReplicaEvent::Applied {
            from: u64::MAX,
            to: u64::MAX
        }])
    );
    let op = (u64::MAX, updated("user-1", None, Some(Status::Away)), None);
    assert_eq!(
        replica.handle_text(&deltas(u64::MAX, u64::MAX, &[op]), 1000),
        Err(ReplicaError::WrongOperationCount {
            from: u64::MAX,
            to: u64::MAX,
            count: 1
        })
    );
}

#[test]
fn deltas_before_any_snapshot_are_refused() {
    let mut replica = Replica::<Presence>::with_id_suffix("user-1", "t");
    assert_eq!(
        replica.handle_text(&deltas(0, 0, &[]), 1000),
        Err(ReplicaError::DeltasBeforeSnapshot { from: 0, to: 0 })
    );
    assert!(replica.needs_resume());
    assert_eq!(replica.server_state(), None);
}

#[test]
fn after_a_gap_deltas_are_refused_until_the_snapshot() {
    let mut replica = replica_at(5);
    let info = GapInfo {
        expected_rev: 5,
        server_rev: 9,
        buffer_first_rev: 7,
        resume_from: 9,
    };
    replica
        .handle_text(&encode::gap(Dialect::Native, &info, "e2"), 1000)
        .unwrap();
    let op = (6, updated("user-1", None, Some(Status::Away)), None);
    assert_eq!(
        replica.handle_text(&deltas(5, 6, &[op]), 1000),
        Err(ReplicaError::DeltasWhileAwaitingSnapshot { from: 5, to: 6 })
    );
    assert_eq!(replica.server_rev(), 5);
    // An error in between is handled; it does not satisfy the gap.
    let events = replica.handle_text(&error(ErrorCode::Unavailable, "busy", json!({})), 1000);
    assert_eq!(
        events,
        Ok(vec![ReplicaEvent::Error {
            code: "UNAVAILABLE".into(),
            message: "busy".into(),
            retry_after_ms: None,
        }])
    );
    let state = presence([alice(Status::Away)]);
    replica
        .handle_text(&snapshot(Dialect::Native, 9, &state), 1000)
        .unwrap();
    assert_eq!(replica.epoch(), Some(&epoch("e1")));
    assert!(!replica.needs_resume());
    assert_eq!(
        replica.handle_text(&deltas(9, 9, &[]), 1000),
        Ok(vec![ReplicaEvent::Applied { from: 9, to: 9 }])
    );
}

#[test]
fn a_lost_connection_forgets_the_awaited_snapshot() {
    let mut replica = replica_at(5);
    let info = GapInfo {
        expected_rev: 5,
        server_rev: 9,
        buffer_first_rev: 7,
        resume_from: 9,
    };
    replica
        .handle_text(&encode::gap(Dialect::WsKit, &info, "e"), 1000)
        .unwrap();
    replica.disconnected();
    // The new connection's server still had revision 5 in its ring.
    assert_eq!(
        replica.handle_text(&deltas(5, 5, &[]), 1000),
        Ok(vec![ReplicaEvent::Applied { from: 5, to: 5 }])
    );
    assert!(replica.detected_gap());
}

#[test]
fn a_rejection_drops_the_pending_update_and_its_prediction() {
    let mut replica = replica_at(5);
    replica.update_with_id(status(Status::Away), "r1".into(), None, 1000);
    replica.update_with_id(rename("Alicia"), "r2".into(), None, 1000);
    let rejection = error(
        ErrorCode::PermissionDenied,
        "no",
        json!({"clientReqId": "r1"}),
    );
    assert_eq!(
        replica.handle_text(&rejection, 1001),
        Ok(vec![ReplicaEvent::Rejected {
            client_req_id: "r1".into(),
            code: "PERMISSION_DENIED".into(),
            message: "no".into()
        }])
    );
    assert_eq!(pending_ids(&replica), ["r2"]);
    let expected = presence([participant("user-1", "Alicia", Status::Online)]);
    assert_eq!(replica.visible(), Some(&expected));
    assert!(!replica.was_acked("r1"));
    // The same rejection again (the answer to a resend) says nothing.
    assert_eq!(replica.handle_text(&rejection, 1001), Ok(vec![]));
    // ws-kit 0.10's RPC_ERROR works the same.
    let rpc = br#"{"type":"RPC_ERROR","meta":{},"payload":{"code":"INVALID_ARGUMENT","details":{"clientReqId":"r2"}}}"#;
    assert_eq!(
        replica.handle_text(rpc, 1002),
        Ok(vec![ReplicaEvent::Rejected {
            client_req_id: "r2".into(),
            code: "INVALID_ARGUMENT".into(),
            message: String::new()
        }])
    );
    assert_eq!(replica.visible(), replica.server_state());
}

#[test]
fn an_already_applied_notice_acks_a_resent_duplicate() {
    let mut replica = replica_at(6);
    replica.update_with_id(status(Status::Away), "r1".into(), None, 1000);
    let notice = error(
        ErrorCode::FailedPrecondition,
        "already applied",
        json!({"clientReqId": "r1", "appliedRev": 6}),
    );
    assert_eq!(replica.handle_text(&notice, 1001), Ok(vec![acked("r1", 6)]));
    assert!(replica.pending().is_empty());
    assert!(replica.was_acked("r1"));
    // The same notice again (another resend) is expected and says nothing.
    assert_eq!(replica.handle_text(&notice, 1002), Ok(vec![]));
    // A notice or rejection about an id this replica never had is reported.
    let stranger = error(
        ErrorCode::FailedPrecondition,
        "already applied",
        json!({"clientReqId": "zz", "appliedRev": 6}),
    );
    assert_eq!(
        replica.handle_text(&stranger, 1003),
        Ok(vec![ReplicaEvent::Error {
            code: "FAILED_PRECONDITION".into(),
            message: "already applied".into(),
            retry_after_ms: None,
        }])
    );
}

#[test]
fn an_applied_rev_ahead_of_the_replica_waits_for_that_revision() {
    let mut replica = replica_at(5);
    replica.update_with_id(status(Status::Away), "r1".into(), None, 1000);
    let notice = error(
        ErrorCode::FailedPrecondition,
        "already applied",
        json!({"clientReqId": "r1", "appliedRev": 7}),
    );
    assert_eq!(replica.handle_text(&notice, 1001), Ok(vec![]));
    assert_eq!(pending_ids(&replica), ["r1"]);
    assert_eq!(status_in(replica.visible()), Some(Status::Away));
    let touch = |rev| (rev, Presence::touch("user-1", 1500), None);
    assert_eq!(
        replica.handle_text(&deltas(5, 6, &[touch(6)]), 1002),
        Ok(vec![ReplicaEvent::Applied { from: 5, to: 6 }])
    );
    assert_eq!(status_in(replica.visible()), Some(Status::Away));
    // Revision 7 arrives (here without the id): the update is acknowledged at 7.
    let away = (7, updated("user-1", None, Some(Status::Away)), None);
    assert_eq!(
        replica.handle_text(&deltas(6, 7, &[away]), 1003),
        Ok(vec![
            ReplicaEvent::Applied { from: 6, to: 7 },
            acked("r1", 7)
        ])
    );
    assert!(replica.pending().is_empty());
}

#[test]
fn an_applied_rev_is_forgotten_when_the_history_changes() {
    let mut replica = Replica::<Presence>::with_id_suffix("user-1", "t");
    replica.restore(presence([alice(Status::Online)]), 5, Some(epoch("e0")));
    replica.update_with_id(status(Status::Away), "r1".into(), None, 1000);
    let notice = error(
        ErrorCode::FailedPrecondition,
        "already applied",
        json!({"clientReqId": "r1", "appliedRev": 7}),
    );
    replica.handle_text(&notice, 1001).unwrap();
    // The server restarted (epoch e1) and lost the update: it must stay pending.
    let state = presence([alice(Status::Online)]);
    let events = replica.handle_text(&snapshot(Dialect::Native, 8, &state), 1002);
    assert_eq!(
        events,
        Ok(vec![ReplicaEvent::Snapshot {
            rev: 8,
            after_gap: false
        }])
    );
    assert_eq!(pending_ids(&replica), ["r1"]);
}

#[test]
fn a_snapshot_acks_the_pending_updates_it_contains_and_keeps_the_others() {
    let mut replica = replica_at(5);
    replica.update_with_id(status(Status::Away), "r1".into(), None, 1000);
    replica.update_with_id(rename("Alicia"), "r2".into(), None, 1000);
    let state = presence([alice(Status::Away)]);
    let events = replica.handle_text(&snapshot(Dialect::WsKit, 9, &state), 1001);
    assert_eq!(
        events,
        Ok(vec![
            ReplicaEvent::Snapshot {
                rev: 9,
                after_gap: false
            },
            acked("r1", 9)
        ])
    );
    assert_eq!(pending_ids(&replica), ["r2"]);
    assert_eq!(replica.server_state(), Some(&state));
    let expected = presence([participant("user-1", "Alicia", Status::Away)]);
    assert_eq!(replica.visible(), Some(&expected));
    assert_eq!(replica.resend_messages().len(), 1);
}

#[test]
fn the_epoch_is_kept_by_snapshots_that_do_not_carry_one() {
    let mut replica = Replica::<Presence>::with_id_suffix("user-1", "t");
    let state = presence([alice(Status::Online)]);
    replica
        .handle_text(&snapshot(Dialect::Native, 3, &state), 1000)
        .unwrap();
    assert_eq!(replica.epoch(), Some(&epoch("e1")));
    replica
        .handle_text(&snapshot(Dialect::WsKit, 4, &state), 1000)
        .unwrap();
    assert_eq!(replica.epoch(), Some(&epoch("e1")));
}

#[test]
fn join_resumes_once_there_is_a_server_state() {
    let mut replica = Replica::<Presence>::with_id_suffix("user-1", "t");
    let plain = json!({"type": "JOIN", "meta": {}, "payload": {"participantId": "user-1", "name": "Alice"}});
    assert_eq!(
        json_of(&replica.join_message("user-1", "Alice", Dialect::Native)),
        plain
    );
    replica.restore(presence([alice(Status::Online)]), 5, Some(epoch("e1")));
    assert_eq!(
        json_of(&replica.join_message("user-1", "Alice", Dialect::WsKit)),
        json!({"type": "JOIN", "meta": {}, "payload": {
            "participantId": "user-1", "name": "Alice", "rev": 5}})
    );
    assert_eq!(
        json_of(&replica.join_message("user-1", "Alice", Dialect::Native)),
        json!({"type": "JOIN", "meta": {}, "payload": {
            "participantId": "user-1", "name": "Alice", "rev": 5, "epoch": "e1"}})
    );
}

#[test]
fn fresh_ids_count_up_and_base_rev_follows_the_server() {
    let mut replica = Replica::<Presence>::with_id_suffix("user-1", "s");
    let (id, message) = replica.update(status(Status::Away), 1000);
    assert_eq!(id, "user-1-1-s");
    assert_eq!(
        json_of(&message),
        json!({"type": "UPDATE", "meta": {}, "payload": {
            "patch": {"status": "away"}, "clientReqId": "user-1-1-s"}})
    );
    assert_eq!(replica.visible(), None, "nothing to predict on yet");
    replica.restore(presence([alice(Status::Online)]), 5, None);
    let (id, message) = replica.update(status(Status::Away), 1000);
    assert_eq!(id, "user-1-2-s");
    assert_eq!(json_of(&message)["payload"]["baseRev"], json!(5));
    let a = Replica::<Presence>::new("user-1")
        .update(status(Status::Away), 0)
        .0;
    let b = Replica::<Presence>::new("user-1")
        .update(status(Status::Away), 0)
        .0;
    assert_ne!(a, b, "two replicas of one participant never share ids");
}

#[test]
fn resend_messages_are_the_original_updates_in_order() {
    let mut replica = replica_at(5);
    let first = replica.update_with_id(status(Status::Away), "r1".into(), Some(5), 1000);
    let second = replica.update_with_id(rename("Al"), "r2".into(), None, 1000);
    assert_eq!(replica.resend_messages(), [first, second]);
}

#[test]
fn restore_resets_pending_and_gap_but_keeps_acks() {
    let mut replica = replica_at(5);
    replica.update_with_id(status(Status::Away), "r1".into(), None, 1000);
    let op = (6, updated("user-1", None, Some(Status::Away)), Some("r1"));
    replica.handle_text(&deltas(5, 6, &[op]), 1000).unwrap();
    replica.update_with_id(status(Status::Online), "r2".into(), None, 1000);
    let info = GapInfo {
        expected_rev: 6,
        server_rev: 9,
        buffer_first_rev: 8,
        resume_from: 9,
    };
    replica
        .handle_text(&encode::gap(Dialect::WsKit, &info, "e"), 1000)
        .unwrap();
    let state = presence([alice(Status::Offline)]);
    replica.restore(state.clone(), 40, None);
    assert_eq!((replica.server_rev(), replica.pending().len()), (40, 0));
    assert!(!replica.detected_gap() && !replica.needs_resume());
    assert_eq!(replica.visible(), Some(&state));
    assert!(replica.was_acked("r1"));
    assert_eq!(
        replica.handle_text(&deltas(40, 40, &[]), 1000),
        Ok(vec![ReplicaEvent::Applied { from: 40, to: 40 }])
    );
}

#[test]
fn undecodable_messages_are_errors_and_ask_for_a_resume() {
    let mut replica = replica_at(5);
    for text in [&b"garbage"[..], br#"{"type":"PONG","payload":{}}"#] {
        let result = replica.handle_text(text, 1000);
        assert!(matches!(result, Err(ReplicaError::Decode(_))), "{result:?}");
        assert!(replica.needs_resume());
        assert_eq!(replica.server_rev(), 5);
    }
    assert_eq!(replica.last_received_ms(), Some(1000));
}

/// A rejection naming the marked prefix of an over-long id rejects the oldest pending
/// update whose longer id starts with it (errors come in the order updates were sent).
#[test]
fn a_truncated_client_req_id_rejects_the_oldest_pending_update_it_prefixes() {
    let mut replica = replica_at(5);
    let (long_a, long_b) = (
        format!("{}a", "x".repeat(128)),
        format!("{}b", "x".repeat(128)),
    );
    replica.update_with_id(status(Status::Away), "x".repeat(128), None, 1000);
    replica.update_with_id(status(Status::Offline), long_a.clone(), None, 1000);
    replica.update_with_id(rename("Alicia"), long_b.clone(), None, 1000);
    let rejection = error(
        ErrorCode::InvalidArgument,
        "payload.clientReqId is 129 bytes long; the limit is 128",
        json!({"clientReqId": "x".repeat(128), "clientReqIdTruncated": true}),
    );
    let rejected = |id: &str| ReplicaEvent::Rejected {
        client_req_id: id.into(),
        code: "INVALID_ARGUMENT".into(),
        message: "payload.clientReqId is 129 bytes long; the limit is 128".into(),
    };
    assert_eq!(
        replica.handle_text(&rejection, 1001),
        Ok(vec![rejected(&long_a)])
    );
    assert_eq!(pending_ids(&replica), ["x".repeat(128), long_b.clone()]);
    assert_eq!(
        replica.handle_text(&rejection, 1001),
        Ok(vec![rejected(&long_b)])
    );
    assert_eq!(pending_ids(&replica), ["x".repeat(128)]);
    // The same rejection again (the answer to a resend) says nothing, and the id that is
    // exactly the prefix is no over-long id: it stays pending.
    assert_eq!(replica.handle_text(&rejection, 1001), Ok(vec![]));
    assert_eq!(pending_ids(&replica), ["x".repeat(128)]);
    let expected = presence([participant("user-1", "Alice", Status::Away)]);
    assert_eq!(replica.visible(), Some(&expected));
}

#[test]
fn errors_about_no_pending_update_are_reported() {
    let mut replica = replica_at(5);
    let events = replica.handle_text(
        &error(ErrorCode::Unauthenticated, "join first", json!({})),
        1000,
    );
    assert_eq!(
        events,
        Ok(vec![ReplicaEvent::Error {
            code: "UNAUTHENTICATED".into(),
            message: "join first".into(),
            retry_after_ms: None,
        }])
    );
    let limited = encode::error(&ErrorMessage {
        retry_after_ms: Some(1500),
        ..ErrorMessage::new(ErrorCode::ResourceExhausted, "too many joins")
    });
    assert_eq!(
        replica.handle_text(&limited, 1000),
        Ok(vec![ReplicaEvent::Error {
            code: "RESOURCE_EXHAUSTED".into(),
            message: "too many joins".into(),
            retry_after_ms: Some(1500)
        }])
    );
    let plain = encode::error(&ErrorMessage::new(ErrorCode::Internal, "oops"));
    assert_eq!(
        replica.handle_text(&plain, 1000),
        Ok(vec![ReplicaEvent::Error {
            code: "INTERNAL".into(),
            message: "oops".into(),
            retry_after_ms: None,
        }])
    );
}

// regression: a rate-limited UPDATE was dropped as rejected, though the server never
// processed it; the TypeScript replica keeps it pending and sends it again.
#[test]
fn a_retryable_error_defers_the_pending_update_instead_of_rejecting_it() {
    let mut replica = replica_at(5);
    let sent = replica.update_with_id(status(Status::Away), "r1".into(), None, 1000);
    let details = json!({"clientReqId": "r1"});
    let limited = encode::error(&ErrorMessage {
        retry_after_ms: Some(250),
        details: details.as_object(),
        ..ErrorMessage::new(ErrorCode::ResourceExhausted, "slow down")
    });
    assert_eq!(
        replica.handle_text(&limited, 1001),
        Ok(vec![ReplicaEvent::Deferred {
            client_req_id: "r1".into(),
            code: "RESOURCE_EXHAUSTED".into(),
            message: "slow down".into(),
            retry_after_ms: Some(250),
        }])
    );
    assert_eq!(pending_ids(&replica), ["r1"]);
    assert_eq!(replica.message_of("r1"), Some(sent));
    let expected = presence([alice(Status::Away)]);
    assert_eq!(replica.visible(), Some(&expected), "still predicted");
    // Sent again later, it is committed and acknowledged once.
    let op = updated("user-1", None, Some(Status::Away));
    assert_eq!(
        replica.handle_text(&deltas(5, 6, &[(6, op, Some("r1"))]), 1300),
        Ok(vec![
            ReplicaEvent::Applied { from: 5, to: 6 },
            acked("r1", 6)
        ])
    );
    assert_eq!(replica.message_of("r1"), None);
    // A retryable error without a delay (a full disk) defers too; a final one rejects.
    replica.update_with_id(status(Status::Online), "r2".into(), None, 1400);
    let unavailable = error(
        ErrorCode::Unavailable,
        "disk full",
        json!({"clientReqId": "r2"}),
    );
    assert_eq!(
        replica.handle_text(&unavailable, 1401),
        Ok(vec![ReplicaEvent::Deferred {
            client_req_id: "r2".into(),
            code: "UNAVAILABLE".into(),
            message: "disk full".into(),
            retry_after_ms: None,
        }])
    );
    assert_eq!(pending_ids(&replica), ["r2"]);
}
