//! A scrape: every shard's counters, the rooms' and the storage's, read and summed, then
//! encoded in the Prometheus text format (OpenMetrics 1.0) by `prometheus-client`.
//!
//! The values are read once, into a [`Scrape`], which a one-off `prometheus-client`
//! collector then encodes: the registry holds nothing between scrapes, and a scrape costs
//! the hot path nothing (it reads atomics the shards write without waiting for them).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::super::registry::RoomTotals;
use super::super::shared::Shared;
use crate::counters::{HistogramCounts, LATENCY_NS};
use crate::model::Model;
use crate::protocol::ErrorCode;
use crate::session::counters::SessionCounts;
use crate::storage::SyncStats;

/// The `Content-Type` of [`render`]'s output.
pub(in crate::server) const CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Nanoseconds per second, to report latencies in seconds.
const NANOS: f64 = 1e9;

/// One shard's own figures.
#[derive(Debug, Clone, Copy)]
struct ShardFigures {
    connections: u64,
    rooms: u64,
    bytes_written: u64,
    writes: u64,
    bytes_read: u64,
    reads: u64,
}

/// Everything a scrape reports, read at one moment.
#[derive(Debug)]
struct Scrape {
    shards: Vec<ShardFigures>,
    sessions: SessionCounts,
    commit_latency: HistogramCounts,
    rooms: u64,
    totals: RoomTotals,
    storage: Option<SyncStats>,
    #[cfg(feature = "cluster")]
    cluster: Option<crate::storage::cluster::ClusterStats>,
    healthy: bool,
    ready: bool,
}

/// The `/metrics` page of `shared`'s server.
pub(in crate::server) fn render<M: Model>(shared: &Shared<M>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(read(shared)));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        // Writing to a `String` does not fail; say so if it ever does.
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    out
}

fn read<M: Model>(shared: &Shared<M>) -> Scrape {
    let mut sessions: Option<SessionCounts> = None;
    let mut commit_latency = HistogramCounts::empty(&LATENCY_NS);
    let mut shards = Vec::with_capacity(shared.counters.len());
    for counters in &shared.counters {
        let read = counters.session.read();
        match &mut sessions {
            Some(sum) => add_sessions(sum, &read),
            None => sessions = Some(read),
        }
        commit_latency.merge(&counters.commit_latency.read());
        shards.push(ShardFigures {
            connections: counters.connections.get(),
            rooms: counters.rooms.get(),
            bytes_written: counters.bytes_written.get(),
            writes: counters.writes.get(),
            bytes_read: counters.bytes_read.get(),
            reads: counters.reads.get(),
        });
    }
    let sessions =
        sessions.unwrap_or_else(|| crate::session::counters::SessionCounters::default().read());
    Scrape {
        shards,
        sessions,
        commit_latency,
        rooms: shared.registry.len() as u64,
        totals: shared.registry.totals(),
        storage: shared.registry.storage().sync_stats(),
        #[cfg(feature = "cluster")]
        cluster: shared.registry.storage().cluster_stats(),
        healthy: shared.health().is_ok(),
        ready: shared.readiness().is_ok(),
    }
}

fn add_sessions(sum: &mut SessionCounts, more: &SessionCounts) {
    sum.resumes_deltas += more.resumes_deltas;
    sum.resumes_gap += more.resumes_gap;
    for (s, m) in sum.snapshots.iter_mut().zip(more.snapshots) {
        *s += m;
    }
    sum.updates_committed += more.updates_committed;
    sum.updates_duplicate += more.updates_duplicate;
    for (s, m) in sum.updates_rejected.iter_mut().zip(more.updates_rejected) {
        *s += m;
    }
    sum.rate_limited += more.rate_limited;
    sum.lag.merge(&more.lag);
    sum.ops_per_frame.merge(&more.ops_per_frame);
}

/// Writes one metric family: its name, help and type, then `samples` writes its samples.
fn family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: impl FnOnce(&mut MetricEncoder<'_>) -> Result<(), std::fmt::Error>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    samples(&mut metric)
}

fn counter(metric: &mut MetricEncoder<'_>, value: u64) -> Result<(), std::fmt::Error> {
    metric.encode_counter::<NoLabelSet, u64, u64>(&value, None)
}

fn gauge(metric: &mut MetricEncoder<'_>, value: u64) -> Result<(), std::fmt::Error> {
    metric.encode_gauge(&(i64::try_from(value).unwrap_or(i64::MAX)))
}

/// A counter with one sample per value of `label`.
fn labelled_counters<'a>(
    metric: &mut MetricEncoder<'_>,
    label: &'static str,
    samples: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<(), std::fmt::Error> {
    for (value, count) in samples {
        let labels = [(label, value)];
        counter(&mut metric.encode_family(&labels)?, count)?;
    }
    Ok(())
}

