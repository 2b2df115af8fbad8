//! A well-behaved client that measures: it updates, waits for the ack, pauses
//! [`PROBE_PAUSE`] (so that it stays within the default rate limit of 100 messages a
//! second, with room to spare: it is never refused), and records each ack's latency;
//! what is measured beside hostile load.
//!
//! One probe gives about 80 samples a second: over a 10 s window the p99 is the 8th-worst
//! of 800. The soak runs several (see `bad_actors.rs`) and pools their samples.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deltasync::client::{Connector, ReplicaEvent};
use deltasync::model::presence::{Patch, Presence, PresenceInput, Status};

/// How long a probe waits after each ack before its next update: at most 1000 / 12 = 83
/// updates a second, under the default limit of 100 (and its burst of 200), so that a
/// probe is never throttled by its own rate.
pub(crate) const PROBE_PAUSE: Duration = Duration::from_millis(12);

/// Ack latencies of the probe in one window.
#[derive(Debug, Default, Clone)]
pub(crate) struct Latencies {
    samples: Vec<Duration>,
}

impl Latencies {
    /// The latencies of the acks of updates sent between `from` and `to`.
    pub(crate) fn window(samples: &[(Instant, Duration)], from: Instant, to: Instant) -> Self {
        Self {
            samples: samples
                .iter()
                .filter(|(at, _)| *at >= from && *at <= to)
                .map(|(_, latency)| *latency)
                .collect(),
        }
    }

    /// The samples of `self` and `other` together.
    pub(crate) fn merged(&self, other: &Self) -> Self {
        let mut samples = self.samples.clone();
        samples.extend_from_slice(&other.samples);
        Self { samples }
    }

    /// The `p` quantile (0 to 1), in milliseconds.
    pub(crate) fn ms(&self, p: f64) -> f64 {
        self.percentile(p).as_secs_f64() * 1000.0
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }

    /// `n, p50, p99, max` in milliseconds.
    pub(crate) fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "{} acks, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.samples.len(),
            ms(self.percentile(0.5)),
            ms(self.percentile(0.99)),
            ms(self.percentile(1.0))
        )
    }
}

/// A well-behaved client that updates and waits for each ack, all along, and records
/// when it sent each update and how long the ack took.
pub(crate) struct Probe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Vec<(Instant, Duration)>, u64)>,
}

impl Probe {
    /// Connects to `url` as `probe` (joined when this returns) and starts probing.
    pub(crate) fn start(url: &str) -> std::io::Result<Self> {
        Self::start_as(url, "probe")
    }

    /// Connects to `url` as `participant` (joined when this returns) and starts probing.
    pub(crate) fn start_as(url: &str, participant: &str) -> std::io::Result<Self> {
        let mut client = Connector::<Presence>::connect(url, participant, "Probe")
            .map_err(std::io::Error::other)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("{}{participant}", super::phase_cpu::PROBE_THREAD))
            .spawn(move || {
                let mut out = Vec::new();
                let mut errors = 0;
                let mut away = false;
                while !flag.load(Ordering::Relaxed) {
                    away = !away;
                    let status = if away { Status::Away } else { Status::Online };
                    let input = PresenceInput {
                        patch: Patch {
                            status: Some(status),
                            ..Patch::default()
                        },
                    };
                    let sent = Instant::now();
                    let Ok(id) = client.update(input) else {
                        errors += 1;
                        break;
                    };
                    match ack(&mut client, &id) {
                        Ok(true) => out.push((sent, sent.elapsed())),
                        Ok(false) | Err(_) => errors += 1,
                    }
                    std::thread::sleep(PROBE_PAUSE);
                }
                (out, errors)
            })?;
        Ok(Self { stop, thread })
    }

    pub(crate) fn stop(self) -> (Vec<(Instant, Duration)>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// Polls until `id` is acknowledged (true) or rejected / refused (false).
fn ack(
    client: &mut Connector<Presence>,
    id: &str,
) -> Result<bool, deltasync::client::ConnectorError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for event in client.poll(Duration::from_millis(100))? {
            match event {
                ReplicaEvent::Acked { client_req_id, .. } if client_req_id == id => {
                    return Ok(true);
                }
                ReplicaEvent::Rejected { .. } | ReplicaEvent::Error { .. } => return Ok(false),
                _ => {}
            }
        }
    }
    Ok(false)
}
