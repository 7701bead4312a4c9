//! How a session ended, and what it did.

use std::fmt;
use std::io;

/// Why a session ended.
///
/// # Examples
///
/// ```
/// assert_eq!(smol_echo::CloseReason::IdleTimeout.to_string(), "idle timeout");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The layer under the session broke its protocol: a TLS handshake or record that failed,
    /// say. The text says what, starting with the layer's name (`tls: ...`).
    Protocol(String),
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
            // The session itself never fails this way: the stream under it (TLS) does, and its
            // text is the reason.
            io::ErrorKind::InvalidData => CloseReason::Protocol(err.to_string()),
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
            CloseReason::Protocol(text) => text,
            CloseReason::Error(kind) => return write!(f, "error: {kind}"),
        })
    }
}

/// What one session did: lines and bytes echoed, and why it ended.
///
/// An unterminated tail echoed at end of input counts as a line.
///
/// Fields may be added in a minor release; read them, and build one (in tests) from
/// `..Default::default()`.
///
/// # Examples
///
/// ```
/// let session = smol_echo::Session::default();
/// assert_eq!((session.lines, session.bytes), (0, 0));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
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
