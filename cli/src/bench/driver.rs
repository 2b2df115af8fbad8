//! One run of the load against one server: start the generator threads, walk them
//! through the phases, sample CPU time and memory at the window's edges, print progress,
//! and put the threads' reports together with the final checks.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::check::{AckCounts, Violations};
use super::client::{Endpoint, Generator, ThreadReport};
use super::control::{Control, Phase, UNUSED, now};
use super::cpu::{self, GENERATOR_THREAD, Sample};
use super::game::{Counters, TickLog};
use super::metrics::Metrics;
use super::scenario::{Load, Mode};

/// Whose CPU time is the server's.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ServerProcess {
    /// This process: every thread but the generator's.
    InProcess,
    /// Another process, by id.
    Pid(u32),
    /// Unknown (`--url` without `--server-pid`).
    Unknown,
}

/// Everything one run measured and checked.
#[derive(Debug)]
pub(crate) struct RunResult {
    pub(crate) metrics: Metrics,
    pub(crate) violations: Violations,
    pub(crate) updates: AckCounts,
    pub(crate) measured: AckCounts,
    /// Operations the measured acknowledged updates should have delivered.
    pub(crate) expected_ops: u64,
    pub(crate) connected: usize,
    pub(crate) connect_time: Option<Duration>,
    /// The measured window (the load's duration, or the reconnect's span).
    pub(crate) window: Duration,
    pub(crate) server_cpu: Option<Duration>,
    /// The server's CPU time while the clients connected and joined (a join storm's).
    pub(crate) connect_server_cpu: Option<Duration>,
    /// The generator's CPU time over the same span.
    pub(crate) connect_generator_cpu: Option<Duration>,
    /// Write system calls of the server's threads in the window.
    pub(crate) server_writes: Option<u64>,
    pub(crate) generator_cpu: Duration,
    /// The busiest generator thread's CPU time.
    pub(crate) generator_busiest: Duration,
    /// Server memory before the clients connected and after they settled (bytes).
    pub(crate) rss: Option<(u64, u64)>,
    /// Reconnect runs: until every client that was away is current again.
    pub(crate) reconnect_time: Option<Duration>,
    /// Why the run ended early, if it did.
    pub(crate) aborted: Option<String>,
    /// This process's threads at the window's edges (each thread's CPU time by name).
    pub(crate) own_cpu: Option<(Sample, Sample)>,
    /// The game loop's counters at the window's edges (`--game`).
    pub(crate) game: Option<(Counters, Counters)>,
    /// CPU time the whole machine (every process) spent busy in the window.
    pub(crate) machine_busy: Option<Duration>,
    /// CPU time of each watched process in the window (the nodes and the engine of a
    /// cluster), in the order they were given; empty when none was.
    pub(crate) watched_cpu: Vec<Duration>,
    /// Write system calls of each watched process in the window, where counted.
    pub(crate) watched_writes: Vec<Option<u64>>,
}

/// The run, then the threads' reports.
struct Run<'a> {
    load: &'a Load,
    control: Arc<Control>,
    threads: Vec<JoinHandle<ThreadReport>>,
    server: ServerProcess,
    /// Other processes whose CPU time is read at the window's edges.
    watch: &'a [u32],
    quiet: bool,
    started: Instant,
}

/// Runs `load` against `endpoint`; `game` is the record of the game loop's ticks when
/// the server is the game scenario's; the processes `watch` names (a cluster's nodes and
/// engine) have their CPU time read at the measured window's edges.
pub(crate) fn run(
    load: &Load,
    endpoint: Endpoint,
    server: ServerProcess,
    game: Option<Arc<TickLog>>,
    watch: &[u32],
    quiet: bool,
) -> RunResult {
    let control = Arc::new(Control::new(load.rooms, load.threads + 1).with_game(game));
    let rss_before = pid(server).and_then(cpu::rss);
    let mut run = Run {
        load,
        control: Arc::clone(&control),
        threads: Vec::new(),
        server,
        watch,
        quiet,
        started: now(),
    };
    let connect_before = run.sample();
    if let Err(e) = run.spawn(Arc::new(endpoint)) {
        control.set_phase(Phase::Stop);
        return run.finish(
            Default::default(),
            Some(format!("cannot start the generator: {e}")),
        );
    }
    let mut window = Window::default();
    let connected = run.connect();
    if connected.is_ok() {
        window.connect_cpu = Some((connect_before, run.sample()));
    }
    let aborted = connected.err().or_else(|| match load.mode {
        Mode::Load => run.load(&mut window).err(),
        Mode::Idle => run.idle(&mut window, rss_before).err(),
        Mode::Reconnect { .. } => run.reconnect(&mut window).err(),
    });
    control.set_phase(Phase::Stop);
    run.finish(window, aborted)
}

