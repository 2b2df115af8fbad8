//! What the generator checks while it measures: each connection's stream of revisions
//! ([`Stream`], invariants 1 and 5 of the protocol) and each writer's acknowledgements
//! ([`AckBook`], invariant 3). A violation is data the server lost, duplicated or
//! reordered; the run reports it and exits non-zero.
//!
//! # Acknowledgements
//!
//! An update is acknowledged when an operation carrying its `clientReqId` reaches the
//! writer's own connection, or rejected by an `ERROR` naming it in `details.clientReqId`.
//! Exactly one of the two must happen, once. A `REVISION_GAP` and snapshot on the
//! writer's connection count as delivering every update still pending at that moment
//! (the snapshot may contain it: the generator cannot tell without the state); such an
//! update is "covered", and an operation acknowledging it later is still accepted once.

use std::collections::BTreeMap;
use std::fmt;

/// Why a stream broke an invariant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Break {
    /// `SYNC.DELTAS` before any snapshot.
    DeltasBeforeSnapshot { from: u64 },
    /// `fromRev` is not where the stream was.
    NotContiguous { at: u64, from: u64 },
    /// `toRev` is below `fromRev`.
    Backwards { from: u64, to: u64 },
    /// An operation's revision is not the next one.
    OpOutOfOrder { expected: u64, got: u64 },
    /// The operations do not cover `fromRev+1 ..= toRev` exactly.
    OpsDoNotCover { from: u64, to: u64, last: u64 },
    /// Something other than a snapshot followed a `REVISION_GAP`.
    NoSnapshotAfterGap,
    /// A snapshot below the revision the stream had reached.
    SnapshotBackwards { at: u64, rev: u64 },
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::DeltasBeforeSnapshot { from } => {
                write!(f, "SYNC.DELTAS from {from} before any snapshot")
            }
            Self::NotContiguous { at, from } => {
                write!(f, "SYNC.DELTAS from {from} while the stream is at {at}")
            }
            Self::Backwards { from, to } => write!(f, "SYNC.DELTAS from {from} to {to}"),
            Self::OpOutOfOrder { expected, got } => {
                write!(f, "operation rev {got} where {expected} was due")
            }
            Self::OpsDoNotCover { from, to, last } => write!(
                f,
                "SYNC.DELTAS {from}->{to} carries operations up to {last} only"
            ),
            Self::NoSnapshotAfterGap => f.write_str("no SYNC.SNAPSHOT right after REVISION_GAP"),
            Self::SnapshotBackwards { at, rev } => {
                write!(f, "SYNC.SNAPSHOT at {rev} while the stream is at {at}")
            }
        }
    }
}

impl Break {
    /// The kind, as counted in the report.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::NoSnapshotAfterGap => "no_snapshot_after_gap",
            Self::SnapshotBackwards { .. } => "snapshot_backwards",
            _ => "not_contiguous",
        }
    }
}

/// One connection's position in its room's history, checked message by message.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stream {
    rev: Option<u64>,
    after_gap: bool,
    next_op: u64,
    deltas: Option<(u64, u64)>,
}

impl Stream {
    /// The revision the stream has reached (`None` before the first snapshot).
    pub(crate) fn rev(&self) -> Option<u64> {
        self.rev
    }

    /// A `SYNC.SNAPSHOT` at `rev`: returns how many revisions it skipped.
    pub(crate) fn snapshot(&mut self, rev: u64) -> Result<u64, Break> {
        self.after_gap = false;
        let at = self.rev.replace(rev);
        match at {
            Some(at) if rev < at => Err(Break::SnapshotBackwards { at, rev }),
            Some(at) => Ok(rev - at),
            None => Ok(0),
        }
    }

    /// A `REVISION_GAP`: the next message must be a snapshot.
    pub(crate) fn gap(&mut self) -> Result<(), Break> {
        if std::mem::replace(&mut self.after_gap, true) {
            Err(Break::NoSnapshotAfterGap)
        } else {
            Ok(())
        }
    }

