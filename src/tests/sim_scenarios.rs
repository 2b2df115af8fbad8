//! Scenarios on the simulated network: many seeds of random updates over random latency
//! and dropped connections (which lose what was in flight, then resume and resend), on a
//! ring small enough that clients fall behind it. Once the faults stop, everything must
//! converge: every replica shows the room's state, every update was acknowledged or
//! rejected exactly once, and no replica ever saw a protocol violation.

use super::sim::{Faults, Network, Rng};
use crate::conformance::ConformanceModel;
use crate::model::arena::{Arena, ArenaInput, Step};
use crate::model::presence::{Patch, Presence, PresenceInput, Status};

const CLIENTS: usize = 5;

/// What a run went through, so the tests can check the faults really happened.
#[derive(Debug, Default)]
struct Seen {
    drops: u64,
    gaps: usize,
    rejected: u32,
}

fn chaos<M: ConformanceModel>(initial: M, seed: u64, input: impl Fn(&mut Rng) -> M::Input) -> Seen {
    let faults = Faults {
        latency_ms: (1, 40),
        disconnect_per_mille: 3,
        reconnect_per_mille: 50,
    };
    let mut net = Network::new(initial, 8, CLIENTS, faults, seed);
    for client in 0..CLIENTS {
        net.connect(client);
    }
    for _ in 0..3000 {
        let client = net.rng().below(CLIENTS as u64) as usize;
        if net.rng().chance(150) && net.has_state(client) {
            let input = input(net.rng());
            net.update(client, input);
        }
        net.step();
    }
    net.set_faults(Faults::none());
    net.drive_bounded(20_000, Network::quiescent)
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    assert_eq!(net.violations(), [] as [String; 0], "seed {seed}");
    let room_state = net.room().with_state(|state, _| state.clone());
    for client in 0..CLIENTS {
        assert_eq!(
            net.replica(client).visible(),
            Some(&room_state),
            "seed {seed}, client {client}"
        );
    }
    assert!(!net.outcomes().is_empty());
    for (id, (acked, rejected)) in net.outcomes() {
        assert_eq!(
            acked + rejected,
            1,
            "seed {seed}: {id} acked {acked}, rejected {rejected}"
        );
    }
    Seen {
        drops: net.drops(),
        gaps: (0..CLIENTS)
            .filter(|&c| net.replica(c).detected_gap())
            .count(),
        rejected: net.outcomes().values().map(|o| o.1).sum(),
    }
}

fn assert_faults_happened(seen: &[Seen]) {
    assert!(seen.iter().all(|s| s.drops > 0), "{seen:?}");
    assert!(seen.iter().map(|s| s.gaps).sum::<usize>() > 0, "{seen:?}");
    assert!(seen.iter().map(|s| s.rejected).sum::<u32>() > 0, "{seen:?}");
}

#[test]
fn presence_converges_under_latency_and_dropped_connections() {
    let seen: Vec<Seen> = (0..12)
        .map(|seed| {
            chaos(Presence::default(), seed, |rng| {
                let status = [Status::Online, Status::Away, Status::Offline][rng.below(3) as usize];
                // One in ten names is too long: rejected by the server.
                let name = rng.chance(100).then(|| "x".repeat(65));
                PresenceInput {
                    patch: Patch {
                        status: Some(status),
                        name,
                        ..Patch::default()
                    },
                }
            })
        })
        .collect();
    assert_faults_happened(&seen);
}

#[test]
fn arena_converges_under_latency_and_dropped_connections() {
    let seen: Vec<Seen> = (100..112)
        .map(|seed| {
            chaos(Arena::default(), seed, |rng| ArenaInput {
                // Moves of 5 are over the limit: rejected by the server.
                step: Step {
                    dx: rng.below(11) as i32 - 5,
                    dy: rng.below(11) as i32 - 5,
                },
            })
        })
        .collect();
    assert_faults_happened(&seen);
}

#[test]
fn a_perfect_network_delivers_everything_in_order() {
    let mut net = Network::new(Presence::default(), 1024, 3, Faults::none(), 7);
    for client in 0..3 {
        net.connect(client);
    }
    net.drive_bounded(100, |n| (0..3).all(|c| n.has_state(c)))
        .unwrap();
    for i in 0..30 {
        let status = if i % 2 == 0 {
            Status::Away
        } else {
            Status::Online
        };
        net.update(
            i % 3,
            PresenceInput {
                patch: Patch {
                    status: Some(status),
                    ..Patch::default()
                },
            },
        );
    }
    net.drive_bounded(1000, Network::quiescent).unwrap();
    assert_eq!(net.room().rev(), 33);
    assert!(
        net.outcomes()
            .values()
            .all(|&(acked, rejected)| (acked, rejected) == (1, 0))
    );
    assert!(!net.replica(0).detected_gap());
}
