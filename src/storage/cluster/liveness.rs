//! Which nodes are alive, and the participants of those that are not.
//!
//! Each node has a random id and keeps a heartbeat key `deltasync:node:<id>` in the engine
//! with a time-to-live (`cluster.node_ttl_ms`), set when it connects and refreshed every
//! third of it by this module's thread. Beside each room's log the engine keeps the set
//! `deltasync:{r<hex>}:holders` of `"<node id> <participant>"`: a node adds itself for a
//! participant before committing its join there (or binding a resumed connection to it),
//! and removes itself once the participant has left it. A node whose key expired is dead
//! (killed, or cut off from the engine for the whole time-to-live).
//!
//! Every period the thread, for each room the node follows: reads the room's holders,
//! has the room make this node's entries match its attachments, asks the engine which of
//! the other nodes named are alive (once per node per period), and hands the room the
//! present participants that no live node holds: the room commits their `leave` through
//! the ordinary commit path, deciding against the log's head and asking the engine again
//! there ([`crate::room::Room::expire_unheld`]). Two live nodes sweeping at once commit
//! one `leave`: the second loses the revision, catches up and finds the participant
//! gone. The dead nodes' entries are then removed. Nothing here is a protocol between
//! nodes: a key with a time-to-live, a set, and operations in the log.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::storage::StorageError;

use super::Shared;
use super::log::Keys;

/// The heartbeat key of node `id`.
fn node_key(id: &str) -> String {
    format!("deltasync:node:{id}")
}

/// A member of a room's holders set: `"<node id> <participant>"` (a node id has no space).
pub(super) fn member(node: &str, actor: &str) -> String {
    format!("{node} {actor}")
}

/// A new node id: 16 hex digits.
pub(super) fn new_node_id() -> Result<String, StorageError> {
    getrandom::u64()
        .map(|n| format!("{n:016x}"))
        .map_err(|e| StorageError::Failed {
            room: String::new(),
            reason: format!("no randomness for a node id: {e}"),
        })
}

/// Sets (or refreshes) this node's heartbeat key.
pub(super) fn heartbeat(shared: &Shared) -> Result<(), StorageError> {
    shared.engine.run(|conn| {
        redis::cmd("SET")
            .arg(node_key(&shared.node_id))
            .arg(1)
            .arg("PX")
            .arg(shared.node_ttl_ms)
            .query::<()>(conn)
    })
}

/// The `(node, participant)` pairs of the holders set `key`.
pub(super) fn holders(shared: &Shared, key: &str) -> Result<Vec<(String, String)>, StorageError> {
    let members: Vec<String> = shared
        .engine
        .run(|conn| redis::cmd("SMEMBERS").arg(key).query(conn))?;
    Ok(members
        .into_iter()
        .filter_map(|m| {
            m.split_once(' ')
                .map(|(node, actor)| (node.to_owned(), actor.to_owned()))
        })
        .collect())
}

/// Which of `nodes` are alive (this node is).
fn alive(shared: &Shared, nodes: &[&str]) -> Result<Vec<bool>, StorageError> {
    let others: Vec<&str> = nodes
        .iter()
        .copied()
        .filter(|n| *n != shared.node_id)
        .collect();
    let found: Vec<bool> = if others.is_empty() {
        Vec::new()
    } else {
        shared.engine.run(|conn| {
            let mut pipe = redis::pipe();
            for node in &others {
                pipe.cmd("EXISTS").arg(node_key(node));
            }
            pipe.query(conn)
        })?
    };
    let mut found = found.into_iter();
    Ok(nodes
        .iter()
        .map(|n| *n == shared.node_id || found.next().unwrap_or(false))
        .collect())
}

/// Whether any of `nodes` is alive.
pub(super) fn any_alive(shared: &Shared, nodes: &[&str]) -> Result<bool, StorageError> {
    Ok(alive(shared, nodes)?.into_iter().any(|a| a))
}

/// The thread's loop: a heartbeat and a sweep every third of the time-to-live, until the
/// node stops.
pub(super) fn run(shared: &Shared) {
    // The pause between passes, in steps that look at the stop flag (the pass itself
    // takes a few round trips: the period is a little longer than a third, well within
    // the time-to-live).
    let steps = (shared.node_ttl_ms / 3 / STEP_MS).max(1);
    while !shared.tailer.is_stopped() {
        if let Err(e) = heartbeat(shared).and_then(|()| sweep(shared)) {
            tracing::debug!(error = %e, "the liveness sweep cannot reach the engine");
        }
        for _ in 0..steps {
            if shared.tailer.is_stopped() {
                break;
            }
            std::thread::sleep(Duration::from_millis(STEP_MS));
        }
    }
}

/// How often the waiting thread looks at the stop flag, in ms.
const STEP_MS: u64 = 50;

/// How many rooms a pass sweeps between two refreshes of the heartbeat.
const HEARTBEAT_EVERY_ROOMS: usize = 64;

/// One pass over the followed rooms.
fn sweep(shared: &Shared) -> Result<(), StorageError> {
    let mut known: HashMap<String, bool> = HashMap::new();
    for (i, (log, follower)) in shared.tailer.rooms().into_iter().enumerate() {
        // A pass over many rooms takes many round trips: the heartbeat is refreshed on
        // the way, so that a long pass never lets this node's key expire.
        if i > 0 && i % HEARTBEAT_EVERY_ROOMS == 0 {
            heartbeat(shared)?;
        }
        let key = Keys::holders_of(&log);
        let members = holders(shared, &key)?;
        let mine: Vec<String> = members
            .iter()
            .filter(|(node, _)| *node == shared.node_id)
            .map(|(_, actor)| actor.clone())
            .collect();
        follower.reconcile_holds(&mine);
        let unknown: Vec<&str> = members
            .iter()
            .map(|(node, _)| node.as_str())
            .filter(|node| !known.contains_key(*node))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for (node, alive) in unknown.iter().zip(alive(shared, &unknown)?) {
            known.insert((*node).to_owned(), alive);
        }
        let is_alive = |node: &str| known.get(node).copied().unwrap_or(false);
        let held: HashSet<&str> = members
            .iter()
            .filter(|(node, _)| is_alive(node))
            .map(|(_, actor)| actor.as_str())
            .collect();
        let unheld: Vec<String> = follower
            .present()
            .into_iter()
            .filter(|actor| !held.contains(actor.as_str()))
            .collect();
        if !unheld.is_empty() {
            follower.expire_unheld(&unheld);
        }
        let dead: Vec<String> = members
            .iter()
            .filter(|(node, _)| !is_alive(node))
            .map(|(node, actor)| member(node, actor))
            .collect();
        if !dead.is_empty() {
            shared
                .engine
                .run(|conn| redis::cmd("SREM").arg(&key).arg(&dead).query::<()>(conn))?;
        }
    }
    Ok(())
}
