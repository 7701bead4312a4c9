//! One echo session: the line protocol over any byte stream.

use std::fmt;
use std::future::Future;
use std::io;
use std::ops::RangeInclusive;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::future::{self, Fuse, FutureExt};
use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::alarm::Alarm;
use crate::framing::{self, Stop};
use crate::pool;

/// The longest a closing session waits for its peer to stop sending.
const LINGER: Duration = Duration::from_secs(1);

/// How many reads a session makes before it lets others on its thread run.
const YIELD_EVERY: u32 = 64;

/// A pause this long in the peer's input ends the linger.
const QUIET: Duration = Duration::from_millis(100);

/// The limits of one echo session.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use smol_echo::EchoConfig;
///
/// let config = EchoConfig { idle_timeout: Some(Duration::from_millis(200)), ..EchoConfig::default() };
/// assert_eq!(config.max_line, 65536);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoConfig {
    /// How long the peer may go without completing a line, and how long the echo owed for one
    /// read may take to write. `None` turns both timeouts off.
    pub idle_timeout: Option<Duration>,
    /// The longest line accepted, CR LF included. A longer line closes the session.
    pub max_line: usize,
    /// After shutdown is asked, how long the session may go on echoing the complete lines that
    /// had already arrived. Zero closes at once.
    pub grace: Duration,
}

impl EchoConfig {
    /// The lengths [`EchoConfig::max_line`] may take: room for the sentinel's three bytes, and
    /// no more than a session may sensibly hold of one line, 1 GiB.
    pub const MAX_LINE: RangeInclusive<usize> = 3..=1 << 30;

    /// Refuses settings out of their documented ranges: [`EchoConfig::MAX_LINE`], and durations
    /// of at most [`MAX_DURATION`]. The message names each setting by `name(field)`, so that a
    /// command line can speak of its flags (`&|field| field` keeps the field names).
    ///
    /// # Examples
    ///
    /// ```
    /// use smol_echo::EchoConfig;
    ///
    /// assert!(EchoConfig::default().check(&|field| field).is_ok());
    /// let huge = EchoConfig { max_line: 1 << 40, ..EchoConfig::default() };
    /// let err = huge.check(&|_| "--max-line").unwrap_err();
    /// assert_eq!(err.to_string(), "--max-line must be from 3 to 1073741824, not 1099511627776");
    /// ```
    pub fn check(&self, name: &dyn Fn(&'static str) -> &'static str) -> io::Result<()> {
        in_range(name("max_line"), self.max_line, EchoConfig::MAX_LINE)?;
        if let Some(idle_timeout) = self.idle_timeout {
            check_duration(name("idle_timeout"), idle_timeout, Duration::ZERO)?;
        }
        check_duration(name("grace"), self.grace, Duration::ZERO)
    }
}

/// The longest duration any setting takes: a week. A longer one is surely a mistake, and far
/// longer ones would overflow the clock's arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// `InvalidInput` unless `value` is within `range`: "NAME must be from A to B, not V".
pub(crate) fn in_range<T: PartialOrd + fmt::Display>(
    name: &str,
    value: T,
    range: RangeInclusive<T>,
) -> io::Result<()> {
    if range.contains(&value) {
        return Ok(());
    }
    let message = format!("{name} must be from {} to {}, not {value}", range.start(), range.end());
    Err(io::Error::new(io::ErrorKind::InvalidInput, message))
}

/// `InvalidInput` unless `value` is at least `min` (zero, or just above it when `min` is
/// `Duration::from_nanos(1)`) and at most [`MAX_DURATION`]: the check of every duration setting,
/// for the durations that have no config.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let above_zero = Duration::from_nanos(1);
/// assert!(smol_echo::check_duration("timeout", Duration::from_secs(1), above_zero).is_ok());
/// let err = smol_echo::check_duration("timeout", Duration::ZERO, above_zero).unwrap_err();
/// assert_eq!(err.to_string(), "timeout must be more than 0 and at most 7 days (604800s), not 0ns");
/// ```
pub fn check_duration(name: &str, value: Duration, min: Duration) -> io::Result<()> {
    if (min..=MAX_DURATION).contains(&value) {
        return Ok(());
    }
    let range = if min.is_zero() { "from 0 to" } else { "more than 0 and at most" };
    let message = format!("{name} must be {range} 7 days (604800s), not {value:?}");
    Err(io::Error::new(io::ErrorKind::InvalidInput, message))
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig {
            idle_timeout: Some(Duration::from_secs(30)),
            max_line: 65536,
            grace: Duration::from_secs(5),
        }
    }
}