/// The CPU time the server (when it is known) and the generator's threads spent between
/// two samples.
fn cpu_spent(server: ServerProcess, edges: &CpuEdges) -> (Option<Duration>, Duration) {
    let ((server_before, own_before), (server_after, own_after)) = edges;
    let server = match server {
        ServerProcess::Unknown => None,
        ServerProcess::InProcess => Some(cpu::spent(server_before, server_after, |n| {
            !cpu::is_generator(n)
        })),
        ServerProcess::Pid(_) => Some(cpu::spent(server_before, server_after, |_| true)),
    };
    (server, cpu::spent(own_before, own_after, cpu::is_generator))
}

/// The server's and this process's threads, sampled at the start and the end of a span.
type CpuEdges = ((Sample, Sample), (Sample, Sample));

/// What the driver sampled during the run.
#[derive(Debug, Default)]
struct Window {
    span: Duration,
    cpu: Option<CpuEdges>,
    /// From the generator's start until every client joined.
    connect_cpu: Option<CpuEdges>,
    game: Option<(Counters, Counters)>,
    machine_busy: Option<Duration>,
    rss: Option<(u64, u64)>,
    reconnect: Option<Duration>,
    /// The watched processes at the window's edges.
    watched: Vec<(Sample, Sample)>,
}

fn pid(server: ServerProcess) -> Option<u32> {
    match server {
        ServerProcess::Pid(pid) => Some(pid),
        _ => None,
    }
}

