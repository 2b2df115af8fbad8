//! `deltasync soak --cluster`: the kill-server soak's clients and checker (see
//! `kill_server`) against a cluster started on this machine (see `cluster_harness`): a
//! `redis-server` engine and `--nodes` nodes. While the writers and readers work, a
//! random node is killed with `SIGKILL` and restarted on its port after `--node-down-ms`,
//! again and again for `--secs`, and half-way through the engine itself is killed and
//! restarted on its data directory after `--engine-down-ms` (commits are refused with
//! `UNAVAILABLE` meanwhile; the writers send them again).
//!
//! Client `k` starts on node `k mod N` and moves on to the next node whenever its
//! connection is lost, resuming there with its revision and epoch (every node serves the
//! same history). At the end the checker reads each room's whole history from node 0
//! and counts what the kill-server soak counts (lost, duplicated, non-contiguous,
//! inconsistent, unanswered), and every other node must serve the very same history
//! (revision, epoch, participants and every operation): a node that differs counts as
//! inconsistent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::kill_server::{self, Figures, Shared};
use crate::cluster_harness::{Cluster, EngineFsync};

/// What a cluster soak does.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The clients, rooms, kill interval and seed (its `kills` is unused: kills go on
    /// for `secs`).
    pub(crate) clients: kill_server::Plan,
    pub(crate) nodes: usize,
    pub(crate) secs: u64,
    /// How long a killed node stays down before its restart, in ms.
    pub(crate) node_down_ms: u64,
    /// How long the engine stays down at its one restart, in ms.
    pub(crate) engine_down_ms: u64,
    pub(crate) fsync: EngineFsync,
}

/// The checker's counters and the faults that were made.
#[derive(Debug, Default)]
pub(crate) struct ClusterFigures {
    pub(crate) checked: Figures,
    pub(crate) node_kills: u32,
    pub(crate) engine_restarts: u32,
    /// Rooms whose history on a node differs from node 0's.
    pub(crate) diverged: u64,
}

impl ClusterFigures {
    /// Whether every violation counter is 0.
    pub(crate) fn clean(&self) -> bool {
        self.checked.clean() && self.diverged == 0
    }
}

