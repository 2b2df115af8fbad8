//! What a connection still has to write, written with one vectored write per flush.
//!
//! A connection's outbox holds whole WebSocket frames: text messages as shared `Bytes`
//! (the same buffer for every connection that gets the same message) with their frame
//! header computed here, and raw frames already encoded (control frames). A partial write
//! is remembered as an offset; nothing is copied per connection.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::Bytes;

use crate::frame::{self, Header};

/// How many frames one `writev` covers at most (two slices each).
const MAX_FRAMES_PER_WRITE: usize = 32;

/// One frame to write: a header (empty for raw frames) and a body.
#[derive(Debug)]
struct Frame {
    /// `None` for raw frames, which carry their own headers.
    header: Option<Header>,
    body: Bytes,
}

impl Frame {
    fn header(&self) -> &[u8] {
        self.header.as_ref().map_or(&[], Header::as_bytes)
    }

    fn len(&self) -> usize {
        self.header().len() + self.body.len()
    }
}

/// The frames a connection has yet to write.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    frames: VecDeque<Frame>,
    /// Bytes of the front frame (header included) already written.
    written: usize,
}

/// How a write attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    /// Everything was written.
    All,
    /// The socket could not take more; wait for it to be writable.
    Blocked,
}

impl Outbox {
    pub(super) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Queues a text message; its frame header is computed here.
    pub(super) fn push_text(&mut self, body: Bytes) {
        let header = Header::new(frame::TEXT, body.len(), None);
        self.frames.push_back(Frame {
            header: Some(header),
            body,
        });
    }

    /// Queues bytes that are already whole frames.
    pub(super) fn push_raw(&mut self, frames: Bytes) {
        if !frames.is_empty() {
            self.frames.push_back(Frame {
                header: None,
                body: frames,
            });
        }
    }

    /// Drops everything queued and releases the queue's memory.
    pub(super) fn clear(&mut self) {
        self.frames = VecDeque::new();
        self.written = 0;
    }

    /// Writes as much as `out` takes, with vectored writes of up to 32 frames each.
    ///
    /// # Errors
    ///
    /// Any I/O error other than `WouldBlock` and `Interrupted`.
    pub(super) fn write_to(&mut self, out: &mut impl Write) -> io::Result<Written> {
        while !self.frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_FRAMES_PER_WRITE * 2];
            let count = self.fill(&mut slices);
            match out.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Written::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Keep room for the common flush (one frame) so that writing allocates nothing,
        // but no more: an idle connection holds one slot, not the peak of a burst.
        self.frames.shrink_to(1);
        Ok(Written::All)
    }

    /// Fills `slices` with what is left to write of the first frames; returns how many.
    fn fill<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        // Only the front frame can be partly written.
        let mut skip = self.written;
        for frame in self.frames.iter().take(MAX_FRAMES_PER_WRITE) {
            for part in [frame.header(), &frame.body[..]] {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                slices[count] = IoSlice::new(&part[skip..]);
                count += 1;
                skip = 0;
            }
        }
        count
    }

    /// Marks `n` more bytes as written, dropping the frames that are done.
    fn advance(&mut self, mut n: usize) {
        while let Some(front) = self.frames.front() {
            let left = front.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.written = 0;
            self.frames.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes at most `limit` bytes per write and then blocks.
    struct Trickle {
        taken: Vec<u8>,
        per_write: usize,
        budget: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(self.per_write - n).min(self.budget - n);
                self.taken.extend_from_slice(&buf[..take]);
                n += take;
            }
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_exactly_where_they_stopped() {
        let shared = Bytes::from(vec![b'x'; 300]);
        let mut outbox = Outbox::default();
        outbox.push_text(Bytes::from_static(b"hello"));
        outbox.push_raw(Bytes::from_static(&[0x8a, 0x00]));
        outbox.push_text(shared.clone());
        let mut expected = vec![0x81, 5];
        expected.extend_from_slice(b"hello");
        expected.extend_from_slice(&[0x8a, 0x00, 0x81, 126, 1, 44]);
        expected.extend_from_slice(&shared);
        for per_write in [1, 3, 7, 64, 1000] {
            let mut copy = Outbox::default();
            copy.push_text(Bytes::from_static(b"hello"));
            copy.push_raw(Bytes::from_static(&[0x8a, 0x00]));
            copy.push_text(shared.clone());
            let mut socket = Trickle {
                taken: Vec::new(),
                per_write,
                budget: 100,
            };
            assert_eq!(copy.write_to(&mut socket).unwrap(), Written::Blocked);
            assert_eq!(socket.taken, expected[..100]);
            socket.budget = usize::MAX;
            assert_eq!(copy.write_to(&mut socket).unwrap(), Written::All);
            assert_eq!(socket.taken, expected, "per_write {per_write}");
            assert!(copy.is_empty());
        }
        outbox.clear();
        assert!(outbox.is_empty());
    }
}
