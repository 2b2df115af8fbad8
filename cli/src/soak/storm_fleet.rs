//! The client side of the reconnect storm, as its own process (`deltasync soak
//! --storm-fleet ADDR`), so that ten thousand client sockets and the server's ten thousand
//! do not share one open-file limit.
//!
//! It connects its clients to `/rooms/storm`, then obeys one command per line on stdin
//! and answers one line on stdout:
//!
//! | command | answer |
//! |---|---|
//! | `settle REV [FROM TO]` | `settled MS GAPS` once every client (of `FROM..TO`) is connected and at `REV` |
//! | `drop FROM TO` | `dropped` once clients `FROM..TO` are cut (no close frame) |
//! | `reconnect REV` | `current MS GAPS` once every client is back and at `REV` (all reconnect at once) |
//! | `state` | `state JSON`: the state every client holds (or `state DIFFERENT`) |
//! | `quit` | `stats SNAPSHOTS GAPS DELTAS VIOLATIONS`, then the violations, then exit |

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::fleet::Fleet;

/// Runs the fleet until `quit` or the end of stdin.
pub(crate) fn run(addr: SocketAddr, clients: usize, participants: usize) -> std::io::Result<()> {
    let (soft, hard) = crate::nofile::raise()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "nofile {soft} {hard}")?;
    let mut fleet = Fleet::new(addr)?;
    for i in 0..clients {
        fleet.add("/rooms/storm", &format!("s{}", i % participants.max(1)));
    }
    for i in 0..clients {
        fleet.connect(i);
        if i % 256 == 255 {
            fleet.turn(Duration::ZERO);
        }
    }
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
        let all = 0..clients;
        let range = match (number(2), number(3)) {
            (Some(from), Some(to)) => from as usize..(to as usize).min(clients),
            _ => all.clone(),
        };
        let answer = match (words.first().copied(), number(1), number(2)) {
            (Some("settle"), Some(rev), _) => {
                format!("settled {}", at_rev(&mut fleet, rev, range))
            }
            (Some("drop"), Some(from), Some(to)) => {
                for i in from as usize..(to as usize).min(clients) {
                    fleet.drop_connection(i);
                }
                "dropped".to_owned()
            }
            (Some("reconnect"), Some(rev), _) => {
                format!("current {}", at_rev(&mut fleet, rev, all))
            }
            (Some("state"), _, _) => format!("state {}", common_state(&fleet)),
            (Some("quit"), _, _) => break,
            _ => format!("unknown {line}"),
        };
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    let seen = |f: fn(&super::client::Seen) -> u64| -> u64 {
        fleet.clients.iter().map(|c| f(&c.seen)).sum()
    };
    let violations: Vec<&String> = fleet
        .clients
        .iter()
        .flat_map(|c| c.seen.violations.iter())
        .collect();
    writeln!(
        out,
        "stats {} {} {} {}",
        seen(|s| s.snapshots),
        seen(|s| s.gaps),
        seen(|s| s.deltas),
        violations.len()
    )?;
    for violation in violations.iter().take(20) {
        writeln!(out, "violation {violation}")?;
    }
    out.flush()
}

/// Connects every client of `range` that is not, all at once, then turns until all of
/// them are at `rev`; returns the milliseconds it took and the gaps they received
/// meanwhile (or says it gave up after two minutes).
fn at_rev(fleet: &mut Fleet, rev: u64, range: std::ops::Range<usize>) -> String {
    let gaps = |fleet: &Fleet| -> u64 { fleet.clients.iter().map(|c| c.seen.gaps).sum() };
    let gaps_before = gaps(fleet);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    loop {
        for i in range.clone() {
            if !fleet.clients[i].is_connected() {
                fleet.connect(i);
            }
        }
        fleet.turn(Duration::from_millis(2));
        let behind = fleet.clients[range.clone()]
            .iter()
            .filter(|c| !c.is_connected() || c.replica.server_rev() != rev)
            .count();
        if behind == 0 {
            let ms = started.elapsed().as_millis();
            return format!("{ms} {}", gaps(fleet) - gaps_before);
        }
        if Instant::now() > deadline {
            return format!("TIMEOUT {behind} behind");
        }
    }
}

/// The state every client holds, as JSON, if they all hold the same.
fn common_state(fleet: &Fleet) -> String {
    let Some(first) = fleet.clients.first().and_then(|c| c.replica.server_state()) else {
        return "NONE".to_owned();
    };
    let same = fleet
        .clients
        .iter()
        .all(|c| c.replica.server_state() == Some(first));
    if same {
        serde_json::to_string(first).unwrap_or_default()
    } else {
        "DIFFERENT".to_owned()
    }
}
