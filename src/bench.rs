//! The load generator: many connections, every echo checked, latency measured.
//!
//! All connections run as tasks of one single-threaded executor. Each keeps `depth` lines in
//! flight in a ring of line slots, written with as few writes as the socket allows; echoes are
//! read into one large buffer shared by every connection and compared in bulk with the ring,
//! which holds the expected bytes. Nothing is allocated or copied per line. The same code drives
//! TCP and Unix stream sockets (monomorphised per socket type) and both the line protocol and raw
//! messages, which differ only in the bytes of the ring. UDP is in `bench_udp`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::RangeInclusive;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use futures_lite::FutureExt;
use hdrhistogram::Histogram;

use crate::client::{first_to_connect, within};
use crate::raw::Mode;
use crate::session::{check_duration, in_range};

/// How long a bench sends lines.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use smol_echo::BenchLimit;
///
/// let limit = BenchLimit::Duration(Duration::from_secs(10));
/// assert_ne!(limit, BenchLimit::Lines(1000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
/// among them, no framing); a UDP bench ([`bench_udp`](fn@crate::bench_udp)) sends datagrams of
/// `size` such bytes and ignores `mode`.
///
/// # Examples
///
/// ```
/// use smol_echo::{BenchConfig, BenchLimit, Mode};
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
}

impl BenchConfig {
    /// The shortest line: six bytes of sequence number and CR LF; also the shortest raw message
    /// or datagram, which start with eight bytes of sequence number.
    pub const MIN_SIZE: usize = 8;

    /// The longest UDP datagram: the largest payload of an IPv4 datagram.
    pub const MAX_UDP_SIZE: usize = crate::udp_client::MAX_DATAGRAM;

    /// The connections a bench may open.
    pub const CONNECTIONS: RangeInclusive<usize> = 1..=1_000_000;

    /// The lines in flight a connection may keep.
    pub const DEPTH: RangeInclusive<usize> = 1..=65536;

    /// The sizes of a line (or raw message): at least [`BenchConfig::MIN_SIZE`], at most
    /// 16 MiB. UDP takes at most [`BenchConfig::MAX_UDP_SIZE`].
    pub const SIZE: RangeInclusive<usize> = BenchConfig::MIN_SIZE..=16 << 20;

    /// Refuses settings out of their documented ranges ([`BenchConfig::CONNECTIONS`],
    /// [`BenchConfig::DEPTH`], [`BenchConfig::SIZE`], at least one line, durations above 0 and
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
        }
    }
}

/// Round-trip latency percentiles of the lines echoed, in microseconds.
///
/// # Examples
///
/// ```
/// let latency = smol_echo::Latency::default();
/// assert_eq!(latency.max, 0.0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest line.
    pub max: f64,
}

/// The outcome of a bench.
///
/// `Display` renders it as a table; [`BenchReport::to_json`] as one JSON object. Whatever was
/// sent, the counts keep the names of the line protocol: in [`Mode::Raw`] `lines` counts raw
/// messages, and in a UDP bench datagrams that came back intact (see [`Datagrams`]).
///
/// # Examples
///
/// ```
/// let report = smol_echo::BenchReport { lines: 1000, duration_s: 0.5, ..Default::default() };
/// assert!(report.to_json().contains(r#""lines":1000,"#));
/// assert!(report.to_string().contains("1000"));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BenchReport {
    /// Connections opened (or tried).
    pub connections: usize,
    /// Lines in flight per connection.
    pub depth: usize,
    /// Bytes per line, CR LF included.
    pub size: usize,
    /// Measured time, in seconds, from the first connection open to the end of the last one.
    pub duration_s: f64,
    /// Lines echoed and checked.
    pub lines: u64,
    /// `lines / duration_s`.
    pub lines_per_s: f64,
    /// Echoed bytes received per second, in MiB.
    pub mib_per_s: f64,
    /// Round-trip latency of a line, from its send to the arrival of its echo.
    pub latency_us: Latency,
    /// What was sent over the stream: lines or raw messages. [`Mode::Raw`] for a UDP bench.
    pub mode: Mode,
    /// The datagram counts of a UDP bench; `None` for a stream bench, where nothing is lost
    /// without the connection failing.
    pub datagrams: Option<Datagrams>,
    /// Connections that failed: could not open, got a wrong echo, were dropped, or got no echo
    /// in time. In a UDP bench: corrupted replies, flows that failed (e.g. the port refused), and
    /// flows that got no reply at all.
    pub errors: u64,
    /// Of `errors`, connections that could not open within the connect timeout (or were
    /// refused): told apart from the ones that opened and then failed.
    pub connect_errors: u64,
    /// What went wrong first, for a message.
    pub first_error: Option<String>,
    /// The bench was interrupted before its end (see [`bench_until`]).
    pub interrupted: bool,
}

