//! A game embedding the server over real sockets: a model of its own (the arena), commits
//! from its loop, inputs forwarded to it, and one frame per client per tick.
mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::Ws;
use deltasync::config::Config;
use deltasync::game::Game;
use deltasync::model::arena::Arena;
use deltasync::room::{FlushPolicy, InputPolicy};
use deltasync::server::ServerBuilder;
use serde_json::{Value, json};

const CLIENTS: usize = 8;
const TICKS: usize = 40;

#[test]
fn each_client_gets_whole_ticks_in_order_and_its_moves_answered() {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.shards = 2;
    config.room = deltasync::room::RoomConfig::with_ring_capacity(65_536).unwrap();
    let server = ServerBuilder::new(config, |_room: &str| Arena::default())
        .flush_policy(FlushPolicy::Tick)
        .input_policy(InputPolicy::Forward { capacity: 1024 })
        .start()
        .unwrap();
    let mut game = Game::new(server.room("arena").unwrap(), 20, 3).unwrap();
    let url = format!("ws://{}/rooms/arena", server.local_addr());

    let mut clients: Vec<(Ws, u64)> = (0..CLIENTS)
        .map(|i| {
            let mut ws = Ws::connect(&url);
            let snapshot = ws.join(&format!("p{i}"), "P");
            assert_eq!(snapshot["type"], "SYNC.SNAPSHOT");
            (ws, snapshot["payload"]["rev"].as_u64().unwrap())
        })
        .collect();
    // Each player sends one legal and one illegal move before the game starts ticking.
    for (i, (ws, _)) in clients.iter_mut().enumerate() {
        for (dx, id) in [(1, format!("ok-{i}")), (7, format!("far-{i}"))] {
            ws.send(json!({"type": "UPDATE", "payload": {"move": {"dx": dx, "dy": 0}, "clientReqId": id}}));
        }
    }
    std::thread::sleep(Duration::from_millis(100));

    // The game loop on its own thread; it records the revision of every flush.
    let running = Arc::new(AtomicBool::new(true));
    let ticker = {
        let running = Arc::clone(&running);
        std::thread::spawn(move || {
            let mut flushed = BTreeSet::new();
            let (mut applied, mut rejected) = (0, 0);
            for _ in 0..TICKS {
                let report = game.tick();
                flushed.insert(report.rev);
                applied += report.applied;
                rejected += report.rejected;
                std::thread::sleep(Duration::from_millis(5));
            }
            running.store(false, Ordering::Relaxed);
            (flushed, applied, rejected, game.room().published_rev())
        })
    };
    let (flushed, applied, rejected, last) = ticker.join().unwrap();
    assert_eq!((applied, rejected), (CLIENTS, CLIENTS));

    for (i, (ws, joined_at)) in clients.iter_mut().enumerate() {
        let mut rev = *joined_at;
        let mut frames = 0;
        let mut answers: HashMap<String, &str> = HashMap::new();
        while rev < last {
            let message: Value = ws.recv();
            match message["type"].as_str() {
                Some("SYNC.DELTAS") => {
                    let payload = &message["payload"];
                    assert_eq!(payload["fromRev"].as_u64(), Some(rev), "contiguous");
                    let to = payload["toRev"].as_u64().unwrap();
                    assert!(flushed.contains(&to), "frame ends at a tick boundary: {to}");
                    let ops = payload["operations"].as_array().unwrap();
                    let revs: Vec<u64> = ops.iter().map(|op| op["rev"].as_u64().unwrap()).collect();
                    assert_eq!(
                        revs,
                        (rev + 1..=to).collect::<Vec<_>>(),
                        "every operation, in order"
                    );
                    for op in ops {
                        if let Some(id) = op["clientReqId"].as_str() {
                            answers.insert(id.to_owned(), "acked");
                        }
                    }
                    rev = to;
                    frames += 1;
                }
                Some("ERROR") => {
                    let id = message["payload"]["details"]["clientReqId"]
                        .as_str()
                        .unwrap();
                    assert_eq!(
                        message["payload"]["message"],
                        "a move is at most 4 in each direction, not (7, 0)"
                    );
                    answers.insert(id.to_owned(), "rejected");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            frames <= TICKS + 1,
            "at most one frame per tick (plus the spawns' flush): {frames}"
        );
        assert_eq!(answers.get(&format!("ok-{i}")), Some(&"acked"));
        assert_eq!(answers.get(&format!("far-{i}")), Some(&"rejected"));
    }
    assert!(!running.load(Ordering::Relaxed));
    server.shutdown();
}
