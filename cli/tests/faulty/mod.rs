//! A WebSocket server that breaks the protocol on purpose, for showing that
//! `deltasync bench` notices: it answers `JOIN` with an empty snapshot and fans every
//! `UPDATE` out as one `SYNC.DELTAS` in the layout the real server writes, except for
//! the one update its [`Fault`] names. Loopback only; each connection has a thread,
//! which ends when the generator closes it.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use tungstenite::Message;

/// How the server breaks the stream, at the update of this number (counted from 1).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    /// The update's `SYNC.DELTAS` goes to every client twice.
    Duplicate(u64),
    /// A revision is skipped just before the update.
    Skip(u64),
}

/// The revision so far, the updates seen and a write half of every joined connection.
#[derive(Default)]
struct Room {
    rev: u64,
    updates: u64,
    clients: Vec<TcpStream>,
}

/// Starts the server on a free loopback port; returns its `ws://` URL.
pub(crate) fn start(fault: Fault) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let room = Arc::new(Mutex::new(Room::default()));
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let room = Arc::clone(&room);
            thread::spawn(move || serve(stream, &room, fault));
        }
    });
    format!("ws://{addr}/")
}

/// One connection: reads until the generator closes it.
fn serve(stream: TcpStream, room: &Mutex<Room>, fault: Fault) {
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let Ok(mut ws) = tungstenite::accept(stream) else {
        return;
    };
    let mut writer = Some(writer);
    while let Ok(message) = ws.read() {
        let Message::Text(text) = message else {
            continue;
        };
        let text = text.as_str();
        let mut room = room.lock().unwrap();
        if text.contains(r#""type":"JOIN""#) {
            let Some(mut out) = writer.take() else {
                continue;
            };
            let snapshot = format!(
                r#"{{"type":"SYNC.SNAPSHOT","meta":{{}},"payload":{{"rev":{},"participants":{{}}}}}}"#,
                room.rev
            );
            let _ = out.write_all(&text_frame(&snapshot));
            room.clients.push(out);
        } else if text.contains(r#""type":"UPDATE""#) {
            update(&mut room, client_req_id(text), fault);
        }
    }
}

/// Fans one update out, broken as `fault` says.
fn update(room: &mut Room, id: &str, fault: Fault) {
    room.updates += 1;
    if matches!(fault, Fault::Skip(n) if n == room.updates) {
        room.rev += 1;
    }
    let from = room.rev;
    room.rev += 1;
    let deltas = format!(
        r#"{{"type":"SYNC.DELTAS","meta":{{}},"payload":{{"fromRev":{from},"toRev":{to},"operations":[{{"rev":{to},"type":"participant.updated","payload":{{"id":"c0","name":"w"}},"clientReqId":"{id}"}}]}}}}"#,
        to = room.rev
    );
    let times = match fault {
        Fault::Duplicate(n) if n == room.updates => 2,
        _ => 1,
    };
    let frame = text_frame(&deltas).repeat(times);
    for client in &mut room.clients {
        let _ = client.write_all(&frame);
    }
}

/// The `clientReqId` of an `UPDATE` (the generator's ids need no escaping).
fn client_req_id(text: &str) -> &str {
    let key = r#""clientReqId":""#;
    let start = text.find(key).unwrap() + key.len();
    let len = text[start..].find('"').unwrap();
    &text[start..start + len]
}

/// An unmasked text frame, as a server sends it.
fn text_frame(text: &str) -> Vec<u8> {
    let mut frame = vec![0x81];
    match text.len() {
        len @ 0..=125 => frame.push(len as u8),
        len => {
            frame.push(126);
            frame.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        }
    }
    frame.extend_from_slice(text.as_bytes());
    frame
}