impl Run<'_> {
    /// Starts the receivers' threads (clients dealt round-robin, writers excepted) and,
    /// when there are writers, one thread of their own, so that no receiving work can
    /// delay a scheduled update. In the game scenario every client may be a writer (of
    /// moves): they are all dealt round-robin.
    fn spawn(&mut self, endpoint: Arc<Endpoint>) -> std::io::Result<()> {
        let run_id = run_id();
        let load = Arc::new(self.load.clone());
        let threads = self.load.threads;
        let writers = match self.load.game {
            Some(_) => 0,
            None => self.load.writers,
        };
        let mut groups: Vec<(String, Vec<usize>)> = (0..threads)
            .map(|index| {
                let clients = (writers + index..self.load.clients)
                    .step_by(threads)
                    .collect();
                (index.to_string(), clients)
            })
            .collect();
        if writers > 0 {
            groups.push(("w".into(), (0..writers).collect()));
        } else {
            self.control.current_at[threads].store(UNUSED, Ordering::Relaxed);
        }
        for (index, (name, clients)) in groups.into_iter().enumerate() {
            let generator = Generator::new(
                index,
                clients,
                Arc::clone(&load),
                Arc::clone(&endpoint),
                Arc::clone(&self.control),
                run_id,
            )?;
            let handle = std::thread::Builder::new()
                .name(format!("{GENERATOR_THREAD}{name}"))
                .spawn(move || generator.run())?;
            self.threads.push(handle);
        }
        Ok(())
    }

    /// CPU time of the server's threads and of this process's threads.
    fn sample(&self) -> (Sample, Sample) {
        let own = cpu::sample("self");
        match self.server {
            ServerProcess::Pid(pid) => (cpu::sample(&pid.to_string()), own),
            _ => (own.clone(), own),
        }
    }

    /// CPU time of each watched process's threads.
    fn sample_watched(&self) -> Vec<Sample> {
        self.watch
            .iter()
            .map(|pid| cpu::sample(&pid.to_string()))
            .collect()
    }

    fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("[{:6.1}s] {line}", self.started.elapsed().as_secs_f64());
        }
    }

    /// Waits for every client's first snapshot.
    fn connect(&self) -> Result<(), String> {
        let deadline = now() + self.load.connect_timeout;
        let mut next_line = now();
        loop {
            let ready = self.control.ready.load(Ordering::Relaxed);
            let failed = self.control.failed.load(Ordering::Relaxed);
            if ready == self.load.clients {
                self.say(&format!("{ready} clients connected and joined"));
                return Ok(());
            }
            self.check_broken()?;
            if failed > 0 && ready + failed == self.load.clients {
                return Err(format!(
                    "{failed} of {} clients could not connect",
                    self.load.clients
                ));
            }
            if now() >= deadline {
                return Err(format!(
                    "only {ready} of {} clients joined within --connect-timeout {:?}",
                    self.load.clients, self.load.connect_timeout
                ));
            }
            if now() >= next_line {
                next_line += Duration::from_secs(1);
                self.say(&format!("connecting: {ready}/{} joined", self.load.clients));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn check_broken(&self) -> Result<(), String> {
        if self.control.broken.load(Ordering::Relaxed) {
            Err("a generator thread's poller failed".into())
        } else {
            Ok(())
        }
    }

    /// Warmup, the measured window, then the drain.
    fn load(&self, window: &mut Window) -> Result<(), String> {
        let start = now();
        let _ = self.control.start.set(start);
        self.control.set_phase(Phase::Load);
        // The game scenario: the game starts ticking once every client has joined.
        if let Some(game) = &self.control.game {
            game.set_ticking(true);
        }
        let from = start + self.load.warmup;
        let to = from + self.load.duration;
        self.progress_until(from, "warmup")?;
        let game = self.control.game.as_deref();
        let game_before = game.map(|g| {
            g.set_measuring(true);
            g.counters()
        });
        let (busy_before, before) = (cpu::machine_busy(), self.sample());
        let watched_before = self.sample_watched();
        self.progress_until(to, "load")?;
        let (busy_after, after) = (cpu::machine_busy(), self.sample());
        window.watched = watched_before
            .into_iter()
            .zip(self.sample_watched())
            .collect();
        window.machine_busy = busy_before
            .zip(busy_after)
            .map(|(b, a)| a.saturating_sub(b));
        let game_after = game.map(|g| {
            g.set_measuring(false);
            g.counters()
        });
        window.span = self.load.duration;
        window.cpu = Some((before, after));
        window.game = game_before.zip(game_after);
        self.control.set_phase(Phase::Drain);
        self.drain(self.load.writers)
    }

    /// Prints a line a second until `until`.
    fn progress_until(&self, until: Instant, what: &str) -> Result<(), String> {
        let p = &self.control.progress;
        let mut last = [0u64; 4];
        let mut next_line = now() + Duration::from_secs(1);
        while now() < until {
            self.check_broken()?;
            std::thread::sleep(
                until
                    .saturating_duration_since(now())
                    .min(Duration::from_millis(50)),
            );
            if now() >= next_line {
                next_line += Duration::from_secs(1);
                let totals =
                    [&p.ops, &p.frames, &p.bytes, &p.updates].map(|c| c.load(Ordering::Relaxed));
                let d: Vec<u64> = totals.iter().zip(last).map(|(t, l)| t - l).collect();
                last = totals;
                self.say(&format!(
                    "{what}: {} updates sent; last second: {} ops, {} frames, {:.1} MB received",
                    totals[3],
                    d[0],
                    d[1],
                    d[2] as f64 / 1e6
                ));
            }
        }
        Ok(())
    }

    /// Waits until `writers` writers are settled and every client is current, for as
    /// long as bytes keep arriving: a backlog in the clients' socket buffers (a slow
    /// generator) drains, while a delivery that stalls for `--drain-timeout` is given
    /// up (and its clients reported behind). Never longer than ten drain timeouts.
    fn drain(&self, writers: usize) -> Result<(), String> {
        let start = now();
        let cap = start + self.load.drain_timeout * 10;
        let mut received = self.control.progress.received.load(Ordering::Relaxed);
        let mut moved = start;
        loop {
            let settled = self.control.writers_settled.load(Ordering::Relaxed);
            if settled >= writers {
                // Every move is answered: the game may stop, so that its clients can
                // reach a head that stays put.
                if let Some(game) = &self.control.game {
                    game.set_ticking(false);
                }
                if self.control.all_current() {
                    return Ok(());
                }
            }
            self.check_broken()?;
            let at = now();
            let bytes = self.control.progress.received.load(Ordering::Relaxed);
            if bytes != received {
                (received, moved) = (bytes, at);
            }
            if at >= moved + self.load.drain_timeout || at >= cap {
                self.say(&format!(
                    "drain: given up after {:.1} s, {:.1} s without a byte ({settled}/{writers} writers done)",
                    (at - start).as_secs_f64(),
                    (at - moved).as_secs_f64()
                ));
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Connected and settled, then held for the duration (memory per idle connection).
    fn idle(&self, window: &mut Window, rss_before: Option<u64>) -> Result<(), String> {
        self.progress_until(now() + self.load.warmup, "settling")?;
        let rss_after = pid(self.server).and_then(cpu::rss);
        window.rss = rss_before.zip(rss_after);
        let before = self.sample();
        self.progress_until(now() + self.load.duration, "idle")?;
        window.cpu = Some((before, self.sample()));
        window.span = self.load.duration;
        Ok(())
    }

    /// Settle, send the away clients off, let the writers commit, then time the return.
    fn reconnect(&self, window: &mut Window) -> Result<(), String> {
        self.progress_until(now() + self.load.warmup, "settling")?;
        let _ = self.control.start.set(now());
        self.control.set_phase(Phase::Away);
        self.drain(self.load.writers)?;
        let away = self.load.clients - self.load.writers;
        self.say(&format!("{away} clients reconnecting at once"));
        let before = self.sample();
        let back = now();
        let _ = self.control.back.set(back);
        self.control.set_phase(Phase::Back);
        let deadline = back + self.load.connect_timeout;
        while self.control.caught_up.load(Ordering::Relaxed) < away {
            self.check_broken()?;
            if now() >= deadline {
                return Err(format!(
                    "only {} of {away} clients were current again within --connect-timeout",
                    self.control.caught_up.load(Ordering::Relaxed)
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        window.reconnect = Some(back.elapsed());
        window.span = back.elapsed();
        window.cpu = Some((before, self.sample()));
        self.say(&format!("all current again after {:?}", back.elapsed()));
        // The room may have moved meanwhile (a long storm outlives the participants'
        // time-to-live): everyone must reach the new head too before the checks.
        self.drain(self.load.writers)
    }

    fn finish(self, window: Window, aborted: Option<String>) -> RunResult {
        self.control.set_phase(Phase::Stop);
        let mut metrics = Metrics::default();
        let mut violations = Violations::default();
        let (mut updates, mut measured) = (AckCounts::default(), AckCounts::default());
        let mut expected_ops = 0;
        for handle in self.threads {
            let Ok(report) = handle.join() else {
                violations.add("generator_panicked", || {
                    "a generator thread panicked".into()
                });
                continue;
            };
            metrics.merge(&report.metrics);
            violations.merge(report.violations);
            for writer in report.writers {
                updates.add(&writer.all);
                measured.add(&writer.measured);
                expected_ops += writer.measured.acked * self.load.clients_in(writer.room) as u64;
            }
        }
        // Snapshots that skip revisions (after a gap; the ceiling's resumes) deliver
        // operations as state: the count is exact only without them.
        let comparable = aborted.is_none()
            && metrics.gaps == 0
            && metrics.skipped_revs == 0
            && metrics.closed == 0;
        if comparable && metrics.delivered != expected_ops {
            let (got, want) = (metrics.delivered, expected_ops);
            violations.add("delivery_count", || {
                format!("{got} operations delivered; acknowledged updates × room sizes = {want}")
            });
        }
        let generator_busiest = window
            .cpu
            .as_ref()
            .map_or(Duration::ZERO, |(before, after)| {
                cpu::busiest(&before.1, &after.1, cpu::is_generator)
            });
        let server_writes =
            window
                .cpu
                .as_ref()
                .and_then(|((before, _), (after, _))| match self.server {
                    ServerProcess::Unknown => None,
                    ServerProcess::InProcess => {
                        cpu::writes(before, after, |n| !cpu::is_generator(n))
                    }
                    ServerProcess::Pid(_) => cpu::writes(before, after, |_| true),
                });
        let (server_cpu, generator_cpu) =
            window.cpu.as_ref().map_or((None, Duration::ZERO), |edges| {
                cpu_spent(self.server, edges)
            });
        let connect_cpu = window
            .connect_cpu
            .as_ref()
            .map(|edges| cpu_spent(self.server, edges));
        let connected = self.control.ready.load(Ordering::Relaxed);
        let watched_cpu = window
            .watched
            .iter()
            .map(|(before, after)| cpu::spent(before, after, |_| true))
            .collect();
        let watched_writes = window
            .watched
            .iter()
            .map(|(before, after)| cpu::writes(before, after, |_| true))
            .collect();
        RunResult {
            connect_time: metrics
                .last_ready
                .map(|t| t.saturating_duration_since(self.started)),
            metrics,
            violations,
            updates,
            measured,
            expected_ops,
            connected,
            window: window.span,
            server_cpu,
            server_writes,
            generator_cpu,
            connect_server_cpu: connect_cpu.and_then(|(server, _)| server),
            connect_generator_cpu: connect_cpu.map(|(_, generator)| generator),
            generator_busiest,
            rss: window.rss,
            reconnect_time: window.reconnect,
            aborted,
            own_cpu: window.cpu.map(|(before, after)| (before.1, after.1)),
            game: window.game,
            machine_busy: window.machine_busy,
            watched_cpu,
            watched_writes,
        }
    }
}

/// A number that tells this run's ids from any other run's.
fn run_id() -> u32 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: the clock's nanoseconds are different enough between two runs.
        #[allow(clippy::disallowed_methods)]
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        return nanos;
    }
    u32::from_le_bytes(bytes)
}
