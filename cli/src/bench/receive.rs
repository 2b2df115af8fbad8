//! What a generator client does with each message it receives: check it against the
//! stream and the writer's acknowledgements, count it and time it. Nothing here
//! allocates per message: the scanner borrows the bytes, ids are parsed in place.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::check::{AckBook, Stream, Violations};
use super::game::{Frame, TickTracker};
use super::id::BenchId;
use super::metrics::{self, Metrics};
use super::scan::{self, DeltasEvent, Kind, Message, ScanError, Scanned};

/// The protocol side of one client connection.
#[derive(Debug)]
pub(crate) struct Receiver {
    pub(crate) client: usize,
    pub(crate) room: usize,
    pub(crate) stream: Stream,
    /// Whether the first snapshot has arrived.
    pub(crate) joined: bool,
    /// The history the client is in (native dialect), for resuming.
    pub(crate) epoch: Option<Vec<u8>>,
    /// The writer this client is, if it is one.
    pub(crate) writer: Option<Box<Writer>>,
    /// Whether this client's latencies go into the histogram.
    pub(crate) samples_latency: bool,
    /// `SYNC.DELTAS` frames received in the measured window.
    pub(crate) window_deltas: u64,
}

/// A writer's own state: its index, its updates, its schedule.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) index: u32,
    pub(crate) book: AckBook,
    /// The padded name every update sets (already valid inside a JSON string).
    pub(crate) name: String,
    /// Seconds between two updates of this writer, and of its first after the start.
    pub(crate) interval: f64,
    pub(crate) offset: f64,
    /// The index of the next scheduled update.
    pub(crate) next: u64,
    /// Reconnect runs: updates still to send while the others are away.
    pub(crate) quota: u64,
    /// Whether the driver has been told this writer is done.
    pub(crate) settled: bool,
    /// `--rate unlimited`: revisions of acknowledged updates not yet known to have
    /// reached every client of the room (`None` at fixed rates: nothing is kept).
    pub(crate) unfinished: Option<VecDeque<u64>>,
}

/// What a message changed that the I/O loop must know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// Nothing for the loop.
    Nothing,
    /// The client's first snapshot: it is ready.
    Ready,
}

/// The thread's figures and the parameters to read ids against.
#[derive(Debug)]
pub(crate) struct Recorder {
    pub(crate) metrics: Metrics,
    pub(crate) violations: Violations,
    /// This run's id prefix.
    pub(crate) run: u32,
    /// The origin of ids' times.
    pub(crate) start: Option<Instant>,
    /// Updates scheduled in `[from, to)` µs after the start are measured.
    pub(crate) measured_us: (u64, u64),
    /// Whether latencies are recorded (not in reconnect runs, where clients are away on
    /// purpose).
    pub(crate) record_latency: bool,
    /// The highest revision seen per room by this thread.
    pub(crate) room_max: Vec<u64>,
    /// The game scenario: frames timed and checked against the game's ticks.
    pub(crate) ticks: Option<TickTracker>,
    /// The nodes clients are dealt over (client `c` on node `c mod nodes`); with more
    /// than one, `metrics.by_node` counts each node's clients apart.
    pub(crate) nodes: usize,
}

impl Recorder {
    pub(crate) fn new(run: u32, rooms: usize) -> Self {
        Self {
            metrics: Metrics::default(),
            violations: Violations::default(),
            run,
            start: None,
            measured_us: (0, 0),
            record_latency: false,
            room_max: vec![0; rooms],
            ticks: None,
            nodes: 1,
        }
    }

    /// Deals the figures out per node too, over `nodes` nodes.
    pub(crate) fn per_node(&mut self, nodes: usize) {
        self.nodes = nodes.max(1);
        if nodes > 1 {
            self.metrics.by_node = vec![Default::default(); nodes];
        }
    }

    /// The figures of `client`'s node, when they are counted apart.
    fn node_metrics(&mut self, client: usize) -> Option<&mut metrics::NodeMetrics> {
        let nodes = self.nodes;
        self.metrics.by_node.get_mut(client % nodes)
    }

    /// Whether an update scheduled `at_us` after the start is measured.
    pub(crate) fn is_measured(&self, at_us: u64) -> bool {
        (self.measured_us.0..self.measured_us.1).contains(&at_us)
    }

