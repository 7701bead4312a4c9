//! The server's TCP connection: an `async-net` stream that skips the read bound to fail.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use async_io::Async;
use futures_lite::io::{AsyncRead, AsyncWrite};

/// A connected TCP socket for one session.
///
/// A read that does not fill its buffer has emptied the socket, so the next read would only
/// return `EAGAIN`. This stream remembers that and waits for readiness first: in ping-pong
/// traffic that is one syscall fewer per line (read, write, wait instead of read, write, read,
/// wait).
#[derive(Debug)]
pub(crate) struct TcpConn {
    socket: Arc<Async<TcpStream>>,
    drained: bool,
}

impl TcpConn {
    pub(crate) fn new(stream: Async<TcpStream>) -> TcpConn {
        TcpConn { socket: Arc::new(stream), drained: false }
    }

    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.get_ref().peer_addr()
    }

    pub(crate) fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.socket.get_ref().set_nodelay(nodelay)
    }
}

impl AsyncRead for TcpConn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.drained {
            ready!(this.socket.poll_readable(cx))?;
            this.drained = false;
        }
        let n = ready!(Pin::new(&mut &*this.socket).poll_read(cx, buf))?;
        this.drained = n < buf.len();
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for TcpConn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.socket).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.socket).poll_flush(cx)
    }

    /// Half-closes: the peer reads end of input after every echo.
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.socket.get_ref().shutdown(Shutdown::Write))
    }
}
