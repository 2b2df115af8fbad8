//! The server's metrics: what each shard counts, and the `/metrics` page a scrape reads.
//!
//! Every shard owns one [`ShardCounters`] (on cache lines of its own) and is its only
//! writer: its sessions count resumes, snapshots, updates and lag into its
//! [`SessionCounters`], its connections count bytes and system calls. Nothing on the hot
//! path takes a lock or writes a line another thread writes. A scrape ([`render`]) reads
//! every shard's counters, the rooms' own counts (commits, snapshot encodings) and the
//! storage's (fsyncs), adds them up and encodes them with `prometheus-client`. The
//! metrics, what they mean and what to alert on are listed in `docs/operations.md`.

mod scrape;

use std::io::{self, IoSlice, Write};
use std::sync::Arc;
use std::time::Instant;

use crate::counters::{Counter, Histogram, LATENCY_NS};
use crate::session::counters::SessionCounters;

pub(super) use scrape::{CONTENT_TYPE, render};

/// What one shard counts. Written by its shard's thread only (see [`crate::counters`]);
/// aligned to 128 bytes, as `crossbeam_utils::CachePadded` is, so that no other data
/// shares its cache lines.
#[derive(Debug)]
#[repr(align(128))]
pub(super) struct ShardCounters {
    /// What the shard's sessions count.
    pub(super) session: Arc<SessionCounters>,
    /// Open connections on the shard, upgrading and closing ones included (a gauge).
    pub(super) connections: Counter,
    /// Rooms with a connection on the shard (a gauge).
    pub(super) rooms: Counter,
    /// Bytes written to sockets.
    pub(super) bytes_written: Counter,
    /// Write system calls (`writev`), including those that found the socket full.
    pub(super) writes: Counter,
    /// Bytes read from sockets.
    pub(super) bytes_read: Counter,
    /// Read system calls that returned bytes or end of stream.
    pub(super) reads: Counter,
    /// From the read that brought an `UPDATE` to its commit, in nanoseconds.
    pub(super) commit_latency: Histogram,
}

impl Default for ShardCounters {
    fn default() -> Self {
        Self {
            session: Arc::default(),
            connections: Counter::default(),
            rooms: Counter::default(),
            bytes_written: Counter::default(),
            writes: Counter::default(),
            bytes_read: Counter::default(),
            reads: Counter::default(),
            commit_latency: Histogram::new(&LATENCY_NS),
        }
    }
}

impl ShardCounters {
    /// Records the latency of a commit whose input was read at `read_at`.
    pub(super) fn committed_since(&self, read_at: Instant) {
        // The shell's clock: how long the commit took since its bytes were read.
        #[allow(clippy::disallowed_methods)]
        let elapsed = read_at.elapsed();
        self.commit_latency
            .observe(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }
}

/// A socket whose writes are counted into its shard's counters.
pub(super) struct Counted<'a, S> {
    stream: &'a mut S,
    counters: &'a ShardCounters,
}

impl<'a, S: Write> Counted<'a, S> {
    /// Counts the writes to `stream` into `counters`.
    pub(super) fn new(stream: &'a mut S, counters: &'a ShardCounters) -> Self {
        Self { stream, counters }
    }

    fn count(&self, written: &io::Result<usize>) {
        self.counters.writes.incr();
        if let Ok(n) = written {
            self.counters.bytes_written.add(*n as u64);
        }
    }
}

impl<S: Write> Write for Counted<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.stream.write(buf);
        self.count(&written);
        written
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let written = self.stream.write_vectored(bufs);
        self.count(&written);
        written
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_call_is_counted_and_only_bytes_taken() {
        let counters = ShardCounters::default();
        let mut sink = Vec::new();
        let mut counted = Counted::new(&mut sink, &counters);
        let written = counted
            .write_vectored(&[IoSlice::new(b"ab"), IoSlice::new(b"cde")])
            .unwrap();
        assert_eq!(written, 5);
        counted.write_all(b"fg").unwrap();
        assert_eq!(sink, b"abcdefg");
        assert_eq!(
            (counters.writes.get(), counters.bytes_written.get()),
            (2, 7)
        );
    }

    #[test]
    fn shard_counters_have_cache_lines_of_their_own() {
        assert_eq!(std::mem::align_of::<ShardCounters>(), 128);
        assert_eq!(std::mem::align_of::<SessionCounters>(), 128);
    }
}