    /// Handles one text message; `in_window` says whether it counts toward the rates.
    pub(crate) fn message(
        &mut self,
        rx: &mut Receiver,
        text: &[u8],
        now: Instant,
        in_window: bool,
    ) -> Received {
        if in_window {
            self.metrics.window_frames += 1;
        }
        let mut ops = 0;
        let read = scan::message(text, |event| {
            match event {
                DeltasEvent::Begin { from, to } => {
                    self.stream_fault(rx, |s| s.begin_deltas(from, to));
                }
                DeltasEvent::Op(op) => {
                    ops += 1;
                    self.stream_fault(rx, |s| s.op(op.rev));
                    if let Some(id) = op.client_req_id.and_then(BenchId::parse) {
                        self.operation(rx, id, op.rev, now);
                    }
                }
            }
            Ok(())
        });
        let outcome = read.and_then(|scanned| match scanned {
            Scanned::Deltas { from, to } => {
                self.deltas(rx, from, to, ops, now, in_window);
                Ok(Received::Nothing)
            }
            Scanned::Snapshot(snapshot) => Ok(self.snapshot(rx, snapshot)),
            Scanned::Other(message) => self.other(rx, message),
        });
        outcome.unwrap_or_else(|e| {
            self.malformed(rx, text, e);
            Received::Nothing
        })
    }

    /// Any message but `SYNC.DELTAS`.
    fn other(&mut self, rx: &mut Receiver, message: Message<'_>) -> Result<Received, ScanError> {
        match message.kind {
            Kind::Gap => {
                self.metrics.gaps += 1;
                self.stream_fault(rx, |s| s.gap());
                Ok(Received::Nothing)
            }
            Kind::Error => {
                self.error(rx, message.payload)?;
                Ok(Received::Nothing)
            }
            // `scan::message` hands deltas and snapshots back read, never as these.
            Kind::Other | Kind::Deltas | Kind::Snapshot => {
                self.stream_fault(rx, Stream::other);
                Ok(Received::Nothing)
            }
        }
    }

    fn stream_fault(
        &mut self,
        rx: &mut Receiver,
        step: impl FnOnce(&mut Stream) -> Result<(), super::check::Break>,
    ) {
        if let Err(fault) = step(&mut rx.stream) {
            let client = rx.client;
            self.violations
                .add(fault.kind(), || format!("client {client}: {fault}"));
        }
    }

    fn malformed(&mut self, rx: &Receiver, text: &[u8], e: ScanError) {
        let client = rx.client;
        self.violations.add("malformed_message", || {
            let shown = String::from_utf8_lossy(&text[..text.len().min(120)]).into_owned();
            format!("client {client}: {} at byte {} of {shown:?}", e.what, e.at)
        });
    }

    /// The end of a `SYNC.DELTAS` `from -> to` of `ops` operations (each one checked and
    /// counted as it was read).
    fn deltas(
        &mut self,
        rx: &mut Receiver,
        from: u64,
        to: u64,
        ops: u64,
        now: Instant,
        in_window: bool,
    ) {
        self.stream_fault(rx, Stream::end_deltas);
        if in_window {
            self.metrics.window_ops += ops;
            rx.window_deltas += 1;
            if let Some(node) = self.node_metrics(rx.client) {
                node.window_ops += ops;
            }
        }
        if let Some(ticks) = &mut self.ticks {
            let frame = Frame {
                client: rx.client,
                from,
                to,
                at: now,
                in_window,
                sampled: rx.samples_latency,
            };
            ticks.frame(frame, &mut self.violations);
        }
        self.seen(rx.room, to);
    }

    fn seen(&mut self, room: usize, rev: u64) {
        let max = &mut self.room_max[room];
        *max = (*max).max(rev);
    }