impl BenchReport {
    /// The report as one JSON object, with the keys `connections`, `depth`, `size`,
    /// `duration_s`, `lines`, `lines_per_s`, `mib_per_s`, `latency_us` (`p50`, `p90`, `p99`,
    /// `p999`, `max`), `mode` (`"line"`, `"raw"` or `"udp"`), for UDP `sent`, `received`, `lost`
    /// and `loss_pct`, `interrupted` (only when true), `connect_errors`, and last `errors`.
    ///
    /// # Examples
    ///
    /// ```
    /// let json = smol_echo::BenchReport::default().to_json();
    /// assert!(json.starts_with(r#"{"connections":0,"#) && json.ends_with(r#""mode":"line","connect_errors":0,"errors":0}"#));
    /// ```
    pub fn to_json(&self) -> String {
        let l = &self.latency_us;
        let datagrams = self.datagrams.map_or(String::new(), |d| {
            format!(
                r#""sent":{},"received":{},"lost":{},"loss_pct":{:.3},"#,
                d.sent,
                d.received,
                d.lost,
                d.loss_percent()
            )
        });
        format!(
            concat!(
                r#"{{"connections":{},"depth":{},"size":{},"duration_s":{:.3},"lines":{},"#,
                r#""lines_per_s":{:.1},"mib_per_s":{:.3},"#,
                r#""latency_us":{{"p50":{:.1},"p90":{:.1},"p99":{:.1},"p999":{:.1},"max":{:.1}}},"#,
                r#""mode":"{}",{}{}"connect_errors":{},"errors":{}}}"#
            ),
            self.connections,
            self.depth,
            self.size,
            self.duration_s,
            self.lines,
            self.lines_per_s,
            self.mib_per_s,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            self.kind(),
            datagrams,
            if self.interrupted { r#""interrupted":true,"# } else { "" },
            self.connect_errors,
            self.errors
        )
    }

    /// `line`, `raw` or `udp`: what was sent, and how.
    fn kind(&self) -> &'static str {
        match (self.datagrams, self.mode) {
            (Some(_), _) => "udp",
            (None, Mode::Line) => "line",
            (None, Mode::Raw) => "raw",
        }
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.latency_us;
        let (who, what, unit) = match (self.datagrams, self.mode) {
            (Some(_), _) => ("flows", "datagrams", "datagrams"),
            (None, Mode::Raw) => ("connections", "raw messages", "messages"),
            (None, Mode::Line) => ("connections", "lines", "lines"),
        };
        writeln!(
            f,
            "{} {who}, depth {}, {}-byte {what}, {:.3} s{}",
            self.connections,
            self.depth,
            self.size,
            self.duration_s,
            if self.interrupted { ", interrupted" } else { "" }
        )?;
        match self.datagrams {
            Some(d) => {
                writeln!(f, "  sent        {:>12}", d.sent)?;
                writeln!(f, "  received    {:>12}", d.received)?;
                writeln!(f, "  lost        {:>12}  ({:.3} %)", d.lost, d.loss_percent())?;
            }
            None => writeln!(f, "  {unit:<12}{:>12}", self.lines)?,
        }
        writeln!(f, "  {:<12}{:>12.1}", format!("{unit}/s"), self.lines_per_s)?;
        writeln!(f, "  MiB/s       {:>12.3}", self.mib_per_s)?;
        writeln!(
            f,
            "  latency µs  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            l.p50, l.p90, l.p99, l.p999, l.max
        )?;
        match self.connect_errors {
            0 => writeln!(f, "  errors      {:>12}", self.errors),
            n => writeln!(f, "  errors      {:>12}  ({n} could not connect)", self.errors),
        }
    }
}

/// What became of the datagrams of a UDP bench: every one sent was either received (its intact
/// reply came back in time) or lost (no such reply within the timeout, or none by the end). A
/// corrupted reply is an error and receives nothing.
///
/// # Examples
///
/// ```
/// let d = smol_echo::Datagrams { sent: 200, received: 150, lost: 50 };
/// assert_eq!(d.loss_percent(), 25.0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Datagrams {
    /// Datagrams sent.
    pub sent: u64,
    /// Intact replies received in time: the report's `lines`.
    pub received: u64,
    /// Datagrams without an intact reply in time: `sent - received`.
    pub lost: u64,
}

impl Datagrams {
    /// `lost` in percent of `sent`; 0 when nothing was sent.
    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 { 0.0 } else { self.lost as f64 * 100.0 / self.sent as f64 }
    }
}

/// How a bench is going, given to the progress callback once a second.
///
/// # Examples
///
/// ```
/// let progress = smol_echo::Progress::default();
/// assert_eq!((progress.lines, progress.errors), (0, 0));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Time since the start.
    pub elapsed: Duration,
    /// Lines (raw messages, datagrams) echoed and checked so far.
    pub lines: u64,
    /// Errors so far.
    pub errors: u64,
}

/// How often the progress callback is called.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Size of the read buffer shared by all connections.
const READ_BUFFER: usize = 64 * 1024;

/// Rounds of reading and writing one connection may do before it lets the others run.
const BUDGET: usize = 32;

