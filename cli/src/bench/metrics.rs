//! What one generator thread counts and times; merged across threads at the end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::game::TickMetrics;

/// A latency histogram in microseconds, 3 significant figures, growing as needed.
pub(crate) fn histogram() -> Histogram<u64> {
    // 1 µs to 1 s to start with; `auto` grows it for longer stalls.
    let mut h = Histogram::new_with_bounds(1, 1_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant figures are valid"))
    });
    h.auto(true);
    h
}

/// Counters and histograms of one thread (or, merged, of the run).
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// Commit-to-receive latency of measured operations, µs from the scheduled send.
    pub(crate) latency: Histogram<u64>,
    /// Reconnect runs: time from the reconnect order to each client being current, µs.
    pub(crate) catchup: Histogram<u64>,
    /// Operations received inside the measured window (every operation, once per client).
    pub(crate) window_ops: u64,
    /// Messages (WebSocket text frames) received inside the measured window.
    pub(crate) window_frames: u64,
    /// Bytes read from sockets inside the measured window.
    pub(crate) window_bytes: u64,
    /// Operations of measured updates received, once per receiving client, whenever
    /// they arrived (the drain included).
    pub(crate) delivered: u64,
    /// Snapshots received besides each connection's first.
    pub(crate) snapshots: u64,
    /// `REVISION_GAP`s received.
    pub(crate) gaps: u64,
    /// Revisions that snapshots jumped over (operations not delivered one by one).
    pub(crate) skipped_revs: u64,
    /// `ERROR`s received, by code.
    pub(crate) errors: BTreeMap<String, u64>,
    /// Connections the server closed (or reset) while they were needed.
    pub(crate) closed: u64,
    /// Connection attempts that failed, by reason.
    pub(crate) connect_failures: BTreeMap<String, u64>,
    /// When the last client of this thread got its first snapshot.
    pub(crate) last_ready: Option<Instant>,
    /// The game scenario's frames, timed by the game's ticks.
    pub(crate) ticks: TickMetrics,
    /// The same figures per node the clients were dealt over (one entry per node when
    /// there are several; empty otherwise).
    pub(crate) by_node: Vec<NodeMetrics>,
}

/// What the clients of one node received.
#[derive(Debug, Clone)]
pub(crate) struct NodeMetrics {
    /// Commit-to-receive latency at this node's clients, µs.
    pub(crate) latency: Histogram<u64>,
    /// Operations of measured updates received by this node's clients.
    pub(crate) delivered: u64,
    /// Operations received by this node's clients inside the measured window.
    pub(crate) window_ops: u64,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self {
            latency: histogram(),
            delivered: 0,
            window_ops: 0,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            latency: histogram(),
            catchup: histogram(),
            window_ops: 0,
            window_frames: 0,
            window_bytes: 0,
            delivered: 0,
            snapshots: 0,
            gaps: 0,
            skipped_revs: 0,
            errors: BTreeMap::new(),
            closed: 0,
            connect_failures: BTreeMap::new(),
            last_ready: None,
            ticks: TickMetrics::default(),
            by_node: Vec::new(),
        }
    }
}

/// Records `value` µs, saturating at the histogram's reach.
pub(crate) fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    let _ = histogram.record(micros);
}

impl Metrics {
    /// Adds another thread's figures.
    pub(crate) fn merge(&mut self, other: &Metrics) {
        let _ = self.latency.add(&other.latency);
        let _ = self.catchup.add(&other.catchup);
        self.window_ops += other.window_ops;
        self.window_frames += other.window_frames;
        self.window_bytes += other.window_bytes;
        self.delivered += other.delivered;
        self.snapshots += other.snapshots;
        self.gaps += other.gaps;
        self.skipped_revs += other.skipped_revs;
        self.closed += other.closed;
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
        for (reason, n) in &other.connect_failures {
            *self.connect_failures.entry(reason.clone()).or_default() += n;
        }
        self.last_ready = self.last_ready.max(other.last_ready);
        self.ticks.merge(&other.ticks);
        if self.by_node.len() < other.by_node.len() {
            self.by_node
                .resize_with(other.by_node.len(), NodeMetrics::default);
        }
        for (mine, theirs) in self.by_node.iter_mut().zip(&other.by_node) {
            let _ = mine.latency.add(&theirs.latency);
            mine.delivered += theirs.delivered;
            mine.window_ops += theirs.window_ops;
        }
    }

    /// Counts an `ERROR` with this code.
    pub(crate) fn error(&mut self, code: &[u8]) {
        let code = String::from_utf8_lossy(code);
        match self.errors.get_mut(code.as_ref()) {
            Some(n) => *n += 1,
            None => {
                self.errors.insert(code.into_owned(), 1);
            }
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Percentiles {
    pub(crate) count: u64,
    pub(crate) p50: u64,
    pub(crate) p90: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) max: u64,
}

impl Percentiles {
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_threads_add_up() {
        let mut a = Metrics::default();
        let mut b = Metrics::default();
        for ms in 1..=100 {
            record(&mut a.latency, Duration::from_millis(ms));
        }
        record(&mut b.latency, Duration::from_secs(5));
        a.error(b"RESOURCE_EXHAUSTED");
        b.error(b"RESOURCE_EXHAUSTED");
        b.delivered = 7;
        a.merge(&b);
        let p = Percentiles::of(&a.latency);
        assert_eq!(p.count, 101);
        // The 51st of 101 values: 51 ms.
        assert!((50_900..=51_100).contains(&p.p50), "{p:?}");
        assert!((4_990_000..=5_010_000).contains(&p.max), "{p:?}");
        assert_eq!(a.errors["RESOURCE_EXHAUSTED"], 2);
        assert_eq!(a.delivered, 7);
        assert_eq!(Percentiles::of(&histogram()), Percentiles::default());
    }
}
