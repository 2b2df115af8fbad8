//! How long a restart takes with the disk backend, and what the log costs on disk.
//!
//! ```text
//! cargo run --release --example storage_recovery -- [OPS] [ROOMS] [DIR]
//! ```
//!
//! 1. One room gets OPS operations (default 1,000,000; renames with a `clientReqId`, so
//!    the dedup window fills too), then is reopened: the time to recover it (newest
//!    snapshot + the log after it, the ring refilled) is printed, with the bytes on disk
//!    per operation.
//! 2. ROOMS rooms (default 10,000) get 10 operations each; then a new storage is opened on
//!    the directory (what `serve` does before it listens: rooms load lazily, on first use)
//!    and every room is loaded once, one after the other.
//!
//! Uses `storage.sync = "never"` to write the history quickly; recovery reads the same
//! files whatever the policy was.
// An example measures wall time: it is the I/O shell.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use deltasync::model::presence::{Patch, Presence, PresenceInput};
use deltasync::room::Room;
use deltasync::storage::{Backend, DiskStorage, Storage, StorageConfig, SyncPolicy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let ops: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let rooms: u64 = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let dir = args.next().map_or_else(
        || std::env::temp_dir().join("deltasync-recovery"),
        PathBuf::from,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = StorageConfig::default();
    config.backend = Backend::Disk;
    config.dir = dir.join("one");
    config.sync = SyncPolicy::Never;
    one_big_room(&config, ops)?;
    config.dir = dir.join("many");
    many_rooms(&config, rooms)?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn open_room(
    storage: &Arc<DiskStorage>,
    name: &str,
) -> Result<Room<Presence>, Box<dyn std::error::Error>> {
    Ok(Room::builder(name, Presence::default())
        .storage(Arc::clone(storage) as Arc<dyn Storage>)
        .build()?)
}

fn rename(i: u64) -> PresenceInput {
    PresenceInput {
        patch: Patch {
            name: Some(format!("name {i}")),
            ..Patch::default()
        },
    }
}

fn one_big_room(config: &StorageConfig, ops: u64) -> Result<(), Box<dyn std::error::Error>> {
    let storage = Arc::new(DiskStorage::open(config)?);
    let room = open_room(&storage, "big")?;
    room.join("user-1", "Alice")?;
    let started = Instant::now();
    for i in 1..ops {
        room.submit("user-1", &rename(i), Some(&format!("req-{i}")))?;
    }
    let commit_secs = started.elapsed().as_secs_f64();
    let head = room.rev();
    drop(room);
    let stats = Arc::into_inner(storage)
        .ok_or("storage still shared")?
        .close();
    let bytes = dir_bytes(&config.dir);
    let storage = Arc::new(DiskStorage::open(config)?);
    let started = Instant::now();
    let room = open_room(&storage, "big")?;
    let recover_ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(room.rev(), head);
    println!(
        "one room: {head} operations committed in {commit_secs:.2} s ({:.0}/s, sync never); \
         {} snapshots, {} segments compacted; {bytes} bytes on disk after compaction; \
         recovered in {recover_ms:.1} ms (rev {head}, ring refilled with {} ops)",
        head as f64 / commit_secs,
        stats.snapshots,
        stats.compacted_segments,
        head - room.buffer_first_rev(),
    );
    log_bytes_per_op(config)?;
    Ok(())
}

/// The log's own cost per operation, before any compaction: 10,000 operations, no
/// snapshot.
fn log_bytes_per_op(config: &StorageConfig) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = config.clone();
    config.dir = config.dir.with_extension("bytes");
    config.snapshot_every = u64::MAX / 2;
    let storage = Arc::new(DiskStorage::open(&config)?);
    let room = open_room(&storage, "bytes")?;
    room.join("user-1", "Alice")?;
    let ring_bytes: usize = {
        for i in 1..10_000 {
            room.submit("user-1", &rename(i), Some(&format!("req-{i}")))?;
        }
        room.since(room.buffer_first_rev(), None)
            .map(|d| d.operations.iter().map(|b| b.len()).sum())
            .unwrap_or(0)
    };
    let ring_ops = room.rev() - room.buffer_first_rev();
    drop(room);
    drop(storage);
    let segments: u64 = std::fs::read_dir(config.dir.join("rooms"))?
        .flatten()
        .flat_map(|room| {
            std::fs::read_dir(room.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|f| f.path().extension().is_some_and(|e| e == "log"))
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .sum();
    println!(
        "log: {:.1} bytes per operation on disk for operations of {:.1} bytes as sent \
         (rename with a clientReqId)",
        segments as f64 / 10_000.0,
        ring_bytes as f64 / ring_ops as f64
    );
    Ok(())
}

fn many_rooms(config: &StorageConfig, rooms: u64) -> Result<(), Box<dyn std::error::Error>> {
    {
        let storage = Arc::new(DiskStorage::open(config)?);
        let started = Instant::now();
        for r in 0..rooms {
            let room = open_room(&storage, &format!("room-{r}"))?;
            room.join("user-1", "Alice")?;
            for i in 1..10 {
                room.submit("user-1", &rename(i), Some(&format!("req-{i}")))?;
            }
        }
        println!(
            "{rooms} rooms x 10 operations written in {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
    let started = Instant::now();
    let storage = Arc::new(DiskStorage::open(config)?);
    let open_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    for r in 0..rooms {
        let room = open_room(&storage, &format!("room-{r}"))?;
        assert_eq!(room.rev(), 10);
    }
    let load = started.elapsed().as_secs_f64();
    println!(
        "{rooms} rooms: the data directory opens in {open_ms:.2} ms (rooms load lazily); \
         loading every room once takes {load:.2} s ({:.0} µs per room)",
        load * 1e6 / rooms as f64
    );
    Ok(())
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
