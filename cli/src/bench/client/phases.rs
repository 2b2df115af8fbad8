//! The phases of a generator thread: what it does when the driver moves the run on,
//! what it tells the driver every few milliseconds, and what it hands back at the end.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::super::control::{Phase, now};
use super::super::scenario::{Mode, Rate};
use super::super::writer::{Body, Plan};
use super::{Generator, State, ThreadReport, WriterReport, next_mask};

/// How long a thread waits at the end for the game loop to record the flushes of frames
/// it has received.
const TICK_GRACE: Duration = Duration::from_secs(1);

impl Generator {
    pub(super) fn enter(&mut self, phase: Phase, at: Instant) {
        match phase {
            Phase::Load => {
                let start = self.control.start.get().copied().unwrap_or(at);
                let (warmup, duration) = (self.load.warmup, self.load.duration);
                let end = start + warmup + duration;
                self.window = Some((start + warmup, end));
                self.rec.start = Some(start);
                self.plan = Some(self.plan_from(start, end, false));
            }
            Phase::Away => {
                let start = self.control.start.get().copied().unwrap_or(at);
                self.rec.start = Some(start);
                self.plan = Some(self.plan_from(start, start, true));
                self.give_quotas();
                for key in 0..self.conns.len() {
                    if self.conns[key].rx.writer.is_none() && self.conns[key].state == State::Open {
                        self.drop_socket(key);
                        let conn = &mut self.conns[key];
                        conn.state = State::Waiting;
                        conn.away = true;
                        conn.attempts = 0;
                    }
                }
            }
            Phase::Back => {
                self.back_target = self
                    .control
                    .room_max
                    .iter()
                    .map(|r| r.load(Ordering::Relaxed))
                    .collect();
                for key in 0..self.conns.len() {
                    if self.conns[key].away {
                        self.conns[key].catching_up = true;
                        self.to_connect.push_back(key);
                    }
                }
            }
            Phase::Connect | Phase::Drain | Phase::Stop => {}
        }
    }

    fn plan_from(&self, start: Instant, end: Instant, quota_mode: bool) -> Plan {
        Plan {
            body: match self.load.game {
                Some(_) => Body::Move,
                None => Body::Name,
            },
            run: self.rec.run,
            start,
            end,
            rate: self.load.rate,
            in_flight: self.load.in_flight,
            measured_us: self.rec.measured_us,
            quota_mode,
        }
    }

    /// Reconnect runs: shares the missed updates among the writers.
    fn give_quotas(&mut self) {
        let Mode::Reconnect { missed } = self.load.mode else {
            return;
        };
        let writers = self.load.writers as u64;
        for &key in &self.writers {
            if let Some(writer) = self.conns[key].rx.writer.as_mut() {
                let index = u64::from(writer.index);
                writer.quota = missed / writers + u64::from(index < missed % writers);
            }
        }
    }

    /// The earliest scheduled update of this thread's writers.
    pub(super) fn next_due(&self) -> Option<Instant> {
        let plan = self.plan.as_ref()?;
        self.writers
            .iter()
            .filter_map(|&k| self.conns[k].rx.writer.as_deref())
            .filter_map(|w| plan.next_due(w))
            .min()
    }

    /// Sends every update due, one write per writer.
    pub(super) fn send_updates(&mut self, at: Instant, phase: Phase) {
        if !matches!(phase, Phase::Load | Phase::Drain | Phase::Away) {
            return;
        }
        let Some(plan) = self.plan else {
            return;
        };
        for i in 0..self.writers.len() {
            let key = self.writers[i];
            let conn = &mut self.conns[key];
            if conn.state != State::Open || !conn.rx.joined {
                continue;
            }
            let Some(writer) = conn.rx.writer.as_mut() else {
                continue;
            };
            let rng = &mut self.rng;
            let mask = || next_mask(rng);
            let room_min = self.control.room_min(conn.rx.room);
            let sent = plan.send_due(
                writer,
                room_min,
                at,
                &mut conn.outbuf,
                mask,
                &mut self.scratch,
            );
            if sent > 0 {
                conn.last_sent = at;
                self.flush(key);
            }
        }
    }

