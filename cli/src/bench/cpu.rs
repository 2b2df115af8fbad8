//! CPU time and memory of threads and processes, read from `/proc`; the open-file limit;
//! the machine's description for the report.
//!
//! CPU time comes from each thread's `/proc/<pid>/task/<tid>/schedstat` (nanoseconds
//! on the CPU, then nanoseconds runnable but waiting for a core), or, where the kernel
//! has no schedstat, from `utime + stime` of its `stat` in clock ticks of 1/100 s
//! (`USER_HZ`, 100 on Linux's architectures; no waiting time then). The waiting time
//! matters on a shared machine: a generator thread that ran 50% of the time and waited
//! for a core the other 50% was as much of a bottleneck as one that ran 100%.

use std::fs;
use std::path::Path;
use std::time::Duration;

/// The name every generator thread's name starts with.
pub(crate) const GENERATOR_THREAD: &str = "bench-gen-";

/// CPU time of each thread of a process at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    /// `(thread id, name, time on the CPU, time waiting for a CPU)`.
    threads: Vec<(u32, String, Duration, Duration)>,
    /// `(thread id, write system calls so far)`: `syscw` of the thread's `io`, which
    /// counts `write`, `writev`, `sendto` and the like (absent where the kernel has no
    /// task I/O accounting).
    writes: Vec<(u32, u64)>,
}

/// Reads every thread of process `pid` (`"self"` for this one).
pub(crate) fn sample(pid: &str) -> Sample {
    let dir = format!("/proc/{pid}/task");
    let mut threads = Vec::new();
    let mut writes = Vec::new();
    let Ok(entries) = fs::read_dir(&dir) else {
        return Sample::default();
    };
    for entry in entries.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let path = entry.path();
        let name = fs::read_to_string(path.join("comm")).unwrap_or_default();
        if let Some((time, waited)) = thread_time(&path) {
            threads.push((tid, name.trim_end().to_owned(), time, waited));
        }
        if let Some(syscw) = thread_writes(&path) {
            writes.push((tid, syscw));
        }
    }
    Sample { threads, writes }
}

