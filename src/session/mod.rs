//! One echo session over any byte stream: the line protocol ([`echo`]) or RFC 862
//! ([`echo_raw`]), on one engine.
//!
//! The two protocols differ only in how much of what was read is echoed at once and when the
//! session must end: [`line`] finds complete lines with the framing scanner, [`raw`] echoes
//! every byte. The rest is shared by the engine: the wait for input, the idle, write and grace
//! [`Deadlines`](deadlines::Deadlines), the drain after shutdown, the half-close and the linger.
//!
//! The engine does not read through a `BufReader` with `read_until`, the usual shape of a line
//! server (and the simplest one, fine for a handful of clients):
//!
//! - a `BufReader` owns its buffer for the whole session, while here a waiting session holds
//!   none ([`pool`] lends one for the read that wakes it);
//! - `read_until` hands over one line at a time, each then written on its own, while here every
//!   complete line already read goes back with one write;
//! - `read_until` searches from the start of what it holds on every call, while the scanner
//!   resumes where the last search stopped, so a line dripped byte by byte costs linear time;
//! - `read_until(b'\n')` ends a line at any LF, while here a bare LF is data and only CR LF
//!   ends a line.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};

mod alarm;
mod deadlines;
mod engine;
mod framing;
mod line;
mod pool;
mod raw;
mod rx;

pub use line::echo;
pub use raw::echo_raw;

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
    /// The smallest `max_line` that makes sense: the sentinel line `.` takes three bytes with its
    /// CR LF.
    pub const MIN_MAX_LINE: usize = 3;
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
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe => {
                CloseReason::Reset
            }
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
pub enum Mode {
    /// The line protocol of [`echo`]: CR LF lines, the sentinel `.`, the maximum line length.
    #[default]
    Line,
    /// RFC 862: every byte back as it arrives; see [`echo_raw`].
    Raw,
}

/// Parses `line` or `raw`.
///
/// # Examples
///
/// ```
/// use smol_echo::Mode;
///
/// assert_eq!("raw".parse::<Mode>().unwrap(), Mode::Raw);
/// assert!("lines".parse::<Mode>().is_err());
/// ```
impl FromStr for Mode {
    type Err = io::Error;

    fn from_str(text: &str) -> io::Result<Mode> {
        match text {
            "line" => Ok(Mode::Line),
            "raw" => Ok(Mode::Raw),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid mode '{text}': use line or raw"),
            )),
        }
    }
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
