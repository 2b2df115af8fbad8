//! Resuming over real sockets: a client that comes back with the revision it holds gets
//! only the operations it missed while the ring holds them, `REVISION_GAP` and a snapshot
//! beyond that, and never the deltas of another history after a server restart.
mod common;

use common::sync::SyncClient;
use common::{TestServer, Ws, deltas, joined_op, update};
use deltasync::model::presence::Status;
use serde_json::{Value, json};

fn resume(id: &str, name: &str, rev: u64) -> Value {
    json!({"type": "JOIN", "payload": {"participantId": id, "name": name, "rev": rev}})
}

fn updated(rev: u64, id: &str, status: &str, req: &str) -> Value {
    json!({"rev": rev, "type": "participant.updated",
        "payload": {"id": id, "status": status}, "clientReqId": req})
}

/// Alice (rev 1) and Bob (rev 2) join; Alice reads up to 2 and goes; Bob then commits
/// `updates` changes. Returns Bob's connection.
fn alice_away_while_bob_updates(server: &TestServer, updates: u64) -> Ws {
    let mut alice = Ws::connect(&server.url("/"));
    let mut bob = Ws::connect(&server.url("/"));
    assert_eq!(alice.join("user-1", "Alice")["payload"]["rev"], 1);
    assert_eq!(bob.join("user-2", "Bob")["payload"]["rev"], 2);
    assert_eq!(
        alice.recv(),
        deltas(1, 2, vec![joined_op(2, "user-2", "Bob")])
    );
    drop(alice);
    for i in 0..updates {
        let status = if i % 2 == 0 { "away" } else { "online" };
        bob.send(update(status, &format!("bob-{i}")));
        assert_eq!(bob.recv()["payload"]["toRev"], 3 + i);
    }
    bob
}

#[test]
fn a_resume_within_the_ring_gets_only_the_missed_deltas() {
    let server = TestServer::with_manual_clock(|_| {});
    let mut bob = alice_away_while_bob_updates(&server, 3);
    let mut alice = Ws::connect(&server.url("/"));
    alice.send(resume("user-1", "Alice", 2));
    // Alice is still a participant (her time-to-live has not passed): her JOIN commits
    // nothing, and she gets exactly the three operations she missed, no snapshot.
    assert_eq!(
        alice.recv(),
        deltas(
            2,
            5,
            vec![
                updated(3, "user-2", "away", "bob-0"),
                updated(4, "user-2", "online", "bob-1"),
                updated(5, "user-2", "away", "bob-2"),
            ]
        )
    );
    // The stream goes on from there.
    bob.send(update("online", "bob-3"));
    let next = deltas(5, 6, vec![updated(6, "user-2", "online", "bob-3")]);
    assert_eq!(alice.recv(), next);
    assert_eq!(bob.recv(), next);

    // A client that is already current gets an empty SYNC.DELTAS: its resume worked.
    let mut current = Ws::connect(&server.url("/"));
    current.send(resume("user-1", "Alice", 6));
    assert_eq!(current.recv(), deltas(6, 6, vec![]));
}

#[test]
fn a_resume_beyond_the_ring_gets_a_gap_then_a_snapshot() {
    let server = TestServer::with_manual_clock(|config| {
        config.room.ring_capacity = 4.try_into().unwrap();
    });
    let _bob = alice_away_while_bob_updates(&server, 6);
    // Revisions 1..=8 committed; the ring holds 5..=8, so bufferFirstRev is 4.
    let snapshot = json!({"type": "SYNC.SNAPSHOT", "meta": {}, "payload": {"rev": 8, "participants": {
        "user-1": {"id": "user-1", "name": "Alice", "status": "online", "lastActive": 1000},
        "user-2": {"id": "user-2", "name": "Bob", "status": "online", "lastActive": 1000}}}});
    for rev in [2, 3, 99] {
        let mut alice = Ws::connect(&server.url("/"));
        alice.send(resume("user-1", "Alice", rev));
        assert_eq!(
            alice.recv(),
            json!({"type": "REVISION_GAP", "meta": {}, "payload": {
                "expectedRev": rev, "serverRev": 8, "bufferFirstRev": 4, "resumeFrom": 8}}),
            "a resume at {rev}"
        );
        assert_eq!(alice.recv(), snapshot, "a resume at {rev}");
    }
    // regression guard: a resume at exactly bufferFirstRev is still served by deltas.
    let mut alice = Ws::connect(&server.url("/"));
    alice.send(resume("user-1", "Alice", 4));
    let resumed = alice.recv();
    assert_eq!(resumed["type"], "SYNC.DELTAS", "{resumed}");
    assert_eq!(
        (&resumed["payload"]["fromRev"], &resumed["payload"]["toRev"]),
        (&json!(4), &json!(8))
    );
}

#[test]
fn a_resume_after_a_server_restart_gets_a_gap_and_the_new_history() {
    let mut first = TestServer::with_manual_clock(|_| {});
    let addr = first.addr();
    let url = first.url("/");
    let mut alice = SyncClient::connect_native(&url, "user-1");
    assert_eq!(alice.join("Alice"), 1);
    alice.set_status(Status::Away);
    alice.set_status(Status::Online);
    alice.until_rev(3);
    let old_epoch = first.room("default").epoch().as_str().to_owned();
    assert_eq!(alice.replica.epoch().unwrap().as_str(), old_epoch);

    first.server().handle().shutdown();
    assert_eq!(alice.ws.recv_close(), Some(1012));
    alice.ws.disconnect();
    first.stop();

    // A new process on the same port: a new history that also reaches revision 3.
    let second = TestServer::with_manual_clock(|config| config.server.listen = addr);
    let mut bob = SyncClient::connect_native(&url, "user-2");
    assert_eq!(bob.join("Bob"), 1);
    bob.set_status(Status::Away);
    bob.set_status(Status::Online);
    bob.until_rev(3);
    let new_epoch = second.room("default").epoch().as_str().to_owned();
    assert_ne!(new_epoch, old_epoch);

    // Alice resumes from revision 3 of the old epoch (the replica's JOIN carries both).
    alice.reconnect(Ws::connect_native(&url));
    alice.send_join("Alice");
    // Her JOIN commits her arrival at 4; revision 3 is in the new ring, but of another
    // history: a gap and the new snapshot, never deltas 3->4.
    assert_eq!(
        alice.recv(),
        json!({"type": "REVISION_GAP", "meta": {}, "payload": {"expectedRev": 3,
            "serverRev": 4, "bufferFirstRev": 0, "resumeFrom": 4, "epoch": new_epoch}})
    );
    assert_eq!(
        alice.recv(),
        json!({"type": "SYNC.SNAPSHOT", "meta": {}, "payload": {"rev": 4, "epoch": new_epoch,
            "participants": {
                "user-1": {"id": "user-1", "name": "Alice", "status": "online", "lastActive": 1000},
                "user-2": {"id": "user-2", "name": "Bob", "status": "online", "lastActive": 1000}}}})
    );
    assert_eq!(alice.replica.epoch().unwrap().as_str(), new_epoch);
    bob.until_rev(4);
    assert!(*alice.state() == *bob.state());
    // The clients go before the server stops, which then has no close handshake to wait for.
    drop((alice, bob));
}