/// Why a session ended.
///
/// # Examples
///
/// ```
/// assert_eq!(smol_echo::CloseReason::IdleTimeout.to_string(), "idle timeout");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer half-closed; everything it sent was echoed.
    Eof,
    /// The peer sent the line `.`.
    Sentinel,
    /// No complete line arrived within the idle timeout.
    IdleTimeout,
    /// A line grew past the maximum length.
    LineTooLong,
    /// The peer did not take the echo within the idle timeout.
    WriteTimeout,
    /// The peer reset the connection.
    Reset,
    /// The server shut down.
    Shutdown,
    /// Another I/O error ended the session.
    Error(io::ErrorKind),
}

impl CloseReason {
    pub(crate) fn from_error(err: io::Error) -> CloseReason {
        match err.kind() {
            // A write that takes nothing is an output whose reader is gone: a pipe (`--stdio`
            // under `| head`) reports its EPIPE that way through a blocking-I/O thread.
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::WriteZero => CloseReason::Reset,
            kind => CloseReason::Error(kind),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::Eof => "eof",
            CloseReason::Sentinel => "sentinel",
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::LineTooLong => "line too long",
            CloseReason::WriteTimeout => "write timeout",
            CloseReason::Reset => "reset",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Error(kind) => return write!(f, "error: {kind}"),
        })
    }
}

/// What one session did: lines and bytes echoed, and why it ended.
///
/// An unterminated tail echoed at end of input counts as a line.
///
/// # Examples
///
/// ```
/// let session = smol_echo::Session::default();
/// assert_eq!((session.lines, session.bytes), (0, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// Lines echoed.
    pub lines: u64,
    /// Bytes echoed, CR LF included.
    pub bytes: u64,
    /// Why the session ended.
    pub reason: CloseReason,
}

impl Default for Session {
    fn default() -> Self {
        Session { lines: 0, bytes: 0, reason: CloseReason::Eof }
    }
}

/// Runs one echo session over `io` until the peer ends it, a limit is hit, or `shutdown`
/// completes and the lines that had arrived are echoed.
///
/// Works on any executor: timers come from `async-io`, and `io` is any futures-io stream (TCP,
/// Unix socket, TLS, an in-memory pipe). Complete lines already read are echoed with one write;
/// a waiting session holds one timer and no read buffer.
///
/// # Examples
///
/// ```
/// use futures_lite::future;
/// use smol_echo::{CloseReason, EchoConfig, echo};
///
/// // A cursor stands in for a socket: what is read comes from the slice, what is written lands
/// // after it in the same buffer.
/// let mut io = futures_lite::io::Cursor::new(b"hi\r\n.\r\n".to_vec());
/// let session = future::block_on(echo(&mut io, &EchoConfig::default(), future::pending()));
/// assert_eq!(session.reason, CloseReason::Sentinel);
/// assert_eq!(&io.get_ref()[7..], b"hi\r\n");
/// ```
pub fn echo<S, F>(io: S, config: &EchoConfig, shutdown: F) -> impl Future<Output = Session> + use<S, F>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = ()>,
{
    let mut conn = Conn {
        io,
        config: config.clone(),
        rx: RxBuf::default(),
        alarm: Alarm::default(),
        idle_deadline: config.idle_timeout.map(|d| Instant::now() + d),
        grace_deadline: None,
        lines: 0,
        bytes: 0,
    };
    // The session state is built here and only borrowed inside: awaiting a future that owned it
    // would store it twice, and an idle connection is mostly this state.
    async move {
        let mut shutdown = pin!(future::fuse(shutdown));
        let reason = conn.run(shutdown.as_mut()).await;
        conn.rx.release();
        Session { lines: conn.lines, bytes: conn.bytes, reason }
    }
}

/// Bytes read and not yet echoed, in a buffer lent by the pool while there are any.
///
/// `buf[start..end]` is owed: it starts at the first byte of a line. `buf[start..scanned]` was
/// already searched for line ends and holds none.
#[derive(Default)]
struct RxBuf {
    buf: Option<Vec<u8>>,
    start: usize,
    scanned: usize,
    end: usize,
}

