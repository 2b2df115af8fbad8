use std::num::NonZeroUsize;
use std::sync::{Arc, Barrier};

use parking_lot::Mutex;
use serde_json::{Value, json};

use super::*;
use crate::clock::ManualClock;
use crate::model::presence::{Patch, Presence, PresenceInput, PresenceOp, Status};

fn room_with(capacity: usize) -> (Room<Presence>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1000));
    let room = Room::builder("test", Presence::default())
        .config(RoomConfig::with_ring_capacity(capacity).unwrap())
        .clock(Arc::clone(&clock) as Arc<dyn Clock>)
        .epoch(Epoch::new("epoch-1").unwrap())
        .build()
        .unwrap();
    (room, clock)
}

fn status(status: Status) -> PresenceInput {
    PresenceInput {
        patch: Patch {
            status: Some(status),
            ..Patch::default()
        },
    }
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn each_commit_moves_the_revision_by_one_and_is_encoded_once() {
    let (room, _) = room_with(8);
    assert_eq!(room.join("user-1", "Alice").unwrap(), Some(1));
    let commit = room
        .submit("user-1", &status(Status::Away), Some("req-1"))
        .unwrap();
    assert_eq!(
        commit,
        Commit {
            rev: 2,
            duplicate: false
        }
    );
    let deltas = room.since(0, None).unwrap();
    assert_eq!((deltas.from, deltas.to), (0, 2));
    let ops: Vec<Value> = deltas.operations.iter().map(|b| json(b)).collect();
    assert_eq!(
        ops,
        [
            json!({"rev": 1, "type": "participant.joined", "payload": {
                "id": "user-1", "name": "Alice", "status": "online", "lastActive": 1000}}),
            json!({"rev": 2, "type": "participant.updated",
                "payload": {"id": "user-1", "status": "away"}, "clientReqId": "req-1"}),
        ]
    );
}

#[test]
fn a_resent_client_req_id_is_applied_once() {
    let (room, _) = room_with(8);
    room.join("user-1", "Alice").unwrap();
    room.submit("user-1", &status(Status::Away), Some("req-1"))
        .unwrap();
    let again = room
        .submit("user-1", &status(Status::Offline), Some("req-1"))
        .unwrap();
    assert_eq!(
        again,
        Commit {
            rev: 2,
            duplicate: true
        }
    );
    assert_eq!(room.rev(), 2);
    room.with_state(|state, rev| {
        assert_eq!(rev, 2);
        assert_eq!(state.participant("user-1").unwrap().status, Status::Away);
    });
    // Another participant may use the same id.
    room.join("user-2", "Bob").unwrap();
    let other = room
        .submit("user-2", &status(Status::Away), Some("req-1"))
        .unwrap();
    assert_eq!(
        other,
        Commit {
            rev: 4,
            duplicate: false
        }
    );
}

#[test]
fn a_rejection_changes_nothing() {
    let (room, _) = room_with(8);
    room.join("user-1", "Alice").unwrap();
    let empty = PresenceInput {
        patch: Patch::default(),
    };
    let rejected = room.submit("user-1", &empty, Some("req-1")).unwrap_err();
    assert_eq!(
        rejected,
        Rejection::invalid("patch must set name or status")
    );
    assert_eq!(room.rev(), 1);
    // The rejected id was not remembered: a corrected resend under it is applied.
    let commit = room
        .submit("user-1", &status(Status::Away), Some("req-1"))
        .unwrap();
    assert!(!commit.duplicate);
    let ghost = room.commit(Presence::touch("ghost", 5), Origin::SERVER);
    assert_eq!(
        ghost,
        Err(Rejection::not_found(
            "participant \"ghost\" is not in the room"
        ))
    );
    assert_eq!(room.rev(), 2);
}

#[test]
fn rejoin_without_change_commits_nothing() {
    let (room, clock) = room_with(8);
    room.join("user-1", "Alice").unwrap();
    clock.set(9000);
    assert_eq!(room.join("user-1", "Alice").unwrap(), None);
    assert_eq!(room.rev(), 1);
    assert_eq!(room.leave("user-1").unwrap(), Some(2));
    assert_eq!(room.leave("user-1").unwrap(), None);
}

#[test]
fn gap_matches_the_protocol_example() {
    // protocol.md: capacity 1024 and revisions 1..=1051 give bufferFirstRev 27.
    let (room, clock) = room_with(1024);
    room.join("user-1", "Alice").unwrap();
    clock.set(2000);
    for _ in 0..1050 {
        room.commit(Presence::touch("user-1", 2000), Origin::SERVER)
            .unwrap();
    }
    assert_eq!(room.rev(), 1051);
    assert_eq!(
        room.since(1, None),
        Err(GapInfo {
            expected_rev: 1,
            server_rev: 1051,
            buffer_first_rev: 27,
            resume_from: 1051
        })
    );
    // regression: a resume at exactly bufferFirstRev is served by deltas.
    let deltas = room.since(27, None).unwrap();
    assert_eq!(deltas.operations.len(), 1024);
    assert_eq!(json(&deltas.operations[0])["rev"], 28);
    assert!(room.since(26, None).is_err());
    let snapshot = room.snapshot().unwrap();
    assert_eq!(snapshot.rev(), 1051);
    assert_eq!(
        json(snapshot.message(crate::protocol::Dialect::WsKit)),
        json!({"type": "SYNC.SNAPSHOT", "meta": {}, "payload": {"rev": 1051, "participants": {
            "user-1": {"id": "user-1", "name": "Alice", "status": "online", "lastActive": 2000}}}})
    );
}

#[test]
fn ahead_or_foreign_revisions_get_a_gap_never_deltas() {
    let (room, _) = room_with(8);
    room.join("user-1", "Alice").unwrap();
    let ahead = room.since(5, None).unwrap_err();
    assert_eq!(
        ahead,
        GapInfo {
            expected_rev: 5,
            server_rev: 1,
            buffer_first_rev: 0,
            resume_from: 1
        }
    );
    assert!(room.since(0, Some("epoch-1")).is_ok());
    let foreign = room.since(0, Some("another-history")).unwrap_err();
    assert_eq!(foreign.expected_rev, 0);
    assert_eq!(foreign.resume_from, 1);
    let at_head = room.since(1, Some("epoch-1")).unwrap();
    assert!(at_head.operations.is_empty());
}

#[test]
fn snapshot_is_encoded_once_per_revision_however_many_ask() {
    let (room, _) = room_with(8);
    let room = Arc::new(room);
    room.join("user-1", "Alice").unwrap();
    let before = room.snapshots_encoded();
    let barrier = Arc::new(Barrier::new(8));
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (room, barrier) = (Arc::clone(&room), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                room.snapshot().unwrap()
            })
        })
        .collect();
    let snapshots: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert_eq!(room.snapshots_encoded(), before + 1);
    for snapshot in &snapshots {
        assert!(Arc::ptr_eq(snapshot, &snapshots[0]), "one shared snapshot");
        assert_eq!(snapshot.rev(), 1);
    }
    room.snapshot().unwrap();
    assert_eq!(
        room.snapshots_encoded(),
        before + 1,
        "cached for the revision"
    );
}

