//! Accepting from several stream listeners, TCP and Unix, at once.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_io::Async;

use super::listener::SocketFile;
#[cfg(feature = "tls")]
use crate::tls::TlsAcceptor;

/// Takes connections from whichever listener has one.
///
/// It waits on readiness rather than retrying `accept`: a poll when nothing happened costs no
/// syscall, which matters because the server's future shares its waker with whatever runs it (an
/// executor's `run` polls its main future each time any task wakes). Once a listener is ready,
/// its backlog is drained before waiting again, so a burst costs one wait, not one per client.
#[derive(Debug)]
pub(crate) struct Acceptor {
    listeners: Vec<Watched>,
    /// Where the next search starts, so that a busy listener cannot starve the others.
    next: usize,
}

#[derive(Debug)]
pub(crate) enum StreamListener {
    Tcp(Arc<Async<TcpListener>>),
    #[cfg(feature = "tls")]
    Tls(Arc<Async<TcpListener>>, TlsAcceptor),
    Unix {
        socket: Arc<Async<UnixListener>>,
        /// What its connections are logged as.
        name: Arc<str>,
        /// Removed when the listener closes.
        _file: Option<SocketFile>,
    },
}

#[derive(Debug)]
struct Watched {
    socket: StreamListener,
    /// The last readiness has not yet been used up by an accept that would block.
    ready: bool,
}

/// A connection just accepted, and who is at the other end.
pub(crate) enum Accepted {
    Tcp(Async<TcpStream>, SocketAddr),
    /// The handshake is still to run, in the connection's own task.
    #[cfg(feature = "tls")]
    Tls(Async<TcpStream>, SocketAddr, TlsAcceptor),
    /// Unix peers rarely have a name: the listener's stands for them.
    Unix(Async<UnixStream>, Arc<str>),
}

/// One TCP connection from `socket`, with `TCP_NODELAY`: lines are small and latency matters
/// more than packet count.
fn accept_tcp(socket: &Async<TcpListener>) -> io::Result<(Async<TcpStream>, SocketAddr)> {
    let (stream, peer) = socket.get_ref().accept()?;
    stream.set_nodelay(true).ok();
    Ok((Async::new(stream)?, peer))
}

impl Acceptor {
    pub(crate) fn new(listeners: Vec<StreamListener>) -> Acceptor {
        let listeners = listeners.into_iter().map(|socket| Watched { socket, ready: false }).collect();
        Acceptor { listeners, next: 0 }
    }

    /// The next connection, registered with the reactor, or the error that one accept gave.
    pub(crate) fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted>> {
        let count = self.listeners.len();
        for i in 0..count {
            let index = (self.next + i) % count;
            let listener = &mut self.listeners[index];
            loop {
                if !listener.ready {
                    let readable = match &listener.socket {
                        StreamListener::Tcp(socket) => socket.poll_readable(cx),
                        #[cfg(feature = "tls")]
                        StreamListener::Tls(socket, _) => socket.poll_readable(cx),
                        StreamListener::Unix { socket, .. } => socket.poll_readable(cx),
                    };
                    match readable {
                        Poll::Pending => break,
                        Poll::Ready(result) => result?,
                    }
                    listener.ready = true;
                }
                let accepted = match &listener.socket {
                    StreamListener::Tcp(socket) => {
                        accept_tcp(socket).map(|(stream, peer)| Accepted::Tcp(stream, peer))
                    }
                    #[cfg(feature = "tls")]
                    StreamListener::Tls(socket, acceptor) => {
                        accept_tcp(socket).map(|(stream, peer)| Accepted::Tls(stream, peer, acceptor.clone()))
                    }
                    StreamListener::Unix { socket, name, .. } => socket
                        .get_ref()
                        .accept()
                        .and_then(|(stream, _)| Ok(Accepted::Unix(Async::new(stream)?, name.clone()))),
                };
                match accepted {
                    Ok(accepted) => {
                        self.next = (index + 1) % count;
                        return Poll::Ready(Ok(accepted));
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => listener.ready = false,
                    Err(err) => return Poll::Ready(Err(err)),
                }
            }
        }
        Poll::Pending
    }
}
