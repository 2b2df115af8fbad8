//! The writers' schedule and their `UPDATE` messages.
//!
//! With a fixed `--rate R` and `W` writers, writer `w` sends its `k`-th update at
//! `start + w/R + k·W/R` seconds: the writers interleave evenly. When the loop wakes
//! late, every update already due is sent at once, each with its *scheduled* time in its
//! id, so the latency of a stalled generator shows instead of hiding (no coordinated
//! omission). With `--rate unlimited` each writer keeps at most `--in-flight` updates
//! that have not yet reached every client of its room (unacknowledged, or acknowledged at
//! a revision some client of the room has not reached), and sends the next as soon as
//! one has: a closed loop on the slowest client, so "flat out" is what the whole room
//! keeps up with. Its scheduled time is then the moment it was sent.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::check::AckBook;
use super::id::BenchId;
use super::receive::Writer;
use super::scenario::{Load, Rate};
use deltasync::frame;

/// A writer for client `client` (writers are clients `0..writers`).
pub(crate) fn new_writer(load: &Load, client: usize) -> Box<Writer> {
    let (interval, offset) = match load.rate {
        Rate::PerSecond(rate) => (load.writers as f64 / rate, client as f64 / rate),
        Rate::Unlimited => (0.0, 0.0),
    };
    let mut name = format!("w{client}-");
    while name.len() < load.payload_bytes {
        name.push('x');
    }
    name.truncate(load.payload_bytes);
    Box::new(Writer {
        index: u32::try_from(client).unwrap_or(u32::MAX),
        book: AckBook::default(),
        name,
        interval,
        offset,
        next: 0,
        quota: 0,
        settled: false,
        unfinished: (load.rate == Rate::Unlimited).then(Default::default),
    })
}

/// What an `UPDATE` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// A presence patch setting the writer's (padded) name.
    Name,
    /// An arena move of the writer's avatar, one step along x, back and forth.
    Move,
}

/// What sending an update needs besides the writer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// What each update carries.
    pub(crate) body: Body,
    pub(crate) run: u32,
    pub(crate) start: Instant,
    /// No update is scheduled at or after this.
    pub(crate) end: Instant,
    pub(crate) rate: Rate,
    pub(crate) in_flight: usize,
    /// Updates scheduled in `[from, to)` µs after the start are measured.
    pub(crate) measured_us: (u64, u64),
    /// Reconnect runs: send the writer's quota, closed-loop, whatever the rate.
    pub(crate) quota_mode: bool,
}

impl Plan {
    /// When the writer's next scheduled update is due (fixed rates only).
    pub(crate) fn next_due(&self, writer: &Writer) -> Option<Instant> {
        match self.rate {
            Rate::PerSecond(_) if !self.quota_mode => {
                let due = self.start
                    + Duration::from_secs_f64(writer.offset + writer.next as f64 * writer.interval);
                (due < self.end).then_some(due)
            }
            _ => None,
        }
    }

    /// Whether the writer will send nothing more.
    pub(crate) fn done_sending(&self, writer: &Writer, at: Instant) -> bool {
        if self.quota_mode {
            return writer.quota == 0;
        }
        match self.rate {
            Rate::PerSecond(_) => self.next_due(writer).is_none(),
            Rate::Unlimited => at >= self.end,
        }
    }

    /// Appends to `out` every update of `writer` due at `at`; returns how many.
    /// `room_min` is the lowest revision any client of the writer's room has reached.
    pub(crate) fn send_due(
        &self,
        writer: &mut Writer,
        room_min: u64,
        at: Instant,
        out: &mut Vec<u8>,
        mut mask: impl FnMut() -> [u8; 4],
        scratch: &mut Vec<u8>,
    ) -> u64 {
        let mut sent = 0;
        if let Some(unfinished) = &mut writer.unfinished {
            while unfinished.front().is_some_and(|&rev| rev <= room_min) {
                unfinished.pop_front();
            }
        }
        loop {
            let scheduled = if self.quota_mode {
                if writer.quota == 0 || writer.book.pending() >= self.in_flight as u64 {
                    break;
                }
                writer.quota -= 1;
                at
            } else {
                match self.rate {
                    Rate::PerSecond(_) => match self.next_due(writer) {
                        Some(due) if due <= at => {
                            writer.next += 1;
                            due
                        }
                        _ => break,
                    },
                    Rate::Unlimited => {
                        let unfinished = writer.unfinished.as_ref().map_or(0, VecDeque::len);
                        let open = writer.book.pending() + unfinished as u64;
                        if at >= self.end || open >= self.in_flight as u64 {
                            break;
                        }
                        at
                    }
                }
            };
            self.update(writer, scheduled, scratch);
            frame::put_frame(out, frame::TEXT, scratch, Some(mask()));
            sent += 1;
        }
        sent
    }

