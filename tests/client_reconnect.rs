//! The connector reconnecting by itself against the real server on loopback: after a
//! server restart (close 1012), a dropped connection, a refused upgrade (503 with
//! `Retry-After` waited out, 401 final), a final close (1001 when told so), and a
//! rate-limited update sent again after its `retryAfterMs`. A small TCP gate in front of
//! the server cuts connections and refuses upgrades on cue.
// A test drives real sockets: real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestServer;
use deltasync::client::{
    Connector, ConnectorError, ConnectorEvent, ConnectorOptions, ConnectorStatus, ReplicaEvent,
    ResumeReport,
};
use deltasync::config::ShutdownClose;
use deltasync::model::presence::{Patch, Presence, PresenceInput, Status};

const WAIT: Duration = Duration::from_secs(10);

fn status(status: Status) -> PresenceInput {
    PresenceInput {
        patch: Patch {
            status: Some(status),
            ..Patch::default()
        },
    }
}

/// Quick reconnects for tests: delays below 50 ms, a fixed seed.
fn quick() -> ConnectorOptions {
    ConnectorOptions::default()
        .backoff(Duration::from_millis(20), Duration::from_millis(50))
        .jitter_seed(1)
}

/// The reconnects a connector reported, and its answered `JOIN`s.
fn split(events: Vec<ConnectorEvent>) -> (Vec<(u32, Duration, String)>, Vec<ResumeReport>) {
    let (mut reconnects, mut resumes) = (Vec::new(), Vec::new());
    for event in events {
        match event {
            ConnectorEvent::Reconnect {
                attempt,
                delay,
                cause,
            } => reconnects.push((attempt, delay, cause)),
            ConnectorEvent::Resume(report) => resumes.push(report),
            other => panic!("unexpected {other:?}"),
        }
    }
    (reconnects, resumes)
}

/// Stops `server` on another thread (a graceful stop waits for its clients' side of the
/// close, which the test's connector gives when it polls).
fn stop_in_background(server: &mut TestServer) -> std::thread::JoinHandle<()> {
    let server = server.take();
    std::thread::spawn(move || server.shutdown())
}

/// What the gate does with the next connection it accepts.
enum Cue {
    /// Answers the upgrade request with this HTTP response and closes.
    Refuse(&'static str),
}

/// A TCP gate in front of a server: forwards connections, unless cued to refuse one;
/// can cut every forwarded connection.
struct Gate {
    addr: SocketAddr,
    cues: Arc<Mutex<VecDeque<Cue>>>,
    /// The client side of every forwarded connection, to cut them.
    open: Arc<Mutex<Vec<TcpStream>>>,
    /// When each connection was accepted.
    accepted: Arc<Mutex<Vec<Instant>>>,
}

impl Gate {
    fn new(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let gate = Self {
            addr: listener.local_addr().unwrap(),
            cues: Arc::default(),
            open: Arc::default(),
            accepted: Arc::default(),
        };
        let (cues, open, accepted) = (
            Arc::clone(&gate.cues),
            Arc::clone(&gate.open),
            Arc::clone(&gate.accepted),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                accepted.lock().unwrap().push(Instant::now());
                match cues.lock().unwrap().pop_front() {
                    Some(Cue::Refuse(response)) => refuse(client, response),
                    None => {
                        open.lock().unwrap().push(client.try_clone().unwrap());
                        forward(client, upstream);
                    }
                }
            }
        });
        gate
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    fn cue(&self, cue: Cue) {
        self.cues.lock().unwrap().push_back(cue);
    }

    /// Ends every forwarded connection at once, as a network failure would.
    fn cut(&self) {
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn accepted(&self) -> Vec<Instant> {
        self.accepted.lock().unwrap().clone()
    }
}

/// Reads the upgrade request, answers `response`, closes.
fn refuse(mut client: TcpStream, response: &str) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let _ = client.write_all(response.as_bytes());
    let _ = client.shutdown(Shutdown::Write);
}

/// Copies bytes both ways between `client` and a new connection to `upstream`.
fn forward(client: TcpStream, upstream: SocketAddr) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    };
    pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
    pipe(server, client);
}

