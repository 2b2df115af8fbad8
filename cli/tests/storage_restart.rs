//! Durable history with the real binary, a real data directory and SIGKILL: a restarted
//! server has every room's epoch, revisions and state; clients resume with deltas in both
//! dialects; a retried `clientReqId` is a duplicate; a client beyond the ring gets a gap
//! and a snapshot; a second server on the same directory is refused; a full disk gives a
//! retryable error and recovers. Memory mode starts new histories above old revisions.
// A test drives a child process and real sockets: real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};

use common::{Ws, deltas, join, rename, serve};
use serde_json::{Value, json};

/// A `deltasync serve` child on a loopback port.
struct Served {
    child: Child,
    addr: SocketAddr,
    line: String,
}

impl Served {
    fn start(args: &[&str]) -> Self {
        let mut child = serve(args).spawn().expect("the binary starts");
        let (addr, line) = common::listening(&mut child);
        Self { child, addr, line }
    }

    /// On `dir`, with `extra` flags.
    fn on(dir: &Path, extra: &[&str]) -> Self {
        let dir = dir.to_str().unwrap();
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "2",
            "--data-dir",
            dir,
        ];
        args.extend_from_slice(extra);
        Self::start(&args)
    }

    fn url(&self, room: &str) -> String {
        format!("ws://{}/rooms/{room}", self.addr)
    }

    /// SIGKILL, as `kill -9` does: no chance to flush or close anything.
    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `JOIN` resuming at `rev`; `name` is the participant's current name (another name
/// would commit a rename).
fn resume(id: &str, name: &str, rev: u64, epoch: Option<&str>) -> Value {
    let mut message = join(id, name);
    message["payload"]["rev"] = json!(rev);
    if let Some(epoch) = epoch {
        message["payload"]["epoch"] = json!(epoch);
    }
    message
}

