//! Figures the cluster backend's choices rest on (not a test: run by hand, on a quiet
//! machine if possible):
//!
//! ```text
//! cargo test --release -p deltasync-cli --test cluster_measure -- --ignored --nocapture
//! ```
//!
//! Through the real commit path (`Room::submit` on a room built on the storage): one
//! writer on one room (round trip and commits/s) with the engine's `appendfsync` at
//! `always` and `everysec`, against the single-node disk backend; ten writers on ten rooms
//! of one node; ten "nodes" (ten storages, each with its tailer and its replica) writing
//! to one room: the committed rate and how often an append lost its revision. CPU is this
//! process's and the engine's, per commit.
// Real time, real processes.
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::Engine;
use deltasync::clock::SystemClock;
use deltasync::config::Config;
use deltasync::model::presence::{Patch, Presence, PresenceInput};
use deltasync::room::Room;
use deltasync::storage::{Backend, RedisStorage, Storage, SyncPolicy};

const COMMITS: usize = 2000;

fn rename(i: usize) -> PresenceInput {
    PresenceInput {
        patch: Patch {
            name: Some(format!("name {i}")),
            ..Patch::default()
        },
    }
}

fn room_on(storage: Arc<dyn Storage>, name: &str) -> Arc<Room<Presence>> {
    let room = Arc::new(
        Room::builder(name, Presence::default())
            .clock(Arc::new(SystemClock))
            .storage(storage)
            .build()
            .expect("the room opens"),
    );
    room.follow();
    room
}

/// CPU time (user + system) of process `pid`, in ms.
fn cpu_ms(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc");
    let after = stat.rsplit_once(')').expect("stat").1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks * 10
}

/// One writer: `COMMITS` renames, each waiting for its commit. Prints the line.
fn one_writer(label: &str, room: &Room<Presence>, engine_pid: Option<u32>) {
    room.join("w", "w").expect("join");
    let mut latencies = Vec::with_capacity(COMMITS);
    let (cpu0, engine0) = (cpu_ms("self"), engine_pid.map(|p| cpu_ms(&p.to_string())));
    let start = Instant::now();
    for i in 0..COMMITS {
        let t = Instant::now();
        room.submit("w", &rename(i), Some(&format!("r{i}")))
            .expect("commit");
        latencies.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    let cpu = cpu_ms("self") - cpu0;
    let engine_cpu = engine_pid.map(|p| cpu_ms(&p.to_string()) - engine0.unwrap_or(0));
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{label:<40} {:>8.0} commits/s  p50 {:>7.1?}  p99 {:>7.1?}  node CPU {:>5.1} µs/commit  engine CPU {}",
        COMMITS as f64 / elapsed.as_secs_f64(),
        at(0.5),
        at(0.99),
        cpu as f64 * 1000.0 / COMMITS as f64,
        engine_cpu.map_or("-".into(), |c| format!(
            "{:.1} µs/commit",
            c as f64 * 1000.0 / COMMITS as f64
        )),
    );
}

fn redis(engine: &Engine, config: &Config) -> Arc<RedisStorage> {
    let mut cluster = config.cluster.clone();
    cluster.url = Some(engine.url());
    Arc::new(RedisStorage::connect(&cluster, &config.storage).expect("the engine answers"))
}

/// `writers` threads, each committing to its own room or all to one room (each thread
/// then on its own storage: a node of its own). Prints the committed rate and conflicts.
fn many_writers(
    label: &str,
    engine: &Engine,
    writers: usize,
    one_room: bool,
    pace: Option<Duration>,
) {
    let mut config = Config::default();
    // Flat out on one room, a node may lose many races in a row: count them, refuse none.
    config.cluster.commit_retries = 1000;
    let shared = redis(engine, &config);
    let per = COMMITS / writers;
    let start = Instant::now();
    let storages: Vec<Arc<RedisStorage>> = (0..writers)
        .map(|_| {
            if one_room {
                redis(engine, &config)
            } else {
                Arc::clone(&shared)
            }
        })
        .collect();
    let threads: Vec<_> = storages
        .iter()
        .enumerate()
        .map(|(w, storage)| {
            let room_name = match (one_room, pace) {
                (false, _) => format!("room-{w}"),
                (true, None) => "one".to_owned(),
                (true, Some(_)) => "paced".to_owned(),
            };
            let room = room_on(Arc::clone(storage) as Arc<dyn Storage>, &room_name);
            std::thread::spawn(move || {
                let actor = format!("w{w}");
                room.join(&actor, &actor).expect("join");
                let mut refused = 0;
                let start = Instant::now();
                for i in 0..per {
                    if let Some(pace) = pace {
                        let due = start + pace * i as u32;
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    }
                    if room
                        .submit(&actor, &rename(i), Some(&format!("r{i}")))
                        .is_err()
                    {
                        refused += 1;
                    }
                }
                refused
            })
        })
        .collect();
    let refused: u64 = threads.into_iter().map(|t| t.join().expect("writer")).sum();
    let elapsed = start.elapsed();
    let (appends, conflicts) = storages
        .iter()
        .take(if one_room { writers } else { 1 })
        .map(|s| s.stats())
        .fold((0, 0), |(a, c), s| (a + s.appends, c + s.conflicts));
    println!(
        "{label:<40} {:>8.0} commits/s  appends {appends}  conflicts {conflicts} ({:.2} per commit)  refused {refused}",
        appends as f64 / elapsed.as_secs_f64(),
        conflicts as f64 / appends.max(1) as f64,
    );
}

