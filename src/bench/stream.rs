//! The stream bench: TCP or Unix stream connections, every echo checked, latency measured.
//!
//! All connections run as tasks of one single-threaded executor. Each keeps `depth` lines in
//! flight in a ring of line slots, written with as few writes as the socket allows; echoes are
//! read into one large buffer shared by every connection and compared in bulk with the ring,
//! which holds the expected bytes. Nothing is allocated or copied per line. The same code drives
//! TCP and Unix stream sockets (monomorphised per socket type) and both the line protocol and raw
//! messages, which differ only in the bytes of the ring.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::Async;

use super::config::{BenchConfig, BenchLimit};
use super::distribution::Distribution;
use super::pace::Pace;
use super::payload::{stamp, template, unit};
use super::report::{BenchReport, Progress, Transport};
use super::run::{BUDGET, Shared, Supervised, quotas, supervise};
use super::wire::{Plain, Wire};
use crate::client::Address;
use crate::error::context;
use crate::net::{first_to_connect, within};
use crate::session::Mode;

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
/// use smol_echo::bench::{BenchConfig, BenchLimit};
/// use smol_echo::{Server, ServerConfig};
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
/// use smol_echo::bench::{BenchConfig, BenchLimit};
/// use smol_echo::{Server, ServerConfig};
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
///     let report = smol_echo::bench::bench_until(&addr, &config, |_| {}, async { interrupt.await; }).await?;
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
    let cannot = |err| context(err, format_args!("cannot connect to {addr}"));
    let shared = &Shared::new();
    let ex = LocalExecutor::new();
    let began = Instant::now();
    match addr.parse().map_err(cannot)? {
        Address::Unix(target) => {
            let first = target.open(config, shared).await.map_err(cannot)?;
            shared.connected(began.elapsed());
            Ok(ex.run(drive(&ex, shared, config, target, first, &mut progress, interrupt)).await)
        }
        Address::Inet(host_port) => {
            let addrs = async_net::resolve(&*host_port).await.map_err(cannot)?;
            let open = |target: SocketAddr| async move { target.open(config, shared).await };
            let (first, target) = first_to_connect(&addrs, open).await.map_err(cannot)?;
            shared.connected(began.elapsed());
            Ok(ex.run(drive(&ex, shared, config, target, first, &mut progress, interrupt)).await)
        }
        #[cfg(feature = "tls")]
        Address::Tls(host_port) => {
            let connector = crate::tls::TlsConnector::new(&config.tls).map_err(cannot)?;
            let host = crate::net::host_of(&host_port).to_string();
            let addrs = async_net::resolve(&*host_port).await.map_err(cannot)?;
            let open = |addr: SocketAddr| {
                let target = TlsTarget { addr, host: host.clone(), connector: connector.clone() };
                async move { Ok((target.open(config, shared).await?, target)) }
            };
            let ((first, target), _) = first_to_connect(&addrs, open).await.map_err(cannot)?;
            shared.connected(began.elapsed());
            Ok(ex.run(drive(&ex, shared, config, target, first, &mut progress, interrupt)).await)
        }
        #[cfg(not(feature = "tls"))]
        Address::Tls(_) => Err(crate::net::no_tls(addr)),
    }
}

/// Where the connections of a stream bench go: a TCP address, a Unix socket path, or a TLS
/// server.
trait Target: Clone {
    type Wire: Wire;

    /// Whether its connections open with a handshake, which the report then tells of.
    const HANDSHAKES: bool = false;

    /// Opens one connection, with the PROXY header `config` asks for, or fails after its
    /// connect timeout; a handshake's time goes into `shared`.
    async fn open(&self, config: &BenchConfig, shared: &Shared) -> io::Result<Self::Wire>;
}

impl Target for SocketAddr {
    type Wire = Plain<TcpStream>;

    async fn open(&self, config: &BenchConfig, _: &Shared) -> io::Result<Plain<TcpStream>> {
        Ok(Plain::new(within(config.connect_timeout, connect_tcp(*self, config)).await?))
    }
}

async fn connect_tcp(addr: SocketAddr, config: &BenchConfig) -> io::Result<Async<TcpStream>> {
    let stream = Async::<TcpStream>::connect(addr).await?;
    stream.get_ref().set_nodelay(true)?;
    #[cfg(feature = "proxy")]
    let addrs = || Some((stream.get_ref().local_addr().ok()?, stream.get_ref().peer_addr().ok()?));
    #[cfg(feature = "proxy")]
    send_proxy_header(&stream, config, addrs()).await?;
    #[cfg(not(feature = "proxy"))]
    let _ = config;
    Ok(stream)
}

