//! The line protocol: CR LF lines echoed whole, the sentinel `.`, the maximum line length.

use std::future::Future;

use futures_lite::io::{AsyncRead, AsyncWrite};

use super::config::EchoConfig;
use super::engine::{self, Framing};
use super::framing::{self, Scan};
use super::outcome::Session;

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
    engine::run(io, Lines { max_line: config.max_line }, config, shutdown)
}

/// Complete lines are echoed, up to a sentinel or a line that is too long.
struct Lines {
    max_line: usize,
}

impl Framing for Lines {
    fn split(&self, owed: &[u8], scanned: usize) -> Scan {
        framing::scan(owed, scanned, self.max_line)
    }

    fn max_held(&self) -> usize {
        self.max_line
    }
}
