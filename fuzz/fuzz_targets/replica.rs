//! The client replica fed whatever a server (or a broken one) may send, between local
//! updates and disconnections.
//!
//! Messages are raw bytes or built with the server's encoders from fuzzed revisions and
//! operations (so that contiguity, gaps, acks and rejections are reached often). Asserted:
//! nothing panics; a refused message changes nothing (revision, server state, pending);
//! the visible state is always the server state with the pending updates predicted on
//! top, in order; pending ids are unique; a snapshot sets the revision; accepted deltas
//! move it to their `toRev`.
#![no_main]

use arbitrary::Arbitrary;
use deltasync::client::Replica;
use deltasync::model::Model;
use deltasync::model::presence::{
    Participant, ParticipantChange, ParticipantRef, Patch, Presence, PresenceInput, PresenceLimits,
    PresenceOp, Status,
};
use deltasync::protocol::encode::{self, ErrorMessage, GapInfo};
use deltasync::protocol::{Dialect, ErrorCode};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

#[derive(Arbitrary, Debug)]
enum Step {
    Raw(Vec<u8>),
    Snapshot {
        rev: u8,
        who: Vec<u8>,
    },
    Deltas {
        from: u8,
        to: u8,
        ops: Vec<Op>,
    },
    Gap {
        expected: u8,
        server: u8,
    },
    Error {
        pending: u8,
        applied: Option<u8>,
        code: u8,
    },
    Update {
        status: u8,
        name: bool,
    },
    Disconnected,
}

#[derive(Arbitrary, Debug)]
struct Op {
    rev_offset: u8,
    kind: u8,
    who: u8,
    /// Acknowledges the pending update at this index, if there is one.
    ack: Option<u8>,
}

const STATUSES: [Status; 3] = [Status::Online, Status::Away, Status::Offline];

fn participant(who: u8) -> Participant {
    Participant {
        id: format!("p{}", who % 4),
        name: format!("n{}", who % 3),
        status: STATUSES[usize::from(who % 3)],
        last_active: u64::from(who),
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let mut replica = Replica::<Presence>::with_id_suffix("p0", "fuzz");
    for (t, step) in steps.iter().take(64).enumerate() {
        let now = t as u64;
        let message = match step {
            Step::Raw(bytes) => bytes.clone(),
            Step::Snapshot { rev, who } => {
                let state = Presence::from_participants(
                    who.iter().map(|w| participant(*w)),
                    PresenceLimits::default(),
                );
                let json = serde_json::to_vec(&state).unwrap();
                encode::snapshot(Dialect::Native, u64::from(*rev), "e", &json).to_vec()
            }
            Step::Deltas { from, to, ops } => {
                let ops: Vec<bytes::Bytes> = ops
                    .iter()
                    .take(8)
                    .map(|op| {
                        let rev = u64::from(*from) + u64::from(op.rev_offset % 10);
                        let p = participant(op.who);
                        let body = match op.kind % 3 {
                            0 => PresenceOp::Joined(p),
                            1 => PresenceOp::Updated(ParticipantChange {
                                id: p.id,
                                status: Some(p.status),
                                ..ParticipantChange::default()
                            }),
                            _ => PresenceOp::Left(ParticipantRef { id: p.id }),
                        };
                        let id = op.ack.and_then(|i| {
                            let pending = replica.pending();
                            pending
                                .get(usize::from(i) % pending.len().max(1))
                                .map(|p| p.client_req_id.clone())
                        });
                        encode::operation(rev, &body, id.as_deref()).unwrap()
                    })
                    .collect();
                encode::deltas(u64::from(*from), u64::from(*to), &ops).to_vec()
            }
            Step::Gap { expected, server } => {
                let info = GapInfo {
                    expected_rev: u64::from(*expected),
                    server_rev: u64::from(*server),
                    buffer_first_rev: 0,
                    resume_from: u64::from(*server),
                };
                encode::gap(Dialect::Native, &info, "e").to_vec()
            }
            Step::Error {
                pending,
                applied,
                code,
            } => {
                let mut details = Map::new();
                if let Some(p) = replica
                    .pending()
                    .get(usize::from(*pending) % replica.pending().len().max(1))
                {
                    details.insert("clientReqId".into(), Value::from(p.client_req_id.clone()));
                }
                if let Some(applied) = applied {
                    details.insert("appliedRev".into(), Value::from(*applied));
                }
                let code = if code % 2 == 0 {
                    ErrorCode::FailedPrecondition
                } else {
                    ErrorCode::InvalidArgument
                };
                encode::error(&ErrorMessage {
                    details: Some(&details),
                    ..ErrorMessage::new(code, "fuzz")
                })
                .to_vec()
            }
            Step::Update { status, name } => {
                let patch = Patch {
                    status: Some(STATUSES[usize::from(status % 3)]),
                    name: name.then(|| format!("n{status}")),
                    ..Patch::default()
                };
                let _ = replica.update(PresenceInput { patch }, now);
                check(&replica);
                continue;
            }
            Step::Disconnected => {
                replica.disconnected();
                check(&replica);
                continue;
            }
        };
        let before = (
            replica.server_rev(),
            replica.server_state().cloned(),
            replica.pending().to_vec(),
        );
        match replica.handle_text(&message, now) {
            Ok(_) => {
                if let Ok(text) = std::str::from_utf8(&message) {
                    if text.starts_with(r#"{"type":"SYNC.DELTAS""#) {
                        let to: u64 = match step {
                            Step::Deltas { to, .. } => u64::from(*to),
                            _ => replica.server_rev(),
                        };
                        assert_eq!(replica.server_rev(), to);
                    }
                }
            }
            Err(_) => {
                assert_eq!(
                    replica.server_rev(),
                    before.0,
                    "a refused message moved the revision"
                );
                assert_eq!(
                    replica.server_state(),
                    before.1.as_ref(),
                    "a refused message changed the state"
                );
                assert_eq!(
                    replica.pending(),
                    before.2.as_slice(),
                    "a refused message settled an update"
                );
            }
        }
        if let Step::Snapshot { rev, .. } = step {
            assert_eq!(replica.server_rev(), u64::from(*rev));
        }
        check(&replica);
    }
});

/// visible = server state + pending predictions, in order; ids unique.
fn check(replica: &Replica<Presence>) {
    let expected = replica.server_state().map(|server| {
        let mut visible = server.clone();
        for pending in replica.pending() {
            visible.predict("p0", &pending.input, pending.issued_at_ms);
        }
        visible
    });
    assert_eq!(
        replica.visible(),
        expected.as_ref(),
        "visible is not server + pending"
    );
    let mut ids: Vec<&str> = replica
        .pending()
        .iter()
        .map(|p| p.client_req_id.as_str())
        .collect();
    ids.sort_unstable();
    let count = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), count, "two pending updates share an id");
}
