//! The reconnect storm: thousands of clients of one room drop and reconnect at once, half
//! resuming within the ring and half beyond it, while a client of another room keeps
//! updating and measures how long its acks take.
//!
//! The server runs in this process (so that `Room::snapshots_encoded` can be read); the
//! clients run in a child (`--storm-fleet`, see `storm_fleet.rs`) with an open-file limit
//! of their own. Both raise their soft `RLIMIT_NOFILE` to the hard limit.
//!
//! The sequence: every client joins (as one of 50 participants, so that the state stays
//! small) and settles; the second half drops; 100 operations are committed (more than
//! the ring of 64 holds); the first half drops; 10 more; then all reconnect at once. The
//! first half resumes by deltas, the second gets `REVISION_GAP` and one shared snapshot:
//! the room must encode exactly one snapshot during the storm. The storm ends when every
//! client is at the head; every client must then hold the room's state.

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use deltasync::config::Config;
use deltasync::model::presence::Presence;
use deltasync::room::{Origin, Room};
use deltasync::server::Server;

use super::probe::{Latencies, Probe};

/// What one storm does.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) clients: usize,
    pub(crate) participants: usize,
    pub(crate) ring_capacity: usize,
}

/// What the storm measured.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    pub(crate) nofile: (u64, u64),
    pub(crate) fleet_nofile: String,
    pub(crate) head: u64,
    pub(crate) storm_ms: String,
    pub(crate) snapshots_encoded: u64,
    pub(crate) fleet_stats: String,
    pub(crate) quiet: Latencies,
    pub(crate) storm: Latencies,
    pub(crate) probe_errors: u64,
    pub(crate) violations: Vec<String>,
}

/// Runs the storm.
pub(crate) fn run(plan: &Plan) -> std::io::Result<Figures> {
    let mut figures = Figures {
        nofile: crate::nofile::raise()?,
        ..Figures::default()
    };
    if !crate::nofile::fits(plan.clients as u64, figures.nofile.0) {
        figures.violations.push(format!(
            "the open-file limit ({} soft, {} hard) is too low for {} server sockets",
            figures.nofile.0, figures.nofile.1, plan.clients
        ));
        return Ok(figures);
    }
    let server = start_server(plan)?;
    let room = server.room("storm").map_err(std::io::Error::other)?;
    // An in-memory history starts above any earlier one's revisions, not at 0.
    let first_rev = room.rev();
    let mut fleet = Fleet::spawn(server.local_addr(), plan)?;
    figures.fleet_nofile = fleet.expect("nofile")?;
    fleet.expect("ready")?;
    let joined = plan.clients.min(plan.participants) as u64;
    wait_for(|| room.rev() >= first_rev + joined);
    settle(&mut fleet, &format!("settle {}", room.rev()), &mut figures)?;
    let probe = Probe::start(&format!("ws://{}/rooms/quiet", server.local_addr()))?;
    std::thread::sleep(Duration::from_secs(2));
    let quiet_end = Instant::now();
    let half = plan.clients / 2;
    fleet.ask(&format!("drop {half} {}", plan.clients), "dropped")?;
    commit(&room, plan.ring_capacity as u64 + 36);
    // The first half reads those operations before it drops.
    settle(
        &mut fleet,
        &format!("settle {} 0 {half}", room.rev()),
        &mut figures,
    )?;
    fleet.ask(&format!("drop 0 {half}"), "dropped")?;
    commit(&room, 10);
    figures.head = room.rev();
    let encoded_before = room.snapshots_encoded();
    let storm_start = Instant::now();
    figures.storm_ms = fleet.ask(&format!("reconnect {}", figures.head), "current")?;
    let storm_end = Instant::now();
    figures.snapshots_encoded = room.snapshots_encoded() - encoded_before;
    let state = fleet.ask("state", "state")?;
    let expected = room.with_state(|state, _| serde_json::to_string(state).unwrap_or_default());
    if state != expected {
        figures.violations.push(format!(
            "the clients' state is not the room's: {state:.200}"
        ));
    }
    let (samples, errors) = probe.stop();
    figures.probe_errors = errors;
    figures.quiet = Latencies::window(&samples, quiet_end - Duration::from_secs(2), quiet_end);
    figures.storm = Latencies::window(&samples, storm_start, storm_end);
    figures.fleet_stats = fleet.quit()?;
    check(plan, &mut figures);
    server.shutdown();
    Ok(figures)
}

/// Asks the fleet to settle; a fleet that gave up is a violation (the run goes on).
fn settle(fleet: &mut Fleet, command: &str, figures: &mut Figures) -> std::io::Result<()> {
    let answer = fleet.ask(command, "settled")?;
    if answer.contains("TIMEOUT") {
        figures.violations.push(format!(
            "{command}: the clients did not get there ({answer})"
        ));
    }
    Ok(())
}

