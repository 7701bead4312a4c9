//! The RFC 862 echo: every byte goes back as it arrives, with no lines, no sentinel and no
//! line limit.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::time::Instant;

use futures_lite::future::{self, Fuse};
use futures_lite::io::{AsyncRead, AsyncWrite};

use crate::alarm::Alarm;
use crate::pool;
use crate::session::{
    CloseReason, EchoConfig, Event, Session, echo, half_close, linger, next_event, write_within,
};

/// How many reads a session makes before it lets others on its thread run.
const YIELD_EVERY: u32 = 64;

/// Which protocol a session speaks.
///
/// # Examples
///
/// ```
/// use futures_lite::future;
/// use smol_echo::{EchoConfig, Mode};
///
/// let mut io = futures_lite::io::Cursor::new(b"no line end".to_vec());
/// let session = future::block_on(Mode::Raw.echo(&mut io, &EchoConfig::default(), future::pending()));
/// assert_eq!(session.bytes, 11);
/// assert_eq!(Mode::default(), Mode::Line);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// The line protocol of [`echo`]: CR LF lines, the sentinel `.`, the maximum line length.
    #[default]
    Line,
    /// RFC 862: every byte back as it arrives; see [`echo_raw`].
    Raw,
}

impl Mode {
    /// Runs one session of this protocol over `io`: [`echo`] or [`echo_raw`], boxed so that
    /// either fits where a session goes.
    pub fn echo<'a, S, F>(
        self,
        io: S,
        config: &EchoConfig,
        shutdown: F,
    ) -> Pin<Box<dyn Future<Output = Session> + Send + 'a>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'a,
        F: Future<Output = ()> + Send + 'a,
    {
        match self {
            Mode::Line => Box::pin(echo(io, config, shutdown)),
            Mode::Raw => Box::pin(echo_raw(io, config, shutdown)),
        }
    }
}

/// Runs one RFC 862 echo session over `io`: every byte read is written back as it is, until the
/// peer half-closes, a timeout is hit, or `shutdown` completes and what had arrived is echoed.
///
/// The idle timeout counts time without a byte from the peer, and the write timeout (the same
/// duration) the time one read's echo takes to be written; `max_line` does not apply. The
/// returned [`Session`] counts bytes; its `lines` stays 0. A waiting session holds one timer
/// and no buffer: one is borrowed from a per-thread pool for each read and its echo.
///
/// # Examples
///
/// ```
/// use futures_lite::future;
/// use smol_echo::{CloseReason, EchoConfig, echo_raw};
///
/// // What is read comes from the cursor, what is written lands after it in the same buffer.
/// let mut io = futures_lite::io::Cursor::new(b"hi\n.\r\n".to_vec());
/// let session = future::block_on(echo_raw(&mut io, &EchoConfig::default(), future::pending()));
/// assert_eq!(session.reason, CloseReason::Eof);
/// assert_eq!(&io.get_ref()[6..], b"hi\n.\r\n");
/// ```
pub fn echo_raw<S, F>(io: S, config: &EchoConfig, shutdown: F) -> impl Future<Output = Session> + use<S, F>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = ()>,
{
    let mut raw = Raw { io, config: config.clone(), alarm: Alarm::default(), grace_deadline: None, bytes: 0 };
    async move {
        let mut shutdown = pin!(future::fuse(shutdown));
        let reason = raw.run(shutdown.as_mut()).await;
        Session { lines: 0, bytes: raw.bytes, reason }
    }
}

