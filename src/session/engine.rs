//! The run loop both protocols share: wait for input, echo what the framing says, drain on
//! shutdown, close and linger.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::time::Duration;

use futures_lite::future::{self, Fuse, FutureExt};
use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::config::EchoConfig;
use super::deadlines::Deadlines;
use super::framing::{Closing, Scan};
use super::outcome::{CloseReason, Session};
use super::pool;
use super::rx::RxBuf;
use crate::net::YIELD_EVERY;

/// The longest a closing session waits for its peer to stop sending.
const LINGER: Duration = Duration::from_secs(1);

/// A pause this long in the peer's input ends the linger.
const QUIET: Duration = Duration::from_millis(100);

/// What makes one protocol differ from the other: how much of the bytes owed is echoed now.
pub(super) trait Framing {
    /// What to echo of `owed` (bytes read and not yet echoed, from the start of a line), of
    /// which the first `scanned` were already searched by an earlier call.
    fn split(&self, owed: &[u8], scanned: usize) -> Scan;

    /// The most bytes held across reads while they wait for the rest of their line.
    fn max_held(&self) -> usize;
}

/// Runs one session over `io`, echoing as `framing` says, until the peer ends it, a limit is hit,
/// or `shutdown` completes and what had arrived is echoed.
pub(super) fn run<S, F, P>(
    io: S,
    framing: P,
    config: &EchoConfig,
    shutdown: F,
) -> impl Future<Output = Session> + use<S, F, P>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = ()>,
    P: Framing,
{
    let mut engine =
        Engine { io, framing, rx: RxBuf::default(), deadlines: Deadlines::new(config), lines: 0, bytes: 0 };
    // The session state is built here and only borrowed inside: awaiting a future that owned it
    // would store it twice, and an idle connection is mostly this state.
    async move {
        let mut shutdown = pin!(future::fuse(shutdown));
        let reason = engine.run(shutdown.as_mut()).await;
        engine.rx.release();
        Session { lines: engine.lines, bytes: engine.bytes, reason }
    }
}

/// What woke a waiting session.
enum Event {
    /// A read completed with this many bytes; 0 is the end of input.
    Read(usize),
    /// The idle deadline passed.
    Idle,
    /// Shutdown was asked, or the drain that follows it found nothing more to read.
    Shutdown,
}

