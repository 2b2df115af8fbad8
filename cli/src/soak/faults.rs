//! The soak with faults: many clients in several rooms against a `deltasync serve` child, writers at
//! a steady rate, faults at random, then a check that nothing was lost.
//!
//! Faults, each drawn per client per turn: a kill in the middle of a frame (an update's
//! frame cut in half, the socket dropped, a reconnect after 0 to 5 s that resumes and
//! resends), a stall (the client stops reading for 0.5 to 4 s), a clean reconnect. With
//! the ring small (64 by default) and every room moving, a client away for a few seconds
//! resumes beyond the ring and gets `REVISION_GAP` and a snapshot.
//!
//! At the end writers and faults stop, every client reconnects and settles, then a fresh
//! observer joins each room and takes its snapshot; every client must reach that
//! revision with a state equal to it, nothing pending, every `clientReqId` it made
//! acknowledged or rejected exactly once, and no message refused by its replica (which
//! refuses non-contiguous deltas and anything but a snapshot after a gap). The server's
//! resident memory after the run must be within the bound stated in the report of what it
//! was after the warm-up.

use std::time::{Duration, Instant};

use super::fleet::{Fleet, Rng};
use super::process::ServerProcess;

/// What one soak does.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) secs: u64,
    pub(crate) clients: usize,
    pub(crate) rooms: usize,
    pub(crate) ring_capacity: usize,
    /// Updates per second of each writer (every fourth client of each room writes).
    pub(crate) write_hz: f64,
    /// Faults per client per second.
    pub(crate) fault_rate: f64,
    pub(crate) seed: u64,
    /// The rooms' `dedup_window` (it grows until full; the memory bound allows for it).
    pub(crate) dedup_window: usize,
}

/// What one soak measured.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    pub(crate) updates: u64,
    pub(crate) kills: u64,
    pub(crate) stalls: u64,
    pub(crate) reconnects: u64,
    pub(crate) snapshots: u64,
    pub(crate) gaps: u64,
    pub(crate) deltas: u64,
    pub(crate) operations: u64,
    pub(crate) acked: u64,
    pub(crate) rejected: u64,
    pub(crate) head_revs: Vec<u64>,
    pub(crate) rss_before: u64,
    /// The server's memory after each tenth of the run.
    pub(crate) rss_samples: Vec<u64>,
    pub(crate) rss_after: u64,
    pub(crate) rss_bound: u64,
    pub(crate) violations: Vec<String>,
    pub(crate) elapsed: Duration,
}

const MIB: u64 = 1024 * 1024;
/// What one remembered `clientReqId` may cost a room at most (the id, the actor, the map
/// and queue entries), for the memory bound.
const DEDUP_ENTRY_BYTES: u64 = 256;

/// Runs the soak.
pub(crate) fn run(plan: &Plan) -> std::io::Result<Figures> {
    let started = Instant::now();
    let server = ServerProcess::spawn(&server_args(plan))?;
    let mut fleet = Fleet::new(server.addr)?;
    for i in 0..plan.clients {
        fleet.add(&format!("/rooms/soak-{}", i % plan.rooms), &format!("c{i}"));
    }
    let mut figures = Figures::default();
    connect_all(&mut fleet, &mut figures)?;
    let mut load = Load::new(plan, fleet.clients.len());
    // Warm-up: the same load, so that buffers and pools reach their working size.
    let warm_up = Duration::from_secs((plan.secs / 5).clamp(1, 30));
    load.run(&mut fleet, warm_up, &mut figures);
    figures.rss_before = server.rss_bytes()?;
    load.faults = true;
    // A tenth at a time, with the server's memory read after each.
    let tenth = Duration::from_secs(plan.secs).div_f64(10.0);
    for _ in 0..10 {
        load.run(&mut fleet, tenth, &mut figures);
        figures.rss_samples.push(server.rss_bytes()?);
    }
    settle(&mut fleet, &mut figures);
    check_rooms(&mut fleet, plan, &mut figures);
    figures.rss_after = server.rss_bytes()?;
    let dedup = (plan.rooms as u64) * (plan.dedup_window as u64) * DEDUP_ENTRY_BYTES;
    figures.rss_bound = figures.rss_before + (figures.rss_before / 4).max(16 * MIB) + dedup;
    if figures.rss_after > figures.rss_bound {
        figures.violations.push(format!(
            "server memory grew from {} to {} bytes, past the bound of {}",
            figures.rss_before, figures.rss_after, figures.rss_bound
        ));
    }
    figures.elapsed = started.elapsed();
    Ok(figures)
}

