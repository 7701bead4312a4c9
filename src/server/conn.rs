//! The server's stream connection: an `Async` socket that guesses when to read without waiting.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_io::Async;
use futures_lite::io::{AsyncRead, AsyncWrite};

use super::stop::StopFlag;

/// A connected stream socket, TCP or Unix, for one session.
///
/// A read that does not fill its buffer has emptied the socket. What the next read does then is
/// the one choice this type makes, and it decides how many system calls a line costs:
///
/// - **Arm** the socket and read once the reactor reports it readable. async-io's registrations
///   are one-shot, so arming is an `epoll_ctl` each time, on top of the read and the reactor's
///   share of an `epoll_wait`.
/// - **Guess**: return `Pending` once having woken the task itself, so that the other sessions
///   ready on this thread run first, then read at once. If the peer's next bytes came meanwhile
///   (many connections, each with its next line on the way) that read is the only call: one
///   fewer per line than arming. If not (one connection in ping-pong) it returns `EAGAIN` and
///   the socket is armed anyway: one call more.
///
/// So a session guesses only while guessing pays. It keeps a credit from 0 to [`MAX_CREDIT`]:
/// a guess that brings bytes adds one, a guess that finds nothing takes one away. Moving by one
/// either way, the credit stays up exactly while more than half the guesses hit, which is when
/// they save calls. At 0 the session arms, and guesses once in [`PROBE_EVERY`] short reads so
/// that traffic which turns busy is noticed; in ping-pong that probe costs 1/64 of a call per
/// line. The credit is the session's, not the thread's: whether the next line is already on its
/// way is a property of the peer (a load generator beside an interactive client), a session may
/// move between the threads of a work-stealing executor, and two bytes fit in the padding of
/// this struct, so an idle connection costs no more.
///
/// This type reads the socket itself rather than through `Async`'s `poll_read`, which reads
/// first and asks for readiness only after `EAGAIN`: a readiness it was told of but never asked
/// about stays recorded, and a later wait would take that old report for news, read, get
/// `EAGAIN` and arm after all (a wasted call). Here, a readiness still recorded when the socket
/// is armed predates the read that emptied it and is dropped; after arming, a wake-up is met
/// with a read, so a wake that the reactor delivers in the same round as the arming (which
/// async-io does not count as news) costs no second arming either.
///
/// Once the server stops, every read goes to the socket, neither waiting nor guessing: the
/// drain must see bytes that arrived before the stop even if the reactor has not reported them.
#[derive(Debug)]
pub(crate) struct SocketConn<S> {
    socket: Async<S>,
    next: Next,
    /// Guesses that hit less those that missed, lately; within `0..=MAX_CREDIT`.
    credit: u8,
    /// Short reads since the last guess, while the credit is 0.
    since_probe: u8,
    stopping: StopFlag,
}

/// The most credit a session saves up: after a long run of hits, this many misses in a row
/// stop its guessing.
const MAX_CREDIT: u8 = 8;

/// The credit a session starts with: a new connection may be busy or not; two misses tell.
const INITIAL_CREDIT: u8 = 2;

/// How often a session out of credit guesses anyway, in short reads.
const PROBE_EVERY: u8 = 64;

/// What the next `poll_read` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Read at once: the socket is not known to be empty (the first read, one after a read that
    /// filled its buffer, or one after the socket was armed and the task woken).
    Read,
    /// Arm the socket for readiness; read when woken.
    Arm,
    /// Let the other ready tasks run once, then guess.
    Yield,
    /// Read at once after the yield; `EAGAIN` arms the socket.
    Guess,
}

impl<S> SocketConn<S> {
    pub(crate) fn new(socket: Async<S>, stopping: StopFlag) -> SocketConn<S> {
        SocketConn { socket, next: Next::Read, credit: INITIAL_CREDIT, since_probe: 0, stopping }
    }
}

