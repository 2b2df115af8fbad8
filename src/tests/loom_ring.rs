//! Loom model of the ring: one writer and two readers across wrap-around and overwrite,
//! and a reader across a restart (`Ring::restart_at`).
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --lib --release`.
//! Every read must return exactly the operation of the revision asked for, or report it
//! gone with a `bufferFirstRev` at or above that revision (it really was overwritten);
//! never another revision's bytes, never "gone" for a revision still held.

use std::num::NonZeroUsize;

use bytes::Bytes;
use loom::sync::Arc;
use loom::thread;

use crate::ring::{ReadError, Ring};

fn op(rev: u64) -> Bytes {
    Bytes::from(vec![rev as u8; 3])
}

/// Reads every revision up to the head it sees, one by one and as a range, and checks
/// each answer against the rules above.
fn read_and_check(ring: &Ring) {
    let head = ring.head();
    for rev in 1..=head {
        match ring.get(rev) {
            Ok(bytes) => assert_eq!(bytes, op(rev), "torn or foreign read of {rev}"),
            Err(ReadError::Gone { buffer_first_rev }) => {
                assert!(
                    buffer_first_rev >= rev,
                    "{rev} reported gone but still held"
                );
            }
            Err(e) => panic!("revision {rev} at or below head {head}: {e}"),
        }
    }
    let from = head.saturating_sub(2);
    let mut out = Vec::new();
    match ring.read_range(from, head, &mut out) {
        Ok(()) => {
            let expected: Vec<Bytes> = (from + 1..=head).map(op).collect();
            assert_eq!(out, expected);
        }
        Err(ReadError::Gone { buffer_first_rev }) => {
            assert!(
                buffer_first_rev > from,
                "range from {from} reported gone but held"
            );
            assert!(out.is_empty());
        }
        Err(e) => panic!("range ({from}, {head}]: {e}"),
    }
}

#[test]
fn one_writer_two_readers_across_wraparound_and_overwrite() {
    loom::model(|| {
        // Capacity 2 and three appends: revision 3 overwrites revision 1's slot.
        let ring = Arc::new(Ring::new(NonZeroUsize::new(2).unwrap()));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || read_and_check(&ring))
            })
            .collect();
        for rev in 1..=3 {
            assert_eq!(ring.append(op(rev)), rev);
        }
        for reader in readers {
            reader.join().unwrap();
        }
        assert_eq!(ring.buffer_first_rev(), 1);
    });
}

#[test]
fn capacity_one_reader_never_sees_a_foreign_revision() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(NonZeroUsize::new(1).unwrap()));
        let reader = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || read_and_check(&ring))
        };
        for rev in 1..=2 {
            ring.append(op(rev));
        }
        read_and_check(&ring);
        reader.join().unwrap();
    });
}

#[test]
fn a_reader_across_a_restart_never_takes_a_skipped_revision_for_held() {
    loom::model(|| {
        // Revision 1, then the ring restarts at 3 (2 and 3 are never held) and takes 4.
        let ring = Arc::new(Ring::new(NonZeroUsize::new(2).unwrap()));
        ring.append(op(1));
        let reader = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || read_and_check(&ring))
        };
        ring.restart_at(3);
        assert_eq!(ring.append(op(4)), 4);
        reader.join().unwrap();
        assert_eq!(ring.buffer_first_rev(), 3);
    });
}