    /// Any message that is neither a snapshot nor deltas nor a gap.
    pub(crate) fn other(&mut self) -> Result<(), Break> {
        if std::mem::take(&mut self.after_gap) {
            Err(Break::NoSnapshotAfterGap)
        } else {
            Ok(())
        }
    }

    /// The start of a `SYNC.DELTAS from -> to`; its operations follow with [`Stream::op`]
    /// and it ends with [`Stream::end_deltas`]. After a break the stream resynchronises
    /// at `from`, so that one fault is reported once.
    pub(crate) fn begin_deltas(&mut self, from: u64, to: u64) -> Result<(), Break> {
        self.next_op = from + 1;
        self.deltas = Some((from, to));
        let at = self.rev.replace(from);
        if std::mem::take(&mut self.after_gap) {
            return Err(Break::NoSnapshotAfterGap);
        }
        match at {
            None => Err(Break::DeltasBeforeSnapshot { from }),
            Some(at) if at != from => Err(Break::NotContiguous { at, from }),
            Some(_) if to < from => Err(Break::Backwards { from, to }),
            Some(_) => Ok(()),
        }
    }

    /// One operation of the current deltas.
    pub(crate) fn op(&mut self, rev: u64) -> Result<(), Break> {
        let expected = self.next_op;
        self.next_op = rev + 1;
        if rev == expected {
            Ok(())
        } else {
            Err(Break::OpOutOfOrder { expected, got: rev })
        }
    }

    /// The end of the current deltas: the stream is at `toRev`.
    pub(crate) fn end_deltas(&mut self) -> Result<(), Break> {
        let Some((from, to)) = self.deltas.take() else {
            return Ok(());
        };
        self.rev = Some(to.max(from));
        let last = self.next_op - 1;
        if last == to || to < from {
            Ok(())
        } else {
            Err(Break::OpsDoNotCover { from, to, last })
        }
    }
}

/// Why an acknowledgement is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckFault {
    /// Acknowledged for an update never sent.
    Unsent,
    /// Acknowledged a second time.
    Duplicate,
    /// Acknowledged after it was rejected, or rejected after it was acknowledged.
    AckedAndRejected,
}

impl AckFault {
    /// The kind, as counted in the report.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Unsent => "ack_of_unsent_update",
            Self::Duplicate => "duplicate_ack",
            Self::AckedAndRejected => "acked_and_rejected",
        }
    }
}

const PENDING: u8 = 0;
const COVERED: u8 = 1;
const ACKED: u8 = 2;
const REJECTED: u8 = 3;
const STATE: u8 = 0b11;
const MEASURED: u8 = 0b100;

/// One writer's updates and what became of each.
#[derive(Debug, Clone, Default)]
pub(crate) struct AckBook {
    /// One byte per update: its state and whether it is in the measured window.
    updates: Vec<u8>,
    pending: u64,
    first_pending: usize,
}

/// How a writer's updates ended, for all of them and for the measured ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AckCounts {
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    pub(crate) rejected: u64,
    pub(crate) covered: u64,
    pub(crate) lost: u64,
}

impl AckCounts {
    fn count(&mut self, state: u8) {
        self.sent += 1;
        match state {
            ACKED => self.acked += 1,
            REJECTED => self.rejected += 1,
            COVERED => self.covered += 1,
            _ => self.lost += 1,
        }
    }

    /// Adds another writer's counts.
    pub(crate) fn add(&mut self, other: &AckCounts) {
        self.sent += other.sent;
        self.acked += other.acked;
        self.rejected += other.rejected;
        self.covered += other.covered;
        self.lost += other.lost;
    }
}

impl AckBook {
    /// Records a new update; returns its sequence number.
    pub(crate) fn send(&mut self, measured: bool) -> u64 {
        self.updates
            .push(PENDING | if measured { MEASURED } else { 0 });
        self.pending += 1;
        self.updates.len() as u64 - 1
    }

    /// Updates sent and neither acknowledged, rejected nor covered yet.
    pub(crate) fn pending(&self) -> u64 {
        self.pending
    }

    /// How many updates were sent.
    pub(crate) fn sent(&self) -> u64 {
        self.updates.len() as u64
    }

