//! The disk backend through the room that commits to it: recovery of epoch, state, ring and
//! dedup window; torn and corrupt logs; group commit; snapshots and compaction; a full
//! disk; the directory lock; restart-safe in-memory revisions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::clock::ManualClock;
use crate::model::presence::{Patch, Presence, PresenceInput};
use crate::protocol::ErrorCode;
use crate::room::{BuildError, Room, RoomConfig};

fn config(dir: &Path, sync: SyncPolicy) -> StorageConfig {
    StorageConfig {
        backend: Backend::Disk,
        dir: dir.to_owned(),
        sync,
        ..StorageConfig::default()
    }
}

fn room_on(storage: &Arc<DiskStorage>, capacity: usize) -> Result<Room<Presence>, BuildError> {
    Room::builder("lobby/1", Presence::default())
        .config(RoomConfig::with_ring_capacity(capacity).unwrap())
        .clock(Arc::new(ManualClock::new(1000)))
        .storage(Arc::clone(storage) as Arc<dyn Storage>)
        .build()
}

fn name(i: u64) -> PresenceInput {
    PresenceInput {
        patch: Patch {
            name: Some(format!("Alice {i}")),
            ..Patch::default()
        },
    }
}

/// Joins `user-1` and commits `updates` renames with ids `req-1`...
fn commit_some(room: &Room<Presence>, updates: u64) {
    room.join("user-1", "Alice").unwrap();
    for i in 1..=updates {
        room.submit("user-1", &name(i), Some(&format!("req-{i}")))
            .unwrap();
    }
}

fn state(room: &Room<Presence>) -> String {
    room.with_state(|model, rev| format!("{rev} {}", serde_json::to_string(model).unwrap()))
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let rooms = dir.join("rooms");
    let room = std::fs::read_dir(&rooms)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut logs: Vec<PathBuf> = std::fs::read_dir(room)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

#[test]
fn a_reopened_room_has_its_epoch_state_ring_and_dedup_window() {
    let dir = tempfile::tempdir().unwrap();
    let (epoch, before, ops) = {
        let storage = Arc::new(DiskStorage::open(&config(dir.path(), SyncPolicy::Never)).unwrap());
        let room = room_on(&storage, 4).unwrap();
        commit_some(&room, 6);
        (
            room.epoch().clone(),
            state(&room),
            room.since(4, None).unwrap(),
        )
    };
    let storage = Arc::new(DiskStorage::open(&config(dir.path(), SyncPolicy::Never)).unwrap());
    let room = room_on(&storage, 4).unwrap();
    assert_eq!(room.epoch(), &epoch);
    assert_eq!(state(&room), before);
    assert_eq!(
        (room.rev(), room.published_rev(), room.buffer_first_rev()),
        (7, 7, 3)
    );
    assert_eq!(
        room.since(4, None).unwrap(),
        ops,
        "the ring holds the bytes sent before"
    );
    assert!(room.since(2, None).is_err());
    // regression: a clientReqId retried after a restart is a duplicate, not a new commit.
    let retry = room.submit("user-1", &name(99), Some("req-2")).unwrap();
    assert_eq!((retry.rev, retry.duplicate), (3, true));
    assert_eq!(
        room.submit("user-1", &name(7), Some("req-7")).unwrap().rev,
        8
    );
}

#[test]
fn a_torn_last_record_at_every_byte_offset_recovers_the_record_before() {
    let dir = tempfile::tempdir().unwrap();
    let (before_last, whole) = {
        let storage = Arc::new(DiskStorage::open(&config(dir.path(), SyncPolicy::Never)).unwrap());
        let room = room_on(&storage, 16).unwrap();
        commit_some(&room, 3);
        let before_last = (
            state(&room),
            std::fs::read(&segments(dir.path())[0]).unwrap(),
        );
        room.submit("user-1", &name(4), Some("req-4")).unwrap();
        (
            before_last,
            std::fs::read(&segments(dir.path())[0]).unwrap(),
        )
    };
    let (expected_state, prefix) = before_last;
    let segment = segments(dir.path())[0].clone();
    for cut in prefix.len()..whole.len() {
        std::fs::write(&segment, &whole[..cut]).unwrap();
        let storage = Arc::new(DiskStorage::open(&config(dir.path(), SyncPolicy::Never)).unwrap());
        let room = room_on(&storage, 16).unwrap();
        assert_eq!(state(&room), expected_state, "cut at {cut}");
        assert_eq!(
            std::fs::read(&segment).unwrap(),
            prefix,
            "truncated at {cut}"
        );
    }
    // After the last cut the log takes the next commit at the dropped revision.
    let storage = Arc::new(DiskStorage::open(&config(dir.path(), SyncPolicy::Never)).unwrap());
    let room = room_on(&storage, 16).unwrap();
    assert_eq!(
        room.submit("user-1", &name(4), Some("req-4")).unwrap().rev,
        5
    );
}

#[test]
fn a_corrupt_middle_record_is_refused_with_its_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let second = {
        let storage = Arc::new(DiskStorage::open(&config(dir.path(), SyncPolicy::Never)).unwrap());
        let room = room_on(&storage, 16).unwrap();
        room.join("user-1", "Alice").unwrap();
        let second = std::fs::metadata(&segments(dir.path())[0]).unwrap().len();
        for i in 1..=3 {
            room.submit("user-1", &name(i), None).unwrap();
        }
        second
    };
    let segment = segments(dir.path())[0].clone();
    let mut data = std::fs::read(&segment).unwrap();
    data[second as usize + 20] ^= 0x01;
    std::fs::write(&segment, &data).unwrap();
    let storage = Arc::new(DiskStorage::open(&config(dir.path(), SyncPolicy::Never)).unwrap());
    let err = room_on(&storage, 16).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "corrupt data in {} at offset {second}: bad payload checksum",
            segment.display()
        )
    );
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        data,
        "nothing was truncated"
    );
}