impl Target for PathBuf {
    type Wire = Plain<UnixStream>;

    async fn open(&self, config: &BenchConfig, _: &Shared) -> io::Result<Plain<UnixStream>> {
        let stream = within(config.connect_timeout, Async::<UnixStream>::connect(self)).await?;
        #[cfg(feature = "proxy")]
        send_proxy_header(&stream, config, None).await?;
        Ok(Plain::new(stream))
    }
}

/// Sends the PROXY header `config` asks for, naming `addrs` (local, peer; none for a Unix
/// socket), before the connection's first byte.
#[cfg(feature = "proxy")]
async fn send_proxy_header<S>(
    stream: &Async<S>,
    config: &BenchConfig,
    addrs: Option<(SocketAddr, SocketAddr)>,
) -> io::Result<()>
where
    for<'b> &'b S: std::io::Write,
{
    use futures_lite::AsyncWriteExt;
    let Some(version) = config.proxy_protocol else { return Ok(()) };
    let header = crate::proxy::encode(version, addrs);
    (&mut &*stream).write_all(&header).await.map_err(|err| context(err, "cannot send the PROXY header"))
}

/// A TLS server at `addr`, verified by the name `host` (unless the connector names another).
#[cfg(feature = "tls")]
#[derive(Clone)]
struct TlsTarget {
    addr: SocketAddr,
    host: String,
    connector: crate::tls::TlsConnector,
}

#[cfg(feature = "tls")]
impl Target for TlsTarget {
    type Wire = crate::tls::TlsStream<Async<TcpStream>>;
    const HANDSHAKES: bool = true;

    async fn open(&self, config: &BenchConfig, shared: &Shared) -> io::Result<Self::Wire> {
        within(config.connect_timeout, async {
            let tcp = connect_tcp(self.addr, config).await?;
            let started = Instant::now();
            let tls = self.connector.connect(&self.host, tcp).await?;
            shared.record_handshake(started.elapsed());
            Ok(tls)
        })
        .await
    }
}