    fn settle(&mut self, seq: u64, to: u8) -> Result<bool, AckFault> {
        let slot = usize::try_from(seq)
            .ok()
            .and_then(|i| self.updates.get_mut(i))
            .ok_or(AckFault::Unsent)?;
        let measured = *slot & MEASURED != 0;
        match (*slot & STATE, to) {
            (PENDING, _) => self.pending -= 1,
            (COVERED, _) => {}
            (ACKED, ACKED) | (REJECTED, REJECTED) => return Err(AckFault::Duplicate),
            _ => return Err(AckFault::AckedAndRejected),
        }
        *slot = to | (*slot & MEASURED);
        Ok(measured)
    }

    /// An operation carrying update `seq` reached the writer: returns whether the update
    /// is a measured one.
    pub(crate) fn ack(&mut self, seq: u64) -> Result<bool, AckFault> {
        self.settle(seq, ACKED)
    }

    /// An `ERROR` named update `seq`: returns whether the update is a measured one.
    pub(crate) fn reject(&mut self, seq: u64) -> Result<bool, AckFault> {
        self.settle(seq, REJECTED)
    }

    /// A snapshot after a `REVISION_GAP` reached the writer: every pending update counts
    /// as delivered.
    pub(crate) fn snapshot(&mut self) {
        for slot in &mut self.updates[self.first_pending..] {
            if *slot & STATE == PENDING {
                *slot = COVERED | (*slot & MEASURED);
            }
        }
        self.first_pending = self.updates.len();
        self.pending = 0;
    }

    /// The counts (all updates, measured updates) and the first lost sequence numbers.
    pub(crate) fn finish(&self, max_lost: usize) -> (AckCounts, AckCounts, Vec<u64>) {
        let (mut all, mut measured) = (AckCounts::default(), AckCounts::default());
        let mut lost = Vec::new();
        for (seq, &slot) in self.updates.iter().enumerate() {
            all.count(slot & STATE);
            if slot & MEASURED != 0 {
                measured.count(slot & STATE);
            }
            if slot & STATE == PENDING && lost.len() < max_lost {
                lost.push(seq as u64);
            }
        }
        (all, measured, lost)
    }
}

/// How many examples of violations a report keeps.
const EXAMPLES: usize = 20;

/// Every violation of a run: a count per kind and the first few in words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Violations {
    pub(crate) by_kind: BTreeMap<&'static str, u64>,
    pub(crate) examples: Vec<String>,
}

