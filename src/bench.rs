//! The load generator: many connections, every echo checked, latency measured.
//!
//! All connections run as tasks of one single-threaded executor. Each keeps `depth` lines in
//! flight in a ring of line slots, written with as few writes as the socket allows; echoes are
//! read into one large buffer shared by every connection and compared in bulk with the ring,
//! which holds the expected bytes. Nothing is allocated or copied per line.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use futures_lite::FutureExt;
use hdrhistogram::Histogram;

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
    /// Send exactly this many lines in total, spread evenly over the connections.
    Lines(u64),
}

/// What a bench does: how many connections, how many lines in flight on each, how long the lines
/// are, and for how long or how many lines.
///
/// # Examples
///
/// ```
/// use smol_echo::{BenchConfig, BenchLimit};
///
/// let config = BenchConfig { depth: 32, limit: BenchLimit::Lines(10_000), ..BenchConfig::default() };
/// assert_eq!((config.connections, config.size), (50, 64));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchConfig {
    /// Connections opened at once. With [`BenchLimit::Lines`], no more than the lines.
    pub connections: usize,
    /// Lines in flight on each connection: sent and not yet echoed.
    pub depth: usize,
    /// Bytes per line, CR LF included; at least [`BenchConfig::MIN_SIZE`].
    pub size: usize,
    /// How long to send, or how many lines.
    pub limit: BenchLimit,
    /// How long a connection may take to open, and how long the bench waits while no echo at all
    /// arrives (in particular for the last echoes after the duration). Past it, every connection
    /// still waiting counts as an error.
    pub timeout: Duration,
}

impl BenchConfig {
    /// The shortest line: six bytes of sequence number and CR LF.
    pub const MIN_SIZE: usize = 8;
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            connections: 50,
            depth: 1,
            size: 64,
            limit: BenchLimit::Duration(Duration::from_secs(10)),
            timeout: Duration::from_secs(5),
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
/// `Display` renders it as a table; [`BenchReport::to_json`] as one JSON object.
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
    /// Connections that failed: could not open, got a wrong echo, were dropped, or got no echo
    /// in time.
    pub errors: u64,
    /// What went wrong first, for a message.
    pub first_error: Option<String>,
}