/// Loads the echo server at `addr` as `config` says and checks every echoed byte. `addr` is
/// `host:port`, `[v6addr]:port` or `unix:/path` (a Unix stream socket). `progress` is called
/// once a second.
///
/// The connections run as tasks of a single-threaded executor inside the returned future, which
/// runs on any executor. When no connection at all can be opened the result is an error;
/// otherwise every failure (a connection that cannot open, a wrong echo, a dropped connection,
/// echoes that do not come within `config.timeout`) counts in [`BenchReport::errors`].
///
/// # Examples
///
/// ```
/// use smol_echo::{BenchConfig, BenchLimit, Server, ServerConfig};
///
/// smol::block_on(async {
///     let server = Server::new(smol_echo::bind(&["127.0.0.1:0"]).await?, ServerConfig::default());
///     let addr = server.local_addrs()?[0].to_string();
///     let (_stop, stopped) = async_channel::bounded::<()>(1);
///     smol::spawn(server.run(|task| smol::spawn(task).detach(), async move {
///         stopped.recv().await.ok();
///     }))
///     .detach();
///
///     let config = BenchConfig { connections: 4, limit: BenchLimit::Lines(100), ..Default::default() };
///     let report = smol_echo::bench(&addr, &config, |_| {}).await?;
///     assert_eq!((report.lines, report.errors), (100, 0));
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
pub async fn bench(
    addr: &str,
    config: &BenchConfig,
    progress: impl FnMut(&Progress),
) -> io::Result<BenchReport> {
    bench_until(addr, config, progress, futures_lite::future::pending()).await
}

/// [`bench()`], stopped early when `interrupt` completes (a signal, say): no more lines are
/// sent, the lines in flight get a second (at most `config.timeout`) to come back, and the
/// report of what was measured says [`BenchReport::interrupted`]. Echoes cut off that way are
/// not errors.
///
/// # Examples
///
/// ```
/// use smol_echo::{BenchConfig, BenchLimit, Server, ServerConfig};
///
/// smol::block_on(async {
///     let server = Server::new(smol_echo::bind(&["127.0.0.1:0"]).await?, ServerConfig::default());
///     let addr = server.local_addrs()?[0].to_string();
///     let (_stop, stopped) = async_channel::bounded::<()>(1);
///     smol::spawn(server.run(|task| smol::spawn(task).detach(), async move {
///         stopped.recv().await.ok();
///     }))
///     .detach();
///
///     let config = BenchConfig { connections: 2, limit: BenchLimit::Lines(u64::MAX), ..Default::default() };
///     let interrupt = async_io::Timer::after(std::time::Duration::from_millis(200));
///     let report = smol_echo::bench_until(&addr, &config, |_| {}, async { interrupt.await; }).await?;
///     assert!(report.interrupted && report.lines > 0);
///     assert_eq!(report.errors, 0);
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
pub async fn bench_until(
    addr: &str,
    config: &BenchConfig,
    mut progress: impl FnMut(&Progress),
    interrupt: impl Future<Output = ()>,
) -> io::Result<BenchReport> {
    config.check(&|field| field)?;
    config.check_memory()?;
    let cannot = |err: io::Error| io::Error::new(err.kind(), format!("cannot connect to {addr}: {err}"));
    let shared = Shared::new();
    let ex = LocalExecutor::new();
    if let Some(path) = addr.strip_prefix("unix:") {
        let target = PathBuf::from(path);
        let first = target.open(config.connect_timeout).await.map_err(cannot)?;
        Ok(ex.run(drive(&ex, &shared, config, target, first, &mut progress, interrupt)).await)
    } else {
        let addrs = async_net::resolve(addr).await.map_err(cannot)?;
        let open = |target: SocketAddr| async move { target.open(config.connect_timeout).await };
        let (first, target) = first_to_connect(&addrs, open).await.map_err(cannot)?;
        Ok(ex.run(drive(&ex, &shared, config, target, first, &mut progress, interrupt)).await)
    }
}

/// Where the connections of a stream bench go: a TCP address or a Unix socket path.
trait Target: Clone {
    type Stream;

    /// Opens one connection, or fails after `timeout`.
    async fn open(&self, timeout: Duration) -> io::Result<Async<Self::Stream>>;
}

impl Target for SocketAddr {
    type Stream = TcpStream;

    async fn open(&self, timeout: Duration) -> io::Result<Async<TcpStream>> {
        let stream = within(timeout, Async::<TcpStream>::connect(*self)).await?;
        stream.get_ref().set_nodelay(true)?;
        Ok(stream)
    }
}

impl Target for PathBuf {
    type Stream = UnixStream;

    async fn open(&self, timeout: Duration) -> io::Result<Async<UnixStream>> {
        within(timeout, Async::<UnixStream>::connect(self)).await
    }
}

/// Runs the connections to the end and makes the report.
async fn drive<'a, A: Target + 'a>(
    ex: &LocalExecutor<'a>,
    shared: &'a Shared,
    config: &BenchConfig,
    target: A,
    first: Async<A::Stream>,
    progress: &mut impl FnMut(&Progress),
    interrupt: impl Future<Output = ()>,
) -> BenchReport
where
    for<'b> &'b A::Stream: Read + Write,
{
    let quotas = quotas(config);
    // Each task holds a sender: `recv` fails once all are gone, and the count left is the
    // connections still running.
    let (running, finished) = async_channel::bounded::<()>(1);
    let start = Instant::now();
    let mut first = Some(first);
    for (id, &quota) in quotas.iter().enumerate() {
        let stream = first.take();
        let conn = connection(id, target.clone(), stream, quota, config.clone(), shared, running.clone());
        ex.spawn(conn).detach();
    }
    drop(running);

    let Supervised { stuck, interrupted } =
        supervise(shared, config, start, config.timeout, &finished, progress, interrupt).await;
    // Echoes cut off by an interruption are not the server's failure.
    if stuck > 0 && !interrupted {
        let timeout = config.timeout;
        let message = format!("{stuck} open connection(s) got no echo within {timeout:?} (--timeout)");
        shared.fail(stuck as u64, message);
    }
    BenchReport { interrupted, ..shared.report(config, quotas.len(), start, None) }
}

