//! Liveness over real sockets: a connection that sends nothing, not even `HEARTBEAT`, is
//! closed after `timeouts.idle_ms`; its participant stays in the room until
//! `timeouts.participant_ttl_ms` passes with no connection, and then everyone sees it
//! leave. A connection that sends heartbeats stays.
// Waiting for timeouts takes real time.
#![allow(clippy::disallowed_methods)]
mod common;

use std::time::{Duration, Instant};

use common::{TestServer, WAIT, Ws, deltas};
use serde_json::{Value, json};

const IDLE_MS: u64 = 300;
const TTL_MS: u64 = 1000;

/// Sends a `HEARTBEAT` on `alive` every 100 ms until `done` gives a value.
fn heartbeating<T>(alive: &mut Ws, mut done: impl FnMut(&mut Ws) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "nothing happened within {WAIT:?}"
        );
        alive.send(json!({"type": "HEARTBEAT"}));
        if let Some(value) = done(alive) {
            return value;
        }
    }
}

#[test]
fn a_silent_connection_is_closed_and_its_participant_leaves_after_the_ttl() {
    let server = TestServer::with(|config| {
        config.timeouts.idle_ms = IDLE_MS;
        config.timeouts.participant_ttl_ms = TTL_MS;
    });
    let present = |id: &str| {
        server
            .room("default")
            .with_state(|state, _| state.participant(id).is_some())
    };
    let mut alice = Ws::connect(&server.url("/"));
    let mut bob = Ws::connect(&server.url("/"));
    assert_eq!(alice.join("user-1", "Alice")["payload"]["rev"], 1);
    assert_eq!(bob.join("user-2", "Bob")["payload"]["rev"], 2);
    assert_eq!(alice.recv()["payload"]["toRev"], 2);

    // Alice says nothing more: the server closes her connection; Bob keeps his open.
    let close = heartbeating(&mut bob, |_| alice.close_within(Duration::from_millis(100)));
    assert_eq!(close, (1000, "idle timeout".to_owned()));
    // Her participant outlives the connection ...
    assert!(present("user-1"), "Alice left with her connection");
    // ... until its time-to-live passes; then Bob, still heartbeating, sees her leave.
    let left: Value = heartbeating(&mut bob, |bob| bob.recv_within(Duration::from_millis(100)));
    assert_eq!(
        left,
        deltas(
            2,
            3,
            vec![json!({"rev": 3, "type": "participant.left", "payload": {"id": "user-1"}})]
        )
    );
    assert!(present("user-2"), "Bob, who sent heartbeats, is still here");
    assert!(
        bob.close_within(Duration::from_millis(1)).is_none(),
        "Bob's connection is open"
    );
}
