//! Bad actors against a server with a well-behaved client beside them: many connections
//! that never finish their upgrade (slowloris), a frame header announcing 1 GiB, frames
//! sent one byte at a time, a client flooding updates. Each is limited or closed as the
//! configuration says, and the well-behaved client gets every answer it expects and no
//! error. (How much they slow it down is measured by `deltasync soak --bad-actors`, not
//! asserted here.)
// These tests pace their bad actors on real time.
#![allow(clippy::disallowed_methods)]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::raw::{self, RawWs, frame, upgrade_request};
use common::{TestServer, Ws, eventually, update};
use serde_json::{Value, json};

/// A joined client that keeps updating (every 150 ms, within every rate limit here) and
/// checks each answer is its ack, until `stop`; returns how many updates it made.
fn well_behaved(
    url: String,
    id: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut ws = Ws::connect(&url);
        let snapshot = ws.join(id, "Good");
        assert_eq!(snapshot["type"], "SYNC.SNAPSHOT", "{snapshot}");
        let mut made = 0;
        while !stop.load(Ordering::Relaxed) || made < 3 {
            std::thread::sleep(Duration::from_millis(150));
            made += 1;
            let req = format!("{id}-{made}");
            let status = if made % 2 == 0 { "online" } else { "away" };
            ws.send(update(status, &req));
            // Other participants' operations may come first; never an error.
            loop {
                let message = ws.recv();
                assert_eq!(message["type"], "SYNC.DELTAS", "{message}");
                let ops = message["payload"]["operations"].as_array().unwrap();
                if ops.iter().any(|op| op["clientReqId"] == req.as_str()) {
                    break;
                }
            }
        }
        made
    })
}

/// Reads until the server ends the connection (what it says first, a 400 for a request
/// the extra byte made malformed, does not matter); false if it stays open until the
/// read timeout.
fn ends(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => {
                return matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                );
            }
        }
    }
}

#[test]
fn slowloris_connections_are_closed_at_the_handshake_timeout_and_nobody_else_notices() {
    let server = TestServer::with(|config| config.timeouts.handshake_ms = 300);
    let stop = Arc::new(AtomicBool::new(false));
    let good = well_behaved(server.url("/rooms/good"), "good", Arc::clone(&stop));
    let request = upgrade_request("/", "");
    // 200 connections, each stuck at a different point of its request.
    let mut loris: Vec<TcpStream> = (0..200)
        .map(|i| {
            let mut stream = raw::connect(server.addr());
            let cut = i % request.len();
            stream.write_all(&request.as_bytes()[..cut]).unwrap();
            stream
        })
        .collect();
    // Still trickling bytes does not help: the deadline is the whole request's.
    for stream in &mut loris {
        let _ = stream.write_all(b"X");
    }
    for stream in &mut loris {
        assert!(ends(stream), "a slowloris connection stayed open");
    }
    eventually("only the good client is left", || {
        server.server().connections() == 1
    });
    stop.store(true, Ordering::Relaxed);
    assert!(good.join().unwrap() >= 3);
}