/// The operations of every `SYNC.DELTAS` in `messages`, in order.
fn operations(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| m["type"] == "SYNC.DELTAS")
        .flat_map(|m| m["payload"]["operations"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn after_sigkill_both_dialects_resume_with_deltas_of_the_same_history() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::on(dir.path(), &["--set", "storage.sync=always"]);
    assert!(
        served.line.contains(&format!(
            "with storage disk at {} (sync always)",
            dir.path().display()
        )),
        "{}",
        served.line
    );
    let mut writer = Ws::connect(&served.url("doc"));
    assert_eq!(writer.join("user-1", "user-1")["payload"]["rev"], 1);
    let mut native = Ws::connect_native(&served.url("doc"));
    let snapshot = native.join("user-2", "user-2");
    assert_eq!(snapshot["payload"]["rev"], 2);
    let epoch = snapshot["payload"]["epoch"].as_str().unwrap().to_owned();
    for i in 1..=3 {
        writer.send(rename(&format!("Alice {i}"), &format!("req-{i}")));
    }
    // Acknowledged: the writer got its three operations back (after their fsync).
    let acked = operations(&writer.recv_until_rev(5));
    let seen = operations(&native.recv_until_rev(5));
    assert_eq!(acked.len(), 4, "user-2's join, then req-1..3: {acked:?}");
    let mut late = Ws::connect_native(&served.url("doc"));
    let before = late.join("user-3", "user-3");
    assert_eq!(before["payload"]["rev"], 6);
    served.kill9();

    let served = Served::on(dir.path(), &["--set", "storage.sync=always"]);
    // Native: same epoch, deltas 2 -> 6 only, the very operations seen before the kill.
    let mut native = Ws::connect_native(&served.url("doc"));
    native.send(resume("user-2", "user-2", 2, Some(&epoch)));
    let resumed = native.recv();
    assert_eq!(resumed["type"], "SYNC.DELTAS", "{resumed}");
    assert_eq!(
        (
            resumed["payload"]["fromRev"].clone(),
            resumed["payload"]["toRev"].clone()
        ),
        (json!(2), json!(6))
    );
    let ops = resumed["payload"]["operations"].as_array().unwrap();
    assert_eq!(ops[..3], seen[..], "the same bytes as before the kill");
    // ws-kit: resume by revision alone, current already: empty deltas.
    let mut writer = Ws::connect(&served.url("doc"));
    writer.send(resume("user-1", "Alice 3", 6, None));
    assert_eq!(writer.recv(), deltas(6, 6, vec![]));
    // The same state: user-3 joining again commits nothing and gets the same snapshot.
    let mut late = Ws::connect_native(&served.url("doc"));
    assert_eq!(late.join("user-3", "user-3")["payload"], before["payload"]);
    // regression: req-2 retried after the restart is a duplicate, never applied again.
    writer.send(rename("Alice 2", "req-2"));
    let duplicate = writer.recv();
    assert_eq!(
        duplicate["payload"]["code"], "FAILED_PRECONDITION",
        "{duplicate}"
    );
    assert_eq!(
        duplicate["payload"]["details"],
        json!({"clientReqId": "req-2", "appliedRev": 4})
    );
    writer.send(rename("Alice 4", "req-4"));
    let next = writer.recv();
    assert_eq!(next["payload"]["fromRev"], 6, "{next}");
    assert_eq!(next["payload"]["operations"][0]["rev"], 7, "{next}");
}

#[test]
fn a_client_beyond_the_ring_after_a_restart_gets_a_gap_then_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::on(dir.path(), &["--ring-capacity", "4"]);
    let mut writer = Ws::connect(&served.url("far"));
    writer.join("user-1", "user-1");
    for i in 1..=10 {
        writer.send(rename(&format!("A{i}"), &format!("r{i}")));
    }
    // With a ring of 4 the writer itself may fall behind: deltas or a snapshot reach 11.
    loop {
        let message = writer.recv();
        if message["payload"]["toRev"] == 11 || message["payload"]["rev"] == 11 {
            break;
        }
    }
    served.kill9();

    let served = Served::on(dir.path(), &["--ring-capacity", "4"]);
    let mut behind = Ws::connect_native(&served.url("far"));
    behind.send(resume("user-1", "A10", 1, None));
    let gap = behind.recv();
    assert_eq!(gap["type"], "REVISION_GAP", "{gap}");
    assert_eq!(
        (
            gap["payload"]["expectedRev"].clone(),
            gap["payload"]["serverRev"].clone(),
            gap["payload"]["bufferFirstRev"].clone(),
            gap["payload"]["resumeFrom"].clone()
        ),
        (json!(1), json!(11), json!(7), json!(11))
    );
    let snapshot = behind.recv();
    assert_eq!(snapshot["type"], "SYNC.SNAPSHOT");
    assert_eq!(snapshot["payload"]["rev"], 11);
    assert_eq!(snapshot["payload"]["participants"]["user-1"]["name"], "A10");
    // Within the ring: deltas only.
    let mut near = Ws::connect(&served.url("far"));
    near.send(resume("user-1", "A10", 8, None));
    let deltas = near.recv();
    assert_eq!(
        (
            deltas["payload"]["fromRev"].clone(),
            deltas["payload"]["toRev"].clone()
        ),
        (json!(8), json!(11)),
        "{deltas}"
    );
}

#[test]
fn a_second_server_on_a_locked_or_unusable_directory_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Served::on(dir.path(), &[]);
    let output = serve(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "error: cannot open the storage: the data directory {} is locked by another running deltasync server\n",
            dir.path().join("LOCK").display()
        )
    );
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let under_a_file = file.join("data");
    let output = serve(&["--data-dir", under_a_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "error: cannot open the storage: cannot create the data directory {}: Not a directory (os error 20)\n",
            under_a_file.display()
        )
    );
}

#[test]
fn in_memory_a_ws_kit_client_of_the_previous_history_gets_a_gap_not_foreign_deltas() {
    let served = Served::start(&["--listen", "127.0.0.1:0"]);
    assert!(
        served.line.contains(
            "with storage memory (nothing is kept across restarts; new histories start at revision "
        ),
        "{}",
        served.line
    );
    let mut first = Ws::connect(&served.url("m"));
    let old_rev = first.join("user-1", "user-1")["payload"]["rev"]
        .as_u64()
        .unwrap();
    first.send(rename("B", "r1"));
    first.recv_until_rev(old_rev + 1);
    served.kill9();
    // The wall clock moves on between the two starts (the restart takes milliseconds).
    let served = Served::start(&["--listen", "127.0.0.1:0"]);
    let mut other = Ws::connect(&served.url("m"));
    let new_start = other.join("user-2", "user-2")["payload"]["rev"]
        .as_u64()
        .unwrap()
        - 1;
    for i in 0..3 {
        other.send(rename(&format!("C{i}"), &format!("o{i}")));
    }
    other.recv_until_rev(new_start + 4);
    assert!(new_start > old_rev + 1, "{new_start} > {old_rev}");
    let mut resumed = Ws::connect(&served.url("m"));
    resumed.send(resume("user-1", "B", old_rev + 1, None));
    let gap = resumed.recv();
    assert_eq!(gap["type"], "REVISION_GAP", "{gap}");
    assert_eq!(gap["payload"]["bufferFirstRev"], new_start);
    assert_eq!(resumed.recv()["type"], "SYNC.SNAPSHOT");
}