fn server_args(plan: &Plan) -> Vec<String> {
    [
        "--ring-capacity".to_owned(),
        plan.ring_capacity.to_string(),
        "--max-connections".to_owned(),
        "10000".to_owned(),
        // Every client comes from one address, and each room holds many of them.
        "--set".to_owned(),
        "limits.max_connections_per_ip=0".to_owned(),
        "--set".to_owned(),
        "limits.max_new_connections_per_ip_per_sec=0".to_owned(),
        "--set".to_owned(),
        "limits.max_participants_per_room=0".to_owned(),
        "--set".to_owned(),
        format!("room.dedup_window={}", plan.dedup_window),
        // A resend storm after a reconnect is not a flood.
        "--set".to_owned(),
        "limits.message_burst=1000".to_owned(),
        "--set".to_owned(),
        "limits.messages_per_second=1000".to_owned(),
        // Killed clients come back within seconds: their participants stay.
        "--set".to_owned(),
        "timeouts.participant_ttl_ms=3600000".to_owned(),
    ]
    .into()
}

/// Connects every client and waits for every first state.
fn connect_all(fleet: &mut Fleet, figures: &mut Figures) -> std::io::Result<()> {
    for i in 0..fleet.clients.len() {
        fleet.connect(i);
        if i % 64 == 63 {
            fleet.turn(Duration::ZERO);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while fleet
        .clients
        .iter()
        .any(|c| c.replica.server_state().is_none())
    {
        if Instant::now() > deadline {
            figures
                .violations
                .push("not every client got a first state within 60 s".into());
            return Ok(());
        }
        for i in 0..fleet.clients.len() {
            if !fleet.clients[i].is_connected() {
                fleet.connect(i);
            }
        }
        fleet.turn(Duration::from_millis(5));
    }
    Ok(())
}

/// The load: writers at a steady rate, heartbeats, faults at random, reconnects due.
struct Load {
    rng: Rng,
    rooms: usize,
    write_period: Duration,
    fault_rate: f64,
    faults: bool,
    next_write: Vec<Instant>,
    reconnect_at: Vec<Option<Instant>>,
    next_heartbeat: Instant,
}

impl Load {
    fn new(plan: &Plan, clients: usize) -> Self {
        let mut rng = Rng::new(plan.seed);
        let now = Instant::now();
        let write_period = Duration::from_secs_f64(1.0 / plan.write_hz.max(0.001));
        let next_write = (0..clients)
            .map(|_| now + write_period.mul_f64(rng.below(1000) as f64 / 1000.0))
            .collect();
        Self {
            rng,
            rooms: plan.rooms,
            write_period,
            fault_rate: plan.fault_rate,
            faults: false,
            next_write,
            reconnect_at: vec![None; clients],
            next_heartbeat: now + Duration::from_secs(20),
        }
    }

    /// Every fourth client of each room writes (client `i` is in room `i % rooms`).
    fn is_writer(&self, i: usize) -> bool {
        (i / self.rooms) % 4 == 0
    }

    fn run(&mut self, fleet: &mut Fleet, duration: Duration, figures: &mut Figures) {
        let end = Instant::now() + duration;
        let mut last = Instant::now();
        loop {
            fleet.turn(Duration::from_millis(5));
            let now = Instant::now();
            if now >= end {
                return;
            }
            let dt = now.duration_since(last).as_secs_f64();
            last = now;
            self.step(fleet, now, dt, figures);
        }
    }

    fn step(&mut self, fleet: &mut Fleet, now: Instant, dt: f64, figures: &mut Figures) {
        let now_ms = fleet.now_ms();
        let heartbeat = now >= self.next_heartbeat;
        if heartbeat {
            self.next_heartbeat = now + Duration::from_secs(20);
        }
        for i in 0..fleet.clients.len() {
            if self.reconnect_at[i].is_some_and(|at| at <= now) {
                self.reconnect_at[i] = None;
                figures.reconnects += 1;
                fleet.connect(i);
            }
            let connected = fleet.clients[i].is_connected();
            if !connected && self.reconnect_at[i].is_none() {
                // The server closed it (or a connect failed): come back soon.
                self.reconnect_at[i] = Some(now + Duration::from_millis(100));
            }
            if self.is_writer(i) && now >= self.next_write[i] {
                self.next_write[i] += self.write_period;
                figures.updates += 1;
                fleet.clients[i].update(now_ms);
            }
            if heartbeat {
                fleet.clients[i].heartbeat();
            }
            if self.faults && connected && self.rng.chance(self.fault_rate * dt) {
                self.fault(fleet, i, now, figures);
            }
        }
    }

    fn fault(&mut self, fleet: &mut Fleet, i: usize, now: Instant, figures: &mut Figures) {
        match self.rng.below(3) {
            0 => {
                figures.kills += 1;
                figures.updates += 1;
                fleet.kill_mid_frame(i);
                let delay = Duration::from_millis(self.rng.below(5000));
                self.reconnect_at[i] = Some(now + delay);
            }
            1 if !fleet.is_stalled(i) => {
                figures.stalls += 1;
                let stall = Duration::from_millis(500 + self.rng.below(3500));
                fleet.stall(i, now + stall);
            }
            _ => {
                fleet.drop_connection(i);
                self.reconnect_at[i] = Some(now);
            }
        }
    }
}

/// Stops the load and brings every client back and up to date: connected, nothing
/// pending, nothing arriving for a while.
fn settle(fleet: &mut Fleet, figures: &mut Figures) {
    let now = Instant::now();
    fleet.unstall_all(now);
    let deadline = now + Duration::from_secs(120);
    let mut quiet_since = now;
    loop {
        for i in 0..fleet.clients.len() {
            if !fleet.clients[i].is_connected() {
                figures.reconnects += 1;
                fleet.connect(i);
            }
            fleet.clients[i].received = 0;
        }
        fleet.turn(Duration::from_millis(10));
        let now = Instant::now();
        let busy = fleet.clients.iter().any(|c| {
            !c.is_connected()
                || !c.replica.pending().is_empty()
                || c.received > 0
                || c.replica.needs_resume()
        });
        if busy {
            quiet_since = now;
        } else if now.duration_since(quiet_since) > Duration::from_millis(500) {
            return;
        }
        if now > deadline {
            figures
                .violations
                .push("the clients did not settle within 120 s".into());
            return;
        }
    }
}

/// A fresh observer joins each room; every client of the room must reach its snapshot's
/// revision with the same state; then the per-client checks.
fn check_rooms(fleet: &mut Fleet, plan: &Plan, figures: &mut Figures) {
    let members = fleet.clients.len();
    let observers: Vec<usize> = (0..plan.rooms)
        .map(|r| fleet.add(&format!("/rooms/soak-{r}"), &format!("observer-{r}")))
        .collect();
    for &o in &observers {
        fleet.connect(o);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        fleet.turn(Duration::from_millis(10));
        let done = observers.iter().all(|&o| {
            let head = fleet.clients[o].replica.server_rev();
            fleet.clients[o].replica.server_state().is_some()
                && (o - members..members)
                    .step_by(plan.rooms)
                    .all(|i| fleet.clients[i].replica.server_rev() == head)
        });
        if done || Instant::now() > deadline {
            break;
        }
    }
    for (r, &o) in observers.iter().enumerate() {
        let observer = &fleet.clients[o].replica;
        let head = observer.server_rev();
        figures.head_revs.push(head);
        for i in (r..members).step_by(plan.rooms) {
            let replica = &fleet.clients[i].replica;
            if replica.server_rev() != head || replica.server_state() != observer.server_state() {
                figures.violations.push(format!(
                    "c{i} of room {r} is at {} with a state other than the room's at {head}",
                    replica.server_rev()
                ));
            }
            if replica.visible() != replica.server_state() || !replica.pending().is_empty() {
                figures.violations.push(format!(
                    "c{i} still has {} pending",
                    replica.pending().len()
                ));
            }
        }
    }
    for client in &fleet.clients {
        figures.snapshots += client.seen.snapshots;
        figures.gaps += client.seen.gaps;
        figures.deltas += client.seen.deltas;
        figures.operations += client.seen.operations;
        figures
            .violations
            .extend(client.seen.violations.iter().cloned());
        figures.violations.extend(client.unanswered_or_twice());
        for answers in client.answers.values() {
            figures.acked += u64::from(answers.acked);
            figures.rejected += u64::from(answers.rejected);
        }
    }
}

/// The report, one figure per line.
pub(crate) fn report(plan: &Plan, figures: &Figures) -> String {
    let mib = |b: u64| b as f64 / MIB as f64;
    let mut out = format!(
        "soak: {} clients in {} rooms, ring {}, {} s of faults after a warm-up (seed {})\n",
        plan.clients, plan.rooms, plan.ring_capacity, plan.secs, plan.seed
    );
    out += &format!(
        "load: {} updates made ({} writers at {} Hz), room heads {:?}\n",
        figures.updates,
        (0..plan.clients)
            .filter(|i| (i / plan.rooms) % 4 == 0)
            .count(),
        plan.write_hz,
        figures.head_revs
    );
    out += &format!(
        "faults: {} kills mid-frame, {} read stalls, {} reconnects\n",
        figures.kills, figures.stalls, figures.reconnects
    );
    out += &format!(
        "received: {} snapshots, {} revision gaps, {} deltas messages carrying {} operations\n",
        figures.snapshots, figures.gaps, figures.deltas, figures.operations
    );
    out += &format!(
        "answers: {} acknowledged, {} rejected (each update exactly once)\n",
        figures.acked, figures.rejected
    );
    out += &format!(
        "server memory: VmRSS {:.1} MiB after the warm-up, {:.1} MiB after the run \
         (ratio {:.3}; bound {:.1} MiB = before + max(16 MiB, before/4) + the dedup windows)\n",
        mib(figures.rss_before),
        mib(figures.rss_after),
        figures.rss_after as f64 / figures.rss_before.max(1) as f64,
        mib(figures.rss_bound)
    );
    let samples: Vec<String> = figures
        .rss_samples
        .iter()
        .map(|b| format!("{:.1}", mib(*b)))
        .collect();
    out += &format!(
        "server memory after each tenth of the run (MiB): {}\n",
        samples.join(" ")
    );
    out += &format!("elapsed: {:.1} s\n", figures.elapsed.as_secs_f64());
    for violation in figures.violations.iter().take(20) {
        out += &format!("violation: {violation}\n");
    }
    out += &format!("violations: {}\n", figures.violations.len());
    out
}