/// One sample per shard, labelled `shard`.
fn per_shard(
    metric: &mut MetricEncoder<'_>,
    shards: &[ShardFigures],
    value: impl Fn(&ShardFigures) -> u64,
    is_counter: bool,
) -> Result<(), std::fmt::Error> {
    for (index, figures) in shards.iter().enumerate() {
        let shard = index.to_string();
        let labels = [("shard", shard.as_str())];
        let mut sample = metric.encode_family(&labels)?;
        if is_counter {
            counter(&mut sample, value(figures))?;
        } else {
            gauge(&mut sample, value(figures))?;
        }
    }
    Ok(())
}

/// A histogram, its bounds divided by `scale` (1 for counts, 1e9 for nanoseconds). The
/// encoder takes each bucket's own count and writes them cumulative.
fn histogram(
    metric: &mut MetricEncoder<'_>,
    counts: &HistogramCounts,
    scale: f64,
) -> Result<(), std::fmt::Error> {
    let buckets: Vec<(f64, u64)> = counts
        .counts
        .iter()
        .enumerate()
        .map(|(index, count)| {
            let bound = counts
                .bounds
                .get(index)
                .map_or(f64::INFINITY, |b| *b as f64 / scale);
            (bound, *count)
        })
        .collect();
    metric.encode_histogram::<NoLabelSet>(counts.sum as f64 / scale, counts.count(), &buckets, None)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.encode_health(&mut encoder)?;
        self.encode_connections(&mut encoder)?;
        self.encode_sync(&mut encoder)?;
        self.encode_updates(&mut encoder)?;
        self.encode_io(&mut encoder)?;
        #[cfg(feature = "cluster")]
        self.encode_cluster(&mut encoder)?;
        self.encode_storage(&mut encoder)
    }
}

impl Scrape {
    fn encode_health(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let help = "1 while /health answers 200, else 0";
        family(e, "deltasync_healthy", help, MetricType::Gauge, |m| {
            gauge(m, u64::from(self.healthy))
        })?;
        let help = "1 while /ready answers 200, else 0";
        family(e, "deltasync_ready", help, MetricType::Gauge, |m| {
            gauge(m, u64::from(self.ready))
        })
    }

    fn encode_connections(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let help = "open connections on each shard (upgrading and closing ones included)";
        family(e, "deltasync_connections", help, MetricType::Gauge, |m| {
            per_shard(m, &self.shards, |s| s.connections, false)
        })?;
        let help = "rooms held by the server";
        family(e, "deltasync_rooms", help, MetricType::Gauge, |m| {
            gauge(m, self.rooms)
        })?;
        let help = "rooms with a connection on each shard";
        family(e, "deltasync_shard_rooms", help, MetricType::Gauge, |m| {
            per_shard(m, &self.shards, |s| s.rooms, false)
        })
    }

    fn encode_sync(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.sessions;
        let help = "operations committed by every room (clients' updates, joins, leaves, the server's own)";
        family(e, "deltasync_commits", help, MetricType::Counter, |m| {
            counter(m, self.totals.commits)
        })?;
        let help =
            "resumes (JOIN with rev), by result: deltas, or gap (REVISION_GAP then a snapshot)";
        family(e, "deltasync_resumes", help, MetricType::Counter, |m| {
            labelled_counters(
                m,
                "result",
                [("deltas", s.resumes_deltas), ("gap", s.resumes_gap)],
            )
        })?;
        let help = "snapshots sent, by cause: join (no rev), resume_gap, lagged (a connected client fell out of the ring)";
        family(
            e,
            "deltasync_snapshots_sent",
            help,
            MetricType::Counter,
            |m| {
                let causes = ["join", "resume_gap", "lagged"];
                labelled_counters(m, "cause", causes.into_iter().zip(s.snapshots))
            },
        )?;
        let help = "snapshots encoded (at most one per revision anyone asked for; each room's first included)";
        family(
            e,
            "deltasync_snapshot_encodings",
            help,
            MetricType::Counter,
            |m| counter(m, self.totals.snapshot_encodings),
        )?;
        let help = "revisions between a connection's last sent revision and the head, at each flush that found it behind";
        family(
            e,
            "deltasync_connection_lag_revisions",
            help,
            MetricType::Histogram,
            |m| histogram(m, &s.lag, 1.0),
        )?;
        let help = "operations in each SYNC.DELTAS frame a flush sent";
        family(
            e,
            "deltasync_frame_operations",
            help,
            MetricType::Histogram,
            |m| histogram(m, &s.ops_per_frame, 1.0),
        )
    }

