//! The server's handling of raw bytes before and after the WebSocket upgrade, without
//! sockets (`deltasync::server::fuzzing`).
//!
//! The input's bytes go to the upgrade parser alone, and then, as everything a client
//! sends, to one real connection (upgrade, tungstenite framing, the session, the outbox)
//! over an in-memory socket that hands them out in chunks of a chosen size and takes a
//! chosen number of bytes per write, with commits from elsewhere between chunks if asked.
//! Optionally a valid upgrade request goes first, so that the bytes are all frames.
//!
//! Asserted: nothing panics; an upgrade decided on a whole request is decided the same on
//! exactly its bytes, and every shorter prefix is still partial (a request split across
//! reads is never refused for it); what the server writes is one HTTP response and, after
//! a `101`, only whole server frames with the close frame last (the last one may be cut
//! short only when the server gave up on the peer before its end of stream, e.g. at the
//! close linger after too many unread replies); every text message decodes
//! as a server message; operations in a `SYNC.DELTAS` are exactly `fromRev+1..=toRev`, and
//! `REVISION_GAP` is followed by `SYNC.SNAPSHOT`.
#![no_main]

use arbitrary::Arbitrary;
use deltasync::model::presence::Presence;
use deltasync::protocol::decode::{ServerMessage, decode_server};
use deltasync::server::fuzzing::{self, HandshakeOutcome, Options, Transcript};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    chunk: u8,
    write_budget: u16,
    commits: bool,
    token: bool,
    prefix: Prefix,
    max_message_bytes: u16,
    ring_capacity: u8,
    bytes: Vec<u8>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Prefix {
    None,
    Upgrade,
    Native,
    WithToken,
}

const REQUEST: &str = "GET /rooms/fuzz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

fuzz_target!(|input: Input| {
    let token = input.token.then_some("s3cret");
    check_handshake(&input.bytes, token);
    let mut bytes = match input.prefix {
        Prefix::None => Vec::new(),
        Prefix::Upgrade => format!("{REQUEST}\r\n").into_bytes(),
        Prefix::Native => {
            format!("{REQUEST}Sec-WebSocket-Protocol: deltasync.v1\r\n\r\n").into_bytes()
        }
        Prefix::WithToken => format!("{REQUEST}Authorization: Bearer s3cret\r\n\r\n").into_bytes(),
    };
    bytes.extend_from_slice(&input.bytes);
    let options = Options {
        chunk: 1 + usize::from(input.chunk),
        write_budget: 1 + usize::from(input.write_budget),
        commits: input.commits,
        token: token.map(str::to_owned),
        max_message_bytes: 16 + usize::from(input.max_message_bytes % 4096),
        ring_capacity: 1 + usize::from(input.ring_capacity % 8),
    };
    let transcript = fuzzing::connection(&bytes, &options)
        .unwrap_or_else(|e| panic!("the server wrote what it must not: {e}"));
    check_messages(&transcript);
});

fn check_handshake(bytes: &[u8], token: Option<&str>) {
    match fuzzing::handshake(bytes, token) {
        HandshakeOutcome::Partial => {
            assert!(bytes.len() <= fuzzing::MAX_REQUEST_BYTES);
        }
        HandshakeOutcome::Upgrade {
            room,
            consumed,
            response,
            native,
        } => {
            assert!(consumed <= bytes.len());
            assert!(!room.is_empty() && room.len() <= 256, "room {room:?}");
            assert_eq!(
                Transcript::parse(&response).map(|t| t.status),
                Ok(Some(101))
            );
            let again = fuzzing::handshake(&bytes[..consumed], token);
            assert_eq!(
                again,
                HandshakeOutcome::Upgrade {
                    room,
                    consumed,
                    response,
                    native
                },
                "the request alone is decided as with what follows it"
            );
            for cut in [consumed / 2, consumed.saturating_sub(1)] {
                if cut < consumed {
                    assert_eq!(
                        fuzzing::handshake(&bytes[..cut], token),
                        HandshakeOutcome::Partial,
                        "a prefix of {cut} bytes of an upgrade request is refused"
                    );
                }
            }
        }
        HandshakeOutcome::Refused { status, response } => {
            assert_eq!(
                Transcript::parse(&response).map(|t| t.status),
                Ok(Some(status))
            );
        }
    }
}

fn check_messages(transcript: &Transcript) {
    let mut awaiting_snapshot = false;
    for text in &transcript.texts {
        let message = decode_server::<Presence>(text).unwrap_or_else(|e| {
            panic!(
                "the server sent what does not decode: {e}: {}",
                String::from_utf8_lossy(text)
            )
        });
        if awaiting_snapshot {
            assert!(
                matches!(message, ServerMessage::Snapshot { .. }),
                "invariant 5: {} after REVISION_GAP",
                String::from_utf8_lossy(text)
            );
        }
        awaiting_snapshot = false;
        match message {
            ServerMessage::Deltas {
                from,
                to,
                operations,
            } => {
                let revs: Vec<u64> = operations.iter().map(|o| o.rev).collect();
                assert_eq!(revs, (from + 1..=to).collect::<Vec<_>>());
            }
            ServerMessage::Gap { .. } => awaiting_snapshot = true,
            _ => {}
        }
    }
    // (Unless the server gave up on a peer too slow to read and cut the rest off.)
    assert!(
        !awaiting_snapshot || transcript.cut,
        "the stream ends on a REVISION_GAP"
    );
}