/// Waits until every task has dropped its sender of `finished`, calling `progress` once a
/// second and setting `shared.stop` at the end of the duration. Gives up when no echo at all
/// has come for `quiet_limit` (while no connection is opening), or for `config.timeout` after the end of the duration, and then
/// tells how many tasks were still running.
pub(crate) async fn supervise(
    shared: &Shared,
    config: &BenchConfig,
    start: Instant,
    quiet_limit: Duration,
    finished: &async_channel::Receiver<()>,
    progress: &mut impl FnMut(&Progress),
    interrupt: impl Future<Output = ()>,
) -> Supervised {
    let mut interrupt = pin!(futures_lite::future::fuse(interrupt));
    let mut interrupted = false;
    let mut after_stop = config.timeout;
    let end = match config.limit {
        BenchLimit::Duration(duration) => Some(start + duration),
        BenchLimit::Lines(_) => None,
    };
    let mut next_tick = start + PROGRESS_EVERY;
    let mut bytes_seen = 0;
    let mut quiet_since = start;
    let mut stopped_at = None;
    // Wait for echoes while they keep coming, and after the end no longer than the timeout.
    let give_up = |quiet_since: Instant, stopped_at: Option<Instant>, after_stop: Duration| {
        let quiet = quiet_since + quiet_limit;
        stopped_at.map_or(quiet, |at| quiet.min(at + after_stop))
    };
    loop {
        let stop_at = end.filter(|_| stopped_at.is_none());
        let give_up_at = give_up(quiet_since, stopped_at, after_stop);
        let wake = [next_tick, give_up_at].into_iter().chain(stop_at).min().unwrap_or(give_up_at);
        let interrupt = interrupt.as_mut();
        let event = async {
            finished.recv().await.ok();
            Wake::AllDone
        }
        .or(async {
            Timer::at(wake).await;
            Wake::Timer
        })
        .or(async {
            interrupt.await;
            Wake::Interrupted
        })
        .await;
        let now = Instant::now();
        match event {
            Wake::AllDone => return Supervised { stuck: 0, interrupted },
            Wake::Interrupted if !interrupted => {
                // Stop sending, and give the lines in flight a moment, not the whole timeout.
                interrupted = true;
                shared.stop.set(true);
                stopped_at = Some(now);
                after_stop = config.timeout.min(INTERRUPTED_WAIT);
            }
            Wake::Interrupted | Wake::Timer => {}
        }
        if stop_at.is_some_and(|at| now >= at) {
            // The connections notice at their next echo; each has one in flight.
            shared.stop.set(true);
            stopped_at = Some(now);
        }
        if now >= next_tick {
            next_tick += PROGRESS_EVERY;
            let elapsed = now - start;
            progress(&Progress { elapsed, lines: shared.lines.get(), errors: shared.errors.get() });
        }
        // A connection still opening has its own bound, the connect timeout; the no-echo clock
        // of the others starts again once the last has opened.
        if shared.bytes.get() != bytes_seen || shared.opening.get() > 0 {
            bytes_seen = shared.bytes.get();
            quiet_since = now;
        }
        if now >= give_up(quiet_since, stopped_at, after_stop) {
            return Supervised { stuck: finished.sender_count(), interrupted };
        }
    }
}

/// What woke the supervisor.
enum Wake {
    AllDone,
    Timer,
    Interrupted,
}

/// How supervision ended: the tasks still running when it gave up, and whether the bench was
/// interrupted.
pub(crate) struct Supervised {
    pub(crate) stuck: usize,
    pub(crate) interrupted: bool,
}

/// How long an interrupted bench waits for the lines in flight (at most its timeout).
const INTERRUPTED_WAIT: Duration = Duration::from_secs(1);

/// Lines each connection sends: `None` for no limit. With a line count, the total is spread
/// evenly and no connection is opened to send nothing.
pub(crate) fn quotas(config: &BenchConfig) -> Vec<Option<u64>> {
    match config.limit {
        BenchLimit::Duration(_) => vec![None; config.connections],
        BenchLimit::Lines(total) => {
            let n = (config.connections as u64).min(total);
            (0..n).map(|i| Some(total / n + u64::from(i < total % n))).collect()
        }
    }
}

