//! What a bench does: connections, lines in flight, line size, how long.

use std::io;
use std::time::Duration;

use crate::session::Mode;

/// How long a bench sends lines.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use smol_echo::bench::BenchLimit;
///
/// let limit = BenchLimit::Duration(Duration::from_secs(10));
/// assert_ne!(limit, BenchLimit::Lines(1000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BenchLimit {
    /// Send for this long, then stop sending and wait for the echoes still in flight.
    Duration(Duration),
    /// Send exactly this many lines (raw messages, datagrams) in total, spread evenly over the
    /// connections.
    Lines(u64),
}

/// What a bench does: how many connections, how many lines in flight on each, how long the lines
/// are, and for how long or how many lines.
///
/// In [`Mode::Raw`] a "line" is a message of `size` arbitrary bytes (CR, LF, NUL, 0xff and `.`
/// among them, no framing); a UDP bench ([`bench_udp`](super::bench_udp)) sends datagrams of
/// `size` such bytes and ignores `mode`.
///
/// Fields may be added in a minor release: build one from `..Default::default()`, as below, so
/// that such an addition breaks no caller.
///
/// # Examples
///
/// ```
/// use smol_echo::bench::{BenchConfig, BenchLimit};
/// use smol_echo::Mode;
///
/// let config = BenchConfig { depth: 32, limit: BenchLimit::Lines(10_000), ..BenchConfig::default() };
/// assert_eq!((config.connections, config.size, config.mode), (50, 64, Mode::Line));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchConfig {
    /// Connections opened at once. With [`BenchLimit::Lines`], no more than the lines.
    pub connections: usize,
    /// Lines in flight on each connection: sent and not yet echoed.
    pub depth: usize,
    /// Bytes per line, CR LF included, or per raw message or datagram; at least
    /// [`BenchConfig::MIN_SIZE`], and for UDP at most [`BenchConfig::MAX_UDP_SIZE`].
    pub size: usize,
    /// How long to send, or how many lines.
    pub limit: BenchLimit,
    /// How long a connection may take to open, and how long the bench waits while no echo at all
    /// arrives (in particular for the last echoes after the duration). Past it, every connection
    /// still waiting counts as an error. In a UDP bench, a datagram whose reply has not come
    /// within it is lost.
    pub timeout: Duration,
    /// What a stream bench sends: CR LF lines for a line server, or raw messages for an RFC 862
    /// server ([`Mode::Raw`]).
    pub mode: Mode,
}

impl BenchConfig {
    /// The shortest line: six bytes of sequence number and CR LF; also the shortest raw message
    /// or datagram, which start with eight bytes of sequence number.
    ///
    /// ```
    /// let config = smol_echo::BenchConfig { size: 4, ..Default::default() };
    /// assert!(config.size < smol_echo::BenchConfig::MIN_SIZE); // a bench would refuse it
    /// ```
    pub const MIN_SIZE: usize = 8;

    /// The longest UDP datagram: the largest payload of an IPv4 datagram.
    ///
    /// ```
    /// assert_eq!(smol_echo::BenchConfig::MAX_UDP_SIZE, smol_echo::client::MAX_DATAGRAM);
    /// ```
    pub const MAX_UDP_SIZE: usize = crate::net::MAX_DATAGRAM;

    /// Refuses what no bench can run, with one message for every stream or datagram bench.
    pub(crate) fn check(&self) -> io::Result<()> {
        if self.connections == 0 || self.depth == 0 || self.size < BenchConfig::MIN_SIZE {
            let message = format!(
                "bench needs a connection or more, a depth of 1 or more, and lines of {} bytes or more",
                BenchConfig::MIN_SIZE
            );
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
        Ok(())
    }
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            connections: 50,
            depth: 1,
            size: 64,
            limit: BenchLimit::Duration(Duration::from_secs(10)),
            timeout: Duration::from_secs(5),
            mode: Mode::Line,
        }
    }
}