/// A real full disk: a 1 MiB tmpfs, filled up. Needs root to mount (the same behaviour is
/// covered without root by the storage unit test with an injected write error).
#[test]
#[ignore = "needs root to mount a tmpfs: cargo test -p deltasync-cli --test storage_restart -- --ignored"]
fn a_full_disk_refuses_commits_retryably_and_recovers_when_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(mounted.success(), "mount needs root");
    let _unmount = Unmount(dir.path().to_owned());
    let data = dir.path().join("data");
    let served = Served::on(&data, &["--set", "storage.sync=always"]);
    let mut writer = Ws::connect(&served.url("full"));
    writer.join("user-1", "user-1");
    let mut reader = Ws::connect(&served.url("full"));
    reader.join("user-2", "user-2");
    writer.recv_until_rev(2);
    // Fill the file system, then write until a commit finds no space.
    let filler = dir.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 1 << 20]);
    let name = "x".repeat(60);
    let mut acked = 2;
    let refused = (0..200).find_map(|i| {
        writer.send(rename(&format!("{name}{i:03}")[3..], &format!("fill-{i}")));
        let answer = writer.recv();
        if answer["type"] == "ERROR" {
            return Some((i, answer));
        }
        acked = answer["payload"]["toRev"].as_u64().unwrap();
        None
    });
    let (i, refused) = refused.expect("a commit finds the disk full");
    assert_eq!(refused["payload"]["code"], "UNAVAILABLE", "{refused}");
    assert_eq!(refused["payload"]["retryable"], true);
    assert_eq!(
        refused["payload"]["details"]["clientReqId"],
        format!("fill-{i}")
    );
    // Readers and resumes keep working.
    reader.recv_until_rev(acked);
    let mut resumed = Ws::connect(&served.url("full"));
    resumed.send(resume("user-2", "user-2", 2, None));
    assert_eq!(resumed.recv()["payload"]["toRev"], acked);
    std::fs::remove_file(&filler).unwrap();
    writer.send(rename("after", &format!("fill-{i}")));
    assert_eq!(writer.recv()["payload"]["toRev"], acked + 1);
    served.kill9();
    let served = Served::on(&data, &[]);
    let mut after = Ws::connect(&served.url("full"));
    let snapshot = after.join("user-1", "after");
    assert_eq!(snapshot["payload"]["rev"], acked + 1);
    assert_eq!(
        snapshot["payload"]["participants"]["user-1"]["name"],
        "after"
    );
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_room_with_a_corrupt_log_is_refused_whole_and_the_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::on(dir.path(), &[]);
    for room in ["bad", "good"] {
        let mut writer = Ws::connect(&served.url(room));
        writer.join("user-1", "user-1");
        for i in 1..=3 {
            writer.send(rename(&format!("A{i}"), &format!("r{i}")));
        }
        writer.recv_until_rev(4);
    }
    served.kill9();
    // Flip a byte inside the second record of "bad" (rooms/ r + hex of "bad").
    let segment = dir.path().join("rooms/r626164/00000000000000000001.log");
    let mut data = std::fs::read(&segment).unwrap();
    let first_len = 12 + u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
    data[first_len + 30] ^= 0x01;
    std::fs::write(&segment, &data).unwrap();

    let mut served = Served::on(dir.path(), &[]);
    let refused = Ws::try_connect(&served.url("bad"), &[])
        .map(|_| ())
        .unwrap_err();
    let tungstenite::Error::Http(response) = refused else {
        panic!("expected an HTTP refusal, got {refused}");
    };
    assert_eq!(response.status(), 503);
    assert_eq!(
        response
            .body()
            .as_deref()
            .map(String::from_utf8_lossy)
            .as_deref(),
        Some("the room's stored history cannot be loaded\n")
    );
    let mut good = Ws::connect(&served.url("good"));
    assert_eq!(good.join("user-1", "A3")["payload"]["rev"], 4);
    // The log says which file and where.
    let _ = served.child.kill();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut served.child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "corrupt data in {} at offset {first_len}: bad payload checksum",
            segment.display()
        )),
        "{stderr}"
    );
}