#[test]
fn after_a_restart_the_connector_comes_back_by_itself_and_resends_what_is_pending() {
    let mut first = TestServer::start();
    let addr = first.addr();
    let url = first.url("/rooms/back");
    let mut alice = Connector::<Presence>::connect_with(&url, "alice", "Alice", quick()).unwrap();
    assert_eq!(
        split(alice.take_events()).1,
        [ResumeReport::Joined { rev: 1 }]
    );
    let stopped = stop_in_background(&mut first);
    // The server said 1012: come back. The connector schedules its first reconnect.
    assert_eq!(alice.poll(WAIT).unwrap(), []);
    assert_eq!(alice.status(), ConnectorStatus::Reconnecting);
    // An update made while away stays pending, and visible.
    let id = alice.update(status(Status::Away)).unwrap();
    assert_eq!(alice.replica().pending().len(), 1);
    stopped.join().unwrap();
    let second = TestServer::with(|config| config.server.listen = addr);
    alice.poll_until(WAIT, |r| r.was_acked(&id)).unwrap();
    assert_eq!(alice.status(), ConnectorStatus::Live);
    let (reconnects, resumes) = split(alice.take_events());
    assert_eq!(
        reconnects[0].2,
        "the server closed the connection (1012: server restarting)"
    );
    assert!(
        reconnects
            .iter()
            .all(|(_, delay, _)| *delay < Duration::from_millis(50))
    );
    let attempts: Vec<u32> = reconnects.iter().map(|r| r.0).collect();
    assert_eq!(attempts, (1..=reconnects.len() as u32).collect::<Vec<_>>());
    // A server in memory starts a new history: the replica is reset, not resumed.
    let [
        ResumeReport::Reset {
            gap, epoch_changed, ..
        },
    ] = &resumes[..]
    else {
        panic!("one reset expected: {resumes:?}");
    };
    assert!(*epoch_changed && gap.is_some(), "{resumes:?}");
    let server_state = alice.replica().server_state().unwrap();
    assert_eq!(
        server_state.participant("alice").map(|p| p.status),
        Some(Status::Away)
    );
    assert_eq!(second.room("back").rev(), alice.replica().server_rev());
    alice.close();
}

#[test]
fn a_dropped_connection_resumes_with_deltas_and_a_503_is_waited_out() {
    let server = TestServer::start();
    let gate = Gate::new(server.addr());
    let mut alice =
        Connector::<Presence>::connect_with(&gate.url("/rooms/gate"), "alice", "Alice", quick())
            .unwrap();
    let mut bob = Connector::<Presence>::connect(&server.url("/rooms/gate"), "bob", "Bob").unwrap();
    alice.poll_until(WAIT, |r| r.server_rev() == 2).unwrap();
    alice.take_events();
    gate.cue(Cue::Refuse(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
    ));
    gate.cut();
    let id = bob.update(status(Status::Away)).unwrap();
    bob.poll_until(WAIT, |r| r.was_acked(&id)).unwrap();
    alice.poll_until(WAIT, |r| r.server_rev() == 3).unwrap();
    let (reconnects, resumes) = split(alice.take_events());
    assert_eq!(reconnects.len(), 2, "{reconnects:?}");
    assert!(reconnects[1].1 >= Duration::from_secs(1), "{reconnects:?}");
    assert_eq!(
        reconnects[1].2,
        "WebSocket error: HTTP error: 503 Service Unavailable"
    );
    // Not hammered: the attempt after the refusal came no sooner than it asked.
    let accepted = gate.accepted();
    assert_eq!(accepted.len(), 3);
    assert!(accepted[2] - accepted[1] >= Duration::from_secs(1));
    assert_eq!(
        resumes,
        [ResumeReport::Resumed {
            from_rev: 2,
            to_rev: 3,
            operations: 1
        }]
    );
    assert!(!alice.replica().detected_gap());
}

#[test]
fn a_401_on_reconnect_stops_the_connector_with_the_refusal() {
    let server = TestServer::start();
    let gate = Gate::new(server.addr());
    let mut alice =
        Connector::<Presence>::connect_with(&gate.url("/"), "alice", "Alice", quick()).unwrap();
    gate.cue(Cue::Refuse(
        "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n",
    ));
    gate.cut();
    let stopped = loop {
        match alice.poll(WAIT) {
            Ok(_) => {}
            Err(error) => break error,
        }
    };
    assert!(
        matches!(&stopped, ConnectorError::WebSocket(tungstenite::Error::Http(r)) if r.status() == 401),
        "{stopped}"
    );
    assert_eq!(alice.status(), ConnectorStatus::Stopped);
    assert!(matches!(
        alice.poll(WAIT),
        Err(ConnectorError::NotConnected)
    ));
    let events = alice.take_events();
    assert_eq!(
        events.last(),
        Some(&ConnectorEvent::Stopped {
            cause: "WebSocket error: HTTP error: 401 Unauthorized".into()
        })
    );
    assert_eq!(gate.accepted().len(), 2, "one refusal, no more attempts");
}