    /// One of the generator's updates reached this client.
    fn operation(&mut self, rx: &mut Receiver, id: BenchId, rev: u64, now: Instant) {
        let Some(start) = self.start.filter(|_| id.run == self.run) else {
            return;
        };
        if self.is_measured(id.at_us) {
            self.metrics.delivered += 1;
            let latency = (self.record_latency && rx.samples_latency)
                .then(|| now.saturating_duration_since(start + Duration::from_micros(id.at_us)));
            if let Some(latency) = latency {
                metrics::record(&mut self.metrics.latency, latency);
            }
            if let Some(node) = self.node_metrics(rx.client) {
                node.delivered += 1;
                if let Some(latency) = latency {
                    metrics::record(&mut node.latency, latency);
                }
            }
        }
        let Some(writer) = rx.writer.as_mut().filter(|w| w.index == id.writer) else {
            return;
        };
        match writer.book.ack(id.seq) {
            Ok(_) => {
                if let Some(unfinished) = &mut writer.unfinished {
                    unfinished.push_back(rev);
                }
            }
            Err(fault) => {
                let (index, seq) = (writer.index, id.seq);
                self.violations.add(fault.kind(), || {
                    format!("writer {index}: update {seq}: {}", fault.kind())
                });
            }
        }
    }

    fn snapshot(&mut self, rx: &mut Receiver, snapshot: scan::Snapshot<'_>) -> Received {
        match rx.stream.snapshot(snapshot.rev) {
            Ok(skipped) => self.metrics.skipped_revs += skipped,
            Err(fault) => {
                let client = rx.client;
                self.violations
                    .add(fault.kind(), || format!("client {client}: {fault}"));
            }
        }
        if let Some(epoch) = snapshot.epoch {
            rx.epoch = Some(epoch.to_vec());
        }
        self.seen(rx.room, snapshot.rev);
        if !rx.joined {
            rx.joined = true;
            return Received::Ready;
        }
        self.metrics.snapshots += 1;
        if let Some(writer) = &mut rx.writer {
            writer.book.snapshot();
        }
        Received::Nothing
    }

