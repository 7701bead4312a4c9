//! The bytes a session has read and not yet echoed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::AsyncRead;

use super::pool;

/// Bytes read and not yet echoed, in a buffer lent by the pool while there are any.
///
/// `buf[start..end]` is owed: it starts at the first byte of a line. `buf[start..scanned]` was
/// already searched for line ends and holds none.
#[derive(Default)]
pub(super) struct RxBuf {
    buf: Option<Vec<u8>>,
    start: usize,
    scanned: usize,
    end: usize,
}

impl RxBuf {
    pub(super) fn owed(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], |buf| &buf[self.start..self.end])
    }

    /// How many of the owed bytes an earlier search already looked at.
    pub(super) fn scanned(&self) -> usize {
        self.scanned - self.start
    }

    /// Marks `len` bytes as echoed and everything as scanned.
    pub(super) fn consume(&mut self, len: usize) {
        self.start += len;
        self.scanned = self.end;
        if self.start == self.end {
            self.release();
        }
    }

    /// Gives the buffer back to the pool; whatever it held is dropped.
    pub(super) fn release(&mut self) {
        if let Some(buf) = self.buf.take() {
            pool::give(buf);
        }
        *self = RxBuf::default();
    }

    /// Reads more bytes after the owed ones, growing the buffer for a partial line of up to
    /// `max_held` bytes. Holds no buffer while it waits with nothing owed.
    pub(super) fn poll_fill<R>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
        max_held: usize,
    ) -> Poll<io::Result<usize>>
    where
        R: AsyncRead + Unpin,
    {
        let buf = self.buf.get_or_insert_with(pool::take);
        if self.end == buf.len() {
            if self.start > 0 {
                buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.scanned -= self.start;
                self.start = 0;
            } else {
                // One partial line fills the buffer and is still within the limit: grow for it.
                let len = (buf.len() * 2).clamp(buf.len() + 1, max_held.max(buf.len()) + 1);
                buf.resize(len, 0);
            }
        }
        let poll = Pin::new(io).poll_read(cx, &mut buf[self.end..]);
        match poll {
            Poll::Ready(Ok(n)) => self.end += n,
            Poll::Pending if self.start == self.end => self.release(),
            _ => {}
        }
        poll
    }
}