#[test]
fn going_away_is_final_only_when_the_connector_is_told_so() {
    for is_final in [false, true] {
        let mut server =
            TestServer::with(|config| config.server.shutdown_close_code = ShutdownClose::GoingAway);
        let options = quick().going_away_is_final(is_final);
        let mut alice =
            Connector::<Presence>::connect_with(&server.url("/"), "alice", "Alice", options)
                .unwrap();
        let stopped = stop_in_background(&mut server);
        let polled = alice.poll(WAIT);
        stopped.join().unwrap();
        let closed = "the server closed the connection (1001: server shutting down)";
        match is_final {
            false => {
                assert_eq!(polled.unwrap(), []);
                assert_eq!(alice.status(), ConnectorStatus::Reconnecting);
            }
            true => {
                assert_eq!(polled.unwrap_err().to_string(), closed);
                assert_eq!(alice.status(), ConnectorStatus::Stopped);
            }
        }
    }
}

#[test]
fn a_rate_limited_update_is_sent_again_after_retry_after_and_acked_once() {
    let server = TestServer::with(|config| {
        config.limits.messages_per_second = 5;
        config.limits.message_burst = 2;
    });
    let mut alice =
        Connector::<Presence>::connect_with(&server.url("/"), "alice", "Alice", quick()).unwrap();
    // The JOIN took one token and the first update the other: the second is refused by
    // name (deferred); the third then waits for a token on the server (the connection is
    // throttled) or is deferred too.
    let ids: Vec<String> = [Status::Away, Status::Online, Status::Away]
        .into_iter()
        .map(|s| alice.update(status(s)).unwrap())
        .collect();
    let mut outcomes: HashMap<String, Vec<&str>> = HashMap::new();
    let deadline = Instant::now() + WAIT;
    while !alice.replica().pending().is_empty() && Instant::now() < deadline {
        for event in alice.poll(Duration::from_millis(100)).unwrap() {
            let (id, outcome) = match event {
                ReplicaEvent::Acked { client_req_id, .. } => (client_req_id, "acked"),
                ReplicaEvent::Deferred { client_req_id, .. } => (client_req_id, "deferred"),
                ReplicaEvent::Rejected { client_req_id, .. } => (client_req_id, "rejected"),
                _ => continue,
            };
            outcomes.entry(id).or_default().push(outcome);
        }
    }
    assert_eq!(outcomes[&ids[0]], ["acked"]);
    assert_eq!(outcomes[&ids[1]], ["deferred", "acked"]);
    for id in &ids[2..] {
        let outcome = &outcomes[id];
        assert_eq!(outcome.last(), Some(&"acked"), "{id}: {outcome:?}");
        assert!(
            outcome[..outcome.len() - 1]
                .iter()
                .all(|o| *o == "deferred")
        );
    }
    assert_eq!(alice.replica().server_rev(), 4, "each applied once");
}

#[test]
fn a_join_refused_for_now_is_retried_and_one_refused_for_good_stops() {
    let server = TestServer::with(|config| {
        config.limits.max_participants_per_room = 1;
        config.timeouts.participant_ttl_ms = 100;
    });
    let url = server.url("/rooms/full");
    let alice = Connector::<Presence>::connect_with(&url, "alice", "Alice", quick()).unwrap();
    let leaves = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        alice.close();
    });
    // The room is full: bob's JOIN is refused (retryable) until alice's place is free.
    let mut bob = Connector::<Presence>::connect_with(&url, "bob", "Bob", quick()).unwrap();
    leaves.join().unwrap();
    let (reconnects, resumes) = split(bob.take_events());
    assert!(!reconnects.is_empty());
    assert_eq!(
        reconnects[0].2,
        r#"the server refused: RESOURCE_EXHAUSTED: room "full" is full: it admits 1 participants at most"#
    );
    assert!(
        matches!(resumes[..], [ResumeReport::Joined { .. }]),
        "{resumes:?}"
    );
    assert_eq!(bob.status(), ConnectorStatus::Live);
    // A JOIN refused for good (an empty participant id) stops at once.
    let refused = Connector::<Presence>::connect_with(&url, "", "Nobody", quick())
        .err()
        .unwrap();
    assert_eq!(
        refused.to_string(),
        "the server refused: INVALID_ARGUMENT: payload.participantId must not be empty"
    );
}
