//! A restart clients ride through, with the real binary and a real data directory: 200
//! `Connector`s on a server that is stopped gracefully (SIGTERM: everything owed, then
//! close 1012) and started again on the same directory and port. Every client comes back
//! by itself and resumes with deltas (no gap, no snapshot), the reconnects are spread over
//! the jitter window, and every update, sent before the stop or made while the server
//! was down, is acknowledged exactly once.
// A test drives a child process and real sockets: real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::HashMap;

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::serve;
use deltasync::client::{
    Connector, ConnectorEvent, ConnectorOptions, ConnectorStatus, ReplicaEvent, ResumeReport,
};
use deltasync::model::presence::{Patch, Presence, PresenceInput, Status};

const CLIENTS: usize = 200;
/// The bound of the first reconnect delay: the jitter window the reconnects spread over.
const WINDOW: Duration = Duration::from_millis(1000);
/// How long the whole scenario may take before the test gives up.
const DEADLINE: Duration = Duration::from_secs(90);

/// A `deltasync serve` child; killed if the test fails halfway.
struct Served {
    child: Child,
    addr: SocketAddr,
}

impl Served {
    fn start(listen: &str, dir: &std::path::Path) -> Self {
        let args = [
            "--listen",
            listen,
            "--shards",
            "2",
            "--data-dir",
            dir.to_str().unwrap(),
        ];
        let mut child = serve(&args).spawn().expect("the binary starts");
        let (addr, _) = common::listening(&mut child);
        Self { child, addr }
    }