fn thread_writes(task: &Path) -> Option<u64> {
    let io = fs::read_to_string(task.join("io")).ok()?;
    let line = io.lines().find(|l| l.starts_with("syscw:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Write system calls the threads `select` picks (by name) made between two samples;
/// `None` when the kernel does not count them.
pub(crate) fn writes(
    before: &Sample,
    after: &Sample,
    select: impl Fn(&str) -> bool,
) -> Option<u64> {
    if after.writes.is_empty() {
        return None;
    }
    let total = after
        .threads
        .iter()
        .filter(|(_, name, _, _)| select(name))
        .filter_map(|(tid, _, _, _)| {
            let now = after.writes.iter().find(|(t, _)| t == tid)?.1;
            let earlier = before
                .writes
                .iter()
                .find(|(t, _)| t == tid)
                .map_or(0, |w| w.1);
            Some(now.saturating_sub(earlier))
        })
        .sum();
    Some(total)
}

fn thread_time(task: &Path) -> Option<(Duration, Duration)> {
    if let Ok(schedstat) = fs::read_to_string(task.join("schedstat")) {
        let mut fields = schedstat.split_whitespace();
        let ran = fields.next()?.parse().ok()?;
        let waited = fields.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        return Some((Duration::from_nanos(ran), Duration::from_nanos(waited)));
    }
    let stat = fs::read_to_string(task.join("stat")).ok()?;
    // The fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((Duration::from_millis(ticks * 10), Duration::ZERO))
}

/// CPU time spent between two samples by the threads `select` picks (by name); threads
/// that appeared in between count from zero.
pub(crate) fn spent(before: &Sample, after: &Sample, select: impl Fn(&str) -> bool) -> Duration {
    after
        .threads
        .iter()
        .filter(|(_, name, _, _)| select(name))
        .map(|(tid, _, time, _)| {
            let earlier = before
                .threads
                .iter()
                .find(|(t, _, _, _)| t == tid)
                .map_or(Duration::ZERO, |(_, _, t, _)| *t);
            time.saturating_sub(earlier)
        })
        .sum()
}

/// Time the threads `select` picks spent runnable but waiting for a CPU between two
/// samples (zero where the kernel has no schedstat).
pub(crate) fn waited(before: &Sample, after: &Sample, select: impl Fn(&str) -> bool) -> Duration {
    after
        .threads
        .iter()
        .filter(|(_, name, _, _)| select(name))
        .map(|(tid, _, _, waited)| {
            let earlier = before
                .threads
                .iter()
                .find(|(t, _, _, _)| t == tid)
                .map_or(Duration::ZERO, |(_, _, _, w)| *w);
            waited.saturating_sub(earlier)
        })
        .sum()
}

/// The most time one of the threads `select` picks wanted a CPU between two samples:
/// running on one or waiting for one.
pub(crate) fn busiest(before: &Sample, after: &Sample, select: impl Fn(&str) -> bool) -> Duration {
    after
        .threads
        .iter()
        .filter(|(_, name, _, _)| select(name))
        .map(|(tid, _, ran, waited)| {
            let (ran0, waited0) = before
                .threads
                .iter()
                .find(|(t, _, _, _)| t == tid)
                .map_or((Duration::ZERO, Duration::ZERO), |(_, _, r, w)| (*r, *w));
            ran.saturating_sub(ran0) + waited.saturating_sub(waited0)
        })
        .max()
        .unwrap_or_default()
}

/// CPU time the whole machine spent busy so far (every core; `/proc/stat`'s first line:
/// user, nice, system, irq, softirq and steal, in `USER_HZ` ticks of 1/100 s).
pub(crate) fn machine_busy() -> Option<Duration> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    machine_busy_of(stat.lines().next()?)
}

fn machine_busy_of(line: &str) -> Option<Duration> {
    let fields: Vec<u64> = line
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum::<u64>();
    Some(Duration::from_millis(busy * 10))
}

/// Whether a thread is one of the generator's.
pub(crate) fn is_generator(name: &str) -> bool {
    name.starts_with(GENERATOR_THREAD)
}

/// Resident memory of process `pid` in bytes (`VmRSS`).
pub(crate) fn rss(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Raises the soft open-file limit to at least `needed` (up to the hard limit).
///
/// # Errors
///
/// A message saying what is needed and what the system allows.
pub(crate) fn raise_open_files(needed: u64, why: &str) -> Result<u64, String> {
    let (soft, hard) = rlimit::Resource::NOFILE
        .get()
        .map_err(|e| format!("cannot read the open-file limit: {e}"))?;
    if soft >= needed {
        return Ok(soft);
    }
    if hard < needed {
        return Err(format!(
            "{why} needs {needed} open files, but the hard limit (ulimit -Hn) is {hard}: raise \
             it (as root: ulimit -Hn {needed}, or nofile in /etc/security/limits.conf), or run \
             fewer clients, or run the server as a separate process and point --url at it"
        ));
    }
    rlimit::Resource::NOFILE
        .set(needed, hard)
        .map_err(|e| format!("cannot raise the open-file limit to {needed}: {e}"))?;
    Ok(needed)
}

/// The machine, as the report names it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Machine {
    pub(crate) cpus: usize,
    pub(crate) cpu_model: String,
    pub(crate) kernel: String,
}

impl Machine {
    pub(crate) fn read() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".into(), |(_, m)| m.trim().to_owned());
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |k| k.trim().to_owned());
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_visible() {
        // Burn CPU on a generator-named thread until its counter moves (the kernel counts
        // in ticks): no assumption about how fast a loaded machine runs it.
        let busy = std::thread::Builder::new()
            .name(format!("{GENERATOR_THREAD}t"))
            .spawn(|| {
                let before = sample("self");
                let mut x = 0u64;
                #[allow(clippy::disallowed_methods)] // a test burns real CPU time
                let start = std::time::Instant::now();
                loop {
                    for _ in 0..1_000_000 {
                        x = x.wrapping_add(std::hint::black_box(1));
                    }
                    let after = sample("self");
                    if spent(&before, &after, is_generator) > Duration::ZERO {
                        return (before, after, x);
                    }
                    assert!(
                        start.elapsed() < Duration::from_secs(60),
                        "no CPU time ever counted"
                    );
                }
            })
            .unwrap();
        let (before, after, _) = busy.join().unwrap();
        assert!(spent(&before, &after, is_generator) > Duration::ZERO);
        let _ = waited(&before, &after, is_generator);
        assert!(machine_busy().is_some());
        assert_eq!(
            machine_busy_of("cpu  100 20 30 999 5 1 4 2 0 0"),
            Some(Duration::from_millis(1570))
        );
        assert!(rss(std::process::id()).unwrap() > 0);
        assert!(Machine::read().cpus >= 1);
    }
}
