//! The fan-out's latency budget (`server.flush_interval_us`) and its wake-ups over real
//! sockets: a burst committed within the interval reaches a client in one frame, a room
//! on its owner's tick is never paced, and commits reach every shard that holds the
//! room's connections, also after a shard lost all of them and got new ones.
mod common;

use std::time::Duration;

use common::{TestServer, Ws, deltas};
use deltasync::config::Config;
use deltasync::model::presence::{Presence, PresenceOp};
use deltasync::room::{FlushPolicy, Origin, Room};
use deltasync::server::Server;
use serde_json::{Value, json};

/// The longest interval the key accepts: one second.
const SECOND_US: u64 = 1_000_000;

/// A server-side `participant.joined` of `npc-{n}`.
fn npc(n: u64) -> PresenceOp {
    serde_json::from_value(npc_payload(n)).unwrap()
}

fn npc_payload(n: u64) -> Value {
    json!({"type": "participant.joined", "payload":
        {"id": format!("npc-{n}"), "name": "NPC", "status": "online", "lastActive": 1}})
}

fn npc_op(rev: u64, n: u64) -> Value {
    let mut op = npc_payload(n);
    op["rev"] = rev.into();
    op
}

fn commit(room: &Room<Presence>, n: u64) -> u64 {
    room.commit(npc(n), Origin::SERVER).unwrap().rev
}

#[test]
fn a_burst_within_the_interval_reaches_a_client_in_one_frame() {
    let server = TestServer::with(|config| config.server.flush_interval_us = SECOND_US);
    let room = server.room("default");
    let mut alice = Ws::connect(&server.url("/"));
    assert_eq!(alice.join("user-1", "Alice")["payload"]["rev"], 1);
    // A first commit after a quiet moment goes out at once; the shard wrote at that moment.
    assert_eq!(commit(&room, 1), 2);
    assert_eq!(alice.recv(), deltas(1, 2, vec![npc_op(2, 1)]));
    // Five more within the second after it: they wait for the interval and go out
    // together, with no other event to wake the shard.
    for n in 2..=6 {
        commit(&room, n);
    }
    let burst: Vec<Value> = (2..=6).map(|n| npc_op(n + 1, n)).collect();
    assert_eq!(alice.recv(), deltas(2, 7, burst));
}

// The interval paces what others committed, never a committer's own ack: the
// connection that sent the update is flushed as soon as its message is handled, with
// everything its room published by then (the bystander soak's probe depends on it).
#[test]
// The bound on the whole wait for the ack is real time, below the interval.
#[allow(clippy::disallowed_methods)]
fn a_committers_ack_does_not_wait_for_its_rooms_interval() {
    let server = TestServer::with(|config| config.server.flush_interval_us = SECOND_US);
    let room = server.room("default");
    let mut alice = Ws::connect(&server.url("/"));
    assert_eq!(alice.join("user-1", "Alice")["payload"]["rev"], 1);
    assert_eq!(commit(&room, 1), 2);
    assert_eq!(alice.recv(), deltas(1, 2, vec![npc_op(2, 1)]));
    // The room now waits a second before it writes to Alice again for others' commits
    // (a writable event of her socket may still bring her commit 2 before that).
    assert_eq!(commit(&room, 2), 3);
    alice.send(common::update("away", "req-1"));
    // Her ack comes well within the interval, after the commit that was waiting.
    let deadline = std::time::Instant::now() + Duration::from_millis(800);
    let mut ops = Vec::new();
    let mut at = 2;
    while !ops.iter().any(|op: &Value| op["clientReqId"] == "req-1") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let frame = alice
            .recv_within(left)
            .expect("the ack, before the room's interval is over");
        assert_eq!(frame["type"], "SYNC.DELTAS");
        assert_eq!(frame["payload"]["fromRev"], at);
        at = frame["payload"]["toRev"].as_u64().unwrap();
        ops.extend(frame["payload"]["operations"].as_array().unwrap().clone());
    }
    assert_eq!(at, 4);
    assert_eq!(ops[0], npc_op(3, 2));
    assert_eq!(ops[1]["clientReqId"], "req-1");
}

#[test]
fn a_room_on_its_owners_tick_is_not_paced() {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.shards = 2;
    config.server.flush_interval_us = SECOND_US;
    config.storage.memory_revisions = deltasync::storage::MemoryRevisions::FromZero;
    let server = Server::presence(config)
        .flush_policy(FlushPolicy::Tick)
        .start()
        .unwrap();
    let room = server.room("default").unwrap();
    let mut alice = Ws::connect(&format!("ws://{}/", server.local_addr()));
    alice.send(common::join("user-1", "Alice"));
    room.flush();
    assert_eq!(alice.recv()["type"], "SYNC.SNAPSHOT");
    for n in 1..=3 {
        let rev = commit(&room, n);
        room.flush();
        // Paced, the second and third ticks would wait a second after the first frame.
        let frame = alice.recv_within(Duration::from_millis(800));
        assert_eq!(
            frame,
            Some(deltas(rev - 1, rev, vec![npc_op(rev, n)])),
            "tick {n}"
        );
    }
    server.shutdown();
}

#[test]
fn commits_reach_every_shard_holding_the_room_also_after_it_emptied() {
    let server = TestServer::with(|config| config.server.flush_interval_us = 0);
    let room = server.room("default");
    let other = server.room("other");
    let mut bystander = Ws::connect(&server.url("/rooms/other"));
    bystander.join("user-0", "Bystander");
    let mut next = 0;
    for round in 0..2 {
        // Four connections over the two shards.
        let mut clients: Vec<Ws> = (0..4)
            .map(|i| {
                let mut ws = Ws::connect(&server.url("/"));
                ws.join(&format!("user-{round}-{i}"), "C");
                ws
            })
            .collect();
        let head = room.rev();
        next += 1;
        let rev = commit(&room, next);
        assert_eq!(rev, head + 1);
        for ws in &mut clients {
            let messages = ws.recv_until_rev(rev);
            assert_eq!(messages.last().unwrap()["payload"]["toRev"], rev);
        }
        // Every one leaves: the shards hold no connection of the room any more.
        drop(clients);
    }
    // The other room heard nothing of all this.
    assert_eq!(other.rev(), 1);
    assert_eq!(bystander.recv_within(Duration::from_millis(100)), None);
}
