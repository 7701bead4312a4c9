//! What a bench does: connections, lines in flight, line size, how long.

use std::io;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use crate::session::{Mode, check_duration, in_range};

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
    /// How long the bench waits while no echo at all arrives (in particular for the last
    /// echoes after the duration); its clock starts again whenever a connection opens or gets
    /// an echo, so connections still opening do not run it down. Past it, every connection
    /// still waiting for an echo counts as an error. In a UDP bench, a datagram whose reply has
    /// not come within it is lost.
    pub timeout: Duration,
    /// How long a connection may take to open; one that takes longer counts as an error.
    pub connect_timeout: Duration,
    /// What a stream bench sends: CR LF lines for a line server, or raw messages for an RFC 862
    /// server ([`Mode::Raw`]).
    pub mode: Mode,
    /// How a bench of a `tls:` address verifies the server.
    #[cfg(feature = "tls")]
    pub tls: crate::tls::TlsClientConfig,
    /// Open loop: send this many lines per second in total, spread evenly over the connections,
    /// and measure each line's latency from the moment it was due, not from its actual send, so
    /// that a server that stalls shows in the percentiles instead of slowing the load down (no
    /// coordinated omission); `None`, the default, sends the next line as soon as an echo makes
    /// room. `depth` still caps the lines in flight: a line
    /// due while `depth` are in flight waits, and its wait counts in its latency. Stream benches
    /// only; within [`BenchConfig::RATE`].
    pub rate: Option<u64>,
    /// Connection churn: each connection closes after this many lines (cleanly: it half-closes
    /// and reads until the server closes) and a new one opens in its place; `None`, the default,
    /// keeps each connection to the end. Stream benches only; at least 1.
    pub churn: Option<u64>,
    /// `Some`: each stream connection starts with a PROXY protocol header of this version
    /// naming the connection's own addresses, as a balancer would send it; UDP ignores it.
    #[cfg(feature = "proxy")]
    pub proxy_protocol: Option<crate::proxy::Version>,
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

    /// The connections a bench may open.
    pub const CONNECTIONS: RangeInclusive<usize> = 1..=1_000_000;

    /// The lines in flight a connection may keep.
    pub const DEPTH: RangeInclusive<usize> = 1..=65536;

    /// The sizes of a line (or raw message): at least [`BenchConfig::MIN_SIZE`], at most
    /// 16 MiB. UDP takes at most [`BenchConfig::MAX_UDP_SIZE`].
    pub const SIZE: RangeInclusive<usize> = BenchConfig::MIN_SIZE..=16 << 20;

    /// The rates ([`BenchConfig::rate`]) a bench may be asked for, in lines per second in total.
    ///
    /// ```
    /// assert!(smol_echo::BenchConfig::RATE.contains(&1_000_000));
    /// ```
    pub const RATE: RangeInclusive<u64> = 1..=1_000_000_000;

    /// Refuses settings out of their documented ranges ([`BenchConfig::CONNECTIONS`],
    /// [`BenchConfig::DEPTH`], [`BenchConfig::SIZE`], [`BenchConfig::RATE`], at least one line
    /// (in total, and per connection with [`BenchConfig::churn`]), durations above 0 and
    /// at most [`MAX_DURATION`](crate::MAX_DURATION)). The message names each setting by
    /// `name(field)`, so that a command line can speak of its flags.
    ///
    /// # Examples
    ///
    /// ```
    /// use smol_echo::BenchConfig;
    ///
    /// let deep = BenchConfig { depth: 100_000, ..BenchConfig::default() };
    /// let err = deep.check(&|field| if field == "depth" { "-p" } else { field }).unwrap_err();
    /// assert_eq!(err.to_string(), "-p must be from 1 to 65536, not 100000");
    /// ```
    pub fn check(&self, name: &dyn Fn(&'static str) -> &'static str) -> io::Result<()> {
        let above_zero = Duration::from_nanos(1);
        in_range(name("connections"), self.connections, BenchConfig::CONNECTIONS)?;
        in_range(name("depth"), self.depth, BenchConfig::DEPTH)?;
        in_range(name("size"), self.size, BenchConfig::SIZE)?;
        match self.limit {
            BenchLimit::Lines(lines) => in_range(name("lines"), lines, 1..=u64::MAX)?,
            BenchLimit::Duration(duration) => check_duration(name("duration"), duration, above_zero)?,
        }
        if let Some(rate) = self.rate {
            in_range(name("rate"), rate, BenchConfig::RATE)?;
        }
        if let Some(churn) = self.churn {
            in_range(name("churn"), churn, 1..=u64::MAX)?;
        }
        check_duration(name("timeout"), self.timeout, above_zero)?;
        check_duration(name("connect_timeout"), self.connect_timeout, above_zero)
    }

    /// About how many bytes the connections' buffers take: connections x depth x size, and the
    /// send time of each line in flight.
    pub(crate) fn memory_needed(&self) -> u64 {
        let per_line = self.size as u64 + std::mem::size_of::<Instant>() as u64;
        (self.connections as u64).saturating_mul(self.depth as u64).saturating_mul(per_line)
    }

    /// Refuses a bench whose buffers need more memory than the system has available now: an
    /// allocation that large would abort the process, or swap the machine to a halt.
    pub(crate) fn check_memory(&self) -> io::Result<()> {
        let needed = self.memory_needed();
        let Some(available) = available_memory() else { return Ok(()) };
        if needed <= available {
            return Ok(());
        }
        let mib = |bytes: u64| bytes.div_ceil(1 << 20);
        let (c, p, s) = (self.connections, self.depth, self.size);
        let message = format!(
            "the bench would need {} MiB for {c} connections x depth {p} x {s} bytes, and {} MiB is available",
            mib(needed),
            mib(available)
        );
        Err(io::Error::new(io::ErrorKind::OutOfMemory, message))
    }
}

/// The memory available for new allocations (`MemAvailable` in /proc/meminfo), if known.
fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find_map(|line| line.strip_prefix("MemAvailable:"))?;
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            connections: 50,
            depth: 1,
            size: 64,
            limit: BenchLimit::Duration(Duration::from_secs(10)),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            mode: Mode::Line,
            #[cfg(feature = "tls")]
            tls: Default::default(),
            rate: None,
            churn: None,
            #[cfg(feature = "proxy")]
            proxy_protocol: None,
        }
    }
}