fn start_server(plan: &Plan) -> std::io::Result<Server<Presence>> {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().map_err(std::io::Error::other)?;
    config.limits.max_connections = plan.clients + 100;
    // Every client comes from one address.
    config.limits.max_connections_per_ip = 0;
    config.limits.max_new_connections_per_ip_per_sec = 0;
    config.room.ring_capacity =
        deltasync::room::ring_capacity(plan.ring_capacity).map_err(std::io::Error::other)?;
    config.timeouts.participant_ttl_ms = 3_600_000;
    config.timeouts.idle_ms = 600_000;
    Server::presence(config).start()
}

/// Commits `count` operations to `room` from the server's side (each marks the first
/// participant active).
fn commit(room: &Room<Presence>, count: u64) {
    for _ in 0..count {
        let first = room.with_state(|state, _| state.participants().keys().next().cloned());
        if let Some(id) = first {
            let _ = room.commit(Presence::touch(&id, room.now_ms()), Origin::SERVER);
        }
    }
}

fn wait_for(mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !condition() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn check(plan: &Plan, figures: &mut Figures) {
    if figures.snapshots_encoded != 1 {
        figures.violations.push(format!(
            "{} snapshots encoded during the storm instead of 1",
            figures.snapshots_encoded
        ));
    }
    let answer: Vec<&str> = figures.storm_ms.split_whitespace().collect();
    let storm_gaps = match answer.as_slice() {
        [ms, gaps] if ms.parse::<u64>().is_ok() => gaps.parse::<usize>().ok(),
        _ => None,
    };
    // Exactly the second half resumed from beyond the ring.
    if storm_gaps != Some(plan.clients - plan.clients / 2) {
        figures.violations.push(format!(
            "after the storm ({} ms, gaps): not every client current, or gaps other than {}",
            figures.storm_ms,
            plan.clients - plan.clients / 2
        ));
    }
    if figures.probe_errors > 0 {
        figures.violations.push(format!(
            "the client of the other room saw {} errors",
            figures.probe_errors
        ));
    }
    let words: Vec<&str> = figures.fleet_stats.split_whitespace().collect();
    let violations = words.get(3).and_then(|w| w.parse::<usize>().ok());
    if violations != Some(0) {
        figures
            .violations
            .push(format!("the fleet saw violations: {}", figures.fleet_stats));
    }
}

/// The report.
pub(crate) fn report(plan: &Plan, figures: &Figures) -> String {
    let mut out = format!(
        "storm: {} clients of one room ({} participants), ring {}\n",
        plan.clients, plan.participants, plan.ring_capacity
    );
    out += &format!(
        "open files: server process soft {} / hard {}; clients process {}\n",
        figures.nofile.0, figures.nofile.1, figures.fleet_nofile
    );
    out += &format!(
        "reconnect: half resuming {} operations behind (within the ring), half {} behind (beyond it); \
         all current at revision {} (ms, gaps received): {}\n",
        10,
        plan.ring_capacity + 46,
        figures.head,
        figures.storm_ms
    );
    out += &format!(
        "snapshots encoded during the storm: {}\n",
        figures.snapshots_encoded
    );
    out += &format!(
        "clients saw (snapshots gaps deltas violations): {}\n",
        figures.fleet_stats
    );
    out += &format!("other room, quiet: {}\n", figures.quiet.summary());
    out += &format!(
        "other room, during the storm: {}\n",
        figures.storm.summary()
    );
    out += &format!("other room, errors: {}\n", figures.probe_errors);
    for violation in figures.violations.iter().take(20) {
        out += &format!("violation: {violation}\n");
    }
    out += &format!("violations: {}\n", figures.violations.len());
    out
}

/// The child process of clients, driven by lines.
struct Fleet {
    child: std::process::Child,
    stdin: ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Fleet {
    fn spawn(addr: std::net::SocketAddr, plan: &Plan) -> std::io::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["soak", "--storm-fleet", &addr.to_string()])
            .args(["--clients", &plan.clients.to_string()])
            .args(["--participants", &plan.participants.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("stdout"))?;
        Ok(Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    /// Reads the next line, which must start with `word`; returns the rest.
    fn expect(&mut self, word: &str) -> std::io::Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        match line.trim_end().strip_prefix(word) {
            Some(rest) => Ok(rest.trim().to_owned()),
            None => Err(std::io::Error::other(format!(
                "the client process said {line:?} instead of {word}"
            ))),
        }
    }

    fn ask(&mut self, command: &str, word: &str) -> std::io::Result<String> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        self.expect(word)
    }

    /// Ends the child; returns its `stats` line (and appends its violations to it).
    fn quit(mut self) -> std::io::Result<String> {
        writeln!(self.stdin, "quit")?;
        self.stdin.flush()?;
        let stats = self.expect("stats")?;
        let mut rest = String::new();
        for line in (&mut self.stdout).lines() {
            rest.push_str(&line?);
            rest.push('\n');
        }
        let _ = self.child.wait();
        Ok(if rest.is_empty() {
            stats
        } else {
            format!("{stats}\n{rest}")
        })
    }
}
