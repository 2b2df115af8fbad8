//! The project's client connector against the real server on loopback: updates and acks,
//! resume within and beyond the ring, pending updates resent after a reconnect, and a
//! server restart (another epoch: a snapshot, never foreign deltas).
mod common;

use std::time::Duration;

use common::TestServer;
use deltasync::client::{Connector, ConnectorError, ConnectorOptions};
use deltasync::model::presence::{Patch, Presence, PresenceInput, Status};
use deltasync::protocol::Dialect;

const WAIT: Duration = Duration::from_secs(10);

fn status(status: Status) -> PresenceInput {
    PresenceInput {
        patch: Patch {
            status: Some(status),
            ..Patch::default()
        },
    }
}

fn status_of(client: &Connector<Presence>, id: &str) -> Option<Status> {
    Some(client.replica().visible()?.participant(id)?.status)
}

#[test]
fn two_clients_see_each_others_updates_and_their_own_acks() {
    let server = TestServer::start();
    let url = server.url("/rooms/connector");
    let mut alice = Connector::<Presence>::connect(&url, "alice", "Alice").unwrap();
    let mut bob = Connector::<Presence>::connect(&url, "bob", "Bob").unwrap();
    assert_eq!(bob.replica().server_rev(), 2);
    let id = alice.update(status(Status::Away)).unwrap();
    assert_eq!(
        status_of(&alice, "alice"),
        Some(Status::Away),
        "applied at once"
    );
    alice.poll_until(WAIT, |r| r.was_acked(&id)).unwrap();
    assert!(alice.replica().pending().is_empty());
    bob.poll_until(WAIT, |r| r.server_rev() == 3).unwrap();
    assert_eq!(status_of(&bob, "alice"), Some(Status::Away));
    assert_eq!(alice.replica().visible(), bob.replica().visible());
}

#[test]
fn a_reconnect_resumes_and_resends_what_is_pending() {
    let server = TestServer::start();
    let url = server.url("/rooms/resend");
    let mut alice = Connector::<Presence>::connect(&url, "alice", "Alice").unwrap();
    let mut bob = Connector::<Presence>::connect(&url, "bob", "Bob").unwrap();
    alice.poll_until(WAIT, |r| r.server_rev() == 2).unwrap();
    // Sent, never read back: still pending when the connection is replaced.
    let id = alice.update(status(Status::Away)).unwrap();
    bob.poll_until(WAIT, |r| r.server_rev() == 3).unwrap();
    assert_eq!(alice.replica().pending().len(), 1);
    alice.reconnect().unwrap();
    alice.poll_until(WAIT, |r| r.was_acked(&id)).unwrap();
    assert_eq!(
        alice.replica().server_rev(),
        3,
        "the resend was not applied again"
    );
    assert!(!alice.replica().detected_gap(), "resumed by deltas");
    assert_eq!(
        bob.poll(Duration::from_millis(200)).unwrap(),
        [],
        "nothing more for bob: applied once"
    );
}

#[test]
fn a_client_beyond_the_ring_gets_a_snapshot_and_ends_current() {
    let server = TestServer::with(|config| {
        config.room.ring_capacity = deltasync::room::ring_capacity(4).unwrap();
    });
    let url = server.url("/rooms/far");
    let mut alice = Connector::<Presence>::connect(&url, "alice", "Alice").unwrap();
    let mut bob = Connector::<Presence>::connect(&url, "bob", "Bob").unwrap();
    for i in 0..10 {
        let next = if i % 2 == 0 {
            Status::Away
        } else {
            Status::Online
        };
        let id = bob.update(status(next)).unwrap();
        bob.poll_until(WAIT, |r| r.was_acked(&id)).unwrap();
    }
    assert_eq!(bob.replica().server_rev(), 12);
    alice.reconnect().unwrap();
    assert!(alice.replica().detected_gap());
    assert_eq!(alice.replica().server_rev(), 12);
    assert_eq!(alice.replica().visible(), bob.replica().visible());
}

#[test]
fn after_a_server_restart_the_new_history_is_never_mixed_with_the_old() {
    let mut first = TestServer::start();
    let addr = first.addr();
    let url = first.url("/rooms/restart");
    let mut alice = Connector::<Presence>::connect(&url, "alice", "Alice").unwrap();
    for _ in 0..3 {
        let id = alice.update(status(Status::Away)).unwrap();
        alice.poll_until(WAIT, |r| r.was_acked(&id)).unwrap();
    }
    let old_epoch = alice.replica().epoch().cloned();
    assert_eq!(alice.replica().server_rev(), 4);
    first.stop();
    let second = TestServer::with(|config| config.server.listen = addr);
    // Someone else builds a new history up to revision 4 before alice is back.
    let mut bob =
        Connector::<Presence>::connect(&second.url("/rooms/restart"), "bob", "Bob").unwrap();
    for _ in 0..3 {
        let id = bob.update(status(Status::Away)).unwrap();
        bob.poll_until(WAIT, |r| r.was_acked(&id)).unwrap();
    }
    assert_eq!(bob.replica().server_rev(), 4);
    alice.reconnect().unwrap();
    assert!(
        alice.replica().detected_gap(),
        "another epoch: gap and snapshot"
    );
    assert_ne!(alice.replica().epoch().cloned(), old_epoch);
    assert_eq!(
        alice.replica().server_rev(),
        5,
        "bob's history, plus alice joining it"
    );
    let state = alice.replica().visible().unwrap();
    assert!(state.participant("bob").is_some());
    assert_eq!(state.participant("alice").unwrap().status, Status::Online);
}

#[test]
fn a_refused_token_a_refused_join_or_a_dead_address_is_a_clear_error() {
    let server = TestServer::with(|config| config.server.token = Some("s3cret".into()));
    let url = server.url("/");
    let refused = Connector::<Presence>::connect(&url, "alice", "Alice")
        .err()
        .unwrap();
    assert!(
        matches!(&refused, ConnectorError::WebSocket(tungstenite::Error::Http(r)) if r.status() == 401),
        "{refused}"
    );
    let options = ConnectorOptions {
        token: Some("s3cret".into()),
        dialect: Dialect::WsKit,
        ..ConnectorOptions::default()
    };
    let client =
        Connector::<Presence>::connect_with(&url, "alice", "Alice", options.clone()).unwrap();
    assert_eq!(client.replica().server_rev(), 1);
    assert!(
        client.replica().epoch().is_none(),
        "the ws-kit dialect carries no epoch"
    );
    let bad = Connector::<Presence>::connect_with(&url, "", "Nobody", options)
        .err()
        .unwrap();
    assert_eq!(
        bad.to_string(),
        "the server refused: INVALID_ARGUMENT: payload.participantId must not be empty"
    );
    let nowhere = Connector::<Presence>::connect("ws://127.0.0.1:1/", "a", "A")
        .err()
        .unwrap();
    assert!(
        nowhere
            .to_string()
            .starts_with("cannot connect to 127.0.0.1:1: "),
        "{nowhere}"
    );
}
