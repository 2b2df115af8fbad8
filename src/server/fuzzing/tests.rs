use super::*;

/// A client frame with the zero mask (so the payload reads as it is).
fn text(payload: &str) -> Vec<u8> {
    frame::encode(frame::TEXT, payload.as_bytes(), Some([0; 4]))
}

const UPGRADE: &str = "GET /rooms/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[test]
fn an_upgrade_and_a_join_get_101_and_the_snapshot_whatever_the_chunking() {
    let mut input = UPGRADE.as_bytes().to_vec();
    input.extend(text(
        r#"{"type":"JOIN","payload":{"participantId":"u","name":"U"}}"#,
    ));
    for (chunk, write_budget) in [(4096, usize::MAX), (1, 1), (7, 3)] {
        let options = Options {
            chunk,
            write_budget,
            ..Options::default()
        };
        let transcript = connection(&input, &options).unwrap();
        assert_eq!(transcript.status, Some(101));
        assert_eq!(
            transcript.texts,
            [br#"{"type":"SYNC.SNAPSHOT","meta":{},"payload":{"rev":1,"participants":{"u":{"id":"u","name":"U","status":"online","lastActive":1000}}}}"#.to_vec()],
            "chunk {chunk}, budget {write_budget}"
        );
        // The client went without a close frame: the server just drops the connection.
        assert_eq!(transcript.close, None);
    }
}

#[test]
fn garbage_gets_one_plain_refusal() {
    let transcript = connection(b"\x00\x01garbage\r\n\r\n", &Options::default()).unwrap();
    assert_eq!(transcript.status, Some(400));
    assert!(transcript.texts.is_empty());
    assert_eq!(
        handshake(UPGRADE.as_bytes(), Some("secret")),
        HandshakeOutcome::Refused {
            status: 401,
            response: b"HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 25\r\nConnection: close\r\n\r\nmissing or invalid token\n".to_vec(),
        }
    );
}

#[test]
fn the_transcript_parser_refuses_what_a_server_must_not_write() {
    let ok = b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x02hi\x8a\x00\x88\x02\x03\xe8";
    let parsed = Transcript::parse(ok).unwrap();
    assert_eq!(
        (parsed.texts, parsed.pongs, parsed.close),
        (vec![b"hi".to_vec()], 1, Some(1000))
    );
    let bad: [&[u8]; 4] = [
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x01\x02hi",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x82\0\0\0\0hi",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x88\x00\x81\x00",
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nabc",
    ];
    for bytes in bad {
        assert!(Transcript::parse(bytes).is_err(), "{bytes:?}");
    }
    // regression (of the fuzz harness, found by server_bytes): a server answering a
    // client's close 1012 (service restart) echoes it, which is allowed.
    let echoed = b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x88\x02\x03\xf4";
    assert_eq!(Transcript::parse(echoed).unwrap().close, Some(1012));
    let reserved = b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x88\x02\x03\xf7";
    assert!(Transcript::parse(reserved).is_err(), "1015 is reserved");
    // Cut short: only a server that gave up on its peer may leave it so.
    let cut: [&[u8]; 3] = [
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x05hi",
        b"HTTP/1.1 101 Switch",
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\n\r\nab",
    ];
    for bytes in cut {
        assert!(Transcript::parse(bytes).unwrap().cut, "{bytes:?}");
    }
}

#[test]
fn a_peer_too_slow_for_its_unread_replies_is_cut_off_after_the_close_linger() {
    // regression (of the fuzz harness, found by server_bytes): a client reading a byte a
    // millisecond while sending bad messages is closed for too many unread replies (1008)
    // and dropped when the close linger (2 s) ends, its outbox half written. That is the
    // server giving up on it, not a framing error.
    let mut input = UPGRADE.as_bytes().to_vec();
    for _ in 0..100 {
        input.extend(text("x"));
    }
    input.extend(std::iter::repeat_n(0u8, 2500));
    let options = Options {
        chunk: 1,
        write_budget: 1,
        ..Options::default()
    };
    let transcript = connection(&input, &options).unwrap();
    assert_eq!(transcript.status, Some(101));
    assert!(transcript.cut, "{transcript:?}");
    assert_eq!(transcript.close, None, "the close frame was still queued");
    assert!(!transcript.texts.is_empty() && transcript.texts.len() < 100);
}

/// A bench whose connection has upgraded, and the instant it reads at.
fn upgraded_bench() -> (Bench, Instant) {
    let mut bench = Bench::new(&Options::default()).unwrap();
    let now = bench.now;
    assert_eq!(feed(&mut bench, UPGRADE.as_bytes(), now), Next::Keep);
    (bench, now)
}

/// Makes `bytes` readable at once and lets the connection read at `now`.
fn feed(bench: &mut Bench, bytes: &[u8], now: Instant) -> Next {
    let stream = bench.connection.stream_mut();
    stream.input.extend(bytes);
    stream.readable = stream.input.len();
    bench
        .connection
        .on_readable(&bench.shared, &mut bench.scratch, now)
}

#[test]
fn a_connection_sending_a_byte_at_a_time_is_left_unread_between_bursts() {
    let (mut bench, now) = upgraded_bench();
    let frame = text(r#"{"type":"HEARTBEAT"}"#);
    for byte in &frame[..3] {
        assert_eq!(feed(&mut bench, &[*byte], now), Next::Keep);
    }
    // The fourth trickle in a row: not read again for 20 ms.
    let until = now + Duration::from_millis(20);
    assert_eq!(feed(&mut bench, &frame[3..4], now), Next::Paused(until));
    let rest = &frame[4..];
    let later = now + Duration::from_millis(19);
    assert_eq!(feed(&mut bench, rest, later), Next::Keep);
    assert_eq!(
        bench.connection.stream_mut().input.len(),
        rest.len(),
        "unread"
    );
    // Then the rest comes in one read.
    assert_eq!(feed(&mut bench, &[], until), Next::Keep);
    assert!(bench.connection.stream_mut().input.is_empty());
}

// regression: a trickler was read again byte by byte after each pause (four events and
// eight reads per pause, bench-measured), as if it had never trickled.
#[test]
fn a_trickler_that_still_trickles_after_its_pause_is_paused_again_after_one_read() {
    let (mut bench, now) = upgraded_bench();
    let frame = text(r#"{"type":"HEARTBEAT"}"#);
    for byte in &frame[..3] {
        assert_eq!(feed(&mut bench, &[*byte], now), Next::Keep);
    }
    let until = now + Duration::from_millis(20);
    assert_eq!(feed(&mut bench, &frame[3..4], now), Next::Paused(until));
    // Two more bytes came meanwhile: one read takes them, and that trickle pauses it again.
    bench.connection.stream_mut().reads = 0;
    let again = until + Duration::from_millis(20);
    assert_eq!(feed(&mut bench, &frame[4..6], until), Next::Paused(again));
    assert_eq!(bench.connection.stream_mut().reads, 1);
    // The rest of the message, then a whole one in one read: read freely again, and a
    // whole message in one read never counts as a trickle.
    assert_eq!(feed(&mut bench, &frame[6..], again), Next::Keep);
    for _ in 0..3 {
        assert_eq!(feed(&mut bench, &frame, again), Next::Keep);
    }
    bench.connection.stream_mut().reads = 0;
    for byte in &frame[..3] {
        assert_eq!(feed(&mut bench, &[*byte], again), Next::Keep);
    }
    assert_eq!(
        bench.connection.stream_mut().reads,
        6,
        "a read and a WouldBlock each"
    );
}

// A throttled connection resumed for one token hands over what it already read and
// pauses again, without a system call: one wake-up per token, no read.
#[test]
fn a_throttled_connection_resumed_for_a_token_reads_nothing_from_its_socket() {
    let (mut bench, now) = upgraded_bench();
    let mut batch = text(r#"{"type":"JOIN","payload":{"participantId":"f","name":"F"}}"#);
    for i in 0..250 {
        let status = if i % 2 == 0 { "away" } else { "online" };
        batch.extend(text(&format!(
            r#"{{"type":"UPDATE","payload":{{"patch":{{"status":"{status}"}},"clientReqId":"f{i}"}}}}"#
        )));
    }
    let mut next = feed(&mut bench, &batch, now);
    let mut turns = 0;
    while next == Next::ReadMore && turns < 100 {
        next = feed(&mut bench, &[], now);
        turns += 1;
    }
    let room = bench.connection.room().cloned().unwrap();
    // The JOIN and the burst of 200 took tokens; the 201st update was refused by name.
    assert_eq!(room.rev(), 200);
    let Next::Paused(until) = next else {
        panic!("not paused: {next:?}");
    };
    let reads = bench.connection.stream_mut().reads;
    let Next::Paused(_) = feed(&mut bench, &[], until) else {
        panic!("not paused again");
    };
    assert_eq!(room.rev(), 201, "one token, one update");
    assert_eq!(bench.connection.stream_mut().reads, reads, "no read");
}

#[test]
fn one_connection_handles_at_most_32_messages_per_turn() {
    let (mut bench, now) = upgraded_bench();
    let mut batch = text(r#"{"type":"JOIN","payload":{"participantId":"u","name":"U"}}"#);
    for i in 0..39 {
        let status = if i % 2 == 0 { "away" } else { "online" };
        batch.extend(text(&format!(
            r#"{{"type":"UPDATE","payload":{{"patch":{{"status":"{status}"}},"clientReqId":"r{i}"}}}}"#
        )));
    }
    assert_eq!(feed(&mut bench, &batch, now), Next::ReadMore);
    let room = bench.connection.room().cloned().unwrap();
    assert_eq!(room.rev(), 32, "the JOIN and 31 updates");
    assert!(bench.connection.stream_mut().input.is_empty(), "read, held");
    assert_eq!(feed(&mut bench, &[], now), Next::Keep);
    assert_eq!(room.rev(), 40);
}