impl<S> AsyncRead for SocketConn<S>
where
    for<'a> &'a S: Read,
{
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.stopping.is_set() {
            this.next = Next::Read;
        }
        loop {
            match this.next {
                Next::Arm => {
                    // The first call may only drop a readiness recorded before the socket was
                    // emptied; the second then registers. Both report `Pending` once armed.
                    if this.socket.poll_readable(cx)?.is_pending()
                        || this.socket.poll_readable(cx)?.is_pending()
                    {
                        this.next = Next::Read;
                        return Poll::Pending;
                    }
                    // Readable twice in a row is news: read.
                    this.next = Next::Read;
                }
                Next::Yield => {
                    this.next = Next::Guess;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Next::Read | Next::Guess => {}
            }
            let guess = this.next == Next::Guess;
            match this.socket.get_ref().read(buf) {
                Ok(n) => {
                    if guess {
                        this.credit = (this.credit + 1).min(MAX_CREDIT);
                    }
                    this.next = if n == buf.len() { Next::Read } else { this.after_short_read() };
                    return Poll::Ready(Ok(n));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if guess {
                        this.credit = this.credit.saturating_sub(1);
                    }
                    this.next = Next::Arm;
                }
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl<S> SocketConn<S> {
    /// The socket is empty: guess while guesses pay, and now and then when they do not.
    fn after_short_read(&mut self) -> Next {
        if self.credit > 0 {
            return Next::Yield;
        }
        self.since_probe += 1;
        if self.since_probe < PROBE_EVERY {
            return Next::Arm;
        }
        self.since_probe = 0;
        Next::Yield
    }
}

impl<S: AsFd> AsyncWrite for SocketConn<S>
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
        Poll::Ready(crate::net::shut_write(self.socket.get_ref()))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use super::super::stop::Stop;
    use super::*;

    /// Counts its wakes: a task that wakes itself before `Pending` is yielding.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Fixture {
        conn: SocketConn<UnixStream>,
        peer: UnixStream,
        stop: Stop,
        wakes: Arc<Wakes>,
        waker: Waker,
    }

    impl Fixture {
        fn new() -> Fixture {
            let (ours, peer) = UnixStream::pair().unwrap();
            let stop = Stop::default();
            let conn = SocketConn::new(Async::new(ours).unwrap(), stop.listen().flag());
            let wakes = Arc::new(Wakes::default());
            let waker = Waker::from(wakes.clone());
            Fixture { conn, peer, stop, wakes, waker }
        }

        /// One poll, and whether it yielded: returned `Pending` to guess on the next poll,
        /// having woken the task itself. (The state tells a yield apart from a wake by the
        /// reactor, which other tests' threads may be driving meanwhile.)
        fn poll(&mut self, buf: &mut [u8]) -> (Poll<usize>, bool) {
            let before = self.wakes.0.load(Ordering::SeqCst);
            let mut cx = Context::from_waker(&self.waker);
            let poll = Pin::new(&mut self.conn).poll_read(&mut cx, buf).map(Result::unwrap);
            let yielded = self.conn.next == Next::Guess;
            assert!(!yielded || self.wakes.0.load(Ordering::SeqCst) > before, "a yield wakes the task");
            (poll, yielded)
        }

        /// Sends a line and reads it: a short read, after any yield and guess it takes.
        fn echo_line(&mut self) {
            self.peer.write_all(b"line\r\n").unwrap();
            let mut buf = [0; 64];
            for _ in 0..3 {
                if let (Poll::Ready(n), _) = self.poll(&mut buf) {
                    assert_eq!(&buf[..n], b"line\r\n");
                    return;
                }
            }
            panic!("the line was not read");
        }

        /// Polls once more with nothing sent: whether the session yielded (and then guessed,
        /// missed and armed) rather than armed at once.
        fn guesses_on_an_empty_socket(&mut self) -> bool {
            let mut buf = [0; 64];
            let (poll, yielded) = self.poll(&mut buf);
            assert!(poll.is_pending());
            if yielded {
                let (poll, again) = self.poll(&mut buf);
                assert!(poll.is_pending() && !again, "one yield, then a guess that arms");
                assert_eq!(self.conn.next, Next::Read, "armed: the next wake reads");
            }
            yielded
        }
    }

    #[test]
    fn a_short_read_yields_once_then_reads_what_came_meanwhile() {
        let mut f = Fixture::new();
        f.echo_line();
        let mut buf = [0; 64];
        let (poll, yielded) = f.poll(&mut buf);
        assert!(poll.is_pending() && yielded);
        // The peer's next line arrives while the other sessions run.
        f.peer.write_all(b"next\r\n").unwrap();
        assert_eq!(f.poll(&mut buf), (Poll::Ready(6), false));
        assert_eq!(f.conn.credit, INITIAL_CREDIT + 1);
    }

    #[test]
    fn misses_spend_the_credit_then_only_one_short_read_in_64_guesses() {
        let mut f = Fixture::new();
        for _ in 0..INITIAL_CREDIT {
            f.echo_line();
            assert!(f.guesses_on_an_empty_socket());
        }
        assert_eq!(f.conn.credit, 0);
        let mut guesses = 0;
        for _ in 0..2 * PROBE_EVERY {
            f.echo_line();
            guesses += usize::from(f.guesses_on_an_empty_socket());
        }
        assert_eq!(guesses, 2);
    }

    #[test]
    fn a_probe_that_hits_starts_guessing_again() {
        let mut f = Fixture::new();
        f.conn.credit = 0;
        f.conn.since_probe = PROBE_EVERY - 1;
        f.echo_line();
        let mut buf = [0; 64];
        assert!(f.poll(&mut buf).1, "the probe yields");
        f.peer.write_all(b"busy\r\n").unwrap();
        assert_eq!(f.poll(&mut buf), (Poll::Ready(6), false));
        assert_eq!(f.conn.credit, 1);
        f.echo_line();
        assert!(f.guesses_on_an_empty_socket());
    }

    #[test]
    fn after_stop_a_read_neither_yields_nor_waits_for_the_reactor() {
        for credit in [INITIAL_CREDIT, 0] {
            let mut f = Fixture::new();
            f.conn.credit = credit;
            f.echo_line();
            // Bytes the reactor has not reported (it is not even running here), then the stop.
            f.peer.write_all(b"late\r\n").unwrap();
            f.stop.stop();
            let mut buf = [0; 64];
            assert_eq!(f.poll(&mut buf), (Poll::Ready(6), false), "credit {credit}");
            assert_eq!(&buf[..6], b"late\r\n");
            // Nothing more: `Pending` at once, as the drain needs, with the socket armed.
            assert_eq!(f.poll(&mut buf), (Poll::Pending, false));
        }
    }
}
