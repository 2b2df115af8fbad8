//! Where a connection keeps the bytes of a frame that has not all arrived yet, and the
//! thread's spare buffers for the large ones.
//!
//! Most frames arrive whole in one read and are handled in the thread's read buffer; a
//! connection keeps bytes only for a frame cut by the end of a read. In a connect storm
//! those are the snapshots, up to a megabyte each at 10,000 participants, and every
//! joiner gets one. Kept in a fresh `Vec` each, grown by doubling, they cost the
//! generator a copy per doubling and a page fault per 4 KiB touched for the first time
//! (the kernel zeroes each page): 16 % of the receiving thread's time in a 10,000-client
//! storm (`perf record`, `clear_page_erms` and `exc_page_fault`), and a resident size
//! of gigabytes, since each connection kept its largest buffer for good. So a partial
//! frame's buffer is sized once from its header, a large buffer goes back to the
//! thread's spares when its frame is done, and the next partial frame takes a spare whose
//! pages are already there.

use deltasync::frame;

/// A buffer of at most this capacity stays with its connection when it empties: the
/// common partial frame (a few operations cut by a read) needs no spare.
const KEEP_WITH_CONNECTION: usize = 64 * 1024;
/// Spares kept per thread: about as many as partial snapshots in flight at once (the
/// storm's 64 upgrades in flight), so their pages are reused rather than given back.
const MAX_SPARES: usize = 64;

/// A thread's spare buffers for partial frames.
#[derive(Debug, Default)]
pub(super) struct Spares {
    buffers: Vec<Vec<u8>>,
}

impl Spares {
    /// Appends `bytes`, just read, to `held`, the connection's bytes of a frame not all
    /// there yet (or nothing): the buffer is sized for the whole frame as soon as its
    /// header is known, so the frame's bytes are copied once, and a large one is taken
    /// from the spares, whose pages are already there.
    pub(super) fn append(&mut self, held: &mut Vec<u8>, bytes: &[u8]) {
        let start = if held.is_empty() {
            bytes
        } else {
            held.as_slice()
        };
        let need = whole_frame_len(start)
            .unwrap_or(0)
            .max(held.len() + bytes.len());
        if held.capacity() < need {
            if need > KEEP_WITH_CONNECTION {
                let mut spare = self.take(need);
                spare.extend_from_slice(held);
                self.give(std::mem::replace(held, spare));
            } else {
                held.reserve(need - held.len());
            }
        }
        held.extend_from_slice(bytes);
    }

    /// Takes back a connection's buffer once it holds nothing: a large one becomes a
    /// spare, a small one stays with its connection.
    pub(super) fn settle(&mut self, held: &mut Vec<u8>) {
        if held.is_empty() && held.capacity() > KEEP_WITH_CONNECTION {
            self.give(std::mem::take(held));
        }
    }

    /// The smallest spare of at least `need` bytes, else a new buffer of `need`.
    fn take(&mut self, need: usize) -> Vec<u8> {
        let fitting = self
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= need)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        match fitting {
            Some(i) => self.buffers.swap_remove(i),
            None => Vec::with_capacity(need),
        }
    }

    fn give(&mut self, mut buffer: Vec<u8>) {
        if buffer.capacity() <= KEEP_WITH_CONNECTION {
            return;
        }
        buffer.clear();
        if self.buffers.len() < MAX_SPARES {
            self.buffers.push(buffer);
        } else if let Some(smallest) = self
            .buffers
            .iter_mut()
            .min_by_key(|b| b.capacity())
            .filter(|b| b.capacity() < buffer.capacity())
        {
            // Full: the larger buffer is the more useful one to keep.
            *smallest = buffer;
        }
    }

    /// How many spares the thread holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buffers.len()
    }
}

/// The length of the whole frame whose first bytes `bytes` are, once its header is all
/// there.
fn whole_frame_len(bytes: &[u8]) -> Option<usize> {
    let (header, payload) = frame::lengths(bytes)?;
    usize::try_from(payload).ok()?.checked_add(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first `cut` bytes of an unmasked text frame of `len` payload bytes.
    fn frame_start(len: usize, cut: usize) -> Vec<u8> {
        let mut whole = Vec::new();
        frame::put_frame(&mut whole, frame::TEXT, &vec![b'x'; len], None);
        whole.truncate(cut);
        whole
    }

    #[test]
    fn a_partial_frame_is_held_in_a_buffer_of_its_whole_length() {
        let mut spares = Spares::default();
        let mut held = Vec::new();
        let start = frame_start(1 << 20, 1000);
        spares.append(&mut held, &start);
        assert_eq!(held, start);
        assert!(held.capacity() >= (1 << 20) + 10);
        // The rest arrives in pieces: the buffer never moves.
        let pages = held.as_ptr();
        let rest = &frame_start(1 << 20, (1 << 20) + 10)[1000..];
        for piece in rest.chunks(256 * 1024) {
            spares.append(&mut held, piece);
        }
        assert_eq!((held.as_ptr(), held.len()), (pages, (1 << 20) + 10));
    }

    #[test]
    fn a_large_buffer_is_reused_by_the_next_partial_frame() {
        let mut spares = Spares::default();
        let mut held = Vec::new();
        spares.append(&mut held, &frame_start(1 << 20, 1000));
        let pages = held.as_ptr();
        held.clear();
        spares.settle(&mut held);
        assert_eq!((held.capacity(), spares.len()), (0, 1));
        let mut other = Vec::new();
        spares.append(&mut other, &frame_start(512 * 1024, 300));
        assert_eq!((other.as_ptr(), spares.len()), (pages, 0));
    }

    #[test]
    fn a_small_buffer_stays_with_its_connection() {
        let mut spares = Spares::default();
        let mut held = Vec::new();
        spares.append(&mut held, &frame_start(4000, 100));
        held.clear();
        spares.settle(&mut held);
        assert!(held.capacity() >= 4000);
        assert_eq!(spares.len(), 0);
    }

    #[test]
    fn a_header_cut_short_holds_what_came() {
        let mut spares = Spares::default();
        let mut held = Vec::new();
        // Two bytes of a frame with a 64-bit length: the length is not there yet.
        let start = frame_start(70_000, 2);
        spares.append(&mut held, &start);
        assert_eq!(held, start);
        spares.append(&mut held, &frame_start(70_000, 12)[2..]);
        spares.append(&mut held, b"x");
        assert!(held.capacity() >= 70_010);
        assert_eq!(held.len(), 13);
    }

    #[test]
    fn spares_are_bounded_and_keep_the_largest() {
        let mut spares = Spares::default();
        for i in 0..MAX_SPARES + 3 {
            spares.give(Vec::with_capacity(KEEP_WITH_CONNECTION + 1 + i));
        }
        assert_eq!(spares.len(), MAX_SPARES);
        let smallest = spares.buffers.iter().map(Vec::capacity).min();
        assert_eq!(smallest, Some(KEEP_WITH_CONNECTION + 1 + 3));
    }
}