/// The `KEY=VALUE`s of every node: the whole history in the ring (the checker reads it
/// from there), participants kept for the run, one event loop.
fn node_sets() -> Vec<String> {
    [
        "room.ring_capacity=1000000",
        "timeouts.participant_ttl_ms=600000",
        "server.shards=1",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Runs the plan.
///
/// # Errors
///
/// A message when the engine or a node cannot be started (or restarted), or a client
/// thread cannot be spawned.
pub(crate) fn run(plan: &Plan) -> Result<ClusterFigures, String> {
    let started = Instant::now();
    let mut cluster = Cluster::start(plan.nodes, plan.fsync, &node_sets())?;
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.addr()).collect();
    let shared = Arc::new(Shared::default());
    let threads = kill_server::spawn_clients(&addrs, &plan.clients, &shared)
        .map_err(|e| format!("cannot start a client thread: {e}"))?;
    let faults = make_faults(plan, &mut cluster, started);
    let faults = match faults {
        Ok(faults) => faults,
        Err(e) => {
            // Stop the clients before the cluster goes away with the error.
            let _ = kill_server::stop_and_check(threads, addrs[0], &plan.clients, &shared);
            return Err(e);
        }
    };
    let mut figures = ClusterFigures {
        checked: kill_server::stop_and_check(threads, addrs[0], &plan.clients, &shared),
        node_kills: faults.0,
        engine_restarts: faults.1,
        diverged: 0,
    };
    compare_nodes(&addrs, plan.clients.rooms, &mut figures);
    figures.checked.kills = figures.node_kills;
    figures.checked.secs = started.elapsed().as_secs_f64();
    Ok(figures)
}

/// Kills and restarts random nodes until `secs` are over, and the engine once half-way;
/// returns the node kills and the engine restarts.
fn make_faults(plan: &Plan, cluster: &mut Cluster, started: Instant) -> Result<(u32, u32), String> {
    let end = started + Duration::from_secs(plan.secs);
    let engine_at = started + Duration::from_secs(plan.secs) / 2;
    let (mut kills, mut engine_restarts) = (0, 0);
    let mut rng = plan.clients.seed.max(1);
    let quarter = (plan.clients.interval_ms / 4).max(1);
    loop {
        let wait = Duration::from_millis(quarter + xorshift(&mut rng) % (3 * quarter));
        if Instant::now() + wait >= end {
            std::thread::sleep(end.saturating_duration_since(Instant::now()));
            return Ok((kills, engine_restarts));
        }
        std::thread::sleep(wait);
        if engine_restarts == 0 && Instant::now() >= engine_at {
            cluster.engine.kill();
            std::thread::sleep(Duration::from_millis(plan.engine_down_ms));
            cluster
                .engine
                .restart()
                .map_err(|e| format!("the engine's restart: {e}"))?;
            engine_restarts += 1;
            continue;
        }
        let node = (xorshift(&mut rng) % cluster.nodes.len() as u64) as usize;
        cluster.nodes[node].kill9();
        kills += 1;
        std::thread::sleep(Duration::from_millis(plan.node_down_ms));
        cluster.nodes[node]
            .restart()
            .map_err(|e| format!("node {node}'s restart: {e}"))?;
    }
}

/// Every node must serve node 0's history of every room.
fn compare_nodes(addrs: &[SocketAddr], rooms: usize, figures: &mut ClusterFigures) {
    for room in 0..rooms {
        let Ok(reference) = kill_server::history(addrs[0], room) else {
            continue; // The checker counted it already.
        };
        for (node, addr) in addrs.iter().enumerate().skip(1) {
            match kill_server::history(*addr, room) {
                Ok(history) if history == reference => {}
                Ok(history) => {
                    figures.diverged += 1;
                    figures.checked.details.push(format!(
                        "room {room}: node {node} is at {} with {} operations, node 0 at {} with {}",
                        history.rev,
                        history.ops.len(),
                        reference.rev,
                        reference.ops.len()
                    ));
                }
                Err(e) => {
                    figures.diverged += 1;
                    figures
                        .checked
                        .details
                        .push(format!("room {room}: node {node}: {e}"));
                }
            }
        }
    }
}

/// xorshift64: the fault schedule, reproducible from the seed.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The report, one figure a line.
pub(crate) fn report(plan: &Plan, f: &ClusterFigures) -> String {
    let c = &f.checked;
    let p = &plan.clients;
    let errors: Vec<String> = c.errors.iter().map(|(k, v)| format!("{k} x{v}")).collect();
    let mut out = format!(
        "soak --cluster: {} nodes on a redis-server engine (appendfsync {}), {:.1} s, {} rooms x ({} writers + {} readers)\n\
         node kills (SIGKILL) and restarts: {}\nengine kills and restarts: {} ({} ms down)\n\
         acknowledged updates: {}\noperations in the histories: {}\nclient reconnects: {}\n\
         resumes with deltas: {}\nresumes with a gap or snapshot: {}\n\
         updates sent again after an ERROR: {}\nERRORs by code: {}\n\
         lost: {}\nduplicated: {}\nnon-contiguous: {}\ninconsistent: {}\nunanswered: {}\n\
         nodes whose history differs from node 0's: {}\n",
        plan.nodes,
        plan.fsync.as_str(),
        c.secs,
        p.rooms,
        p.writers,
        p.readers,
        f.node_kills,
        f.engine_restarts,
        plan.engine_down_ms,
        c.acked,
        c.operations,
        c.reconnects,
        c.resumes_deltas,
        c.resumes_gap,
        c.retries,
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(", ")
        },
        c.lost,
        c.duplicated,
        c.non_contiguous,
        c.inconsistent,
        c.unanswered,
        f.diverged,
    );
    for detail in c.details.iter().take(20) {
        out.push_str(&format!("  {detail}\n"));
    }
    out.push_str(if f.clean() {
        "result: ok\n"
    } else {
        "result: VIOLATIONS\n"
    });
    out
}