    /// Tells the driver about writers with nothing more to send and nothing pending.
    fn settle_writers(&mut self, at: Instant, phase: Phase) {
        if !matches!(phase, Phase::Load | Phase::Drain | Phase::Away) {
            return;
        }
        let Some(plan) = self.plan else {
            return;
        };
        for &key in &self.writers {
            let conn = &mut self.conns[key];
            let open = conn.state == State::Open;
            let Some(writer) = conn.rx.writer.as_mut() else {
                continue;
            };
            let done = plan.done_sending(writer, at) && writer.book.pending() == 0;
            if !writer.settled && (done || !open) {
                writer.settled = true;
                self.control.writers_settled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn housekeeping(&mut self, at: Instant, phase: Phase) {
        if let Some(ticks) = self.rec.ticks.as_mut().filter(|t| t.is_waiting()) {
            ticks.retry(&mut self.rec.violations);
        }
        for (room, &max) in self.rec.room_max.iter().enumerate() {
            self.control.room_max[room].fetch_max(max, Ordering::Relaxed);
        }
        self.settle_writers(at, phase);
        self.publish_progress();
        if self.load.rate == Rate::Unlimited {
            self.publish_room_min();
        }
        if matches!(phase, Phase::Drain | Phase::Back | Phase::Away) {
            self.publish_current();
        }
        if let Some(every) = self.load.heartbeat {
            if at >= self.next_heartbeats {
                self.next_heartbeats = at + Duration::from_secs(1);
                for key in 0..self.conns.len() {
                    let conn = &self.conns[key];
                    if conn.state == State::Open && at >= conn.last_sent + every {
                        self.heartbeat(key);
                    }
                }
            }
        }
    }

    fn publish_progress(&mut self) {
        let m = &self.rec.metrics;
        let sent: u64 = self
            .writers
            .iter()
            .filter_map(|&k| self.conns[k].rx.writer.as_ref())
            .map(|w| w.book.sent())
            .sum();
        let now = [
            m.window_ops,
            m.window_frames,
            m.window_bytes,
            sent,
            self.received,
        ];
        let p = &self.control.progress;
        for (i, counter) in [&p.ops, &p.frames, &p.bytes, &p.updates, &p.received]
            .into_iter()
            .enumerate()
        {
            counter.fetch_add(now[i] - self.published[i], Ordering::Relaxed);
        }
        self.published = now;
    }

    /// Publishes the lowest revision of this thread's open clients, room by room.
    fn publish_room_min(&mut self) {
        let mut mins = vec![u64::MAX; self.load.rooms];
        for conn in &self.conns {
            if conn.state == State::Open {
                let rev = conn.rx.stream.rev().unwrap_or(0);
                let min = &mut mins[conn.rx.room];
                *min = (*min).min(rev);
            }
        }
        for (room, min) in mins.into_iter().enumerate() {
            self.control.room_min[self.index][room].store(min, Ordering::Relaxed);
        }
    }

    /// Tells the driver whether every open client of this thread is at its room's head.
    fn publish_current(&self) {
        let sum = self.control.room_max_sum();
        let current = self.conns.iter().all(|c| {
            c.state != State::Open
                || c.rx.stream.rev().is_some_and(|rev| {
                    rev >= self.control.room_max[c.rx.room].load(Ordering::Relaxed)
                })
        }) && self.conns.iter().all(|c| c.state != State::Waiting);
        let value = if current { sum } else { u64::MAX };
        self.control.current_at[self.index].store(value, Ordering::Relaxed);
    }

    /// The game scenario: the frames still waiting for their flush get a grace period
    /// (the game loop records a flush just after it), then the thread's figures are kept.
    fn finish_ticks(&mut self) {
        let Some(mut ticks) = self.rec.ticks.take() else {
            return;
        };
        let deadline = now() + TICK_GRACE;
        while ticks.is_waiting() && now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            ticks.retry(&mut self.rec.violations);
        }
        ticks.give_up(&mut self.rec.violations);
        ticks.metrics.client_frames = self.conns.iter().map(|c| c.rx.window_deltas).collect();
        self.rec.metrics.ticks = ticks.metrics;
    }

    pub(super) fn finish(mut self) -> ThreadReport {
        self.finish_ticks();
        let mut writers = Vec::new();
        for conn in &self.conns {
            if let Some(writer) = &conn.rx.writer {
                let (all, measured, lost) = writer.book.finish(5);
                for seq in lost {
                    let index = writer.index;
                    self.rec.violations.add("lost_ack", || {
                        format!(
                            "writer {index}: update {seq} was neither acknowledged nor rejected"
                        )
                    });
                }
                for _ in 5..all.lost {
                    self.rec.violations.add("lost_ack", String::new);
                }
                writers.push(WriterReport {
                    room: conn.rx.room,
                    all,
                    measured,
                });
            }
            let target = self.control.room_max[conn.rx.room].load(Ordering::Relaxed);
            let rev = conn.rx.stream.rev().unwrap_or(0);
            if conn.state == State::Open && rev < target {
                let client = conn.rx.client;
                self.rec.violations.add("behind_at_end", || {
                    format!("client {client} ended at rev {rev}; its room reached {target}")
                });
            }
        }
        ThreadReport {
            metrics: self.rec.metrics,
            violations: self.rec.violations,
            writers,
        }
    }
}
