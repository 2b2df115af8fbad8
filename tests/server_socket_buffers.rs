//! `server.send_buffer_bytes` over real sockets: with a small kernel send buffer, a client
//! that stops reading is seen blocked after a few kilobytes, so the ring moves past it and
//! it resumes with `REVISION_GAP` and a snapshot; with a large one, the same operations
//! wait in the kernel and it resumes with every delta.
mod common;

use std::net::{SocketAddr, TcpStream};

use common::{TestServer, WAIT, Ws};
use deltasync::model::presence::PresenceOp;
use deltasync::room::Origin;
use serde_json::{Value, json};
use socket2::{Domain, Socket, Type};
use tungstenite::WebSocket;

const RING: usize = 64;
/// Operations committed while the client does not read, about 1 KB each (200 KB in all).
const OPS: u64 = 200;
/// Operations committed between two checks that the witness has them (less than the ring).
const BATCH: u64 = 20;

fn server(send_buffer_bytes: usize) -> TestServer {
    TestServer::with(|config| {
        // One shard: when the witness has an operation, the stalled connection was
        // flushed in the same pass (or is blocked).
        config.server.shards = 1;
        config.server.flush_interval_us = 0;
        config.server.send_buffer_bytes = send_buffer_bytes;
        config.room.ring_capacity = RING.try_into().unwrap();
        config.presence.max_name_chars = 4096;
    })
}

/// A client whose own receive buffer is small (4 KiB asked), so that what it does not
/// read waits in the server's send buffer.
fn stalled_client(addr: SocketAddr, path: &str) -> WebSocket<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{addr}{path}"), stream).unwrap();
    ws
}

fn recv(ws: &mut WebSocket<TcpStream>) -> Value {
    loop {
        if let tungstenite::Message::Text(text) = ws.read().unwrap() {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

fn npc(n: u64) -> PresenceOp {
    let name = format!("{n:04}-{}", "n".repeat(1000));
    serde_json::from_value(json!({"type": "participant.joined", "payload":
        {"id": format!("npc-{n}"), "name": name, "status": "online", "lastActive": 1}}))
    .unwrap()
}

/// What a stalled client gets when it reads again after `OPS` operations: every message
/// up to the head.
fn stall_and_resume(send_buffer_bytes: usize) -> Vec<Value> {
    let server = server(send_buffer_bytes);
    let room = server.room("stall");
    let mut stalled = stalled_client(server.addr(), "/rooms/stall");
    stalled
        .send(tungstenite::Message::text(
            json!({"type": "JOIN", "payload": {"participantId": "slow", "name": "Slow"}})
                .to_string(),
        ))
        .unwrap();
    assert_eq!(recv(&mut stalled)["payload"]["rev"], 1);
    let mut witness = Ws::connect(&server.url("/rooms/stall"));
    assert_eq!(witness.join("witness", "W")["payload"]["rev"], 2);
    for n in 1..=OPS {
        let rev = room.commit(npc(n), Origin::SERVER).unwrap().rev;
        if n % BATCH == 0 {
            witness.recv_until_rev(rev);
        }
    }
    let head = room.rev();
    assert_eq!(head, 2 + OPS);
    let mut messages = Vec::new();
    loop {
        let message = recv(&mut stalled);
        let rev = message["payload"]["toRev"]
            .as_u64()
            .or_else(|| message["payload"]["rev"].as_u64());
        messages.push(message);
        if rev == Some(head) {
            return messages;
        }
    }
}

#[test]
fn a_small_send_buffer_makes_a_stalled_client_fall_behind_the_ring_sooner() {
    // Large: 200 KB wait in the kernel; every operation comes as deltas, in order.
    let large = stall_and_resume(4 << 20);
    let types: Vec<&str> = large.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert!(types.iter().all(|t| *t == "SYNC.DELTAS"), "{types:?}");
    assert_eq!(large[0]["payload"]["fromRev"], 1);
    let ops: usize = large
        .iter()
        .map(|m| m["payload"]["operations"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        ops as u64,
        1 + OPS,
        "the witness's join and every operation"
    );

    // Small: blocked after a few kilobytes, far behind the ring's 64 by the end.
    let small = stall_and_resume(4096);
    let gap = small
        .iter()
        .position(|m| m["type"] == "REVISION_GAP")
        .expect("a revision gap");
    let payload = &small[gap]["payload"];
    let expected = payload["expectedRev"].as_u64().unwrap();
    assert!(
        expected < RING as u64,
        "blocked within the first ring's worth of operations, at {expected}"
    );
    // The gap is told when the socket next takes bytes: at the head of that moment, which
    // may come before the last commit (the kernel drains a little meanwhile).
    let server_rev = payload["serverRev"].as_u64().unwrap();
    assert!(
        server_rev > expected + RING as u64 && server_rev <= 2 + OPS,
        "{payload}"
    );
    // Commits go on while the gap is answered: the ring's oldest revision and the
    // snapshot are read a moment after the head, never before it.
    let first = payload["bufferFirstRev"].as_u64().unwrap();
    assert!(
        (server_rev - RING as u64..=server_rev).contains(&first),
        "{payload}"
    );
    assert_eq!(small[gap + 1]["type"], "SYNC.SNAPSHOT");
    let snapshot_rev = small[gap + 1]["payload"]["rev"].as_u64().unwrap();
    assert!(
        (server_rev..=2 + OPS).contains(&snapshot_rev),
        "snapshot at {snapshot_rev}, gap at {server_rev}"
    );
}