/// One connection's task: connect unless given a stream, send its lines, check their echoes.
/// Failures are counted in `shared`; `_running` is dropped at the end.
async fn connection<A: Target>(
    id: usize,
    target: A,
    stream: Option<Async<A::Stream>>,
    quota: Option<u64>,
    config: BenchConfig,
    shared: &Shared,
    _running: async_channel::Sender<()>,
) where
    for<'b> &'b A::Stream: Read + Write,
{
    let stream = match stream {
        Some(stream) => Ok(stream),
        None => {
            shared.opening.set(shared.opening.get() + 1);
            let opened = target.open(config.connect_timeout).await;
            shared.opening.set(shared.opening.get() - 1);
            if opened.is_err() {
                shared.connect_errors.set(shared.connect_errors.get() + 1);
            }
            opened
        }
    };
    let result = match stream {
        Ok(stream) => {
            let mut conn = Conn {
                stream,
                ledger: Ledger::new(id, config.size, config.depth, config.mode),
                depth: config.depth as u64,
                quota,
                shared,
                readable: false,
            };
            poll_fn(|cx| conn.poll_run(cx)).await
        }
        Err(err) => Err(io::Error::new(err.kind(), format!("cannot connect: {err}"))),
    };
    if let Err(err) = result {
        shared.fail(1, format!("connection {}: {err}", id + 1));
    }
}

/// State shared by the connections (or UDP flows) of one bench, all on one thread.
pub(crate) struct Shared {
    /// Set when the duration is over: send no more lines.
    pub(crate) stop: Cell<bool>,
    /// Lines (messages, datagrams) echoed intact.
    pub(crate) lines: Cell<u64>,
    /// Bytes echoed intact.
    pub(crate) bytes: Cell<u64>,
    pub(crate) errors: Cell<u64>,
    /// Connections opening now: the no-echo clock does not run while any is.
    pub(crate) opening: Cell<usize>,
    /// Of `errors`, connections that could not open.
    pub(crate) connect_errors: Cell<u64>,
    first_error: RefCell<Option<String>>,
    /// Round trips in nanoseconds.
    pub(crate) latency: RefCell<Histogram<u64>>,
    /// Where echoes are read, one connection at a time; large enough for any UDP datagram.
    pub(crate) rx: RefCell<Box<[u8]>>,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        // One nanosecond to one hour, three significant digits: fixed size, never resized.
        let latency = Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds");
        Shared {
            stop: Cell::new(false),
            lines: Cell::new(0),
            bytes: Cell::new(0),
            errors: Cell::new(0),
            opening: Cell::new(0),
            connect_errors: Cell::new(0),
            first_error: RefCell::new(None),
            latency: RefCell::new(latency),
            rx: RefCell::new(vec![0; READ_BUFFER].into_boxed_slice()),
        }
    }

    /// Counts `count` errors; the first error's message is kept.
    pub(crate) fn fail(&self, count: u64, message: String) {
        self.errors.set(self.errors.get() + count);
        self.first_error.borrow_mut().get_or_insert(message);
    }

    /// The report of a bench of `connections` that started at `start` and ends now.
    pub(crate) fn report(
        &self,
        config: &BenchConfig,
        connections: usize,
        start: Instant,
        datagrams: Option<Datagrams>,
    ) -> BenchReport {
        let duration_s = start.elapsed().as_secs_f64();
        let lines = self.lines.get();
        let latency = self.latency.borrow();
        let us = |quantile| latency.value_at_quantile(quantile) as f64 / 1000.0;
        BenchReport {
            connections,
            depth: config.depth,
            size: config.size,
            duration_s,
            lines,
            lines_per_s: lines as f64 / duration_s,
            mib_per_s: self.bytes.get() as f64 / duration_s / (1024.0 * 1024.0),
            latency_us: Latency {
                p50: us(0.5),
                p90: us(0.9),
                p99: us(0.99),
                p999: us(0.999),
                max: latency.max() as f64 / 1000.0,
            },
            mode: if datagrams.is_some() { Mode::Raw } else { config.mode },
            datagrams,
            errors: self.errors.get(),
            connect_errors: self.connect_errors.get(),
            first_error: self.first_error.borrow().clone(),
            interrupted: false,
        }
    }
}

/// One connection at work: its socket and its ledger of lines in flight.
struct Conn<'a, S> {
    stream: Async<S>,
    ledger: Ledger,
    depth: u64,
    quota: Option<u64>,
    shared: &'a Shared,
    /// A read may find data without waiting for readiness: the last one filled the buffer.
    readable: bool,
}

