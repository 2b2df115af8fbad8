//! Snapshot and delta-message encoding benchmarks.
//!
//! - `snapshot_encode/10000`: encoding a presence room of 10,000 participants as the
//!   room does it (model to JSON once, then the `SYNC.SNAPSHOT` message around it), beside
//!   the simple alternative of building a `serde_json::Value` of the message first.
//! - `deltas_message/N`: framing N already-encoded operations as one `SYNC.DELTAS`
//!   message, beside re-serializing them into a message through `serde_json::Value`.
//!
//! Run: `cargo bench --bench snapshot`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use deltasync::model::presence::{Participant, Presence, PresenceLimits, Status};
use deltasync::protocol::{Dialect, encode};
use serde_json::{Value, json};

fn presence(participants: usize) -> Presence {
    Presence::from_participants(
        (0..participants).map(|i| Participant {
            id: format!("user-{i}"),
            name: format!("Participant number {i}"),
            status: if i % 3 == 0 {
                Status::Away
            } else {
                Status::Online
            },
            last_active: 1_700_000_000_000 + i as u64,
        }),
        PresenceLimits::default(),
    )
}

fn bench_snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_encode");
    let state = presence(10_000);
    group.throughput(Throughput::Elements(10_000));
    group.bench_function(BenchmarkId::new("room", 10_000), |b| {
        b.iter(|| {
            let json = serde_json::to_vec(black_box(&state)).unwrap();
            encode::snapshot(Dialect::WsKit, 42, "epoch", &json)
        })
    });
    group.bench_function(BenchmarkId::new("via_value", 10_000), |b| {
        b.iter(|| {
            let mut payload = serde_json::to_value(black_box(&state)).unwrap();
            payload["rev"] = json!(42);
            let message = json!({"type": "SYNC.SNAPSHOT", "meta": {}, "payload": payload});
            Bytes::from(serde_json::to_vec(&message).unwrap())
        })
    });
    group.finish();
}

fn bench_deltas(c: &mut Criterion) {
    let mut group = c.benchmark_group("deltas_message");
    for n in [1usize, 16, 256] {
        let ops: Vec<Bytes> = (0..n)
            .map(|i| {
                Bytes::from(format!(
                    r#"{{"rev":{},"type":"participant.updated","payload":{{"id":"user-{i}","status":"away"}},"clientReqId":"req-{i}"}}"#,
                    i + 1
                ))
            })
            .collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("framed", n), &ops, |b, ops| {
            b.iter(|| encode::deltas(0, n as u64, black_box(ops)))
        });
        group.bench_with_input(BenchmarkId::new("reserialized", n), &ops, |b, ops| {
            b.iter(|| {
                let operations: Vec<Value> = black_box(ops)
                    .iter()
                    .map(|op| serde_json::from_slice(op).unwrap())
                    .collect();
                let message = json!({"type": "SYNC.DELTAS", "meta": {}, "payload": {
                    "fromRev": 0, "toRev": n, "operations": operations}});
                Bytes::from(serde_json::to_vec(&message).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_snapshot, bench_deltas);
criterion_main!(benches);
