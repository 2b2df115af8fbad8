//! Backpressure over real sockets: a client that stops reading holds up nobody, and the
//! server keeps nothing for it but its revision. When it reads again it is brought to the
//! head in one step (deltas coalesced, or `REVISION_GAP` and a snapshot once the ring has
//! moved past it) and ends in everyone's state.
mod common;

use std::io::Write;

use common::raw::{RawWs, frame};
use common::sync::SyncClient;
use common::{TestServer, assert_serves};

/// Operations written while the slow client does not read. Each carries a name of
/// `NAME_CHARS` characters, so together they are far more bytes (about 8 MB) than the
/// loopback socket buffers of one connection hold (at most 4 MiB to send, here, plus what
/// the client's receive buffer takes without its application reading).
const OPS: u64 = 2000;
const NAME_CHARS: usize = 4000;

fn big_name(i: u64) -> String {
    let mut name = format!("{i:05}-");
    name.extend(std::iter::repeat_n('n', NAME_CHARS - name.len()));
    name
}

fn server(ring_capacity: usize) -> TestServer {
    TestServer::with(|config| {
        config.room.ring_capacity = ring_capacity.try_into().unwrap();
        config.presence.max_name_chars = 4096;
        config.limits.max_message_bytes = 16 * 1024;
        config.limits.messages_per_second = 1_000_000;
        config.limits.message_burst = 1_000_000;
    })
}

/// Three clients join; the writer then renames itself `OPS` times while the reader reads
/// every operation as it comes and the slow client reads nothing. Returns them at the
/// end, the slow one not having read past its snapshot.
fn run(server: &TestServer) -> (SyncClient, SyncClient, SyncClient, u64) {
    let url = server.url("/rooms/busy");
    let mut writer = SyncClient::connect(&url, "writer");
    let mut reader = SyncClient::connect(&url, "reader");
    let mut slow = SyncClient::connect(&url, "slow");
    assert_eq!(writer.join("Writer"), 1);
    assert_eq!(reader.join("Reader"), 2);
    assert_eq!(slow.join("Slow"), 3);
    let mut op_bytes = 0;
    for i in 0..OPS {
        let name = big_name(i);
        op_bytes += name.len();
        writer.set_name(&name);
        let rev = 3 + i + 1;
        writer.until_rev(rev);
        reader.until_rev(rev);
    }
    let head = 3 + OPS;
    // The others got every operation, in order, with no gap, while the slow one sat.
    assert_eq!(reader.stream.op_revs, (3..=head).collect::<Vec<_>>());
    assert!(reader.stream.gaps.is_empty());
    assert!(writer.replica.pending().is_empty(), "every rename acked");
    // The server still serves everyone else: a new client of the same room gets the
    // state at the head, and another room works as usual.
    let mut late = SyncClient::connect(&url, "late");
    assert_eq!(late.join("Late"), head + 1);
    assert_serves(&server.url(""));
    (writer, reader, slow, op_bytes as u64)
}

#[test]
fn a_slow_client_past_the_ring_gets_one_gap_and_snapshot_and_catches_up() {
    let server = server(8);
    let (_writer, mut reader, mut slow, op_bytes) = run(&server);
    let head = 3 + OPS + 1; // the renames, then the late client's join
    reader.until_rev(head);
    slow.until_rev(head);
    // What the kernel buffers held arrives first, contiguous; then, since the ring had
    // moved on, exactly one REVISION_GAP and a snapshot at the head: nothing was queued
    // for it on the server.
    assert_eq!(slow.stream.gaps.len(), 1, "{:?}", slow.stream.gaps);
    let gap = &slow.stream.gaps[0];
    let expected = gap["expectedRev"].as_u64().unwrap();
    assert_eq!(
        *gap,
        serde_json::json!({"expectedRev": expected, "serverRev": head,
            "bufferFirstRev": head - 8, "resumeFrom": head})
    );
    assert_eq!(slow.stream.snapshots, [3, head]);
    assert_eq!(
        slow.stream.op_revs,
        (4..=expected).collect::<Vec<_>>(),
        "before the gap: the operations the socket buffers held"
    );
    assert!(
        expected < head - 8,
        "the slow client fell out of the ring (it was at {expected})"
    );
    assert!(
        (slow.bytes as u64) < op_bytes,
        "it received {} bytes, less than the {op_bytes} bytes of names written",
        slow.bytes
    );
    assert!(*slow.state() == *reader.state(), "same state as everyone");
}

#[test]
fn a_slow_client_within_the_ring_gets_its_deltas_coalesced() {
    let server = server(4096);
    let (_writer, mut reader, mut slow, _) = run(&server);
    let head = 3 + OPS + 1;
    reader.until_rev(head);
    slow.until_rev(head);
    assert!(slow.stream.gaps.is_empty());
    assert_eq!(slow.stream.snapshots, [3]);
    assert_eq!(slow.stream.op_revs, (4..=head).collect::<Vec<_>>());
    // Fewer messages than operations: while its socket was full, operations piled up
    // in the ring, not in a queue of its own, and came as one batch once it drained.
    assert!(
        (slow.stream.ranges.len() as u64) < OPS,
        "{} messages for {OPS} operations",
        slow.stream.ranges.len()
    );
    let (from, to) = *slow.stream.ranges.last().unwrap();
    assert!(
        to == head && from < head - 1,
        "the last message brought it to the head in one batch: {from}->{to}"
    );
    assert!(*slow.state() == *reader.state(), "same state as everyone");
}

#[test]
fn a_client_that_pings_without_reading_gets_the_latest_pong_not_a_queue_of_them() {
    // 100,000 pings of 125 bytes: 13 MB, far more pongs than the socket buffers hold.
    const PINGS: u32 = 100_000;
    let server = TestServer::start();
    let mut raw = RawWs::connect(server.addr(), "/");
    let ping = |i: u32| {
        let mut payload = vec![b'p'; 121];
        payload.extend_from_slice(&i.to_be_bytes());
        payload
    };
    let mut bytes = Vec::new();
    for i in 0..PINGS {
        bytes.extend(frame(0x9, true, &ping(i)));
    }
    bytes.extend(frame(
        0x1,
        true,
        br#"{"type":"JOIN","payload":{"participantId":"pinger","name":"P"}}"#,
    ));
    let mut writer = raw.stream.try_clone().unwrap();
    let sent = std::thread::spawn(move || writer.write_all(&bytes));
    // Meanwhile, others are served.
    assert_serves(&server.url(""));
    // Every byte was taken (the server read them all while this client read nothing).
    sent.join().unwrap().unwrap();
    let mut pongs = Vec::new();
    let snapshot = loop {
        match raw.read_frame() {
            (0xa, payload) => pongs.push(payload),
            (0x1, text) => break String::from_utf8(text).unwrap(),
            (opcode, _) => panic!("unexpected opcode {opcode:#x}"),
        }
    };
    assert!(snapshot.contains(r#""rev":1,"#), "{snapshot}");
    // regression: every ping's pong was appended to the connection's outbox, written or
    // not, so a client that pinged and never read grew the server's memory without bound.
    assert!(
        pongs.len() < (PINGS / 10) as usize,
        "{} pongs for {PINGS} pings: pongs were queued",
        pongs.len()
    );
    assert_eq!(
        pongs.last(),
        Some(&ping(PINGS - 1)),
        "the latest ping is answered"
    );
}