    /// Writes one `UPDATE` of `writer` scheduled at `scheduled` into `scratch`.
    fn update(&self, writer: &mut Writer, scheduled: Instant, scratch: &mut Vec<u8>) {
        let at_us = scheduled.saturating_duration_since(self.start).as_micros() as u64;
        let measured = (self.measured_us.0..self.measured_us.1).contains(&at_us);
        let seq = writer.book.send(measured);
        let mut id = String::with_capacity(48);
        BenchId {
            run: self.run,
            writer: writer.index,
            seq,
            at_us,
        }
        .write(&mut id);
        scratch.clear();
        match self.body {
            Body::Name => {
                scratch.extend_from_slice(
                    br#"{"type":"UPDATE","meta":{},"payload":{"patch":{"name":""#,
                );
                scratch.extend_from_slice(writer.name.as_bytes());
                scratch.extend_from_slice(br#""},"clientReqId":""#);
            }
            Body::Move => {
                let dx: &[u8] = if seq % 2 == 0 { b"1" } else { b"-1" };
                scratch
                    .extend_from_slice(br#"{"type":"UPDATE","meta":{},"payload":{"move":{"dx":"#);
                scratch.extend_from_slice(dx);
                scratch.extend_from_slice(br#","dy":0},"clientReqId":""#);
            }
        }
        scratch.extend_from_slice(id.as_bytes());
        scratch.extend_from_slice(br#""}}"#);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::control::now;
    use crate::bench::scan;

    fn plan(rate: Rate, start: Instant) -> Plan {
        Plan {
            body: Body::Name,
            run: 1,
            start,
            end: start + Duration::from_secs(1),
            rate,
            in_flight: 2,
            measured_us: (500_000, 1_000_000),
            quota_mode: false,
        }
    }

    fn texts(mut out: &[u8]) -> Vec<Vec<u8>> {
        let mut texts = Vec::new();
        while let Some(f) = frame::parse(out, 1 << 20).unwrap() {
            let mut body = out[f.payload_at..f.len()].to_vec();
            frame::apply_mask(&mut body, f.mask.unwrap());
            texts.push(body);
            out = &out[f.len()..];
        }
        texts
    }

    #[test]
    fn a_late_loop_sends_every_update_due_with_its_scheduled_time() {
        let start = now();
        let load_rate = Rate::PerSecond(10.0);
        let plan = plan(load_rate, start);
        let mut writer = Writer {
            interval: 0.1,
            offset: 0.0,
            ..*new_writer_for_test()
        };
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        // 0.35 s late: updates 0, 1, 2, 3 are due (at 0, 0.1, 0.2, 0.3 s).
        let at = start + Duration::from_millis(350);
        let sent = plan.send_due(&mut writer, 0, at, &mut out, || [9, 8, 7, 6], &mut scratch);
        assert_eq!(sent, 4);
        let texts = texts(&out);
        let scan::ClientMessage::Update {
            client_req_id,
            name,
        } = scan::client_message(&texts[3]).unwrap()
        else {
            panic!("an UPDATE")
        };
        assert_eq!(client_req_id, b"b1.0.3.300000");
        assert_eq!(name, Some(&b"w0-xxxx"[..]));
        // Nothing is scheduled at or after the end.
        let sent = plan.send_due(
            &mut writer,
            0,
            start + Duration::from_secs(5),
            &mut out,
            || [0; 4],
            &mut scratch,
        );
        assert_eq!(sent, 6);
        assert!(plan.done_sending(&writer, start));
        let (all, measured, _) = writer.book.finish(0);
        assert_eq!((all.sent, measured.sent), (10, 5));
    }

    #[test]
    fn game_moves_go_back_and_forth() {
        let start = now();
        let plan = Plan {
            body: Body::Move,
            ..plan(Rate::PerSecond(10.0), start)
        };
        let mut writer = Writer {
            interval: 0.1,
            offset: 0.0,
            ..*new_writer_for_test()
        };
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let at = start + Duration::from_millis(150);
        assert_eq!(
            plan.send_due(&mut writer, 0, at, &mut out, || [0; 4], &mut scratch),
            2
        );
        let texts = texts(&out);
        assert_eq!(
            String::from_utf8_lossy(&texts[1]),
            r#"{"type":"UPDATE","meta":{},"payload":{"move":{"dx":-1,"dy":0},"clientReqId":"b1.0.1.100000"}}"#
        );
        assert!(String::from_utf8_lossy(&texts[0]).contains(r#""dx":1,"#));
    }

    #[test]
    fn unlimited_keeps_the_window_full() {
        let start = now();
        let plan = plan(Rate::Unlimited, start);
        let mut writer = *new_writer_for_test();
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let mut send = |w: &mut Writer, room_min| {
            plan.send_due(w, room_min, start, &mut out, || [0; 4], &mut scratch)
        };
        assert_eq!(send(&mut writer, 0), 2);
        assert_eq!(send(&mut writer, 0), 0);
        // Acknowledged at rev 7, but a client of the room is still at 6: still in flight.
        writer.book.ack(0).unwrap();
        writer.unfinished.as_mut().unwrap().push_back(7);
        assert_eq!(send(&mut writer, 6), 0);
        assert_eq!(send(&mut writer, 7), 1);
        assert!(plan.done_sending(&writer, start + Duration::from_secs(1)));
    }

    fn new_writer_for_test() -> Box<Writer> {
        let mut w = Box::new(Writer {
            index: 0,
            book: AckBook::default(),
            name: "w0-xxxx".into(),
            interval: 0.0,
            offset: 0.0,
            next: 0,
            quota: 0,
            settled: false,
            unfinished: Some(Default::default()),
        });
        w.settled = false;
        w
    }
}
