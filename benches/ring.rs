//! Ring benchmarks: the lock-free ring against a `parking_lot::Mutex<VecDeque<Bytes>>`
//! ring of the same semantics (revision-stamped entries, "gone" when overwritten).
//!
//! Groups: `append`; `append_with_reader` (a reader of 256-operation ranges runs flat out
//! on another thread); `read/N` for N = 1, 16, 256 operations with no writer running; and
//! `read_with_writer/N` with a writer appending flat out on another thread.
//! Run: `cargo bench --bench ring`.

use std::collections::VecDeque;
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use deltasync::ring::Ring;
use parking_lot::Mutex;

const CAPACITY: usize = 1024;

/// The simple alternative: a deque behind a mutex, same read contract.
struct MutexRing {
    inner: Mutex<MutexRingInner>,
}

struct MutexRingInner {
    entries: VecDeque<(u64, Bytes)>,
    head: u64,
}

impl MutexRing {
    fn new() -> Self {
        Self {
            inner: Mutex::new(MutexRingInner {
                entries: VecDeque::with_capacity(CAPACITY),
                head: 0,
            }),
        }
    }

    fn head(&self) -> u64 {
        self.inner.lock().head
    }

    fn append(&self, bytes: Bytes) -> u64 {
        let mut inner = self.inner.lock();
        if inner.entries.len() == CAPACITY {
            inner.entries.pop_front();
        }
        inner.head += 1;
        let rev = inner.head;
        inner.entries.push_back((rev, bytes));
        rev
    }

    fn read_range(&self, from: u64, to: u64, out: &mut Vec<Bytes>) -> Result<(), ()> {
        let inner = self.inner.lock();
        let first = inner.entries.front().map_or(inner.head + 1, |e| e.0);
        if to > inner.head || from + 1 < first {
            return Err(());
        }
        let skip = (from + 1 - first) as usize;
        out.extend(
            inner
                .entries
                .range(skip..skip + (to - from) as usize)
                .map(|(_, b)| b.clone()),
        );
        Ok(())
    }
}

trait BenchRing: Send + Sync + 'static {
    fn head(&self) -> u64;
    fn append(&self, bytes: Bytes) -> u64;
    fn read_range(&self, from: u64, to: u64, out: &mut Vec<Bytes>) -> bool;
}

impl BenchRing for Ring {
    fn head(&self) -> u64 {
        Ring::head(self)
    }
    fn append(&self, bytes: Bytes) -> u64 {
        Ring::append(self, bytes)
    }
    fn read_range(&self, from: u64, to: u64, out: &mut Vec<Bytes>) -> bool {
        Ring::read_range(self, from, to, out).is_ok()
    }
}

impl BenchRing for MutexRing {
    fn head(&self) -> u64 {
        MutexRing::head(self)
    }
    fn append(&self, bytes: Bytes) -> u64 {
        MutexRing::append(self, bytes)
    }
    fn read_range(&self, from: u64, to: u64, out: &mut Vec<Bytes>) -> bool {
        MutexRing::read_range(self, from, to, out).is_ok()
    }
}

fn op() -> Bytes {
    Bytes::from_static(
        br#"{"rev":1,"type":"participant.updated","payload":{"id":"user-1","status":"away"},"clientReqId":"req-1"}"#,
    )
}

fn filled<R: BenchRing>(ring: R) -> Arc<R> {
    for _ in 0..CAPACITY * 2 {
        ring.append(op());
    }
    Arc::new(ring)
}

fn lock_free() -> Arc<Ring> {
    filled(Ring::new(NonZeroUsize::new(CAPACITY).unwrap()))
}

fn mutex() -> Arc<MutexRing> {
    filled(MutexRing::new())
}

fn bench_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    let ring = lock_free();
    group.bench_function("lock_free", |b| b.iter(|| ring.append(black_box(op()))));
    let ring = mutex();
    group.bench_function("mutex_deque", |b| b.iter(|| ring.append(black_box(op()))));
    group.finish();
}

/// The writer's cost while another thread reads 256-operation ranges flat out: the
/// lock-free writer never waits for readers; the mutex writer does.
fn bench_append_with_reader(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_with_reader");
    group.throughput(Throughput::Elements(1));
    let ring = lock_free();
    let reader = Background::reader(Arc::clone(&ring));
    group.bench_function("lock_free", |b| b.iter(|| ring.append(black_box(op()))));
    drop(reader);
    let ring = mutex();
    let reader = Background::reader(Arc::clone(&ring));
    group.bench_function("mutex_deque", |b| b.iter(|| ring.append(black_box(op()))));
    drop(reader);
    group.finish();
}

/// A thread running `work` in a loop until dropped.
struct Background(Arc<AtomicBool>, Option<JoinHandle<()>>);

impl Background {
    fn start(mut work: impl FnMut() + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                work();
            }
        });
        Self(stop, Some(handle))
    }

    /// A reader of 256-operation ranges, flat out.
    fn reader<R: BenchRing>(ring: Arc<R>) -> Self {
        let mut out = Vec::with_capacity(256);
        Self::start(move || {
            read_n(&*ring, 256, &mut out);
        })
    }

    /// A writer appending flat out.
    fn writer<R: BenchRing>(ring: Arc<R>) -> Self {
        Self::start(move || {
            ring.append(op());
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(handle) = self.1.take() {
            let _ = handle.join();
        }
    }
}

fn read_n<R: BenchRing>(ring: &R, n: u64, out: &mut Vec<Bytes>) -> bool {
    out.clear();
    let head = ring.head();
    ring.read_range(head - n, head, out)
}

fn bench_read_group(c: &mut Criterion, name: &str, with_writer: bool) {
    let mut group = c.benchmark_group(name);
    for n in [1u64, 16, 256] {
        group.throughput(Throughput::Elements(n));
        let mut out = Vec::with_capacity(256);
        let ring = lock_free();
        let writer = with_writer.then(|| Background::writer(Arc::clone(&ring)));
        group.bench_with_input(BenchmarkId::new("lock_free", n), &n, |b, &n| {
            b.iter(|| read_n(&*ring, n, &mut out))
        });
        drop(writer);
        let ring = mutex();
        let writer = with_writer.then(|| Background::writer(Arc::clone(&ring)));
        group.bench_with_input(BenchmarkId::new("mutex_deque", n), &n, |b, &n| {
            b.iter(|| read_n(&*ring, n, &mut out))
        });
        drop(writer);
    }
    group.finish();
}

fn bench_read(c: &mut Criterion) {
    bench_read_group(c, "read", false);
    bench_read_group(c, "read_with_writer", true);
}

criterion_group!(benches, bench_append, bench_append_with_reader, bench_read);
criterion_main!(benches);