impl BenchReport {
    /// The report as one JSON object, with the keys `connections`, `depth`, `size`,
    /// `duration_s`, `lines`, `lines_per_s`, `mib_per_s`, `latency_us` (`p50`, `p90`, `p99`,
    /// `p999`, `max`) and `errors`.
    ///
    /// # Examples
    ///
    /// ```
    /// let json = smol_echo::BenchReport::default().to_json();
    /// assert!(json.starts_with(r#"{"connections":0,"#) && json.ends_with(r#""errors":0}"#));
    /// ```
    pub fn to_json(&self) -> String {
        let l = &self.latency_us;
        format!(
            concat!(
                r#"{{"connections":{},"depth":{},"size":{},"duration_s":{:.3},"lines":{},"#,
                r#""lines_per_s":{:.1},"mib_per_s":{:.3},"#,
                r#""latency_us":{{"p50":{:.1},"p90":{:.1},"p99":{:.1},"p999":{:.1},"max":{:.1}}},"#,
                r#""errors":{}}}"#
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
            self.errors
        )
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.latency_us;
        writeln!(
            f,
            "{} connections, depth {}, {}-byte lines, {:.3} s",
            self.connections, self.depth, self.size, self.duration_s
        )?;
        writeln!(f, "  lines       {:>12}", self.lines)?;
        writeln!(f, "  lines/s     {:>12.1}", self.lines_per_s)?;
        writeln!(f, "  MiB/s       {:>12.3}", self.mib_per_s)?;
        writeln!(
            f,
            "  latency µs  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            l.p50, l.p90, l.p99, l.p999, l.max
        )?;
        writeln!(f, "  errors      {:>12}", self.errors)
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
    /// Lines echoed and checked so far.
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

/// Loads the echo server at `addr` (`host:port`) as `config` says and checks every echoed byte.
/// `progress` is called once a second.
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
    mut progress: impl FnMut(&Progress),
) -> io::Result<BenchReport> {
    if config.connections == 0 || config.depth == 0 || config.size < BenchConfig::MIN_SIZE {
        let message = format!(
            "bench needs a connection or more, a depth of 1 or more, and lines of {} bytes or more",
            BenchConfig::MIN_SIZE
        );
        return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    }
    let (first, target) = connect_any(addr, config.timeout)
        .await
        .map_err(|err| io::Error::new(err.kind(), format!("cannot connect to {addr}: {err}")))?;
    let shared = Shared::new();
    let ex = LocalExecutor::new();
    Ok(ex.run(drive(&ex, &shared, config, target, first, &mut progress)).await)
}

/// Runs the connections to the end and makes the report.
async fn drive<'a>(
    ex: &LocalExecutor<'a>,
    shared: &'a Shared,
    config: &BenchConfig,
    target: SocketAddr,
    first: Async<TcpStream>,
    progress: &mut impl FnMut(&Progress),
) -> BenchReport {
    let quotas = quotas(config);
    // Each task holds a sender: `recv` fails once all are gone, and the count left is the
    // connections still running.
    let (running, finished) = async_channel::bounded::<()>(1);
    let start = Instant::now();
    let mut first = Some(first);
    for (id, &quota) in quotas.iter().enumerate() {
        let stream = first.take();
        let conn = connection(id, target, stream, quota, config.clone(), shared, running.clone());
        ex.spawn(conn).detach();
    }
    drop(running);

    let end = match config.limit {
        BenchLimit::Duration(duration) => Some(start + duration),
        BenchLimit::Lines(_) => None,
    };
    let mut next_tick = start + PROGRESS_EVERY;
    let mut bytes_seen = 0;
    let mut quiet_since = start;
    let mut stopped_at = None;
    // Wait for echoes while they keep coming, and after the end no longer than the timeout.
    let give_up = |quiet_since: Instant, stopped_at: Option<Instant>| {
        stopped_at.map_or(quiet_since, |at| at.min(quiet_since)) + config.timeout
    };
    let stuck = loop {
        let stop_at = end.filter(|_| stopped_at.is_none());
        let give_up_at = give_up(quiet_since, stopped_at);
        let wake = [next_tick, give_up_at].into_iter().chain(stop_at).min().unwrap_or(give_up_at);
        let all_done = async {
            finished.recv().await.ok();
            true
        }
        .or(async {
            Timer::at(wake).await;
            false
        })
        .await;
        if all_done {
            break 0;
        }
        let now = Instant::now();
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
        if shared.bytes.get() != bytes_seen {
            bytes_seen = shared.bytes.get();
            quiet_since = now;
        }
        if now >= give_up(quiet_since, stopped_at) {
            break finished.sender_count();
        }
    };
    if stuck > 0 {
        let timeout = config.timeout;
        shared.fail(stuck as u64, format!("{stuck} connection(s) got no echo within {timeout:?}"));
    }

    let duration_s = start.elapsed().as_secs_f64();
    let lines = shared.lines.get();
    let latency = shared.latency.borrow();
    let us = |quantile| latency.value_at_quantile(quantile) as f64 / 1000.0;
    BenchReport {
        connections: quotas.len(),
        depth: config.depth,
        size: config.size,
        duration_s,
        lines,
        lines_per_s: lines as f64 / duration_s,
        mib_per_s: shared.bytes.get() as f64 / duration_s / (1024.0 * 1024.0),
        latency_us: Latency {
            p50: us(0.5),
            p90: us(0.9),
            p99: us(0.99),
            p999: us(0.999),
            max: latency.max() as f64 / 1000.0,
        },
        errors: shared.errors.get(),
        first_error: shared.first_error.borrow().clone(),
    }
}

/// Lines each connection sends: `None` for no limit. With a line count, the total is spread
/// evenly and no connection is opened to send nothing.
fn quotas(config: &BenchConfig) -> Vec<Option<u64>> {
    match config.limit {
        BenchLimit::Duration(_) => vec![None; config.connections],
        BenchLimit::Lines(total) => {
            let n = (config.connections as u64).min(total);
            (0..n).map(|i| Some(total / n + u64::from(i < total % n))).collect()
        }
    }
}

/// Connects to the first address `addr` resolves to that accepts, and tells which it was.
async fn connect_any(addr: &str, timeout: Duration) -> io::Result<(Async<TcpStream>, SocketAddr)> {
    let mut last_err = io::Error::new(io::ErrorKind::NotFound, "no address found");
    for target in async_net::resolve(addr).await? {
        match connect(target, timeout).await {
            Ok(stream) => return Ok((stream, target)),
            Err(err) => last_err = err,
        }
    }
    Err(last_err)
}

async fn connect(target: SocketAddr, timeout: Duration) -> io::Result<Async<TcpStream>> {
    let stream = Async::<TcpStream>::connect(target)
        .or(async {
            Timer::after(timeout).await;
            Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {timeout:?}")))
        })
        .await?;
    stream.get_ref().set_nodelay(true)?;
    Ok(stream)
}

/// One connection's task: connect unless given a stream, send its lines, check their echoes.
/// Failures are counted in `shared`; `_running` is dropped at the end.
async fn connection(
    id: usize,
    target: SocketAddr,
    stream: Option<Async<TcpStream>>,
    quota: Option<u64>,
    config: BenchConfig,
    shared: &Shared,
    _running: async_channel::Sender<()>,
) {
    let stream = match stream {
        Some(stream) => Ok(stream),
        None => connect(target, config.timeout).await,
    };
    let result = match stream {
        Ok(stream) => {
            let mut conn = Conn {
                stream,
                ledger: Ledger::new(id, config.size, config.depth),
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

/// State shared by the connections of one bench, all on one thread.
struct Shared {
    /// Set when the duration is over: send no more lines.
    stop: Cell<bool>,
    lines: Cell<u64>,
    bytes: Cell<u64>,
    errors: Cell<u64>,
    first_error: RefCell<Option<String>>,
    /// Round trips in nanoseconds.
    latency: RefCell<Histogram<u64>>,
    /// Where echoes are read, one connection at a time.
    rx: RefCell<Box<[u8]>>,
}

impl Shared {
    fn new() -> Shared {
        // One nanosecond to one hour, three significant digits: fixed size, never resized.
        let latency = Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds");
        Shared {
            stop: Cell::new(false),
            lines: Cell::new(0),
            bytes: Cell::new(0),
            errors: Cell::new(0),
            first_error: RefCell::new(None),
            latency: RefCell::new(latency),
            rx: RefCell::new(vec![0; READ_BUFFER].into_boxed_slice()),
        }
    }

    /// Counts `count` errors; the first error's message is kept.
    fn fail(&self, count: u64, message: String) {
        self.errors.set(self.errors.get() + count);
        self.first_error.borrow_mut().get_or_insert(message);
    }
}

/// One connection at work: its socket and its ledger of lines in flight.
struct Conn<'a> {
    stream: Async<TcpStream>,
    ledger: Ledger,
    depth: u64,
    quota: Option<u64>,
    shared: &'a Shared,
    /// A read may find data without waiting for readiness: the last one filled the buffer.
    readable: bool,
}

impl Conn<'_> {
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
                    let owed = self.ledger.in_flight();
                    let message = format!("server closed the connection with {owed} line(s) not echoed");
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
/// copies nothing, writes take the ring as it is, and echoes are checked against it.
struct Ledger {
    ring: Box<[u8]>,
    size: u64,
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
    fn new(connection: usize, size: usize, depth: usize) -> Ledger {
        Ledger {
            ring: line_template(connection, size).repeat(depth).into_boxed_slice(),
            size: size as u64,
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
    fn queue(&mut self, lines: u64, now: Instant) {
        let size = self.size as usize;
        let slots = (self.ring.len() / size) as u64;
        for _ in 0..lines {
            let at = (self.queued % slots) as usize * size;
            stamp(&mut self.ring[at..at + size], self.queued);
            self.queued += 1;
            self.queued_at.push_back(now);
        }
    }

    /// The output from byte `from` to byte `to` (at most a ring apart), in its two parts: up to
    /// the end of the ring, and from its start.
    fn span(&self, from: u64, to: u64) -> (&[u8], &[u8]) {
        let start = (from % self.ring.len() as u64) as usize;
        let len = (to - from) as usize;
        let head = len.min(self.ring.len() - start);
        (&self.ring[start..start + head], &self.ring[..len - head])
    }

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
                "echo of line {} differs at byte {}: sent '{}', got '{}'",
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

/// The lines of one connection before their sequence number: a filler of letters that depends
/// on the connection, then CR LF. Never the sentinel (too long), and no CR or LF before the end,
/// so the server sees exactly the lines meant.
fn line_template(connection: usize, size: usize) -> Vec<u8> {
    // Letters after f, so the filler never looks like part of the number.
    let filler = (0..size - 2).map(|i| b'g' + ((i + connection) % 20) as u8);
    filler.chain(*b"\r\n").collect()
}

/// Writes `seq` in hex over the start of `line`, in up to 16 digits and never over the CR LF:
/// each line of a connection differs from the others, so a lost, doubled or reordered line shows.
fn stamp(line: &mut [u8], seq: u64) {
    let digits = (line.len() - 2).min(16);
    let mut rest = seq;
    for byte in line[..digits].iter_mut().rev() {
        *byte = b"0123456789abcdef"[(rest & 0xf) as usize];
        rest >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(connection: usize, size: usize, seq: u64) -> Vec<u8> {
        let mut line = line_template(connection, size);
        stamp(&mut line, seq);
        line
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

    /// A ledger of `depth` lines of `size` bytes, all queued and written.
    fn ledger_with(depth: usize, size: usize) -> (Ledger, Vec<u8>) {
        let mut ledger = Ledger::new(0, size, depth);
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
        let mut ledger = Ledger::new(0, 10, 1);
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