#[test]
fn a_lagging_snapshot_is_reused_within_the_allowed_lag() {
    let (room, _) = room_with(4);
    room.join("user-1", "Alice").unwrap();
    let first = room.snapshot().unwrap();
    room.submit("user-1", &status(Status::Away), Some("a"))
        .unwrap();
    room.submit("user-1", &status(Status::Online), Some("b"))
        .unwrap();
    assert!(Arc::ptr_eq(&room.snapshot_within(2).unwrap(), &first));
    assert_eq!(room.snapshot_within(1).unwrap().rev(), 3);
    // Never older than the ring can complete, whatever the lag allowed.
    for i in 0..5 {
        room.submit("user-1", &status(Status::Away), Some(&format!("c{i}")))
            .unwrap();
    }
    assert_eq!(room.buffer_first_rev(), 4);
    assert_eq!(room.snapshot_within(100).unwrap().rev(), 8);
}

#[test]
fn a_joiner_shares_the_last_snapshot_while_what_followed_is_small_beside_it() {
    let clock = Arc::new(ManualClock::new(1000));
    let mut config = RoomConfig::with_ring_capacity(64).unwrap();
    config.snapshot_reuse_percent = 25;
    let room = Room::builder("test", Presence::default())
        .config(config)
        .clock(clock as Arc<dyn Clock>)
        .build()
        .unwrap();
    for i in 0..20 {
        room.join(&format!("user-{i}"), &format!("Participant {i}"))
            .unwrap();
    }
    let shared = room.snapshot_for_join().unwrap();
    assert_eq!(shared.rev(), 20);
    let budget = shared.state_json().len() / 4;
    // Joins of about a twentieth of the snapshot each: shared until they pass a quarter.
    let mut committed = 0;
    let mut joiner = 20;
    loop {
        room.join(&format!("user-{joiner}"), "Late").unwrap();
        joiner += 1;
        committed += room
            .since(room.published_rev() - 1, None)
            .unwrap()
            .operations[0]
            .len();
        let served = room.snapshot_for_join().unwrap();
        if committed > budget {
            assert_eq!(served.rev(), room.published_rev(), "a new one at the head");
            break;
        }
        assert!(
            Arc::ptr_eq(&served, &shared),
            "{committed} of {budget} bytes"
        );
    }
    assert!(joiner > 22, "shared for more than one joiner");
}

