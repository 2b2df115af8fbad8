//! Synchronisation over real sockets: exact messages of a join, an update and its ack;
//! 200 clients of one room each getting every operation exactly once and in order; two
//! rooms that know nothing of each other.
mod common;

use common::sync::SyncClient;
use common::{TestServer, Ws, deltas, joined_op, update};
use deltasync::model::presence::Status;
use serde_json::json;

#[test]
fn join_snapshot_update_ack_and_leave_are_exact() {
    let server = TestServer::with_manual_clock(|_| {});
    let mut alice = Ws::connect(&server.url("/"));
    assert_eq!(
        alice.join("user-1", "Alice"),
        json!({"type": "SYNC.SNAPSHOT", "meta": {}, "payload": {"rev": 1, "participants": {
            "user-1": {"id": "user-1", "name": "Alice", "status": "online", "lastActive": 1000}}}})
    );
    let mut bob = Ws::connect(&server.url("/"));
    assert_eq!(
        bob.join("user-2", "Bob"),
        json!({"type": "SYNC.SNAPSHOT", "meta": {}, "payload": {"rev": 2, "participants": {
            "user-1": {"id": "user-1", "name": "Alice", "status": "online", "lastActive": 1000},
            "user-2": {"id": "user-2", "name": "Bob", "status": "online", "lastActive": 1000}}}})
    );
    assert_eq!(
        alice.recv(),
        deltas(1, 2, vec![joined_op(2, "user-2", "Bob")])
    );

    alice.send(update("away", "req-1"));
    let ack = deltas(
        2,
        3,
        vec![json!({"rev": 3, "type": "participant.updated",
            "payload": {"id": "user-1", "status": "away"}, "clientReqId": "req-1"})],
    );
    assert_eq!(alice.recv(), ack, "the sender's ack");
    assert_eq!(bob.recv(), ack, "everyone else gets the same operation");

    alice.send(json!({"type": "LEAVE"}));
    let left = deltas(
        3,
        4,
        vec![json!({"rev": 4, "type": "participant.left", "payload": {"id": "user-1"}})],
    );
    assert_eq!(alice.recv(), left);
    assert_eq!(bob.recv(), left);
    assert_eq!(server.room("default").rev(), 4);
}

#[test]
fn two_hundred_clients_of_one_room_get_every_operation_once_and_in_order() {
    const CLIENTS: usize = 200;
    const WRITERS: usize = 20;
    let server = TestServer::start();
    let url = server.url("/rooms/crowd");
    let mut clients: Vec<SyncClient> = Vec::with_capacity(CLIENTS);
    let mut snapshot_revs = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let mut client = SyncClient::connect(&url, &format!("user-{i}"));
        // Each JOIN commits one `participant.joined` (client i's is revision i + 1); its
        // snapshot is at that revision or, shared with earlier joiners
        // (`room.snapshot_reuse_percent`), before it, and the rest follows as deltas.
        let snapshot_rev = client.join(&format!("User {i}"));
        assert!(snapshot_rev <= i as u64 + 1, "user-{i}: {snapshot_rev}");
        snapshot_revs.push(snapshot_rev);
        clients.push(client);
    }
    let shared = (0..CLIENTS)
        .filter(|&i| snapshot_revs[i] < i as u64 + 1)
        .count();
    assert!(
        shared > CLIENTS / 2,
        "most joiners shared a snapshot: {shared}"
    );
    let mut acks = Vec::new();
    for (i, client) in clients.iter_mut().take(WRITERS).enumerate() {
        let status = if i % 2 == 0 {
            Status::Away
        } else {
            Status::Offline
        };
        acks.push(client.set_status(status));
    }
    let head = (CLIENTS + WRITERS) as u64;
    for (i, client) in clients.iter_mut().enumerate() {
        client.until_rev(head);
        let snapshot_rev = snapshot_revs[i];
        assert_eq!(
            client.stream.op_revs,
            (snapshot_rev + 1..=head).collect::<Vec<_>>(),
            "{}: every operation after its snapshot, once, in order",
            client.id
        );
        assert_eq!(client.stream.snapshots, [snapshot_rev]);
        assert!(client.stream.gaps.is_empty() && client.stream.errors.is_empty());
        assert!(
            client.replica.pending().is_empty(),
            "{}: its update was acknowledged",
            client.id
        );
    }
    for (client, ack) in clients.iter().zip(&acks) {
        assert!(client.replica.was_acked(ack), "{}: {ack} acked", client.id);
    }
    let room = server.room("crowd");
    let expected = room.with_state(|state, rev| {
        assert_eq!(rev, head);
        state.clone()
    });
    assert_eq!(expected.participants().len(), CLIENTS);
    for client in &clients {
        assert!(
            *client.state() == expected,
            "{}: the room's state",
            client.id
        );
    }
}

#[test]
fn two_rooms_have_their_own_revisions_and_contents() {
    let server = TestServer::with_manual_clock(|_| {});
    let mut a1 = SyncClient::connect(&server.url("/rooms/a"), "a-1");
    let mut a2 = SyncClient::connect(&server.url("/rooms/a"), "a-2");
    let mut b1 = Ws::connect(&server.url("/rooms/b"));
    assert_eq!(a1.join("A one"), 1);
    assert_eq!(a2.join("A two"), 2);
    a1.set_status(Status::Away);
    a2.set_status(Status::Away);
    a1.until_rev(4);
    a2.until_rev(4);

    // Room b starts its own history at revision 1 and holds only its own participant.
    assert_eq!(
        b1.join("b-1", "B one"),
        json!({"type": "SYNC.SNAPSHOT", "meta": {}, "payload": {"rev": 1, "participants": {
            "b-1": {"id": "b-1", "name": "B one", "status": "online", "lastActive": 1000}}}})
    );
    // Its next message is its own update: nothing of room a came in between.
    b1.send(update("away", "b-req"));
    assert_eq!(
        b1.recv(),
        deltas(
            1,
            2,
            vec![json!({"rev": 2, "type": "participant.updated",
                "payload": {"id": "b-1", "status": "away"}, "clientReqId": "b-req"})]
        )
    );
    // And room a saw nothing of room b.
    a1.set_status(Status::Online);
    a1.until_rev(5);
    a2.until_rev(5);
    assert_eq!(a2.stream.op_revs, [3, 4, 5]);
    let ids = |client: &SyncClient| -> Vec<String> {
        client.state().participants().keys().cloned().collect()
    };
    assert_eq!(ids(&a1), ["a-1", "a-2"]);
    assert_eq!(ids(&a2), ["a-1", "a-2"]);
    assert_eq!(server.room("a").rev(), 5);
    assert_eq!(server.room("b").rev(), 2);
    assert_ne!(server.room("a").epoch(), server.room("b").epoch());
}