    fn error(&mut self, rx: &mut Receiver, payload: &[u8]) -> Result<(), ScanError> {
        let error = scan::error(payload)?;
        self.metrics.error(error.code);
        self.stream_fault(rx, Stream::other);
        let Some(id) = error.client_req_id.and_then(BenchId::parse) else {
            return Ok(());
        };
        let Some(writer) = rx
            .writer
            .as_mut()
            .filter(|w| w.index == id.writer && id.run == self.run)
        else {
            return Ok(());
        };
        if let Err(fault) = writer.book.reject(id.seq) {
            let (index, seq) = (writer.index, id.seq);
            self.violations.add(fault.kind(), || {
                format!("writer {index}: update {seq} rejected: {}", fault.kind())
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::control::now;

    fn writer(index: u32) -> Box<Writer> {
        Box::new(Writer {
            index,
            book: AckBook::default(),
            name: "w".into(),
            interval: 1.0,
            offset: 0.0,
            next: 0,
            quota: 0,
            settled: false,
            unfinished: None,
        })
    }

    fn receiver(writer: Option<Box<Writer>>) -> Receiver {
        Receiver {
            client: 0,
            room: 0,
            stream: Stream::default(),
            joined: false,
            epoch: None,
            writer,
            samples_latency: true,
            window_deltas: 0,
        }
    }

    fn deltas(from: u64, ops: &[(u64, &str)]) -> Vec<u8> {
        let ops: Vec<String> = ops
            .iter()
            .map(|(rev, id)| {
                format!(r#"{{"rev":{rev},"type":"t","payload":{{}},"clientReqId":"{id}"}}"#)
            })
            .collect();
        let to = from + ops.len() as u64;
        format!(
            r#"{{"type":"SYNC.DELTAS","meta":{{}},"payload":{{"fromRev":{from},"toRev":{to},"operations":[{}]}}}}"#,
            ops.join(",")
        )
        .into_bytes()
    }

    #[test]
    fn acks_deliveries_and_latency_are_counted_once() {
        let start = now();
        let mut rec = Recorder::new(0xab, 1);
        rec.start = Some(start);
        rec.measured_us = (0, 1_000_000);
        rec.record_latency = true;
        let mut rx = receiver(Some(writer(0)));
        let seq = rx.writer.as_mut().unwrap().book.send(true);
        let snap = br#"{"type":"SYNC.SNAPSHOT","meta":{},"payload":{"rev":4,"participants":{}}}"#;
        assert_eq!(rec.message(&mut rx, snap, start, true), Received::Ready);
        let later = start + Duration::from_millis(3);
        let ours = format!("bab.0.{seq}.0");
        rec.message(
            &mut rx,
            &deltas(4, &[(5, &ours), (6, "bff.0.0.0")]),
            later,
            true,
        );
        assert_eq!(rec.metrics.delivered, 1);
        assert_eq!(rec.metrics.latency.len(), 1);
        assert_eq!(rec.metrics.window_ops, 2);
        assert_eq!(rx.writer.as_ref().unwrap().book.pending(), 0);
        assert_eq!(rec.violations.total(), 0);
        // The same ack again (at the right revision) is a duplicate.
        rec.message(&mut rx, &deltas(6, &[(7, &ours)]), later, true);
        assert_eq!(rec.violations.by_kind["duplicate_ack"], 1);
        assert_eq!(rec.room_max, [7]);
    }

    #[test]
    fn with_several_nodes_each_client_counts_at_its_node() {
        let start = now();
        let mut rec = Recorder::new(0xab, 1);
        rec.per_node(3);
        rec.start = Some(start);
        rec.measured_us = (0, 1_000_000);
        rec.record_latency = true;
        // Client 4 is on node 4 mod 3 = 1.
        let mut rx = Receiver {
            client: 4,
            ..receiver(None)
        };
        let snap = br#"{"type":"SYNC.SNAPSHOT","meta":{},"payload":{"rev":4,"participants":{}}}"#;
        rec.message(&mut rx, snap, start, true);
        let later = start + Duration::from_millis(3);
        rec.message(
            &mut rx,
            &deltas(4, &[(5, "bab.0.0.0"), (6, "bab.0.1.0")]),
            later,
            true,
        );
        let by_node: Vec<(u64, u64, u64)> = rec
            .metrics
            .by_node
            .iter()
            .map(|n| (n.delivered, n.latency.len(), n.window_ops))
            .collect();
        assert_eq!(by_node, [(0, 0, 0), (2, 2, 2), (0, 0, 0)]);
        assert_eq!(rec.metrics.delivered, 2);
        let mut merged = Metrics::default();
        merged.merge(&rec.metrics);
        merged.merge(&rec.metrics);
        assert_eq!(merged.by_node.len(), 3);
        assert_eq!(merged.by_node[1].delivered, 4);
    }

    #[test]
    fn stream_faults_and_garbage_are_violations() {
        let mut rec = Recorder::new(1, 1);
        let mut rx = receiver(None);
        let at = now();
        rec.message(&mut rx, &deltas(0, &[(1, "x")]), at, false);
        assert_eq!(rec.violations.by_kind["not_contiguous"], 1);
        rec.message(&mut rx, b"{not json", at, false);
        assert_eq!(rec.violations.by_kind["malformed_message"], 1);
        let gap = br#"{"type":"REVISION_GAP","meta":{},"payload":{}}"#;
        let err = br#"{"type":"ERROR","meta":{},"payload":{"code":"INTERNAL","message":"m","retryable":false}}"#;
        rec.message(&mut rx, gap, at, false);
        rec.message(&mut rx, err, at, false);
        assert_eq!(rec.violations.by_kind["no_snapshot_after_gap"], 1);
        assert_eq!((rec.metrics.gaps, rec.metrics.errors["INTERNAL"]), (1, 1));
    }

    #[test]
    fn a_rejection_naming_the_update_settles_it() {
        let mut rec = Recorder::new(7, 1);
        rec.start = Some(now());
        let mut rx = receiver(Some(writer(2)));
        let seq = rx.writer.as_mut().unwrap().book.send(false);
        let err = format!(
            r#"{{"type":"ERROR","meta":{{}},"payload":{{"code":"RESOURCE_EXHAUSTED","message":"m","details":{{"clientReqId":"b7.2.{seq}.0"}},"retryable":true}}}}"#
        );
        rec.message(&mut rx, err.as_bytes(), now(), false);
        let (all, _, lost) = rx.writer.as_ref().unwrap().book.finish(5);
        assert_eq!((all.rejected, lost.len()), (1, 0));
    }
}