#[test]
fn without_reuse_a_joiner_gets_a_snapshot_at_the_head() {
    let mut config = RoomConfig::with_ring_capacity(64).unwrap();
    config.snapshot_reuse_percent = 0;
    let room = Room::builder("test", Presence::default())
        .config(config)
        .clock(Arc::new(ManualClock::new(1000)) as Arc<dyn Clock>)
        .build()
        .unwrap();
    for i in 0..20 {
        room.join(&format!("user-{i}"), "Someone").unwrap();
    }
    let first = room.snapshot_for_join().unwrap();
    room.submit("user-1", &status(Status::Away), Some("a"))
        .unwrap();
    // One small update beside twenty participants: a new snapshot all the same.
    assert_eq!(first.rev(), 20);
    assert_eq!(room.snapshot_for_join().unwrap().rev(), 21);
}

#[test]
fn a_restored_room_serves_only_its_restore_point() {
    let state: Presence = serde_json::from_value(json!({"participants": {"user-1": {
        "id": "user-1", "name": "Alice", "status": "online", "lastActive": 1000}}}))
    .unwrap();
    let room = Room::builder("restored", state)
        .clock(Arc::new(ManualClock::new(1000)))
        .epoch(Epoch::new("e").unwrap())
        .restored_at(5)
        .build()
        .unwrap();
    assert_eq!(room.rev(), 5);
    assert_eq!(room.snapshot().unwrap().rev(), 5);
    assert_eq!(room.since(5, Some("e")).unwrap().operations.len(), 0);
    assert_eq!(room.since(4, Some("e")).unwrap_err().buffer_first_rev, 5);
    let commit = room
        .submit("user-1", &status(Status::Away), Some("req-123"))
        .unwrap();
    assert_eq!(commit.rev, 6);
}

#[test]
fn listeners_hear_every_commit_after_the_lock_is_released() {
    struct Record<M: Model>(Mutex<Vec<(String, u64)>>, Arc<Room<M>>);
    impl<M: Model> CommitListener for Record<M> {
        fn committed(&self, room: &str, rev: u64) {
            // Taking the commit lock here would deadlock if it were still held.
            self.1.with_state(|_, _| ());
            self.0.lock().push((room.to_owned(), rev));
        }
    }
    let (room, _) = room_with(8);
    let room = Arc::new(room);
    let record = Arc::new(Record(Mutex::new(Vec::new()), Arc::clone(&room)));
    room.subscribe(record.clone());
    room.join("user-1", "Alice").unwrap();
    room.submit("user-1", &status(Status::Away), Some("r"))
        .unwrap();
    room.submit("user-1", &status(Status::Away), Some("r"))
        .unwrap();
    assert_eq!(
        *record.0.lock(),
        [("test".to_owned(), 1), ("test".to_owned(), 2)]
    );
}