#[test]
fn under_sync_always_commits_wait_unseen_for_one_fsync_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(DiskStorage::open(&config(dir.path(), SyncPolicy::Always)).unwrap());
    let room = room_on(&storage, 64).unwrap();
    storage.pause_syncer(true);
    commit_some(&room, 49);
    assert_eq!(
        (room.rev(), room.published_rev()),
        (50, 0),
        "nobody sees them yet"
    );
    assert!(room.since(0, None).unwrap().operations.is_empty());
    storage.pause_syncer(false);
    for _ in 0..1000 {
        if room.published_rev() == 50 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(room.published_rev(), 50);
    let stats = storage.stats();
    assert_eq!(
        (stats.batches, stats.fsyncs),
        (1, 1),
        "one fsync for 50 commits"
    );
}

#[test]
fn snapshots_bound_replay_and_compaction_deletes_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let small = StorageConfig {
        snapshot_every: 100,
        segment_bytes: 4096,
        ..config(dir.path(), SyncPolicy::Never)
    };
    let (before, ops, compacted) = {
        let storage = Arc::new(DiskStorage::open(&small).unwrap());
        let room = room_on(&storage, 16).unwrap();
        commit_some(&room, 999);
        let result = (state(&room), room.since(990, None).unwrap());
        drop(room);
        let stats = Arc::into_inner(storage).unwrap().close();
        (result.0, result.1, stats)
    };
    assert_eq!(compacted.snapshots, 10);
    assert!(compacted.compacted_segments > 0, "{compacted:?}");
    let logs = segments(dir.path());
    let first: u64 = logs[0]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        first > 900 - 16 - 40,
        "segments before the snapshot are gone: {logs:?}"
    );
    let storage = Arc::new(DiskStorage::open(&small).unwrap());
    let room = room_on(&storage, 16).unwrap();
    assert_eq!(state(&room), before);
    assert_eq!(room.since(990, None).unwrap(), ops);
    assert_eq!(room.buffer_first_rev(), 1000 - 16);
    // regression: the cadence counts from the stored snapshot (1000), not the restart.
    for i in 1000..1050 {
        room.submit("user-1", &name(i), None).unwrap();
    }
    drop(room);
    let stats = Arc::into_inner(storage).unwrap().close();
    assert_eq!(stats.snapshots, 0, "none due yet at 1050");
    let storage = Arc::new(DiskStorage::open(&small).unwrap());
    let room = room_on(&storage, 16).unwrap();
    for i in 1050..1100 {
        room.submit("user-1", &name(i), None).unwrap();
    }
    drop(room);
    let stats = Arc::into_inner(storage).unwrap().close();
    assert_eq!(stats.snapshots, 1, "due at 1100, 100 after the stored one");
}