impl Violations {
    /// Records one violation of `kind`, described by `what` (built only if kept).
    pub(crate) fn add(&mut self, kind: &'static str, what: impl FnOnce() -> String) {
        *self.by_kind.entry(kind).or_default() += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(what());
        }
    }

    /// How many violations in all.
    pub(crate) fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    /// Adds another set of violations.
    pub(crate) fn merge(&mut self, other: Violations) {
        for (kind, n) in other.by_kind {
            *self.by_kind.entry(kind).or_default() += n;
        }
        let room = EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deltas(stream: &mut Stream, from: u64, to: u64, ops: &[u64]) -> Vec<Break> {
        let mut faults = Vec::new();
        faults.extend(stream.begin_deltas(from, to).err());
        for &rev in ops {
            faults.extend(stream.op(rev).err());
        }
        faults.extend(stream.end_deltas().err());
        faults
    }

    #[test]
    fn a_contiguous_stream_passes() {
        let mut stream = Stream::default();
        assert_eq!(stream.snapshot(5), Ok(0));
        assert!(deltas(&mut stream, 5, 7, &[6, 7]).is_empty());
        assert!(deltas(&mut stream, 7, 7, &[]).is_empty());
        assert_eq!(stream.gap(), Ok(()));
        assert_eq!(stream.snapshot(20), Ok(13));
        assert!(deltas(&mut stream, 20, 21, &[21]).is_empty());
        assert_eq!(stream.rev(), Some(21));
    }

    #[test]
    fn a_non_contiguous_stream_is_caught_once() {
        let mut stream = Stream::default();
        assert_eq!(
            deltas(&mut stream, 1, 2, &[2]),
            [Break::DeltasBeforeSnapshot { from: 1 }]
        );
        stream.snapshot(2).unwrap();
        // A skipped revision range: 3 is missing.
        assert_eq!(
            deltas(&mut stream, 3, 4, &[4]),
            [Break::NotContiguous { at: 2, from: 3 }]
        );
        // Resynchronised: the next deltas are checked from 4.
        assert!(deltas(&mut stream, 4, 5, &[5]).is_empty());
        // An operation missing inside a message, and one repeated.
        assert_eq!(
            deltas(&mut stream, 5, 8, &[6, 8]),
            [Break::OpOutOfOrder {
                expected: 7,
                got: 8
            }]
        );
        assert_eq!(
            deltas(&mut stream, 8, 10, &[9, 9, 10]),
            [Break::OpOutOfOrder {
                expected: 10,
                got: 9
            }]
        );
        assert_eq!(
            deltas(&mut stream, 10, 12, &[11]),
            [Break::OpsDoNotCover {
                from: 10,
                to: 12,
                last: 11
            }]
        );
        assert_eq!(stream.rev(), Some(12));
        assert_eq!(
            stream.snapshot(3),
            Err(Break::SnapshotBackwards { at: 12, rev: 3 })
        );
    }

    #[test]
    fn a_gap_must_be_followed_by_a_snapshot() {
        let mut stream = Stream::default();
        stream.snapshot(1).unwrap();
        stream.gap().unwrap();
        assert_eq!(stream.other(), Err(Break::NoSnapshotAfterGap));
        stream.gap().unwrap();
        assert_eq!(stream.gap(), Err(Break::NoSnapshotAfterGap));
        assert_eq!(deltas(&mut stream, 1, 2, &[2]), [Break::NoSnapshotAfterGap]);
    }

    #[test]
    fn acks_must_come_exactly_once() {
        let mut book = AckBook::default();
        let (a, b, c, d) = (
            book.send(false),
            book.send(true),
            book.send(true),
            book.send(true),
        );
        assert_eq!(book.pending(), 4);
        assert_eq!(book.ack(a), Ok(false));
        assert_eq!(book.ack(b), Ok(true));
        // A duplicate ack.
        assert_eq!(book.ack(b), Err(AckFault::Duplicate));
        assert_eq!(book.reject(c), Ok(true));
        assert_eq!(book.ack(c), Err(AckFault::AckedAndRejected));
        assert_eq!(book.ack(99), Err(AckFault::Unsent));
        // A lost ack: d never comes back.
        let (all, measured, lost) = book.finish(10);
        assert_eq!(lost, [d]);
        assert_eq!(
            all,
            AckCounts {
                sent: 4,
                acked: 2,
                rejected: 1,
                covered: 0,
                lost: 1
            }
        );
        assert_eq!((measured.sent, measured.acked, measured.lost), (3, 1, 1));
    }

    #[test]
    fn a_snapshot_covers_what_is_pending() {
        let mut book = AckBook::default();
        let (a, b) = (book.send(true), book.send(true));
        book.ack(a).unwrap();
        book.snapshot();
        assert_eq!(book.pending(), 0);
        let c = book.send(true);
        // A covered update may still be acknowledged once by its operation.
        assert_eq!(book.ack(b), Ok(true));
        assert_eq!(book.ack(b), Err(AckFault::Duplicate));
        book.snapshot();
        let (all, _, lost) = book.finish(10);
        assert!(lost.is_empty());
        assert_eq!((all.acked, all.covered, all.lost), (2, 1, 0));
        let _ = c;
    }

    #[test]
    fn violations_count_every_one_and_keep_a_few() {
        let mut v = Violations::default();
        for i in 0..30 {
            v.add("duplicate_ack", || format!("#{i}"));
        }
        let mut other = Violations::default();
        other.add("lost_ack", || "lost".into());
        v.merge(other);
        assert_eq!(v.total(), 31);
        assert_eq!(v.examples.len(), EXAMPLES);
        assert_eq!(v.by_kind["lost_ack"], 1);
    }
}