/// Runs the connections to the end and makes the report.
async fn drive<'a, A: Target + 'a>(
    ex: &LocalExecutor<'a>,
    shared: &'a Shared,
    config: &BenchConfig,
    target: A,
    first: A::Wire,
    progress: &mut impl FnMut(&Progress),
    interrupt: impl Future<Output = ()>,
) -> BenchReport {
    let quotas = quotas(config);
    // Each task holds a sender: `recv` fails once all are gone, and the count left is the
    // connections still running.
    let (running, finished) = async_channel::bounded::<()>(1);
    let start = Instant::now();
    let end = match config.limit {
        BenchLimit::Duration(duration) => Some(start + duration),
        BenchLimit::Lines(_) => None,
    };
    let mut first = Some(first);
    for (id, &quota) in quotas.iter().enumerate() {
        let stream = first.take();
        let pace = config.rate.map(|rate| Pace::new(id, quotas.len(), rate, start, end));
        let conn =
            run_connection(id, target.clone(), stream, quota, pace, config.clone(), shared, running.clone());
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
    let report = shared.report(config, quotas.len(), Transport::stream(config.mode), start, None);
    let handshakes = A::HANDSHAKES.then(|| shared.handshakes());
    BenchReport { interrupted, handshakes, ..report }
}

/// One connection's task: connect unless given a stream, send its lines, check their echoes;
/// with churn, close after every `config.churn` lines and open another, until the quota is sent
/// or the bench stops. Failures are counted in `shared`; `_running` is dropped at the end.
#[allow(clippy::too_many_arguments)]
async fn run_connection<A: Target>(
    id: usize,
    target: A,
    mut stream: Option<A::Wire>,
    mut quota: Option<u64>,
    mut pace: Option<Pace>,
    config: BenchConfig,
    shared: &Shared,
    _running: async_channel::Sender<()>,
) {
    loop {
        let lines = match (config.churn, quota) {
            (Some(churn), Some(left)) => Some(churn.min(left)),
            (churn, left) => churn.or(left),
        };
        let result = match stream.take() {
            Some(stream) => Ok(stream),
            None => open(&target, &config, shared).await.map_err(|err| context(err, "cannot connect")),
        };
        let result = match result {
            Ok(stream) => session(id, stream, lines, pace.as_mut(), &config, shared).await,
            Err(err) => Err(err),
        };
        match result {
            Ok(sent) => quota = quota.map(|left| left - sent),
            Err(err) => return shared.fail(1, format!("connection {}: {err}", id + 1)),
        }
        // Open no connection that would send nothing.
        let over = pace.as_ref().is_some_and(Pace::over);
        if config.churn.is_none() || shared.stop.get() || quota == Some(0) || over {
            return;
        }
    }
}

/// Opens a connection of a task, counted while it opens and timed.
async fn open<A: Target>(target: &A, config: &BenchConfig, shared: &Shared) -> io::Result<A::Wire> {
    shared.opening.set(shared.opening.get() + 1);
    let began = Instant::now();
    let opened = target.open(config, shared).await;
    shared.opening.set(shared.opening.get() - 1);
    match opened {
        Ok(_) => shared.connected(began.elapsed()),
        Err(_) => shared.connect_errors.set(shared.connect_errors.get() + 1),
    }
    opened
}

/// One connection's lines: at most `lines` (no limit for `None`), checked, then with churn a
/// clean close. Tells how many lines were sent, all echoed.
async fn session<W: Wire>(
    id: usize,
    wire: W,
    lines: Option<u64>,
    pace: Option<&mut Pace>,
    config: &BenchConfig,
    shared: &Shared,
) -> io::Result<u64> {
    let mut conn = Connection {
        wire,
        ledger: Ledger::new(id, config.size, config.depth, config.mode),
        depth: config.depth as u64,
        quota: lines,
        pace,
        idle: false,
        shared,
    };
    poll_fn(|cx| conn.poll_run(cx)).await?;
    let sent = conn.ledger.queued;
    if config.churn.is_some() {
        close(&mut conn.wire, config.timeout).await?;
    }
    Ok(sent)
}

/// Ends a connection as a client that is done does, so that the server sees a session end
/// like any other: half-closes it, then reads until the server closes its side too, within
/// `timeout`. Anything read then was never sent.
async fn close<W: Wire>(wire: &mut W, timeout: Duration) -> io::Result<()> {
    let mut rest = [0; 512];
    let closing = async {
        poll_fn(|cx| wire.poll_shut_write(cx)).await?;
        poll_fn(|cx| wire.poll_read_into(cx, &mut rest)).await
    };
    match within(timeout, closing).await {
        Ok(0) => Ok(()),
        Ok(n) => {
            let message = format!("{n} bytes echoed that were never sent, after the last line");
            Err(io::Error::new(io::ErrorKind::InvalidData, message))
        }
        Err(err) => Err(context(err, "the server did not close after the bench's half-close")),
    }
}

/// One connection at work: its wire and its ledger of lines in flight.
struct Connection<'a, W: Wire> {
    wire: W,
    ledger: Ledger,
    depth: u64,
    quota: Option<u64>,
    /// With a rate: when each line is due.
    pace: Option<&'a mut Pace>,
    /// Counted in `shared.idle`: nothing in flight, waiting for the next line to be due.
    idle: bool,
    shared: &'a Shared,
}