#[test]
fn a_full_disk_refuses_commits_damages_nothing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(DiskStorage::open(&config(dir.path(), SyncPolicy::Never)).unwrap());
    let room = room_on(&storage, 16).unwrap();
    commit_some(&room, 2);
    let before = (
        state(&room),
        std::fs::read(&segments(dir.path())[0]).unwrap(),
    );
    storage.fail_writes(true);
    let refused = room.submit("user-1", &name(3), Some("req-3")).unwrap_err();
    assert_eq!(refused.code, ErrorCode::Unavailable);
    assert!(
        refused
            .message
            .starts_with("the update was not stored (cannot write "),
        "{}",
        refused.message
    );
    assert!(
        refused
            .message
            .ends_with("No space left on device (os error 28)); nothing was applied, try again")
    );
    assert_eq!(
        (
            state(&room),
            std::fs::read(&segments(dir.path())[0]).unwrap()
        ),
        before,
        "neither the room nor the file changed"
    );
    storage.fail_writes(false);
    assert_eq!(
        room.submit("user-1", &name(3), Some("req-3")).unwrap().rev,
        4
    );
    let after = state(&room);
    drop(room);
    drop(storage);
    let storage = Arc::new(DiskStorage::open(&config(dir.path(), SyncPolicy::Never)).unwrap());
    assert_eq!(state(&room_on(&storage, 16).unwrap()), after);
}

#[test]
fn a_second_server_on_the_same_directory_is_refused_naming_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let _first = DiskStorage::open(&config(dir.path(), SyncPolicy::Never)).unwrap();
    let err = DiskStorage::open(&config(dir.path(), SyncPolicy::Never)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the data directory {} is locked by another running deltasync server",
            dir.path().join("LOCK").display()
        )
    );
}

#[test]
fn memory_histories_start_above_any_earlier_one() {
    let clock = ManualClock::new(1_764_633_600_000);
    let storage = MemoryStorage::new(MemoryRevisions::RestartSafe, &clock);
    assert_eq!(storage.first_rev(), 1_764_633_600_000_000);
    let room = Room::builder("r", Presence::default())
        .storage(Arc::new(storage))
        .build()
        .unwrap();
    assert_eq!(room.rev(), 1_764_633_600_000_000);
    // A ws-kit client of an earlier history, at any lower revision, gets a gap.
    let gap = room.since(1_000_000, None).unwrap_err();
    assert_eq!(gap.buffer_first_rev, 1_764_633_600_000_000);
    let zero = MemoryStorage::new(MemoryRevisions::FromZero, &clock);
    assert_eq!(zero.first_rev(), 0);
}

#[test]
fn one_room_never_has_two_live_logs() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(DiskStorage::open(&config(dir.path(), SyncPolicy::Interval)).unwrap());
    let first = room_on(&storage, 16).unwrap();
    commit_some(&first, 1);
    let err = room_on(&storage, 16).unwrap_err();
    assert_eq!(
        err.to_string(),
        "room \"lobby/1\" is still open in this process; try again"
    );
    // Once the first is gone (its log perhaps still queued for an fsync), it reopens.
    drop(first);
    assert_eq!(room_on(&storage, 16).unwrap().rev(), 2);
}

#[test]
fn a_tick_room_publishes_at_its_flush_once_durable_and_persists_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(DiskStorage::open(&config(dir.path(), SyncPolicy::Always)).unwrap());
    let tick = || {
        Room::builder("arena", Presence::default())
            .flush_policy(crate::room::FlushPolicy::Tick)
            .input_policy(crate::room::InputPolicy::Forward { capacity: 16 })
            .clock(Arc::new(ManualClock::new(1000)))
            .storage(Arc::clone(&storage) as Arc<dyn Storage>)
            .build()
            .unwrap()
    };
    let room = tick();
    storage.pause_syncer(true);
    commit_some(&room, 2);
    assert_eq!(room.flush(), 3);
    assert_eq!(room.published_rev(), 0, "flushed, but not yet durable");
    storage.pause_syncer(false);
    for _ in 0..1000 {
        if room.published_rev() == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(room.published_rev(), 3);
    let before = state(&room);
    drop(room);
    assert_eq!(state(&tick()), before);
}
