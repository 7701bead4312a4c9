//! The line protocol as a reference model: what a session must write and why it must end, for
//! a given input, written one byte at a time straight from docs/protocol.md so that it is easy to check by
//! eye. It shares no code with src/framing.rs on purpose.
//!
//! Used by tests/model.rs (property test) and fuzz/ (fuzz target), each through `#[path]`.

use std::io;

use smol_echo::CloseReason;

/// How the peer's input ends after its last byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The peer half-closes.
    Eof,
    /// The peer sends nothing more and keeps the connection open (the idle timeout ends it).
    Silent,
    /// The connection fails with this kind of error.
    Error(io::ErrorKind),
}

/// What a session must do with an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Every byte it must write, in order.
    pub output: Vec<u8>,
    /// Lines echoed; an unterminated tail echoed at end of input counts as one.
    pub lines: u64,
    /// Why it ends.
    pub reason: CloseReason,
}

/// The expected echo of `input` from a session with lines of at most `max_line` bytes.
pub fn expected(input: &[u8], max_line: usize, end: End) -> Expected {
    let mut output = Vec::new();
    let mut lines = 0;
    let mut line = Vec::new();
    for &byte in input {
        line.push(byte);
        // Rule 6: the line grew past the limit; nothing of it is echoed.
        if line.len() > max_line {
            return Expected { output, lines, reason: CloseReason::LineTooLong };
        }
        // Rule 1: only CR LF ends a line; the line holds both.
        if line.ends_with(b"\r\n") {
            // Rule 3: the sentinel is not echoed, and nothing after it is read.
            if line == b".\r\n" {
                return Expected { output, lines, reason: CloseReason::Sentinel };
            }
            // Rule 2: every complete line is echoed as it is.
            output.extend_from_slice(&line);
            lines += 1;
            line.clear();
        }
    }
    let reason = match end {
        // Rule 7: at end of input the unterminated tail is echoed as it is.
        End::Eof => {
            if !line.is_empty() {
                output.extend_from_slice(&line);
                lines += 1;
            }
            CloseReason::Eof
        }
        // Rules 4 and 7: no complete line within the idle timeout; the tail is dropped.
        End::Silent => CloseReason::IdleTimeout,
        // Rule 8: a reset ends the session with what was echoed so far.
        End::Error(
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe,
        ) => CloseReason::Reset,
        End::Error(kind) => CloseReason::Error(kind),
    };
    Expected { output, lines, reason }
}