struct Raw<S> {
    io: S,
    config: EchoConfig,
    alarm: Alarm,
    /// Set once shutdown is asked: the session ends by then whatever it still owes.
    grace_deadline: Option<Instant>,
    bytes: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Raw<S> {
    async fn run<F: Future<Output = ()>>(&mut self, mut shutdown: Pin<&mut Fuse<F>>) -> CloseReason {
        let mut idle_deadline = self.deadline_from_now();
        let mut rounds: u32 = 0;
        loop {
            rounds = rounds.wrapping_add(1);
            // A peer that keeps both directions ready never makes this loop wait: give the other
            // sessions on this thread their turn.
            if rounds.is_multiple_of(YIELD_EVERY) {
                future::yield_now().await;
            }
            let (buf, len) = match self.next_event(idle_deadline, shutdown.as_mut()).await {
                Ok(Event::Read((buf, 0))) => {
                    pool::give(buf);
                    return self.close(CloseReason::Eof).await;
                }
                Ok(Event::Read((buf, len))) => (buf, len),
                Ok(Event::Idle) => return self.close(CloseReason::IdleTimeout).await,
                Ok(Event::Shutdown) if self.grace_deadline.is_some() => {
                    return self.close(CloseReason::Shutdown).await;
                }
                Ok(Event::Shutdown) => {
                    self.begin_drain();
                    continue;
                }
                Err(err) => return CloseReason::from_error(err),
            };
            let written = self.write(&buf[..len], shutdown.as_mut()).await;
            pool::give(buf);
            if let Err(reason) = written {
                return reason;
            }
            idle_deadline = self.deadline_from_now();
            // A peer whose bytes never pause keeps the read ready, and a ready read wins the race
            // for the next event: look at shutdown here too.
            if self.grace_deadline.is_none() && future::poll_once(shutdown.as_mut()).await.is_some() {
                self.begin_drain();
            }
        }
    }

    /// The idle (or write) deadline for a wait that starts now.
    fn deadline_from_now(&self) -> Option<Instant> {
        self.config.idle_timeout.map(|d| Instant::now() + d)
    }

    /// Shutdown was asked: from now on read only what is already readable.
    fn begin_drain(&mut self) {
        self.grace_deadline = Some(Instant::now() + self.config.grace);
    }

    async fn next_event<F: Future<Output = ()>>(
        &mut self,
        idle_deadline: Option<Instant>,
        shutdown: Pin<&mut Fuse<F>>,
    ) -> io::Result<Event<(Vec<u8>, usize)>> {
        let Raw { io, alarm, grace_deadline, .. } = self;
        let read = future::poll_fn(|cx| pool::poll_read(io, cx));
        next_event(read, alarm, idle_deadline, *grace_deadline, shutdown).await
    }

    /// Writes one read's bytes back.
    async fn write<F: Future<Output = ()>>(
        &mut self,
        echo: &[u8],
        shutdown: Pin<&mut Fuse<F>>,
    ) -> Result<(), CloseReason> {
        let Raw { io, alarm, config, grace_deadline, bytes, .. } = self;
        write_within(io, echo, alarm, config, grace_deadline, shutdown).await?;
        *bytes += echo.len() as u64;
        Ok(())
    }

    async fn close(&mut self, reason: CloseReason) -> CloseReason {
        let Raw { io, alarm, config, grace_deadline, .. } = self;
        half_close(io, alarm, config, *grace_deadline).await;
        // Input may still be arriving only when the server, not the peer, ended the session.
        if reason == CloseReason::Shutdown {
            linger(io, alarm, config, *grace_deadline).await;
        }
        reason
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};
    use std::time::Duration;

    use futures_lite::io::Cursor;

    use super::*;

    fn config(idle: Duration) -> EchoConfig {
        EchoConfig { idle_timeout: Some(idle), grace: Duration::from_millis(100), ..EchoConfig::default() }
    }

    /// A peer that sends without pause and never takes a byte back.
    struct NoReader;

    impl AsyncRead for NoReader {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
            buf.fill(b'x');
            Poll::Ready(Ok(buf.len()))
        }
    }

    impl AsyncWrite for NoReader {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
            Poll::Pending
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    /// A stream that reads from `input` and writes to `output`; `None` input never has a byte.
    struct Pipe {
        input: Option<Cursor<Vec<u8>>>,
        output: Vec<u8>,
    }

    impl AsyncRead for Pipe {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            match self.input.as_mut() {
                Some(input) => Pin::new(input).poll_read(cx, buf),
                None => Poll::Pending,
            }
        }
    }

    impl AsyncWrite for Pipe {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.output).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.output).poll_flush(cx)
        }

        fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.output).poll_close(cx)
        }
    }

    /// A stream whose reads fail with a reset.
    struct Reset;

    impl AsyncRead for Reset {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut [u8]) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
        }
    }

    impl AsyncWrite for Reset {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn every_byte_comes_back_untouched() {
        // More than one pooled buffer's worth, every byte value, no line ends where they would be.
        let input: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
        let mut pipe = Pipe { input: Some(Cursor::new(input.clone())), output: Vec::new() };
        let session = future::block_on(echo_raw(&mut pipe, &EchoConfig::default(), future::pending()));
        assert_eq!(session, Session { lines: 0, bytes: input.len() as u64, reason: CloseReason::Eof });
        assert_eq!(pipe.output, input);
    }

    #[test]
    fn a_silent_peer_is_closed_by_the_idle_timeout() {
        let started = Instant::now();
        let pipe = Pipe { input: None, output: Vec::new() };
        let session =
            future::block_on(echo_raw(pipe, &config(Duration::from_millis(100)), future::pending()));
        assert_eq!(session.reason, CloseReason::IdleTimeout);
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(100) && elapsed < Duration::from_secs(5), "{elapsed:?}");
    }

    #[test]
    fn a_reset_is_reported_as_such() {
        let session = future::block_on(echo_raw(Reset, &EchoConfig::default(), future::pending()));
        assert_eq!(session.reason, CloseReason::Reset);
    }

    #[test]
    fn shutdown_ends_a_waiting_session() {
        let pipe = Pipe { input: None, output: Vec::new() };
        let session = future::block_on(echo_raw(pipe, &config(Duration::from_secs(30)), future::ready(())));
        assert_eq!(session.reason, CloseReason::Shutdown);
    }

    #[test]
    fn a_peer_that_does_not_read_is_closed_by_the_write_timeout() {
        let started = Instant::now();
        let session =
            future::block_on(echo_raw(NoReader, &config(Duration::from_millis(100)), future::pending()));
        assert_eq!(session.reason, CloseReason::WriteTimeout);
        assert_eq!(session.bytes, 0);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn shutdown_with_a_peer_that_never_pauses_ends_within_the_grace_period() {
        // The echo never completes, so the grace period is what ends the session.
        let started = Instant::now();
        let session =
            future::block_on(echo_raw(NoReader, &config(Duration::from_secs(30)), future::ready(())));
        assert_eq!(session.reason, CloseReason::Shutdown);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
