//! Per-thread read buffers, lent to a connection only while it has bytes to hold.
//!
//! An idle connection owns no read buffer: it borrows one for the read that wakes it and gives it
//! back once every complete line is echoed. Ten thousand idle clients therefore cost ten thousand
//! small futures, not ten thousand 64 KiB buffers, and a busy thread reuses the same few buffers,
//! hot in cache, with no allocation per read.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::AsyncRead;

/// The size of a pooled buffer: one read takes at most this much.
pub(crate) const CHUNK: usize = 64 * 1024;

/// How many spare buffers a thread keeps; more are freed.
const SPARES: usize = 8;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Takes a buffer of [`CHUNK`] bytes from this thread's spares, or makes one. A spare holds
/// what its last reader left in it: only the bytes a read returns are meaningful.
pub(crate) fn take() -> Vec<u8> {
    SPARE.with(|spare| spare.borrow_mut().pop()).unwrap_or_else(|| vec![0; CHUNK])
}

/// Gives a buffer back to this thread's spares; one that grew for a long line is freed.
pub(crate) fn give(buf: Vec<u8>) {
    if buf.len() == CHUNK {
        SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARES {
                spare.push(buf);
            }
        });
    }
}

/// Reads from `io` into a borrowed buffer, which comes back with what was read and is given
/// back at once when nothing came: a session waiting for input holds no buffer.
pub(crate) fn poll_read<R: AsyncRead + Unpin>(
    io: &mut R,
    cx: &mut Context<'_>,
) -> Poll<io::Result<(Vec<u8>, usize)>> {
    let mut buf = take();
    match Pin::new(io).poll_read(cx, &mut buf) {
        Poll::Ready(Ok(len)) => Poll::Ready(Ok((buf, len))),
        Poll::Ready(Err(err)) => {
            give(buf);
            Poll::Ready(Err(err))
        }
        Poll::Pending => {
            give(buf);
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returned_buffers_are_reused_and_grown_ones_are_not() {
        let buf = take();
        let addr = buf.as_ptr() as usize;
        give(buf);
        let again = take();
        assert_eq!(again.as_ptr() as usize, addr);
        give(again);
        let mut grown = take();
        grown.resize(CHUNK * 2, 0);
        give(grown);
        assert_eq!(take().len(), CHUNK);
    }
}