impl<S> Conn<'_, S>
where
    for<'b> &'b S: Read + Write,
{
    /// Queues, writes and checks until the connection is done, or nothing can move.
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        for _ in 0..BUDGET {
            self.top_up();
            let wrote = self.poll_send(cx)?;
            let read = self.poll_receive(cx)?;
            if self.ledger.settled() && !self.wants_more() {
                return Poll::Ready(Ok(()));
            }
            if !wrote && !read {
                return Poll::Pending;
            }
        }
        // Busy: let the other connections run, then come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn wants_more(&self) -> bool {
        !self.shared.stop.get() && self.quota.is_none_or(|quota| self.ledger.queued < quota)
    }

    /// Queues lines until `depth` are in flight, or the quota is reached.
    fn top_up(&mut self) {
        if !self.wants_more() {
            return;
        }
        let room = self.depth - self.ledger.in_flight();
        let left = self.quota.map_or(room, |quota| quota - self.ledger.queued);
        self.ledger.queue(room.min(left), Instant::now());
    }

    /// Writes what is queued, as far as the socket takes it. Tells whether anything was written.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        let mut wrote = false;
        loop {
            let (head, tail) = self.ledger.unsent();
            if head.is_empty() {
                break;
            }
            let written = if tail.is_empty() {
                self.stream.get_ref().write(head)
            } else {
                self.stream.get_ref().write_vectored(&[IoSlice::new(head), IoSlice::new(tail)])
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.ledger.wrote(n);
                    wrote = true;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => match self.stream.poll_writable(cx) {
                    Poll::Ready(ready) => ready?,
                    Poll::Pending => break,
                },
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(wrote)
    }

    /// Reads and checks once, when an echo is owed. Tells whether anything was read.
    ///
    /// A read is tried only after readiness, or after a read that filled the buffer: after a
    /// write the echo is rarely there yet, and the failed read would be a wasted syscall.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        if !self.ledger.awaiting_echo() {
            return Ok(false);
        }
        let shared = self.shared;
        let mut rx = shared.rx.borrow_mut();
        loop {
            if !self.readable {
                match self.stream.poll_readable(cx) {
                    Poll::Ready(ready) => ready?,
                    Poll::Pending => return Ok(false),
                }
            }
            match self.stream.get_ref().read(&mut rx) {
                Ok(0) => {
                    let (owed, unit) = (self.ledger.in_flight(), unit(self.ledger.mode));
                    let message = format!("server closed the connection with {owed} {unit}(s) not echoed");
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, message));
                }
                Ok(n) => {
                    self.readable = n == rx.len();
                    let lines =
                        self.ledger.check(&rx[..n], Instant::now(), &mut shared.latency.borrow_mut())?;
                    shared.lines.set(shared.lines.get() + lines);
                    shared.bytes.set(shared.bytes.get() + n as u64);
                    return Ok(true);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }
}

/// The lines of one connection in flight, in a ring of `depth` line slots: line `n` lives in slot
/// `n % depth`, so byte `p` of the connection's output is `ring[p % ring.len()]`. A slot is
/// reused once its line was echoed, and then only its sequence number changes: queuing a line
/// copies nothing, writes take the ring as it is, and echoes are checked against it. Raw
/// messages are kept the same way: only their bytes differ.
struct Ledger {
    ring: Box<[u8]>,
    size: u64,
    mode: Mode,
    /// Lines queued so far: the sequence number of the next one.
    queued: u64,
    /// Bytes written so far.
    written: u64,
    /// Echoed bytes checked so far.
    checked: u64,
    /// When each line not yet echoed was queued, oldest first.
    queued_at: VecDeque<Instant>,
}

impl Ledger {
    fn new(connection: usize, size: usize, depth: usize, mode: Mode) -> Ledger {
        Ledger {
            ring: template(mode, connection, size).repeat(depth).into_boxed_slice(),
            size: size as u64,
            mode,
            queued: 0,
            written: 0,
            checked: 0,
            queued_at: VecDeque::with_capacity(depth),
        }
    }

    fn in_flight(&self) -> u64 {
        self.queued - self.checked / self.size
    }

    /// Queues `lines` more lines, sent `now`: no more than the free slots.
    #[inline]
    fn queue(&mut self, lines: u64, now: Instant) {
        let size = self.size as usize;
        let slots = (self.ring.len() / size) as u64;
        for _ in 0..lines {
            let at = (self.queued % slots) as usize * size;
            stamp(self.mode, &mut self.ring[at..at + size], self.queued);
            self.queued += 1;
            self.queued_at.push_back(now);
        }
    }

    /// The output from byte `from` to byte `to` (at most a ring apart), in its two parts: up to
    /// the end of the ring, and from its start.
    #[inline]
    fn span(&self, from: u64, to: u64) -> (&[u8], &[u8]) {
        let start = (from % self.ring.len() as u64) as usize;
        let len = (to - from) as usize;
        let head = len.min(self.ring.len() - start);
        (&self.ring[start..start + head], &self.ring[..len - head])
    }

    #[inline]
    fn unsent(&self) -> (&[u8], &[u8]) {
        self.span(self.written, self.queued * self.size)
    }

    fn wrote(&mut self, n: usize) {
        self.written += n as u64;
    }

    fn awaiting_echo(&self) -> bool {
        self.checked < self.written
    }

    /// Every queued line was echoed.
    fn settled(&self) -> bool {
        self.checked == self.queued * self.size
    }

    /// Checks `echo`, the next bytes received, against the bytes written; records the round
    /// trip of each line it completes in `latency` (nanoseconds) and tells how many it completed.
    #[inline]
    fn check(&mut self, echo: &[u8], now: Instant, latency: &mut Histogram<u64>) -> io::Result<u64> {
        let (head, tail) = self.span(self.checked, self.written);
        let common = echo.len().min(head.len() + tail.len());
        let (echo_head, echo_tail) = echo[..common].split_at(common.min(head.len()));
        if *echo_head != head[..echo_head.len()] || *echo_tail != tail[..echo_tail.len()] {
            let mut pairs = head.iter().chain(tail).zip(echo).enumerate();
            let (at, (sent, got)) =
                pairs.find(|(_, (sent, got))| sent != got).expect("a differing byte, as compared");
            let offset = self.checked + at as u64;
            let message = format!(
                "echo of {} {} differs at byte {}: sent '{}', got '{}'",
                unit(self.mode),
                offset / self.size + 1,
                offset % self.size + 1,
                [*sent].escape_ascii(),
                [*got].escape_ascii(),
            );
            return Err(io::Error::new(io::ErrorKind::InvalidData, message));
        }
        if echo.len() > common {
            let message = format!("{} bytes echoed that were never sent", echo.len() - common);
            return Err(io::Error::new(io::ErrorKind::InvalidData, message));
        }
        let before = self.checked / self.size;
        self.checked += echo.len() as u64;
        let lines = self.checked / self.size - before;
        for sent in self.queued_at.drain(..lines as usize) {
            let nanos = now.saturating_duration_since(sent).as_nanos();
            latency.saturating_record(u64::try_from(nanos).unwrap_or(u64::MAX));
        }
        Ok(lines)
    }
}

