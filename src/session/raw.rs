//! The RFC 862 echo: every byte goes back as it arrives, with no lines, no sentinel and no
//! line limit.

use std::future::Future;

use futures_lite::io::{AsyncRead, AsyncWrite};

use super::config::EchoConfig;
use super::engine::{self, Framing};
use super::framing::Scan;
use super::outcome::Session;

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
    engine::run(io, Bytes, config, shutdown)
}

/// Every byte read is echoed at once: nothing is held across reads, and nothing ends the
/// session but the peer, a timeout or shutdown.
struct Bytes;

impl Framing for Bytes {
    fn split(&self, owed: &[u8], _scanned: usize) -> Scan {
        Scan { echo_end: owed.len(), lines: 0, closing: None }
    }

    fn max_held(&self) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::{Duration, Instant};

    use futures_lite::future;
    use futures_lite::io::Cursor;

    use super::*;
    use crate::session::outcome::CloseReason;

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
