//! The life of a room on a server: created by its first connection (or an embedder),
//! dropped once nobody uses it for `timeouts.room_idle_ms`, and a new history after that.
mod common;

use common::sync::SyncClient;
use common::{TestServer, Ws, eventually};
use deltasync::model::presence::PresenceOp;
use deltasync::room::Origin;
use serde_json::json;

fn quick_rooms() -> TestServer {
    TestServer::with(|config| {
        config.timeouts.room_idle_ms = 1;
        config.timeouts.participant_ttl_ms = 1;
    })
}

#[test]
fn a_dropped_room_comes_back_as_a_new_history() {
    let server = quick_rooms();
    let url = server.url("/rooms/x");
    let mut alice = SyncClient::connect_native(&url, "user-1");
    assert_eq!(alice.join("Alice"), 1);
    let old_epoch = alice.replica.epoch().unwrap().as_str().to_owned();
    alice.ws.disconnect();
    eventually("room x is dropped", || server.server().rooms() == 0);

    // Alice comes back with the revision and epoch she holds: the room is new (and
    // already at revision 1 again with her arrival), so she gets a gap and its snapshot.
    alice.reconnect(Ws::connect_native(&url));
    alice.send_join("Alice");
    let gap = alice.recv();
    let new_epoch = server.room("x").epoch().as_str().to_owned();
    assert_ne!(new_epoch, old_epoch);
    assert_eq!(
        gap["payload"],
        json!({"expectedRev": 1, "serverRev": 1, "bufferFirstRev": 0, "resumeFrom": 1,
            "epoch": new_epoch})
    );
    assert_eq!(alice.recv()["payload"]["rev"], 1);
}

#[test]
fn a_room_an_embedder_holds_is_not_dropped_under_it() {
    let server = quick_rooms();
    // A game creates the room and commits from its own loop.
    let game = server.room("game");
    let npc = |rev| {
        let op: PresenceOp = serde_json::from_value(json!({"type": "participant.joined",
            "payload": {"id": format!("npc-{rev}"), "name": "NPC", "status": "online", "lastActive": 1}}))
        .unwrap();
        game.commit(op, Origin::SERVER).unwrap().rev
    };
    assert_eq!(npc(1), 1);
    // A client comes and goes.
    let mut visitor = Ws::connect(&server.url("/rooms/game"));
    assert_eq!(visitor.join("user-1", "Visitor")["payload"]["rev"], 2);
    drop(visitor);
    // Housekeeping commits the visitor's leave and, in the same pass, drops the rooms
    // that are idle and unattached.
    eventually("the visitor has left", || game.rev() == 3);
    assert_eq!(server.server().rooms(), 1);
    assert_eq!(npc(4), 4);
    // regression: the registry dropped the room while the game still committed to it, so
    // clients got a new, empty room and never saw the game again.
    let mut next = Ws::connect(&server.url("/rooms/game"));
    let snapshot = next.join("user-2", "Next");
    assert_eq!(snapshot["payload"]["rev"], 5, "{snapshot}");
    assert!(std::sync::Arc::ptr_eq(&game, &server.room("game")));
}