/// What one line (message, datagram) is called in messages.
pub(crate) fn unit(mode: Mode) -> &'static str {
    match mode {
        Mode::Line => "line",
        Mode::Raw => "message",
    }
}

/// The lines (raw messages) of one connection before their sequence number.
pub(crate) fn template(mode: Mode, connection: usize, size: usize) -> Vec<u8> {
    match mode {
        Mode::Line => line_template(connection, size),
        Mode::Raw => raw_template(connection, size),
    }
}

/// Writes `seq` over the start of `line`, as [`template`] leaves room for it.
pub(crate) fn stamp(mode: Mode, line: &mut [u8], seq: u64) {
    match mode {
        Mode::Line => stamp_hex(line, seq),
        Mode::Raw => stamp_binary(line, seq),
    }
}

/// A filler of letters that depends on the connection, then CR LF. Never the sentinel (too
/// long), and no CR or LF before the end, so the server sees exactly the lines meant.
fn line_template(connection: usize, size: usize) -> Vec<u8> {
    // Letters after f, so the filler never looks like part of the number.
    let filler = (0..size - 2).map(|i| b'g' + ((i + connection) % 20) as u8);
    filler.chain(*b"\r\n").collect()
}

/// Writes `seq` in hex over the start of `line`, in up to 16 digits and never over the CR LF:
/// each line of a connection differs from the others, so a lost, doubled or reordered line shows.
fn stamp_hex(line: &mut [u8], seq: u64) {
    let digits = (line.len() - 2).min(16);
    let mut rest = seq;
    for byte in line[..digits].iter_mut().rev() {
        *byte = b"0123456789abcdef"[(rest & 0xf) as usize];
        rest >>= 4;
    }
}

/// Bytes of a raw message (after its sequence number): what a line server would act on (CR LF,
/// the sentinel line `.`, a bare CR) and both ends of the byte range, so a server that is not
/// transparent shows.
const RAW_MARKS: &[u8] = b"\r\n.\r\n\0\xff\r";

/// Bytes of a raw message taken by its sequence number.
pub(crate) const SEQ_BYTES: usize = 8;

/// Eight bytes of sequence number (zero here), [`RAW_MARKS`], then every byte value in a
/// pattern that depends on the connection and repeats every 256 bytes.
fn raw_template(connection: usize, size: usize) -> Vec<u8> {
    let byte = |i: usize| match i.checked_sub(SEQ_BYTES) {
        Some(mark) if mark < RAW_MARKS.len() => RAW_MARKS[mark],
        // 157 is odd: 256 consecutive bytes take every value once.
        _ => (i * 157 + connection * 59) as u8,
    };
    (0..size).map(byte).collect()
}