    /// SIGTERM, then waits for the exit; returns its code.
    fn terminate(mut self) -> Option<i32> {
        let signalled = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(signalled.success());
        self.child.wait().unwrap().code()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status(status: Status) -> PresenceInput {
    PresenceInput {
        patch: Patch {
            status: Some(status),
            ..Patch::default()
        },
    }
}

/// What one client saw.
struct Seen {
    /// The delay of its first reconnect after the stop.
    first_delay: Duration,
    /// Every answered `JOIN` after the first.
    resumes: Vec<ResumeReport>,
    /// How many reconnects it scheduled (attempts, failed ones included).
    reconnects: usize,
    /// The revision it had when the server closed.
    rev_at_close: u64,
    /// How many times each of its two updates was acknowledged, and other settlements.
    acks: [usize; 2],
    others: Vec<ReplicaEvent>,
    detected_gap: bool,
    final_rev: u64,
    pending: usize,
}

/// One client's life: join, update, ride through the restart, update while away, and
/// poll until both updates are acknowledged and the room is at `final_rev`.
fn client(url: &str, index: usize, gates: &Barrier, final_rev: u64) -> Seen {
    let options = ConnectorOptions::default()
        .backoff(WINDOW, 4 * WINDOW)
        .jitter_seed(index as u64)
        .join_timeout(Duration::from_secs(30));
    let (id, name) = (format!("p{index}"), format!("P{index}"));
    let mut connector = Connector::<Presence>::connect_with(url, &id, &name, options).unwrap();
    let joined = connector.take_events();
    assert!(
        matches!(
            joined[..],
            [ConnectorEvent::Resume(ResumeReport::Joined { .. })]
        ),
        "client {index}: {joined:?}"
    );
    gates.wait(); // everyone joined
    let before = connector.update(status(Status::Away)).unwrap();
    gates.wait(); // everyone sent an update: the server is stopped
    let deadline = Instant::now() + DEADLINE;
    let mut events = Vec::new();
    while connector.status() == ConnectorStatus::Live {
        assert!(Instant::now() < deadline, "client {index}: no close came");
        events.extend(connector.poll(Duration::from_millis(100)).unwrap());
    }
    let rev_at_close = connector.replica().server_rev();
    // Made while the server is away: pending until the next connection.
    let away = connector.update(status(Status::Online)).unwrap();
    let done = |c: &Connector<Presence>| {
        c.replica().pending().is_empty()
            && c.status() == ConnectorStatus::Live
            && c.replica().server_rev() == final_rev
    };
    while !done(&connector) {
        assert!(
            Instant::now() < deadline,
            "client {index}: not back in time"
        );
        events.extend(connector.poll(Duration::from_millis(100)).unwrap());
    }
    let mut seen = Seen {
        first_delay: Duration::MAX,
        resumes: Vec::new(),
        reconnects: 0,
        rev_at_close,
        acks: [0, 0],
        others: Vec::new(),
        detected_gap: connector.replica().detected_gap(),
        final_rev: connector.replica().server_rev(),
        pending: connector.replica().pending().len(),
    };
    for event in events {
        match event {
            ReplicaEvent::Acked { client_req_id, .. } if client_req_id == before => {
                seen.acks[0] += 1
            }
            ReplicaEvent::Acked { client_req_id, .. } if client_req_id == away => seen.acks[1] += 1,
            ReplicaEvent::Applied { .. } => {}
            other => seen.others.push(other),
        }
    }
    for event in connector.take_events() {
        match event {
            ConnectorEvent::Reconnect { attempt, delay, .. } => {
                seen.reconnects += 1;
                if attempt == 1 && seen.first_delay == Duration::MAX {
                    seen.first_delay = delay;
                }
            }
            ConnectorEvent::Resume(report) => seen.resumes.push(report),
            _ => {}
        }
    }
    connector.close();
    seen
}

#[test]
fn two_hundred_connectors_ride_through_a_graceful_restart_and_resume_with_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let first = Served::start("127.0.0.1:0", dir.path());
    let addr = first.addr;
    let url = format!("ws://{addr}/rooms/restart");
    // Each client's join and its two status changes commit one operation each.
    let final_rev = 3 * CLIENTS as u64;
    let gates = Arc::new(Barrier::new(CLIENTS + 1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|index| {
            let (url, gates) = (url.clone(), Arc::clone(&gates));
            std::thread::spawn(move || client(&url, index, &gates, final_rev))
        })
        .collect();
    gates.wait(); // everyone joined
    gates.wait(); // everyone sent an update
    let stopping = Instant::now();
    assert_eq!(first.terminate(), Some(0), "a graceful stop exits 0");
    let stopped = stopping.elapsed();
    let _second = Served::start(&addr.to_string(), dir.path());
    let started = stopping.elapsed();
    let seen: Vec<Seen> = clients
        .into_iter()
        .map(|client| client.join().expect("a client thread"))
        .collect();
    // Figures for the docs (not asserted: timings on a shared machine).
    let resumed_ops: u64 = seen
        .iter()
        .flat_map(|s| &s.resumes)
        .map(|r| match r {
            ResumeReport::Resumed { operations, .. } => *operations,
            _ => 0,
        })
        .sum();
    let attempts: usize = seen.iter().map(|s| s.reconnects).sum();
    println!(
        "SIGTERM to exit {stopped:?}; to the new server listening {started:?}; all {CLIENTS} \
         current {:?} after SIGTERM; {attempts} reconnects scheduled; {resumed_ops} operations \
         resumed by deltas",
        stopping.elapsed()
    );

    for (index, seen) in seen.iter().enumerate() {
        // Both updates acknowledged exactly once, nothing else settled or refused.
        assert_eq!(seen.acks, [1, 1], "client {index}");
        assert_eq!(seen.others, [], "client {index}");
        assert_eq!(
            (seen.pending, seen.final_rev),
            (0, final_rev),
            "client {index}"
        );
        // Back by deltas from where it was: no gap, no snapshot.
        assert!(!seen.detected_gap, "client {index}");
        let [
            ResumeReport::Resumed {
                from_rev,
                to_rev,
                operations,
            },
        ] = seen.resumes[..]
        else {
            panic!("client {index}: {:?}", seen.resumes);
        };
        assert_eq!(from_rev, seen.rev_at_close, "client {index}");
        assert_eq!(operations, to_rev - from_rev, "client {index}");
    }
    // The first reconnects spread over the whole window, not in a wave: all distinct,
    // below the window, and each tenth of it has some.
    let delays: Vec<Duration> = seen.iter().map(|s| s.first_delay).collect();
    assert!(delays.iter().all(|d| *d < WINDOW), "{delays:?}");
    let mut distinct = delays.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), CLIENTS);
    let mut tenths: HashMap<u128, usize> = HashMap::new();
    for delay in &delays {
        *tenths
            .entry(delay.as_nanos() * 10 / WINDOW.as_nanos())
            .or_default() += 1;
    }
    let mut counts: Vec<(u128, usize)> = tenths.into_iter().collect();
    counts.sort();
    println!("first reconnect delays per tenth of {WINDOW:?}: {counts:?}");
    assert_eq!(counts.len(), 10, "{counts:?}");
    // 200 uniform draws: no tenth holds more than twice its share (40).
    assert!(counts.iter().all(|(_, n)| *n <= 40), "{counts:?}");
}
