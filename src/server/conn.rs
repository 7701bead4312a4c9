//! The server's stream connection: an `Async` socket that skips the read bound to fail.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use async_io::Async;
use futures_lite::io::{AsyncRead, AsyncWrite};

use super::stop::StopFlag;

/// A connected stream socket, TCP or Unix, for one session.
///
/// A read that does not fill its buffer has emptied the socket, so the next read would only
/// return `EAGAIN`. This stream remembers that and waits for readiness first: in ping-pong
/// traffic that is one syscall fewer per line (read, write, wait instead of read, write, read,
/// wait). Once the server stops, reads go to the socket every time: the drain must see bytes
/// that arrived before the stop even if the reactor has not yet reported them.
#[derive(Debug)]
pub(crate) struct SocketConn<S> {
    socket: Async<S>,
    drained: bool,
    stopping: StopFlag,
}

/// A stream socket that can be half-closed.
pub(crate) trait HalfClose {
    fn shutdown_write(&self) -> io::Result<()>;
}

impl HalfClose for TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl HalfClose for UnixStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl<S> SocketConn<S> {
    pub(crate) fn new(socket: Async<S>, stopping: StopFlag) -> SocketConn<S> {
        SocketConn { socket, drained: false, stopping }
    }
}

impl<S> AsyncRead for SocketConn<S>
where
    for<'a> &'a S: Read,
{
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.drained && !this.stopping.is_set() {
            ready!(this.socket.poll_readable(cx))?;
            this.drained = false;
        }
        let n = ready!(Pin::new(&mut &this.socket).poll_read(cx, buf))?;
        this.drained = n < buf.len();
        Poll::Ready(Ok(n))
    }
}

impl<S: HalfClose> AsyncWrite for SocketConn<S>
where
    for<'a> &'a S: Write,
{
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut &self.socket).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &self.socket).poll_flush(cx)
    }

    /// Half-closes: the peer reads end of input after every echo.
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.socket.get_ref().shutdown_write())
    }
}