#[test]
#[ignore = "measurement: cargo test --release -p deltasync-cli --test cluster_measure -- --ignored --nocapture"]
fn measure_the_commit_path() {
    let config = Config::default();
    for fsync in ["always", "everysec"] {
        let engine = Engine::start_with(fsync);
        let room = room_on(redis(&engine, &config), "solo");
        one_writer(
            &format!("redis appendfsync {fsync}, 1 writer"),
            &room,
            Some(engine.pid()),
        );
    }
    for sync in [SyncPolicy::Always, SyncPolicy::Interval] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.storage.backend = Backend::Disk;
        config.storage.dir = dir.path().to_owned();
        config.storage.sync = sync;
        let storage = deltasync::storage::open(&config.storage, &SystemClock).unwrap();
        let room = room_on(storage, "solo");
        one_writer(
            &format!("single-node disk sync {sync}, 1 writer"),
            &room,
            None,
        );
    }
    let engine = Engine::start_with("always");
    many_writers(
        "redis always, 10 writers, 10 rooms, 1 node",
        &engine,
        10,
        false,
        None,
    );
    many_writers(
        "redis always, 10 nodes x 1 writer, 1 room",
        &engine,
        10,
        true,
        None,
    );
    let pace = Some(Duration::from_millis(50));
    many_writers("  the same, each writer at 20/s", &engine, 10, true, pace);
    std::thread::sleep(Duration::from_millis(10));
}

/// Commit-to-receive latency at the writer's node and at the others: one writer on node 0
/// renaming itself at `rate`/s for `secs` s, each name carrying its send time; `readers`
/// ws-kit clients on every node. Prints p50/p99 per node and the nodes' CPU per commit.
fn fan_out(label: &str, nodes: &[common::cluster::Node], rate: u64, secs: u64, readers: usize) {
    use common::Ws;
    let epoch = Instant::now();
    let room = format!("fan-{label}").replace(' ', "-");
    let mut threads = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for r in 0..readers {
            let mut ws = Ws::connect(&node.url(&room));
            ws.join(&format!("reader-{n}-{r}"), "reader");
            let total = rate * secs;
            threads.push(std::thread::spawn(move || {
                let mut latencies = Vec::new();
                while (latencies.len() as u64) < total {
                    let message = ws.recv();
                    let now = epoch.elapsed().as_micros() as u64;
                    for op in message["payload"]["operations"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        let sent = op["payload"]["name"]
                            .as_str()
                            .and_then(|name| name.strip_prefix('t'))
                            .and_then(|t| t.parse::<u64>().ok());
                        if let Some(sent) = sent {
                            latencies.push(now.saturating_sub(sent));
                        }
                    }
                }
                (n, latencies)
            }));
        }
    }
    let cpu0: Vec<u64> = nodes
        .iter()
        .map(|n| cpu_ms(&n.child.id().to_string()))
        .collect();
    let mut writer = Ws::connect(&nodes[0].url(&room));
    writer.join("writer", "writer");
    let interval = Duration::from_micros(1_000_000 / rate);
    let start = Instant::now();
    for i in 0..rate * secs {
        let due = start + interval * i as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let sent = epoch.elapsed().as_micros();
        writer.send(common::rename(&format!("t{sent}"), &format!("w{i}")));
    }
    let mut per_node: Vec<Vec<u64>> = vec![Vec::new(); nodes.len()];
    for thread in threads {
        let (n, latencies) = thread.join().expect("reader");
        per_node[n].extend(latencies);
    }
    let commits = rate * secs;
    for (n, latencies) in per_node.iter_mut().enumerate() {
        latencies.sort_unstable();
        let at =
            |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        let cpu = cpu_ms(&nodes[n].child.id().to_string()) - cpu0[n];
        println!(
            "{label:<34} node {n}{} p50 {:>6} µs  p99 {:>6} µs  node CPU {:>5.1} µs/commit",
            if n == 0 { " (writer's)" } else { "           " },
            at(0.5),
            at(0.99),
            cpu as f64 * 1000.0 / commits as f64,
        );
    }
}

/// The writer sends 1,000 updates a second: above the default per-connection rate.
const UNLIMITED: &[&str] = &[
    "--set",
    "limits.messages_per_second=1000000",
    "--set",
    "limits.message_burst=1000000",
];

#[test]
#[ignore = "measurement: cargo test --release -p deltasync-cli --test cluster_measure -- --ignored --nocapture"]
fn measure_fan_out_across_nodes() {
    use common::cluster::Node;
    for (fsync, rate) in [("everysec", 1000), ("always", 200)] {
        let engine = Engine::start_with(fsync);
        let nodes: Vec<Node> = (0..3).map(|_| Node::start(&engine, UNLIMITED)).collect();
        fan_out(&format!("redis {fsync}, {rate}/s"), &nodes, rate, 3, 50);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut disk = common::serve(&["--listen", "127.0.0.1:0", "--shards", "1"])
        .args(UNLIMITED)
        .arg("--data-dir")
        .arg(dir.path())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(disk.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .strip_prefix("deltasync listening on ws://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap();
    let node = Node {
        child: disk,
        addr,
        line,
    };
    fan_out(
        "single-node disk, 1000/s",
        std::slice::from_ref(&node),
        1000,
        3,
        50,
    );
}
