//! What a stream bench connection writes to and reads from: a plain socket, driven by
//! non-blocking syscalls, or a TLS connection over one.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsFd;
use std::task::{Context, Poll};

use async_io::Async;

/// A connection's two directions, as the bench drives them: each call moves what it can now,
/// or registers for readiness and returns `Pending`.
pub(super) trait Wire {
    /// Writes from `head`, then `tail` (the two parts of the ring); how many bytes were taken.
    fn poll_write_parts(&mut self, cx: &mut Context<'_>, head: &[u8], tail: &[u8])
    -> Poll<io::Result<usize>>;

    /// Sends what an earlier write left buffered inside the wire (TLS records).
    fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Reads into `buf`; `Ok(0)` is the end of the stream.
    fn poll_read_into(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;

    /// Closes the sending side: the server reads the end of its input (over TLS, after
    /// close_notify).
    fn poll_shut_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// A TCP or Unix socket, read and written with plain syscalls.
pub(super) struct Plain<S> {
    socket: Async<S>,
    /// A read may find data without waiting for readiness: the last one filled the buffer.
    readable: bool,
}

impl<S> Plain<S> {
    pub(super) fn new(socket: Async<S>) -> Plain<S> {
        Plain { socket, readable: false }
    }
}

impl<S: AsFd> Wire for Plain<S>
where
    for<'b> &'b S: Read + Write,
{
    fn poll_write_parts(
        &mut self,
        cx: &mut Context<'_>,
        head: &[u8],
        tail: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let written = if tail.is_empty() {
                self.socket.get_ref().write(head)
            } else {
                self.socket.get_ref().write_vectored(&[IoSlice::new(head), IoSlice::new(tail)])
            };
            match written {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(self.socket.poll_writable(cx))?
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                done => return Poll::Ready(done),
            }
        }
    }

    fn poll_flush_out(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shut_write(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(crate::net::shut_write(self.socket.get_ref()))
    }

    /// A read is tried only after readiness, or after a read that filled the buffer: after a
    /// write the echo is rarely there yet, and the failed read would be a wasted syscall.
    fn poll_read_into(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            if !self.readable {
                std::task::ready!(self.socket.poll_readable(cx))?;
            }
            match self.socket.get_ref().read(buf) {
                Ok(n) => {
                    self.readable = n == buf.len();
                    return Poll::Ready(Ok(n));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

#[cfg(feature = "tls")]
mod tls {
    use std::io;
    use std::net::TcpStream;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use async_io::Async;
    use futures_lite::io::{AsyncRead, AsyncWrite};

    use super::Wire;
    use crate::tls::TlsStream;

    /// A TLS connection: rustls takes the plaintext and keeps the records it could not yet
    /// send, which a flush sends.
    impl Wire for TlsStream<Async<TcpStream>> {
        fn poll_write_parts(
            &mut self,
            cx: &mut Context<'_>,
            head: &[u8],
            tail: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(self).poll_write_vectored(cx, &[io::IoSlice::new(head), io::IoSlice::new(tail)])
        }

        fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(self).poll_flush(cx)
        }

        fn poll_read_into(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
            Pin::new(self).poll_read(cx, buf)
        }

        /// close_notify, then the TCP half-close.
        fn poll_shut_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(self).poll_close(cx)
        }
    }
}