impl RxBuf {
    fn owed(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], |buf| &buf[self.start..self.end])
    }

    fn scan(&self, max_line: usize) -> framing::Scan {
        framing::scan(self.owed(), self.scanned - self.start, max_line)
    }

    /// Marks `len` bytes as echoed and everything as scanned.
    fn consume(&mut self, len: usize) {
        self.start += len;
        self.scanned = self.end;
        if self.start == self.end {
            self.release();
        }
    }

    /// Gives the buffer back to the pool; whatever it held is dropped.
    fn release(&mut self) {
        if let Some(buf) = self.buf.take() {
            pool::give(buf);
        }
        *self = RxBuf::default();
    }

    /// Reads more bytes after the owed ones. Holds no buffer while it waits with nothing owed.
    fn poll_fill<R>(&mut self, io: &mut R, cx: &mut Context<'_>, max_line: usize) -> Poll<io::Result<usize>>
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
                let len = (buf.len() * 2).clamp(buf.len() + 1, max_line.max(buf.len()) + 1);
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

/// What woke a waiting session: a read's result (`T`), the idle deadline or shutdown.
pub(crate) enum Event<T> {
    /// A read completed; what it read says whether that was the end of input.
    Read(T),
    /// The idle deadline passed.
    Idle,
    /// Shutdown was asked, or the drain that follows it found nothing more to read.
    Shutdown,
}

/// Waits for the first of `read`, `idle_deadline` and `shutdown`. Once shutdown has been asked
/// (`grace_deadline` is set) it does not wait: a read that is not ready at once, or the grace
/// period being over, is [`Event::Shutdown`].
pub(crate) async fn next_event<T, F: Future<Output = ()>>(
    read: impl Future<Output = io::Result<T>>,
    alarm: &mut Alarm,
    idle_deadline: Option<Instant>,
    grace_deadline: Option<Instant>,
    shutdown: Pin<&mut Fuse<F>>,
) -> io::Result<Event<T>> {
    if let Some(grace) = grace_deadline {
        if Instant::now() >= grace {
            return Ok(Event::Shutdown);
        }
        return Ok(future::poll_once(read).await.transpose()?.map_or(Event::Shutdown, Event::Read));
    }
    let read = async { read.await.map(Event::Read) };
    let idle = async {
        alarm.until(idle_deadline).await;
        Ok(Event::Idle)
    };
    let stop = async {
        shutdown.await;
        Ok(Event::Shutdown)
    };
    read.or(idle).or(stop).await
}

struct Conn<S> {
    io: S,
    config: EchoConfig,
    rx: RxBuf,
    alarm: Alarm,
    idle_deadline: Option<Instant>,
    /// Set once shutdown is asked: the session ends by then whatever it still owes.
    grace_deadline: Option<Instant>,
    lines: u64,
    bytes: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    async fn run<F: Future<Output = ()>>(&mut self, mut shutdown: Pin<&mut Fuse<F>>) -> CloseReason {
        let mut rounds: u32 = 0;
        loop {
            rounds = rounds.wrapping_add(1);
            // A peer that keeps both directions ready never makes this loop wait; executors have
            // no budget of their own, so give the other sessions on this thread their turn.
            if rounds.is_multiple_of(YIELD_EVERY) {
                future::yield_now().await;
            }
            match self.next_event(shutdown.as_mut()).await {
                Ok(Event::Read(0)) => return self.finish_at_eof(shutdown).await,
                Ok(Event::Read(_)) => {
                    // A peer whose bytes never pause keeps the read ready, and a ready read wins
                    // the race above: look at shutdown here too.
                    if self.grace_deadline.is_none() && future::poll_once(shutdown.as_mut()).await.is_some() {
                        self.begin_drain();
                    }
                }
                Ok(Event::Idle) => return self.close(CloseReason::IdleTimeout).await,
                Ok(Event::Shutdown) if self.grace_deadline.is_some() => {
                    return self.close(CloseReason::Shutdown).await;
                }
                Ok(Event::Shutdown) => {
                    self.begin_drain();
                    continue;
                }
                Err(err) => return CloseReason::from_error(err),
            }
            let scan = self.rx.scan(self.config.max_line);
            if scan.echo_end > 0 {
                if let Err(reason) = self.write_owed(scan.echo_end, shutdown.as_mut()).await {
                    return reason;
                }
                self.lines += scan.lines;
                self.idle_deadline = self.config.idle_timeout.map(|d| Instant::now() + d);
            }
            self.rx.consume(scan.echo_end);
            match scan.stop {
                Some(Stop::Sentinel) => return self.close(CloseReason::Sentinel).await,
                Some(Stop::TooLong) => return self.close(CloseReason::LineTooLong).await,
                None => {}
            }
        }
    }

    /// Shutdown was asked: from now on read only what is already readable.
    fn begin_drain(&mut self) {
        self.grace_deadline = Some(Instant::now() + self.config.grace);
    }

    async fn next_event<F: Future<Output = ()>>(
        &mut self,
        shutdown: Pin<&mut Fuse<F>>,
    ) -> io::Result<Event<usize>> {
        let Conn { io, rx, alarm, config, idle_deadline, grace_deadline, .. } = self;
        let max_line = config.max_line;
        let read = future::poll_fn(|cx| rx.poll_fill(io, cx, max_line));
        next_event(read, alarm, *idle_deadline, *grace_deadline, shutdown).await
    }

    /// Writes the first `len` owed bytes.
    async fn write_owed<F: Future<Output = ()>>(
        &mut self,
        len: usize,
        shutdown: Pin<&mut Fuse<F>>,
    ) -> Result<(), CloseReason> {
        let Conn { io, rx, alarm, config, grace_deadline, bytes, .. } = self;
        write_within(io, &rx.owed()[..len], alarm, config, grace_deadline, shutdown).await?;
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

    /// Half-closes; then, when the peer may still be sending, lingers until it closes too.
    async fn close(&mut self, reason: CloseReason) -> CloseReason {
        let Conn { io, alarm, config, grace_deadline, .. } = self;
        half_close(io, alarm, config, *grace_deadline).await;
        if matches!(reason, CloseReason::Sentinel | CloseReason::LineTooLong | CloseReason::Shutdown) {
            linger(io, alarm, config, *grace_deadline).await;
        }
        reason
    }
}

/// Reads and discards while the peer goes on sending, until it closes, pauses for [`QUIET`], or
/// [`LINGER`] (never past the grace period) is over. Closing a socket that has unread input makes
/// the kernel reset the connection and throw away the echo still in its send buffer: a peer that
/// sent past the end of its session would lose echoes it is owed.
pub(crate) async fn linger<R: AsyncRead + Unpin>(
    io: &mut R,
    alarm: &mut Alarm,
    config: &EchoConfig,
    grace_deadline: Option<Instant>,
) {
    let linger = config.idle_timeout.map_or(LINGER, |idle| idle.min(LINGER));
    let end = earliest(Some(Instant::now() + linger), grace_deadline);
    loop {
        let now = Instant::now();
        // A peer whose bytes never pause keeps the read ready: the deadline is checked here.
        if end.is_some_and(|end| now >= end) {
            return;
        }
        let quiet = earliest(Some(now + QUIET), end);
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
            alarm.until(quiet).await;
            false
        };
        if !more.or(paused).await {
            return;
        }
    }
}

/// Writes all of `data`. A peer that reads slower than it sends gets the idle timeout to take it
/// all; a shutdown, asked before or during the write, shortens that to the grace period.
pub(crate) async fn write_within<W, F>(
    io: &mut W,
    data: &[u8],
    alarm: &mut Alarm,
    config: &EchoConfig,
    grace_deadline: &mut Option<Instant>,
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
    let write_deadline = config.idle_timeout.map(|d| Instant::now() + d);
    loop {
        let grace = *grace_deadline;
        let deadline = earliest(write_deadline, grace);
        let alarm = &mut *alarm;
        let timeout = async move {
            alarm.until(deadline).await;
            Err(if deadline == grace { CloseReason::Shutdown } else { CloseReason::WriteTimeout })
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
        *grace_deadline = Some(Instant::now() + config.grace);
    }
}

/// Flushes and half-closes, within the same deadline as a write.
pub(crate) async fn half_close<W: AsyncWrite + Unpin>(
    io: &mut W,
    alarm: &mut Alarm,
    config: &EchoConfig,
    grace_deadline: Option<Instant>,
) {
    let deadline = earliest(config.idle_timeout.map(|d| Instant::now() + d), grace_deadline);
    let closed = async {
        // A peer that already left makes the close fail; the reason for ending stands.
        io.close().await.ok();
    };
    closed.or(alarm.until(deadline)).await;
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
