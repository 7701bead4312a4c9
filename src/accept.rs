//! Accepting from several listeners at once.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_io::Async;

/// Takes connections from whichever listener has one.
///
/// It waits on readiness rather than retrying `accept`: a poll when nothing happened costs no
/// syscall, which matters because the server's future shares its waker with whatever runs it (an
/// executor's `run` polls its main future each time any task wakes). Once a listener is ready,
/// its backlog is drained before waiting again, so a burst costs one wait, not one per client.
#[derive(Debug)]
pub(crate) struct Acceptor {
    listeners: Vec<Listener>,
    /// Where the next search starts, so that a busy listener cannot starve the others.
    next: usize,
}

#[derive(Debug)]
struct Listener {
    socket: Arc<Async<TcpListener>>,
    /// The last readiness has not yet been used up by an accept that would block.
    ready: bool,
}

impl Acceptor {
    pub(crate) fn new(listeners: Vec<async_net::TcpListener>) -> Acceptor {
        let listeners = listeners.into_iter().map(|l| Listener { socket: l.into(), ready: false }).collect();
        Acceptor { listeners, next: 0 }
    }

    pub(crate) fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.listeners.iter().map(|l| l.socket.get_ref().local_addr()).collect()
    }

    /// The next connection, registered with the reactor, or the error that one accept gave.
    pub(crate) fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Async<TcpStream>>> {
        let count = self.listeners.len();
        for i in 0..count {
            let index = (self.next + i) % count;
            let listener = &mut self.listeners[index];
            loop {
                if !listener.ready {
                    match listener.socket.poll_readable(cx) {
                        Poll::Pending => break,
                        Poll::Ready(result) => result?,
                    }
                    listener.ready = true;
                }
                match listener.socket.get_ref().accept() {
                    Ok((stream, _)) => {
                        self.next = (index + 1) % count;
                        return Poll::Ready(Async::new(stream));
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => listener.ready = false,
                    Err(err) => return Poll::Ready(Err(err)),
                }
            }
        }
        Poll::Pending
    }
}