#[test]
fn a_one_gib_length_header_is_refused_at_once_without_waiting_for_the_bytes() {
    let server = TestServer::start();
    let stop = Arc::new(AtomicBool::new(false));
    let good = well_behaved(server.url("/"), "good", Arc::clone(&stop));
    for _ in 0..5 {
        let mut raw = RawWs::connect(server.addr(), "/");
        let mut header = vec![0x81, 0xff];
        header.extend_from_slice(&(1u64 << 30).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        // The header and a few bytes of the promised gigabyte.
        header.extend_from_slice(&[b'x'; 100]);
        raw.write(&header);
        let (opcode, error) = raw.read_frame();
        assert_eq!(opcode, 0x1);
        let error: Value = serde_json::from_slice(&error).unwrap();
        assert_eq!(
            error,
            json!({"type": "ERROR", "meta": {}, "payload": {"code": "RESOURCE_EXHAUSTED",
                "message": "message of 1073741824 bytes exceeds the limit of 65536 bytes",
                "retryable": true}})
        );
        assert_eq!(raw.read_close(), (1009, "message too large".to_owned()));
        raw.expect_eof();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(good.join().unwrap() >= 3);
}

#[test]
fn frames_one_byte_at_a_time_are_answered_and_a_trickle_without_messages_times_out() {
    let server = TestServer::with(|config| config.timeouts.idle_ms = 600);
    let stop = Arc::new(AtomicBool::new(false));
    let good = well_behaved(server.url("/"), "good", Arc::clone(&stop));
    let mut slow = RawWs::connect(server.addr(), "/");
    let mut bytes = frame(
        0x1,
        true,
        br#"{"type":"JOIN","payload":{"participantId":"slow","name":"S"}}"#,
    );
    bytes.extend(frame(
        0x1,
        true,
        br#"{"type":"UPDATE","payload":{"patch":{"status":"away"},"clientReqId":"s-1"}}"#,
    ));
    for byte in &bytes {
        slow.write(std::slice::from_ref(byte));
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut answers = Vec::new();
    while answers.len() < 2 {
        let (opcode, payload) = slow.read_frame();
        assert_eq!(opcode, 0x1);
        let message: Value = serde_json::from_slice(&payload).unwrap();
        let acked = message["payload"]["operations"]
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op["clientReqId"] == "s-1"));
        if message["type"] == "SYNC.SNAPSHOT" || acked {
            answers.push(message);
        }
    }
    assert_eq!(answers[0]["type"], "SYNC.SNAPSHOT");
    // A frame so slow that no message completes within the idle timeout: the bytes
    // alone do not keep the connection, and the server closes it (1000, idle).
    let mut trickle = RawWs::connect(server.addr(), "/");
    let heartbeat = frame(
        0x1,
        true,
        format!("{:<80}", r#"{"type":"HEARTBEAT"}"#).as_bytes(),
    );
    let mut closed = None;
    for byte in heartbeat.iter().cycle().take(400) {
        let _ = trickle.stream.write_all(std::slice::from_ref(byte));
        std::thread::sleep(Duration::from_millis(20));
        trickle.stream.set_nonblocking(true).unwrap();
        let mut peek = [0u8; 2];
        let ready = trickle.stream.peek(&mut peek).is_ok_and(|n| n == 2);
        trickle.stream.set_nonblocking(false).unwrap();
        if ready {
            closed = Some(trickle.read_close());
            break;
        }
    }
    assert_eq!(closed, Some((1000, "idle timeout".to_owned())));
    stop.store(true, Ordering::Relaxed);
    assert!(good.join().unwrap() >= 3);
}

#[test]
fn a_flood_of_updates_is_rate_limited_and_each_update_still_answered_exactly_once() {
    let server = TestServer::with(|config| {
        // 50 updates at this rate take about three seconds. The rate is low so that a
        // token takes 100 ms to come: the first 21 messages must reach the server within
        // it for exactly one refusal, which holds on a loaded machine too (at 100/s, 10 ms
        // was not always enough with other builds running).
        config.limits.messages_per_second = 10;
        config.limits.message_burst = 20;
    });
    let stop = Arc::new(AtomicBool::new(false));
    let good = well_behaved(server.url("/rooms/shared"), "good", Arc::clone(&stop));
    let mut flooder = RawWs::connect(server.addr(), "/rooms/shared");
    flooder.send_text(br#"{"type":"JOIN","payload":{"participantId":"flood","name":"F"}}"#);
    const UPDATES: usize = 50;
    let mut burst = Vec::new();
    for i in 0..UPDATES {
        let status = if i % 2 == 0 { "away" } else { "online" };
        let text = json!({"type": "UPDATE", "payload":
            {"patch": {"status": status}, "clientReqId": format!("f-{i}")}});
        burst.extend(frame(0x1, true, text.to_string().as_bytes()));
    }
    let writer = {
        let mut stream = flooder.stream.try_clone().unwrap();
        std::thread::spawn(move || stream.write_all(&burst).unwrap())
    };
    // Every update is answered exactly once: its operation, or RESOURCE_EXHAUSTED naming it.
    let mut acked = [0u32; UPDATES];
    let mut refused = [0u32; UPDATES];
    let index = |id: &str| id.strip_prefix("f-").unwrap().parse::<usize>().unwrap();
    while acked.iter().zip(&refused).any(|(a, r)| a + r == 0) {
        let (opcode, payload) = flooder.read_frame();
        assert_eq!(opcode, 0x1);
        let message: Value = serde_json::from_slice(&payload).unwrap();
        match message["type"].as_str().unwrap() {
            "SYNC.SNAPSHOT" => {}
            "SYNC.DELTAS" => {
                for op in message["payload"]["operations"].as_array().unwrap() {
                    if let Some(id) = op["clientReqId"].as_str().filter(|id| id.starts_with("f-")) {
                        acked[index(id)] += 1;
                    }
                }
            }
            "ERROR" => {
                assert_eq!(
                    message["payload"]["code"], "RESOURCE_EXHAUSTED",
                    "{message}"
                );
                let id = message["payload"]["details"]["clientReqId"]
                    .as_str()
                    .unwrap();
                refused[index(id)] += 1;
            }
            other => panic!("unexpected {other}: {message}"),
        }
    }
    writer.join().unwrap();
    for i in 0..UPDATES {
        assert_eq!(
            acked[i] + refused[i],
            1,
            "f-{i}: {} acks, {} refusals",
            acked[i],
            refused[i]
        );
    }
    let accepted = acked.iter().sum::<u32>();
    // The JOIN took one token of the burst of 20, the next 19 updates the rest; the 20th
    // is refused by name, and the connection is then throttled: the server reads the rest
    // as tokens come, and refuses none of them.
    assert_eq!(refused.iter().sum::<u32>(), 1);
    assert_eq!(refused[19], 1);
    assert_eq!(accepted, UPDATES as u32 - 1);
    stop.store(true, Ordering::Relaxed);
    assert!(good.join().unwrap() >= 3);
    // Limited, not closed: once it slows down, its next update goes through.
    std::thread::sleep(Duration::from_millis(500));
    flooder.send_text(update("away", "f-last").to_string().as_bytes());
    loop {
        let (opcode, payload) = flooder.read_frame();
        assert_eq!(opcode, 0x1);
        let message: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(message["type"], "SYNC.DELTAS", "{message}");
        let ops = message["payload"]["operations"].as_array().unwrap();
        if ops.iter().any(|op| op["clientReqId"] == "f-last") {
            break;
        }
    }
}

/// Reads one message of the flooder: its snapshot, acks (their `clientReqId`s go to
/// `acked`) or refusals.
fn flood_answer(flooder: &mut RawWs, acked: &mut Vec<String>, refusals: &mut Vec<Value>) {
    let (opcode, payload) = flooder.read_frame();
    assert_eq!(opcode, 0x1);
    let message: Value = serde_json::from_slice(&payload).unwrap();
    match message["type"].as_str().unwrap() {
        "SYNC.SNAPSHOT" => {}
        "SYNC.DELTAS" => {
            for op in message["payload"]["operations"].as_array().unwrap() {
                if let Some(id) = op["clientReqId"].as_str().filter(|id| id.starts_with("f-")) {
                    acked.push(id.to_owned());
                }
            }
        }
        "ERROR" => refusals.push(message),
        other => panic!("unexpected {other}: {message}"),
    }
}

/// Reads `ws` until the operation carrying `req` comes; returns every operation seen.
fn ops_until(ws: &mut Ws, req: &str) -> Vec<Value> {
    let mut ops = Vec::new();
    loop {
        let message = ws.recv();
        assert_eq!(message["type"], "SYNC.DELTAS", "{message}");
        ops.extend(message["payload"]["operations"].as_array().unwrap().clone());
        if ops.iter().any(|op| op["clientReqId"] == req) {
            return ops;
        }
    }
}

// regression: a flooder's every message was read and refused at once, costing its shard
// the decoding of each; now the server stops reading it while its budget is spent.
#[test]
fn a_flooding_connection_is_read_no_faster_than_its_rate_and_its_shard_goes_on() {
    const RATE: u32 = 20;
    const UPDATES: usize = 40;
    let server = TestServer::with(|config| {
        // One shard: the flooder and the bystander share it.
        config.server.shards = 1;
        config.limits.messages_per_second = RATE;
        config.limits.message_burst = 5;
    });
    let mut bystander = Ws::connect(&server.url("/rooms/shared"));
    assert_eq!(bystander.join("by", "B")["type"], "SYNC.SNAPSHOT");
    let mut flooder = RawWs::connect(server.addr(), "/rooms/shared");
    flooder.send_text(br#"{"type":"JOIN","payload":{"participantId":"flood","name":"F"}}"#);
    let mut flood = Vec::new();
    for i in 0..UPDATES {
        let status = if i % 2 == 0 { "away" } else { "online" };
        flood.extend(frame(
            0x1,
            true,
            update(status, &format!("f-{i}")).to_string().as_bytes(),
        ));
    }
    let start = Instant::now();
    flooder.write(&flood);
    // The JOIN and four updates spend the burst; the fifth is refused by name.
    let mut acked = Vec::new();
    let mut refusals = Vec::new();
    while refusals.is_empty() {
        flood_answer(&mut flooder, &mut acked, &mut refusals);
    }
    let mut refusal = refusals.pop().unwrap();
    assert!(
        refusal["payload"]["retryAfterMs"].as_u64().unwrap() >= 1,
        "{refusal}"
    );
    refusal["payload"]
        .as_object_mut()
        .unwrap()
        .remove("retryAfterMs");
    assert_eq!(
        refusal,
        json!({"type": "ERROR", "meta": {}, "payload": {"code": "RESOURCE_EXHAUSTED",
            "message": "message rate limit exceeded; slow down",
            "details": {"clientReqId": "f-4"}, "retryable": true}})
    );
    // The bystander, on the same shard, is answered meanwhile; by then the server has
    // handled no more of the flood than the rate allows (the old server had refused it all).
    bystander.send(update("away", "b-1"));
    let seen = ops_until(&mut bystander, "b-1");
    let elapsed = start.elapsed().as_secs_f64();
    let flood_before = seen
        .iter()
        .filter(|op| {
            op["clientReqId"]
                .as_str()
                .is_some_and(|id| id.starts_with("f-"))
        })
        .count();
    let allowed = 4 + (elapsed * f64::from(RATE)).ceil() as usize + 1;
    assert!(
        flood_before <= allowed,
        "{flood_before} flood updates committed within {elapsed:.3} s (at most {allowed})"
    );
    // Nothing is lost: every update after the refused one is applied, once, in order.
    while acked.len() < UPDATES - 1 && refusals.is_empty() {
        flood_answer(&mut flooder, &mut acked, &mut refusals);
    }
    assert_eq!(refusals, Vec::<Value>::new());
    let expected: Vec<String> = (0..UPDATES)
        .filter(|&i| i != 4)
        .map(|i| format!("f-{i}"))
        .collect();
    assert_eq!(acked, expected);
}