/// Writes `seq` little-endian over the first eight bytes of `message`.
fn stamp_binary(message: &mut [u8], seq: u64) {
    message[..SEQ_BYTES].copy_from_slice(&seq.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Line or message `seq` of `connection`, as the ledger sends it.
    fn stamped(mode: Mode, connection: usize, size: usize, seq: u64) -> Vec<u8> {
        let mut bytes = template(mode, connection, size);
        stamp(mode, &mut bytes, seq);
        bytes
    }

    fn line(connection: usize, size: usize, seq: u64) -> Vec<u8> {
        stamped(Mode::Line, connection, size, seq)
    }

    #[test]
    fn lines_have_the_exact_size_one_line_end_and_are_never_the_sentinel() {
        for size in [BenchConfig::MIN_SIZE, 9, 17, 18, 64, 16384] {
            for seq in [0, 1, 0xff, u64::MAX] {
                let line = line(3, size, seq);
                assert_eq!(line.len(), size);
                assert!(line.ends_with(b"\r\n"));
                let body = &line[..size - 2];
                assert!(!body.contains(&b'\r') && !body.contains(&b'\n'), "{line:?}");
                assert_ne!(line, b".\r\n");
            }
        }
    }

    #[test]
    fn lines_differ_by_sequence_and_connection() {
        assert_eq!(&line(0, 24, 0x1234)[..18], b"0000000000001234wx");
        assert_ne!(line(0, 8, 1), line(0, 8, 2));
        assert_ne!(line(0, 64, 1), line(1, 64, 1));
    }

    fn message(connection: usize, size: usize, seq: u64) -> Vec<u8> {
        stamped(Mode::Raw, connection, size, seq)
    }

    #[test]
    fn raw_messages_hold_what_a_line_server_would_act_on_and_every_byte_value() {
        for size in [BenchConfig::MIN_SIZE, 9, 64, 300] {
            assert_eq!(message(0, size, 1).len(), size);
        }
        let long = message(5, 8 + 256 + RAW_MARKS.len(), 0x0102);
        assert_eq!(&long[..10], b"\x02\x01\0\0\0\0\0\0\r\n");
        assert!(long.windows(5).any(|w| w == b"\r\n.\r\n"));
        let values: std::collections::HashSet<u8> = long.iter().copied().collect();
        assert_eq!(values.len(), 256);
        assert_ne!(message(0, 64, 1), message(0, 64, 2));
        assert_ne!(message(0, 64, 1), message(1, 64, 1));
    }

    #[test]
    fn a_raw_mismatch_names_the_message() {
        let mut ledger = Ledger::new(2, 16, 2, Mode::Raw);
        ledger.queue(2, Instant::now());
        let mut echo = unsent(&ledger);
        ledger.wrote(echo.len());
        assert_eq!(echo[16..], message(2, 16, 1));
        echo[20] = echo[20].wrapping_add(1);
        let err = ledger.check(&echo, Instant::now(), &mut histogram()).unwrap_err();
        assert!(err.to_string().contains("echo of message 2 differs at byte 5"), "{err}");
    }

    /// A ledger of `depth` lines of `size` bytes, all queued and written.
    fn ledger_with(depth: usize, size: usize) -> (Ledger, Vec<u8>) {
        let mut ledger = Ledger::new(0, size, depth, Mode::Line);
        ledger.queue(depth as u64, Instant::now());
        let sent = unsent(&ledger);
        ledger.wrote(sent.len());
        (ledger, sent)
    }

    fn unsent(ledger: &Ledger) -> Vec<u8> {
        let (head, tail) = ledger.unsent();
        [head, tail].concat()
    }

    fn histogram() -> Histogram<u64> {
        Histogram::new(3).unwrap()
    }

    #[test]
    fn an_echo_in_pieces_completes_each_line_once() {
        let (mut ledger, sent) = ledger_with(3, 10);
        assert_eq!(sent, [line(0, 10, 0), line(0, 10, 1), line(0, 10, 2)].concat());
        let mut latency = histogram();
        let now = Instant::now();
        let completed: Vec<u64> =
            sent.chunks(7).map(|piece| ledger.check(piece, now, &mut latency).unwrap()).collect();
        assert_eq!(completed, [0, 1, 1, 0, 1]);
        assert_eq!(latency.len(), 3);
        assert!(ledger.settled());
    }

    #[test]
    fn a_flipped_byte_is_reported_with_its_line_and_offset() {
        let (mut ledger, mut echo) = ledger_with(3, 10);
        echo[13] ^= 1;
        let err = ledger.check(&echo, Instant::now(), &mut histogram()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("line 2 differs at byte 4: sent '0', got '1'"), "{err}");
    }

    #[test]
    fn reordered_and_extra_lines_are_errors() {
        let (mut ledger, sent) = ledger_with(2, 10);
        let swapped = [&sent[10..], &sent[..10]].concat();
        assert!(ledger.check(&swapped, Instant::now(), &mut histogram()).is_err());

        let (mut ledger, sent) = ledger_with(1, 10);
        let doubled = [&sent[..], &sent[..]].concat();
        let err = ledger.check(&doubled, Instant::now(), &mut histogram()).unwrap_err();
        assert!(err.to_string().contains("never sent"), "{err}");
    }

    #[test]
    fn an_echo_of_unwritten_bytes_is_an_error() {
        let mut ledger = Ledger::new(0, 10, 1, Mode::Line);
        ledger.queue(1, Instant::now());
        let queued = unsent(&ledger);
        assert!(ledger.check(&queued, Instant::now(), &mut histogram()).is_err());
    }

    #[test]
    fn slots_are_reused_across_the_end_of_the_ring() {
        let (mut ledger, _) = ledger_with(4, 10);
        let mut latency = histogram();
        for seq in 0..10 {
            // The oldest line in flight is echoed in two pieces, and a fresh one takes its slot;
            // what is owed runs past the end of the ring from the second round on.
            let (head, tail) = ledger.span(ledger.checked, ledger.written);
            let owed = [head, tail].concat();
            assert_eq!(owed[..10], line(0, 10, seq));
            assert_eq!(ledger.check(&owed[..5], Instant::now(), &mut latency).unwrap(), 0);
            assert_eq!(ledger.check(&owed[5..10], Instant::now(), &mut latency).unwrap(), 1);
            ledger.queue(1, Instant::now());
            assert_eq!(unsent(&ledger), line(0, 10, seq + 4));
            ledger.wrote(3);
            ledger.wrote(7);
            assert_eq!(ledger.in_flight(), 4);
        }
        assert_eq!(ledger.ring.len(), 40);
    }

    #[test]
    fn quotas_add_up_and_open_no_idle_connection() {
        let config = |connections, lines| BenchConfig {
            connections,
            limit: BenchLimit::Lines(lines),
            ..Default::default()
        };
        assert_eq!(quotas(&config(3, 10)), [Some(4), Some(3), Some(3)]);
        assert_eq!(quotas(&config(50, 2)), [Some(1), Some(1)]);
        assert_eq!(quotas(&BenchConfig { connections: 2, ..Default::default() }), [None, None]);
    }
}