    fn encode_updates(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.sessions;
        let help = "client UPDATEs committed (duplicates excluded)";
        family(
            e,
            "deltasync_updates_committed",
            help,
            MetricType::Counter,
            |m| counter(m, s.updates_committed),
        )?;
        let help = "client UPDATEs whose clientReqId was already applied (nothing committed)";
        family(
            e,
            "deltasync_updates_duplicate",
            help,
            MetricType::Counter,
            |m| counter(m, s.updates_duplicate),
        )?;
        let help =
            "client UPDATEs refused with an ERROR, by code (the rate limit's refusals excluded)";
        family(
            e,
            "deltasync_updates_rejected",
            help,
            MetricType::Counter,
            |m| {
                let codes = ErrorCode::ALL.map(ErrorCode::as_str);
                labelled_counters(m, "code", codes.into_iter().zip(s.updates_rejected))
            },
        )?;
        let help = "messages refused for the message rate (RESOURCE_EXHAUSTED with retryAfterMs)";
        family(
            e,
            "deltasync_messages_rate_limited",
            help,
            MetricType::Counter,
            |m| counter(m, s.rate_limited),
        )?;
        let help = "from the socket read that brought an UPDATE to its commit (decode, decide, log append, apply)";
        family(
            e,
            "deltasync_commit_latency_seconds",
            help,
            MetricType::Histogram,
            |m| histogram(m, &self.commit_latency, NANOS),
        )
    }

    fn encode_io(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let help = "bytes written to sockets, by shard";
        family(
            e,
            "deltasync_written_bytes",
            help,
            MetricType::Counter,
            |m| per_shard(m, &self.shards, |s| s.bytes_written, true),
        )?;
        let help =
            "write system calls (writev), by shard, those that found the socket full included";
        family(
            e,
            "deltasync_write_syscalls",
            help,
            MetricType::Counter,
            |m| per_shard(m, &self.shards, |s| s.writes, true),
        )?;
        let help = "bytes read from sockets, by shard";
        family(e, "deltasync_read_bytes", help, MetricType::Counter, |m| {
            per_shard(m, &self.shards, |s| s.bytes_read, true)
        })?;
        let help = "read system calls that returned bytes or the end of the stream, by shard";
        family(
            e,
            "deltasync_read_syscalls",
            help,
            MetricType::Counter,
            |m| per_shard(m, &self.shards, |s| s.reads, true),
        )
    }

    /// The cluster backend's figures: appends, appends another node won (each one
    /// decided again: the commit retries), records read from other nodes.
    #[cfg(feature = "cluster")]
    fn encode_cluster(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(stats) = &self.cluster else {
            return Ok(());
        };
        let families = [
            (
                "deltasync_cluster_appends",
                "appends the cluster engine accepted from this node",
                stats.appends,
            ),
            (
                "deltasync_cluster_conflicts",
                "appends refused because another node had taken the revision (each one a catch-up and a commit retry)",
                stats.conflicts,
            ),
            (
                "deltasync_cluster_tailed",
                "records other nodes committed, read by this node's tailer",
                stats.tailed,
            ),
        ];
        for (name, help, value) in families {
            family(e, name, help, MetricType::Counter, |m| counter(m, value))?;
        }
        Ok(())
    }

    /// The storage's figures, when its backend has a syncer (disk).
    fn encode_storage(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(stats) = &self.storage else {
            return Ok(());
        };
        let help = "how long the storage's log fsyncs took";
        family(
            e,
            "deltasync_storage_fsync_seconds",
            help,
            MetricType::Histogram,
            |m| histogram(m, &stats.fsync_latency, NANOS),
        )?;
        let help = "batches of logs the syncer fsynced at once (group commit)";
        family(
            e,
            "deltasync_storage_sync_batches",
            help,
            MetricType::Counter,
            |m| counter(m, stats.batches),
        )?;
        let help = "snapshots the storage wrote";
        family(
            e,
            "deltasync_storage_snapshots",
            help,
            MetricType::Counter,
            |m| counter(m, stats.snapshots),
        )?;
        let help = "log segments deleted behind a snapshot";
        family(
            e,
            "deltasync_storage_compacted_segments",
            help,
            MetricType::Counter,
            |m| counter(m, stats.compacted_segments),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_in_base_units() {
        let mut counts = HistogramCounts::empty(&LATENCY_NS);
        counts.counts[0] = 2;
        counts.counts[11] = 1;
        counts.sum = 2_000_000_000;
        let mut out = String::new();
        let mut registry = Registry::default();
        #[derive(Debug)]
        struct One(HistogramCounts);
        impl Collector for One {
            fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
                family(&mut e, "x_seconds", "x", MetricType::Histogram, |m| {
                    histogram(m, &self.0, NANOS)
                })
            }
        }
        registry.register_collector(Box::new(One(counts)));
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(out.contains("x_seconds_sum 2.0\n"), "{out}");
        assert!(out.contains("x_seconds_count 3\n"), "{out}");
        assert!(
            out.contains("x_seconds_bucket{le=\"0.00001\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{le=\"0.000025\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_bucket{le=\"1.0\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
    }
}