struct Engine<S, P> {
    io: S,
    framing: P,
    rx: RxBuf,
    deadlines: Deadlines,
    lines: u64,
    bytes: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin, P: Framing> Engine<S, P> {
    async fn run<F: Future<Output = ()>>(&mut self, mut shutdown: Pin<&mut Fuse<F>>) -> CloseReason {
        let mut rounds: u32 = 0;
        loop {
            rounds = rounds.wrapping_add(1);
            if rounds.is_multiple_of(YIELD_EVERY) {
                future::yield_now().await;
            }
            match self.next_event(shutdown.as_mut()).await {
                Ok(Event::Read(0)) => return self.finish_at_eof(shutdown).await,
                Ok(Event::Read(_)) => {
                    // A peer whose bytes never pause keeps the read ready, and a ready read wins
                    // the race for the next event: look at shutdown here too.
                    if !self.deadlines.draining() && future::poll_once(shutdown.as_mut()).await.is_some() {
                        self.deadlines.begin_drain();
                    }
                }
                Ok(Event::Idle) => return self.close(CloseReason::IdleTimeout).await,
                Ok(Event::Shutdown) if self.deadlines.draining() => {
                    return self.close(CloseReason::Shutdown).await;
                }
                Ok(Event::Shutdown) => {
                    self.deadlines.begin_drain();
                    continue;
                }
                Err(err) => return CloseReason::from_error(err),
            }
            let scan = self.framing.split(self.rx.owed(), self.rx.scanned());
            if scan.echo_end > 0 {
                if let Err(reason) = self.write_owed(scan.echo_end, shutdown.as_mut()).await {
                    return reason;
                }
                self.lines += scan.lines;
                self.deadlines.restart_idle();
            }
            self.rx.consume(scan.echo_end);
            match scan.closing {
                Some(Closing::Sentinel) => return self.close(CloseReason::Sentinel).await,
                Some(Closing::TooLong) => return self.close(CloseReason::LineTooLong).await,
                None => {}
            }
        }
    }

    /// Waits for the first of a read, the idle deadline and shutdown. Once shutdown has been
    /// asked it does not wait: a read that is not ready at once, or the grace period being
    /// over, is [`Event::Shutdown`].
    async fn next_event<F: Future<Output = ()>>(&mut self, shutdown: Pin<&mut Fuse<F>>) -> io::Result<Event> {
        let Engine { io, framing, rx, deadlines, .. } = self;
        let max_held = framing.max_held();
        let read = future::poll_fn(|cx| rx.poll_fill(io, cx, max_held));
        if deadlines.draining() {
            if deadlines.grace_over() {
                return Ok(Event::Shutdown);
            }
            return Ok(future::poll_once(read).await.transpose()?.map_or(Event::Shutdown, Event::Read));
        }
        let read = async { read.await.map(Event::Read) };
        let idle = async {
            deadlines.idle_passed().await;
            Ok(Event::Idle)
        };
        let stop = async {
            shutdown.await;
            Ok(Event::Shutdown)
        };
        read.or(idle).or(stop).await
    }

    /// Writes the first `len` owed bytes.
    async fn write_owed<F: Future<Output = ()>>(
        &mut self,
        len: usize,
        shutdown: Pin<&mut Fuse<F>>,
    ) -> Result<(), CloseReason> {
        let Engine { io, rx, deadlines, bytes, .. } = self;
        write_within(io, &rx.owed()[..len], deadlines, shutdown).await?;
        *bytes += len as u64;
        Ok(())
    }

    /// End of input: echo the unterminated tail as it is, then close.
    async fn finish_at_eof<F: Future<Output = ()>>(&mut self, shutdown: Pin<&mut Fuse<F>>) -> CloseReason {
        let tail = self.rx.owed().len();
        if tail > 0 {
            if let Err(reason) = self.write_owed(tail, shutdown).await {
                return reason;
            }
            self.lines += 1;
        }
        self.close(CloseReason::Eof).await
    }

    /// Half-closes; then, when the peer may still be sending (the session did not end at its
    /// end of input, by its error, or by its silence), lingers until it closes too.
    async fn close(&mut self, reason: CloseReason) -> CloseReason {
        let Engine { io, deadlines, .. } = self;
        half_close(io, deadlines).await;
        if matches!(reason, CloseReason::Sentinel | CloseReason::LineTooLong | CloseReason::Shutdown) {
            linger(io, deadlines).await;
        }
        reason
    }
}

/// Writes all of `data`. A peer that reads slower than it sends gets the idle timeout to take it
/// all; a shutdown, asked before or during the write, shortens that to the grace period.
async fn write_within<W, F>(
    io: &mut W,
    data: &[u8],
    deadlines: &mut Deadlines,
    mut shutdown: Pin<&mut Fuse<F>>,
) -> Result<(), CloseReason>
where
    W: AsyncWrite + Unpin,
    F: Future<Output = ()>,
{
    let mut write = io.write_all(data);
    // Most writes finish at once; only a blocked one needs a deadline.
    let finished = future::poll_once(&mut write).await.transpose().map_err(CloseReason::from_error)?;
    if finished.is_some() {
        return Ok(());
    }
    let write_deadline = deadlines.timeout_from_now();
    loop {
        let deadline = deadlines.within_grace(write_deadline);
        let reason =
            if deadlines.is_grace_end(deadline) { CloseReason::Shutdown } else { CloseReason::WriteTimeout };
        let timeout = async {
            deadlines.until(deadline).await;
            Err(reason)
        };
        let written = async { (&mut write).await.map(|()| true).map_err(CloseReason::from_error) };
        let stop = async {
            shutdown.as_mut().await;
            Ok(false)
        };
        if written.or(timeout).or(stop).await? {
            return Ok(());
        }
        // Shutdown asked mid-write: the write goes on, within the grace period.
        deadlines.begin_drain();
    }
}

/// Flushes and half-closes, within the same deadline as a write.
async fn half_close<W: AsyncWrite + Unpin>(io: &mut W, deadlines: &mut Deadlines) {
    let deadline = deadlines.within_grace(deadlines.timeout_from_now());
    let closed = async {
        // A peer that already left makes the close fail; the reason for ending stands.
        io.close().await.ok();
    };
    closed.or(deadlines.until(deadline)).await;
}

/// Reads and discards while the peer goes on sending, until it closes, pauses for [`QUIET`], or
/// [`LINGER`] (never past the idle timeout or the grace period) is over. Closing a socket that
/// has unread input makes the kernel reset the connection and throw away the echo still in its
/// send buffer: a peer that sent past the end of its session would lose echoes it is owed.
async fn linger<R: AsyncRead + Unpin>(io: &mut R, deadlines: &mut Deadlines) {
    let end = deadlines.linger_end(LINGER);
    loop {
        let now = std::time::Instant::now();
        // A peer whose bytes never pause keeps the read ready: the deadline is checked here.
        if now >= end {
            return;
        }
        let quiet = (now + QUIET).min(end);
        // Read into a buffer borrowed only for the read: thousands of sessions lingering at a
        // shutdown must not hold one each.
        let more = async {
            match future::poll_fn(|cx| pool::poll_read(io, cx)).await {
                Ok((discarded, len)) => {
                    pool::give(discarded);
                    len > 0
                }
                Err(_) => false,
            }
        };
        let paused = async {
            deadlines.until(Some(quiet)).await;
            false
        };
        if !more.or(paused).await {
            return;
        }
    }
}