impl<W: Wire> Connection<'_, W> {
    /// Queues, writes and checks until the connection is done, or nothing can move.
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        for _ in 0..BUDGET {
            self.top_up(cx);
            let wrote = self.poll_send(cx)?;
            let read = self.poll_receive(cx)?;
            if self.ledger.settled() && !self.wants_more() {
                self.set_idle(false);
                return Poll::Ready(Ok(()));
            }
            if !wrote && !read {
                self.set_idle(self.pace.is_some() && self.ledger.in_flight() == 0);
                return Poll::Pending;
            }
        }
        // Busy: let the other connections run, then come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn wants_more(&self) -> bool {
        !self.shared.stop.get()
            && self.quota.is_none_or(|quota| self.ledger.queued < quota)
            && !self.pace.as_ref().is_some_and(|pace| pace.over())
    }

    /// Queues lines until `depth` are in flight, or the quota is reached; with a rate, only the
    /// lines due by now, each sent as of when it was due, and `cx` is woken when the next is.
    fn top_up(&mut self, cx: &mut Context<'_>) {
        if !self.wants_more() {
            return;
        }
        let room = self.depth - self.ledger.in_flight();
        let lines = self.quota.map_or(room, |quota| quota - self.ledger.queued).min(room);
        let Some(pace) = self.pace.as_deref_mut() else {
            return self.ledger.queue(lines, Instant::now());
        };
        let ledger = &mut self.ledger;
        let sent = pace.take_due(lines, cx, |due| ledger.queue(1, due));
        if sent > 0 {
            self.shared.paced.set(self.shared.paced.get() + sent);
            self.shared.last_paced.set(Some(Instant::now()));
        }
    }

    fn set_idle(&mut self, idle: bool) {
        if idle != self.idle {
            self.idle = idle;
            let count = self.shared.idle.get();
            self.shared.idle.set(if idle { count + 1 } else { count - 1 });
        }
    }

    /// Writes what is queued, as far as the wire takes it. Tells whether anything was written.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        let mut wrote = false;
        loop {
            let (head, tail) = self.ledger.unsent();
            if head.is_empty() {
                break;
            }
            match self.wire.poll_write_parts(cx, head, tail) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.ledger.wrote(n);
                    wrote = true;
                }
                Poll::Ready(Err(err)) => return Err(err),
                Poll::Pending => break,
            }
        }
        if let Poll::Ready(flushed) = self.wire.poll_flush_out(cx) {
            flushed?;
        }
        Ok(wrote)
    }

    /// Reads and checks once, when an echo is owed. Tells whether anything was read.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        if !self.ledger.awaiting_echo() {
            return Ok(false);
        }
        let shared = self.shared;
        let mut rx = shared.rx.borrow_mut();
        match self.wire.poll_read_into(cx, &mut rx) {
            Poll::Pending => Ok(false),
            Poll::Ready(Ok(0)) => {
                let (owed, unit) = (self.ledger.in_flight(), unit(self.ledger.mode));
                let message = format!("server closed the connection with {owed} {unit}(s) not echoed");
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, message))
            }
            Poll::Ready(Ok(n)) => {
                let lines = self.ledger.check(&rx[..n], Instant::now(), &mut shared.latency.borrow_mut())?;
                shared.lines.set(shared.lines.get() + lines);
                shared.bytes.set(shared.bytes.get() + n as u64);
                Ok(true)
            }
            Poll::Ready(Err(err)) => Err(err),
        }
    }
}

impl<W: Wire> Drop for Connection<'_, W> {
    /// A connection that fails while idle no longer counts as one.
    fn drop(&mut self) {
        self.set_idle(false);
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
    fn check(&mut self, echo: &[u8], now: Instant, latency: &mut Distribution) -> io::Result<u64> {
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
            latency.record(now.saturating_duration_since(sent));
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::super::payload::tests::{line, message};
    use super::*;

    #[test]
    fn a_raw_mismatch_names_the_message() {
        let mut ledger = Ledger::new(2, 16, 2, Mode::Raw);
        ledger.queue(2, Instant::now());
        let mut echo = unsent(&ledger);
        ledger.wrote(echo.len());
        assert_eq!(echo[16..], message(2, 16, 1));
        echo[20] = echo[20].wrapping_add(1);
        let err = ledger.check(&echo, Instant::now(), &mut latencies()).unwrap_err();
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

    fn latencies() -> Distribution {
        Distribution::default()
    }

    #[test]
    fn an_echo_in_pieces_completes_each_line_once() {
        let (mut ledger, sent) = ledger_with(3, 10);
        assert_eq!(sent, [line(0, 10, 0), line(0, 10, 1), line(0, 10, 2)].concat());
        let mut latency = latencies();
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
        let err = ledger.check(&echo, Instant::now(), &mut latencies()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("line 2 differs at byte 4: sent '0', got '1'"), "{err}");
    }

    #[test]
    fn reordered_and_extra_lines_are_errors() {
        let (mut ledger, sent) = ledger_with(2, 10);
        let swapped = [&sent[10..], &sent[..10]].concat();
        assert!(ledger.check(&swapped, Instant::now(), &mut latencies()).is_err());

        let (mut ledger, sent) = ledger_with(1, 10);
        let doubled = [&sent[..], &sent[..]].concat();
        let err = ledger.check(&doubled, Instant::now(), &mut latencies()).unwrap_err();
        assert!(err.to_string().contains("never sent"), "{err}");
    }

    #[test]
    fn an_echo_of_unwritten_bytes_is_an_error() {
        let mut ledger = Ledger::new(0, 10, 1, Mode::Line);
        ledger.queue(1, Instant::now());
        let queued = unsent(&ledger);
        assert!(ledger.check(&queued, Instant::now(), &mut latencies()).is_err());
    }

    #[test]
    fn slots_are_reused_across_the_end_of_the_ring() {
        let (mut ledger, _) = ledger_with(4, 10);
        let mut latency = latencies();
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
}