#[test]
fn a_model_whose_operation_has_no_type_is_refused_and_changes_nothing() {
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    struct Counter {
        n: u64,
    }
    impl Model for Counter {
        type Op = u64;
        type Input = u64;
        fn decide(&self, _: &str, input: &u64, _: u64) -> Result<u64, Rejection> {
            Ok(*input)
        }
        fn check(&self, _: &u64) -> Result<(), Rejection> {
            Ok(())
        }
        fn apply(&mut self, op: &u64) {
            self.n += op;
        }
    }
    let room = Room::builder("c", Counter { n: 0 }).build().unwrap();
    let err = room.commit(3, Origin::SERVER).unwrap_err();
    assert_eq!(err.code, ErrorCode::Internal);
    assert_eq!(room.rev(), 0);
    room.with_state(|state, _| assert_eq!(state.n, 0));
}

#[test]
fn capacity_one_room_still_serves_the_head() {
    let (room, _) = room_with(1);
    room.join("user-1", "Alice").unwrap();
    room.submit("user-1", &status(Status::Away), Some("r"))
        .unwrap();
    assert_eq!(room.since(1, None).unwrap().operations.len(), 1);
    assert_eq!(room.since(0, None).unwrap_err().buffer_first_rev, 1);
    assert_eq!(room.ring.capacity(), NonZeroUsize::MIN.get());
    let op: PresenceOp = serde_json::from_value(json!({
        "type": "participant.left", "payload": {"id": "user-1"}}))
    .unwrap();
    assert_eq!(room.commit(op, Origin::SERVER).unwrap().rev, 3);
}

#[test]
fn a_full_room_refuses_new_participants_until_one_leaves_or_expires() {
    let clock = Arc::new(ManualClock::new(1000));
    let room = Room::builder("full", Presence::default())
        .clock(Arc::clone(&clock) as Arc<dyn Clock>)
        .max_participants(2)
        .build()
        .unwrap();
    assert_eq!(room.join_attached("a", "A").unwrap(), Some(1));
    assert_eq!(room.join_attached("b", "B").unwrap(), Some(2));
    let full = Rejection::new(
        ErrorCode::ResourceExhausted,
        "room \"full\" is full: it admits 2 participants at most",
    );
    assert_eq!(room.join_attached("c", "C"), Err(full.clone()));
    assert_eq!(room.join("c", "C"), Err(full.clone()));
    assert_eq!(room.rev(), 2, "nothing committed");
    assert_eq!(room.connections("c"), 0, "nothing attached");
    // A participant already in the room is always admitted.
    assert_eq!(room.join_attached("a", "A2").unwrap(), Some(3));
    // One whose connection went away still counts until its time-to-live runs out.
    room.detach("b");
    assert_eq!(room.join_attached("c", "C"), Err(full.clone()));
    clock.set(5000);
    assert_eq!(room.expire_detached(1000).unwrap(), vec![4]);
    assert_eq!(room.join_attached("c", "C").unwrap(), Some(5));
    // One that leaves frees its place at once.
    room.detach("c");
    assert_eq!(room.leave("c").unwrap(), Some(6));
    assert_eq!(room.join_attached("d", "D").unwrap(), Some(7));
}

#[test]
fn racing_joins_never_overfill_a_room() {
    let room = Arc::new(
        Room::builder("race", Presence::default())
            .max_participants(3)
            .build()
            .unwrap(),
    );
    let barrier = Arc::new(Barrier::new(8));
    let admitted: usize = (0..8)
        .map(|i| {
            let (room, barrier) = (Arc::clone(&room), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                room.join_attached(&format!("p-{i}"), "P").is_ok()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| usize::from(t.join().unwrap()))
        .sum();
    assert_eq!(admitted, 3);
    assert_eq!(room.rev(), 3);
}
