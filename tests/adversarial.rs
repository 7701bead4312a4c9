//! Adversarial peers against `echo serve` as a process: slow drips, peers that never read,
//! resets, connection storms and a signal under load. Through each, a well-behaved client on the
//! same server goes on getting byte-exact echoes (docs/protocol.md, "The line protocol" 4, 5, 8, and
//! docs/reliability.md). The server's memory and descriptors are read from /proc.
//!
//! The many-client cases run their clients as tasks of one thread (a `LocalExecutor`), not as
//! hundreds of threads, and the tests take turns (`serial`): the timing bounds are about the
//! server, not about how these tests crowd two cores.

mod common;

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use async_io::Timer;
use common::{ECHO, ServerProcess, assert_echoes, connect, rss_of, spawn_bench, within};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use rustix::process::Signal;
use smol::LocalExecutor;

/// How long anything that should happen promptly may take before the test fails.
const LIMIT: Duration = Duration::from_secs(5);

/// The server's idle timeout where a test times it. Short, but not so short that a well-behaved
/// client on a crowded machine (other builds and tests share its two cores) misses it: with
/// 300 ms, a client thread held off the CPU now and then was closed for idleness.
const IDLE: Duration = Duration::from_secs(1);

/// `IDLE` as the server's flag.
const IDLE_FLAG: &str = "1s";

/// How long a well-behaved client may wait for an echo while the server fends off the lighter
/// attacks. Typically a few milliseconds; up to 0.6 s was seen with the machine overloaded.
const PROMPT: Duration = Duration::from_secs(1);

/// How late after `IDLE` a timed-out connection may be closed: a busy executor, a loaded machine.
const LATE: Duration = Duration::from_millis(700);

/// Adversarial clients per many-client case.
const CROWD: usize = 200;

// ---------------------------------------------------------------------------------------------
// Helpers

/// One test at a time: each loads the server, and the others' timing bounds would feel it.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A test that failed while holding the lock leaves nothing behind that the next one uses.
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `echo serve --listen 127.0.0.1:0 ARGS`, optionally under `prlimit --nofile=N:N`.
fn start(args: &[&str], nofile: Option<usize>) -> ServerProcess {
    let mut command = match nofile {
        // The server raises its soft limit to the hard one, so both are set.
        Some(n) => {
            let mut command = Command::new("prlimit");
            command.arg(format!("--nofile={n}:{n}")).arg(ECHO);
            command
        }
        None => Command::new(ECHO),
    };
    command.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
    ServerProcess::start_command(&mut command, 1)
}

/// `fut`'s output, or `None` when `limit` passes first.
async fn timeout<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    async { Some(fut.await) }
        .or(async {
            Timer::after(limit).await;
            None
        })
        .await
}

/// An async client on the test's executor.
async fn connect_async(addr: SocketAddr) -> async_net::TcpStream {
    let stream = timeout(LIMIT, async_net::TcpStream::connect(addr))
        .await
        .unwrap_or_else(|| panic!("connect {addr}: no answer within {LIMIT:?}"))
        .unwrap_or_else(|err| panic!("connect {addr}: {err}"));
    stream.set_nodelay(true).unwrap();
    stream
}

/// A client socket with the smallest send and receive buffers the kernel allows.
///
/// A client that never reads fills its own buffers too; on loopback those come out of the same
/// kernel as the server's. Left to autotuning, 200 of them and the server pinned 1.7 GiB of TCP
/// memory (`/proc/net/sockstat`), past this machine's pressure mark of 1.5 GiB; with these, 1.0
/// GiB, nearly all of it on the server's side, and the test runs twice as fast.
fn connect_small_buffers(addr: SocketAddr) -> async_net::TcpStream {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, sockopt};
    let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    // Close-on-exec, as std's sockets are: the tests start processes.
    let socket = rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None).unwrap();
    // Before the connect, so that the receive window is small from the start.
    sockopt::set_socket_send_buffer_size(&socket, 4096).unwrap();
    sockopt::set_socket_recv_buffer_size(&socket, 4096).unwrap();
    // Blocking, on loopback, to a server that accepts at once.
    rustix::net::connect(&socket, &addr).unwrap_or_else(|err| panic!("connect {addr}: {err}"));
    async_net::TcpStream::try_from(TcpStream::from(socket)).unwrap()
}

/// Descriptors the process has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read /proc fd").count()
}

/// Descriptors the process has open with a number below `limit`.
fn fds_numbered_below(pid: u32, limit: usize) -> usize {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read /proc fd");
    fds.filter(|fd| {
        fd.as_ref().is_ok_and(|fd| fd.file_name().to_str().and_then(|n| n.parse().ok()) < Some(limit))
    })
    .count()
}

/// The CPU time (user + system) a process has used, in clock ticks of 1/100 s.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // utime and stime are fields 14 and 15; the command name before them may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat format").1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Waits until the server has at most `baseline` descriptors open; fails after `LIMIT`.
fn assert_fds_return_to(server: &ServerProcess, baseline: usize) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let open = open_fds(server.child.id());
        if open <= baseline {
            return;
        }
        assert!(Instant::now() < deadline, "{open} descriptors open {LIMIT:?} later, baseline {baseline}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A parsed `close PEER lines=N bytes=M duration=D.DDDs reason=R` line.
#[derive(Debug, Clone)]
struct Closed {
    lines: u64,
    bytes: u64,
    /// From the server's accept to its close, as the server measured it.
    duration: Duration,
    reason: String,
}

impl Closed {
    /// `PEER` and what follows it, from a log line.
    fn parse(line: &str) -> Option<(&str, Closed)> {
        let (peer, rest) = line.strip_prefix("close ")?.split_once(' ')?;
        let (lines, rest) = rest.strip_prefix("lines=")?.split_once(" bytes=")?;
        let (bytes, rest) = rest.split_once(" duration=")?;
        let (duration, reason) = rest.split_once("s reason=")?;
        let duration = Duration::from_secs_f64(duration.parse().ok()?);
        let (lines, bytes, reason) = (lines.parse().ok()?, bytes.parse().ok()?, reason.to_string());
        Some((peer, Closed { lines, bytes, duration, reason }))
    }
}

/// The close line logged for each of `peers`, waiting up to `LIMIT` for all of them.
fn closes(server: &ServerProcess, peers: &[SocketAddr]) -> Vec<Closed> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let log = server.log();
        let logged: HashMap<&str, Closed> = log.iter().filter_map(|line| Closed::parse(line)).collect();
        let found: Vec<Closed> =
            peers.iter().filter_map(|p| logged.get(p.to_string().as_str()).cloned()).collect();
        if found.len() == peers.len() {
            return found;
        }
        let missing = peers.len() - found.len();
        assert!(Instant::now() < deadline, "{missing} of {} connections never logged a close", peers.len());
        thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts every connection closed for `want`, naming the count of each other reason otherwise.
fn assert_all_closed_for(closes: &[Closed], want: &str) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for close in closes {
        *counts.entry(&close.reason).or_default() += 1;
    }
    assert_eq!(counts.get(want), Some(&closes.len()), "want every reason={want}, got {counts:?}");
}

/// A well-behaved client on its own thread: a line every 20 ms, each echo checked byte for byte,
/// until `finish`. Every line holds bytes a text-minded server would mangle.
struct Steady {
    peer: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<SteadyReport>,
}

#[derive(Debug)]
struct SteadyReport {
    echoes: u64,
    slowest: Duration,
    ran: Duration,
}

impl Steady {
    fn start(addr: SocketAddr) -> Steady {
        let mut stream = connect(addr);
        let peer = stream.local_addr().unwrap();
        // The first echo before returning: the connection is served from here on.
        assert_echoes(&mut stream, b"steady start\r\n");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            let started = Instant::now();
            let mut last_echo = started;
            let mut report = SteadyReport { echoes: 0, slowest: Duration::ZERO, ran: Duration::ZERO };
            // Bounded: no test here runs for anywhere near 60 s.
            while !stopped.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                let line = [format!("steady {} ", report.echoes).as_bytes(), b"\0\xff bare\nLF bare\rCR\r\n"]
                    .concat();
                let sent = Instant::now();
                stream.write_all(&line).unwrap_or_else(|err| panic!("steady client: send: {err}"));
                let mut echo = vec![0; line.len()];
                stream.read_exact(&mut echo).unwrap_or_else(|err| {
                    let (n, since_echo, since_send) = (report.echoes, last_echo.elapsed(), sent.elapsed());
                    panic!(
                        "steady client: no echo of line {n}: {err} ({since_echo:?} after the previous \
                         echo arrived, {since_send:?} after the send)"
                    )
                });
                assert_eq!(echo, line, "steady client: echo differs");
                last_echo = Instant::now();
                report.slowest = report.slowest.max(sent.elapsed());
                report.echoes += 1;
                thread::sleep(Duration::from_millis(20));
            }
            report.ran = started.elapsed();
            report
        });
        Steady { peer, stop, thread }
    }

    /// Stops the client and asserts it was served throughout: no echo took `max_wait` or more.
    fn finish(self, server: &ServerProcess, max_wait: Duration) -> SteadyReport {
        self.stop.store(true, Ordering::Relaxed);
        let report = self.thread.join().unwrap_or_else(|_| {
            let prefix = format!("close {} ", self.peer);
            let close = server.log().into_iter().find(|line| line.starts_with(&prefix));
            panic!("the well-behaved client failed (see its panic above); the server logged {close:?}")
        });
        assert!(report.echoes > 0, "{report:?}");
        assert!(report.slowest < max_wait, "a well-behaved client waited {:?} for an echo", report.slowest);
        report
    }
}

/// The highest RSS of a process, sampled every 10 ms on a thread until `stop`.
struct PeakRss {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl PeakRss {
    fn start(pid: u32) -> PeakRss {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            let mut peak = rss_of(pid);
            // Bounded like the steady client.
            let started = Instant::now();
            while !stopped.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                peak = peak.max(rss_of(pid));
                thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        PeakRss { stop, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("RSS sampler")
    }
}

/// Complete 1000-byte lines, `count` of them, numbered.
fn lines(count: usize) -> Vec<u8> {
    (0..count).flat_map(|i| format!("{i:08}{}\r\n", "z".repeat(990)).into_bytes()).collect()
}

/// What a client that never reads saw.
struct Flood {
    sent: usize,
    /// When a write first waited for `STALL`: the server had stopped reading (or, under load,
    /// had not come round to it).
    stalled: Option<Instant>,
    /// When the last few writes took bytes, oldest first.
    writes: VecDeque<Instant>,
    /// When a write failed, and how: the server closed the connection.
    failed: Option<(Instant, io::ErrorKind)>,
}

/// A write that waits this long means the server stopped taking bytes.
const STALL: Duration = Duration::from_millis(100);

/// Writes `chunk` (complete lines) over and over and reads nothing, until a write fails, or, with
/// `until_stalled`, until a write waits for `STALL`.
async fn flood(stream: &mut async_net::TcpStream, chunk: &[u8], until_stalled: bool) -> Flood {
    let mut flood = Flood { sent: 0, stalled: None, writes: VecDeque::new(), failed: None };
    let mut at = 0;
    // Bounded by count as well as by the test's `within`: 1 GiB is far more than any socket holds.
    while flood.sent < 1 << 30 {
        match timeout(STALL, stream.write(&chunk[at..])).await {
            Some(Ok(n)) => {
                flood.sent += n;
                if flood.writes.len() == 8 {
                    flood.writes.pop_front();
                }
                flood.writes.push_back(Instant::now());
                at = (at + n) % chunk.len();
                // A write that never waits never lets the other clients on this thread run.
                futures_lite::future::yield_now().await;
            }
            Some(Err(err)) => {
                flood.failed = Some((Instant::now(), err.kind()));
                return flood;
            }
            None => {
                flood.stalled.get_or_insert_with(Instant::now);
                if until_stalled {
                    return flood;
                }
            }
        }
    }
    panic!("the server took 1 GiB from a client that reads nothing");
}

// ---------------------------------------------------------------------------------------------
// Slow drips

/// What a client that drips one byte per 50 ms saw before the server closed.
struct Drip {
    peer: SocketAddr,
    /// From before the connect: the server's idle timeout starts at its accept, which comes
    /// after, so this is never shorter than the timeout.
    lived: Duration,
    /// From the connection's establishment. A connect may take a second or more when the kernel
    /// retransmits a SYN, which the server never sees, so lateness is measured from here.
    connected_for: Duration,
    echoed: usize,
}

/// Drips `x` bytes, never a line end, one per 50 ms, until the connection closes. `started` is
/// taken before the connect, `connected` after it.
async fn drip(mut stream: async_net::TcpStream, started: Instant, connected: Instant) -> Drip {
    let peer = stream.local_addr().unwrap();
    let mut echoed = 0;
    let mut buf = [0; 64];
    loop {
        let lived = connected.elapsed();
        assert!(lived < IDLE + LIMIT, "a drip kept its connection for {lived:?}");
        // A write fails once the server has reset the connection.
        if stream.write_all(b"x").await.is_err() {
            break;
        }
        match timeout(Duration::from_millis(50), stream.read(&mut buf)).await {
            None => {}
            Some(Ok(0)) | Some(Err(_)) => break,
            Some(Ok(n)) => echoed += n,
        }
    }
    let closed = Instant::now();
    Drip { peer, lived: closed - started, connected_for: closed - connected, echoed }
}

#[test]
fn slow_drips_are_all_dropped_at_the_idle_timeout_while_others_are_served() {
    let _turn = serial();
    let server = start(&["--idle-timeout", IDLE_FLAG], None);
    let addr = server.addr();
    let steady = Steady::start(addr);
    let rss_before = server.rss();
    let (cpu_before, dripping) = (cpu_ticks(server.child.id()), Instant::now());

    let ex = LocalExecutor::new();
    let drips: Vec<Drip> = within(
        Duration::from_secs(15),
        ex.run(async {
            // Connected one after another, so that no connection waits in the listen backlog.
            let mut tasks = Vec::new();
            for _ in 0..CROWD {
                let started = Instant::now();
                let stream = connect_async(addr).await;
                tasks.push(ex.spawn(drip(stream, started, Instant::now())));
            }
            let mut drips = Vec::new();
            for task in tasks {
                drips.push(task.await);
            }
            drips
        }),
    );
    let rss_after = server.rss();
    let (cpu, dripped) = (cpu_ticks(server.child.id()) - cpu_before, dripping.elapsed());
    let report = steady.finish(&server, PROMPT);

    let echoed: usize = drips.iter().map(|d| d.echoed).sum();
    assert_eq!(echoed, 0, "partial lines were echoed");
    let shortest = drips.iter().map(|d| d.lived).min().unwrap();
    let longest = drips.iter().map(|d| d.connected_for).max().unwrap();
    assert!(shortest >= IDLE, "a drip was closed after only {shortest:?}");
    assert!(longest < IDLE + LATE, "a drip held its connection for {longest:?}");
    let peers: Vec<SocketAddr> = drips.iter().map(|d| d.peer).collect();
    let closes = closes(&server, &peers);
    assert_all_closed_for(&closes, "idle timeout");
    // The server's own account of each connection, free of any delay on the client's side.
    let held = closes.iter().map(|c| c.duration);
    let (held_least, held_most) = (held.clone().min().unwrap(), held.max().unwrap());
    // The log rounds to the millisecond.
    assert!(held_least + Duration::from_millis(1) >= IDLE, "the server closed a drip after {held_least:?}");
    assert!(held_most < IDLE + LATE, "the server held a drip for {held_most:?}");
    let slowest_connect = drips.iter().map(|d| d.lived - d.connected_for).max().unwrap();
    eprintln!(
        "{CROWD} drips lived {shortest:?} to {longest:?} (server: {held_least:?} to {held_most:?}, \
         slowest connect {slowest_connect:?}); server RSS {rss_before} -> {rss_after} bytes, \
         CPU {cpu} ticks of 1/100 s in {dripped:?}; steady client {report:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Peers that never read

#[test]
fn peers_that_never_read_are_closed_by_the_write_timeout_in_bounded_memory() {
    let _turn = serial();
    // Long enough that every peer is blocked on at once: filling 200 connections' socket buffers
    // (4 to 8 MiB each on this kernel, most of it the server's autotuned send buffer) keeps both
    // cores busy for seconds, and no peer may time out for idleness while it waits for its turn
    // to send. The well-behaved client waits for its turn too: 0.1 to 0.3 s typically, 2.7 s
    // with the machine overloaded.
    const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
    let server = start(&["--idle-timeout", "3s"], None);
    let addr = server.addr();
    let steady = Steady::start(addr);
    let rss_before = server.rss();
    let peak = PeakRss::start(server.child.id());

    let chunk = lines(64);
    let ex = LocalExecutor::new();
    let floods: Vec<(SocketAddr, Flood)> = within(
        Duration::from_secs(20),
        ex.run(async {
            let mut tasks = Vec::new();
            for _ in 0..CROWD {
                let mut stream = connect_small_buffers(addr);
                let chunk = &chunk;
                tasks.push(ex.spawn(async move {
                    (stream.local_addr().unwrap(), flood(&mut stream, chunk, false).await)
                }));
            }
            let mut floods = Vec::new();
            for task in tasks {
                floods.push(task.await);
            }
            floods
        }),
    );
    let peak = peak.stop();
    let report = steady.finish(&server, WRITE_TIMEOUT);

    let mut held = Vec::new();
    for (peer, flood) in &floods {
        let (failed, kind) = flood.failed.expect("a flood ends only when a write fails");
        assert!(
            matches!(kind, io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe),
            "{peer}: the flood ended with {kind:?}, not a closed connection"
        );
        held.push(failed.saturating_duration_since(*flood.writes.back().expect("some bytes were taken")));
    }
    let peers: Vec<SocketAddr> = floods.iter().map(|(peer, _)| *peer).collect();
    let closed = closes(&server, &peers);
    // Seen twice, not since (see /work/notes/adversarial.md): a few of these peers closed for
    // "idle timeout" although, by their own writes, megabytes of complete lines had reached the
    // server's socket in the seconds before. Each such close is shown with that evidence.
    let unexpected: Vec<String> = floods
        .iter()
        .zip(&closed)
        .filter(|(_, close)| close.reason != "write timeout")
        .map(|((peer, flood), close)| {
            let failed = flood.failed.expect("checked above").0;
            let before: Vec<_> = flood.writes.iter().map(|at| failed.duration_since(*at)).collect();
            format!(
                "{peer}: reason={}, {} bytes echoed of {} sent; its last writes went through {before:?} \
                 before it saw the close",
                close.reason, close.bytes, flood.sent
            )
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "closed for another reason than write timeout:\n{}",
        unexpected.join("\n")
    );
    let sent: usize = floods.iter().map(|(_, f)| f.sent).sum();
    let most = floods.iter().map(|(_, f)| f.sent).max().unwrap();
    let growth = peak.saturating_sub(rss_before);
    held.sort();
    eprintln!(
        "{CROWD} peers that never read sent {} MiB in all, at most {:.1} MiB each; server RSS {rss_before} bytes at start, peak \
         {peak} (+{:.1} MiB); closed {:?} to {:?} (median {:?}) after their last write went through; \
         steady client {report:?}",
        sent >> 20,
        most as f64 / f64::from(1 << 20),
        growth as f64 / f64::from(1 << 20),
        held[0],
        held[held.len() - 1],
        held[held.len() / 2],
    );
    assert!(growth < 64 << 20, "server RSS grew by {growth} bytes");
}

// ---------------------------------------------------------------------------------------------
// Resets

/// Resets the connection: closing a socket that holds received bytes it never read makes the
/// kernel send RST instead of FIN.
fn reset(stream: async_net::TcpStream) {
    drop(stream);
}

/// Waits until `len` bytes have arrived on `stream`, without reading them.
async fn wait_unread(stream: &async_net::TcpStream, len: usize) {
    let mut buf = vec![0; len];
    for _ in 0..1000 {
        if stream.peek(&mut buf).await.expect("peek") >= len {
            return;
        }
        Timer::after(Duration::from_millis(5)).await;
    }
    panic!("{len} bytes never arrived");
}

#[test]
fn resets_mid_line_and_mid_write_affect_no_other_connection_and_leak_nothing() {
    let _turn = serial();
    // No timeout would close these connections within the test: only the resets do.
    let server = start(&["--idle-timeout", "30s"], None);
    let addr = server.addr();
    let steady = Steady::start(addr);
    let baseline = open_fds(server.child.id());

    let chunk = lines(64);
    let ex = LocalExecutor::new();
    let (mid_line, mid_write) = within(
        Duration::from_secs(15),
        ex.run(async {
            let mut mid_line = Vec::new();
            for i in 0..20 {
                let mut stream = connect_async(addr).await;
                // An echo left unread, so that closing resets; then half a line.
                stream.write_all(b"echoed\r\n").await.unwrap();
                wait_unread(&stream, 8).await;
                stream.write_all(format!("half a line {i}").as_bytes()).await.unwrap();
                mid_line.push(stream);
            }
            // Let the server read the halves before the resets.
            Timer::after(Duration::from_millis(50)).await;
            let mut floods = Vec::new();
            for _ in 0..10 {
                let mut stream = connect_async(addr).await;
                let chunk = &chunk;
                floods.push(ex.spawn(async move {
                    // Stalled: the server's echo is blocked on us, mid-write.
                    let stalled = flood(&mut stream, chunk, true).await.stalled;
                    assert!(stalled.is_some(), "the server closed a connection that reads nothing at once");
                    stream
                }));
            }
            let mut mid_write = Vec::new();
            for flood in floods {
                mid_write.push(flood.await);
            }
            let peers = |streams: &Vec<async_net::TcpStream>| -> Vec<SocketAddr> {
                streams.iter().map(|s| s.local_addr().unwrap()).collect()
            };
            let peers = (peers(&mid_line), peers(&mid_write));
            mid_line.into_iter().chain(mid_write).for_each(reset);
            peers
        }),
    );
    let mid_line = closes(&server, &mid_line);
    assert_all_closed_for(&mid_line, "reset");
    // The first line echoed, nothing of the half line.
    assert!(mid_line.iter().all(|c| (c.lines, c.bytes) == (1, 8)), "{mid_line:?}");
    assert_all_closed_for(&closes(&server, &mid_write), "reset");
    assert_fds_return_to(&server, baseline);
    steady.finish(&server, PROMPT);
    assert_echoes(&mut connect(addr), b"after the resets\r\n");
}

// ---------------------------------------------------------------------------------------------
// Connection storms

/// What a storm did: connections that the kernel completed, and of those, the ones the server
/// echoed while the storm held them all open.
#[derive(Debug)]
struct Storm {
    connected: usize,
    echoed: usize,
    /// The server's open descriptors with the storm at its height.
    fds_at_height: usize,
}

/// After the expected clients are served, how long a storm waits for any more.
const SETTLE: Duration = Duration::from_millis(200);

/// Opens `count` connections at once, each sending one line, and holds them all open until
/// `expect` echoes have come (or `LIMIT` has passed), then `SETTLE` longer in case more come;
/// counts the server's descriptors at that height, then closes every connection.
fn storm(server: &ServerProcess, count: usize, expect: usize) -> Storm {
    let addr = server.addr();
    let (connected, echoed) = (Cell::new(0), Cell::new(0));
    let ex = LocalExecutor::new();
    within(
        LIMIT + LIMIT,
        ex.run(async {
            // Dropped at the end, and the clients with them: their connections stay open till then.
            let _clients: Vec<_> =
                (0..count).map(|i| ex.spawn(storm_client(addr, i, &connected, &echoed))).collect();
            let deadline = Instant::now() + LIMIT;
            while echoed.get() < expect && Instant::now() < deadline {
                Timer::after(Duration::from_millis(10)).await;
            }
            Timer::after(SETTLE).await;
            Storm {
                connected: connected.get(),
                echoed: echoed.get(),
                fds_at_height: open_fds(server.child.id()),
            }
        }),
    )
}

/// One client of a storm: connects, sends a line, checks its echo, and holds the connection.
async fn storm_client(addr: SocketAddr, i: usize, connected: &Cell<usize>, echoed: &Cell<usize>) {
    // A connect the kernel leaves pending (the backlog is full) waits until the storm ends.
    let Ok(mut stream) = async_net::TcpStream::connect(addr).await else { return };
    connected.set(connected.get() + 1);
    let line = format!("storm {i}\r\n");
    let mut echo = vec![0; line.len()];
    if stream.write_all(line.as_bytes()).await.is_ok() && stream.read_exact(&mut echo).await.is_ok() {
        assert_eq!(echo, line.as_bytes(), "storm echo differs");
        echoed.set(echoed.get() + 1);
    }
    futures_lite::future::pending::<()>().await;
}

#[test]
fn a_storm_past_max_connections_is_held_back_and_the_server_recovers() {
    let _turn = serial();
    const MAX: usize = 20;
    let server = start(&["--idle-timeout", "5s", "--max-connections", "20", "-q"], None);
    let steady = Steady::start(server.addr());
    let baseline = open_fds(server.child.id());

    // The steady client holds one of the places; each other one is a storm client served.
    let places = MAX - 1;
    let storm = storm(&server, 300, places);
    eprintln!("max-connections storm: {storm:?}, baseline {baseline} descriptors");
    assert!(storm.connected > MAX, "the storm never went past the limit: {storm:?}");
    assert_eq!(storm.echoed, places, "served at once, with {MAX} allowed: {storm:?}");
    assert!(storm.fds_at_height <= baseline + places, "{storm:?}, baseline {baseline}");

    assert_fds_return_to(&server, baseline);
    steady.finish(&server, PROMPT);
    assert_echoes(&mut connect(server.addr()), b"after the storm\r\n");
}

#[test]
fn a_storm_past_the_open_file_limit_is_survived_and_the_server_recovers() {
    let _turn = serial();
    const NOFILE: usize = 64;
    let server = start(&["--idle-timeout", "5s", "-q"], Some(NOFILE));
    let pid = server.child.id();
    let steady = Steady::start(server.addr());
    let baseline = open_fds(pid);
    // Descriptors inherited from the test harness may be numbered past the limit; they take
    // none of the server's room.
    let free = NOFILE - fds_numbered_below(pid, NOFILE);

    let storm = storm(&server, 300, free);
    eprintln!("open-file storm: {storm:?}, baseline {baseline} descriptors, {free} free");
    assert!(storm.connected > NOFILE, "the storm never went past the limit: {storm:?}");
    // Every descriptor the server had left went to a client it served, one each.
    assert_eq!(storm.echoed, free, "{storm:?}");
    // The server sat at the limit for at least `SETTLE`, failing an accept every 100 ms: one
    // warning says so, the repeats are debug detail.
    let log = server.log();
    let warnings: Vec<&String> =
        log.iter().filter(|line| line.starts_with("warning: accept failed")).collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("os error 24"), "{}", warnings[0]);

    assert_fds_return_to(&server, baseline);
    steady.finish(&server, PROMPT);
    assert_echoes(&mut connect(server.addr()), b"after the storm\r\n");
}

// ---------------------------------------------------------------------------------------------
// A signal under load

/// Runs `echo bench ARGS` on a thread; its output arrives on the receiver.
fn bench_in_background(args: &[&str]) -> (u32, mpsc::Receiver<Output>) {
    let child = spawn_bench(args);
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(child.wait_with_output().expect("bench output")).ok());
    (pid, rx)
}

#[test]
fn sigterm_under_bench_exits_0_within_grace_and_every_echo_was_exact() {
    let _turn = serial();
    let mut server = start(&["--grace", "2s"], None);
    let addr = server.addr().to_string();
    let (bench_pid, bench) = bench_in_background(&[&addr, "-c", "10", "-p", "4", "-d", "5s", "--json"]);
    // Every connection open, and lines going back and forth for a while.
    for _ in 0..10 {
        server.wait_for_line("open ", LIMIT).expect("the bench opens 10 connections");
    }
    thread::sleep(Duration::from_millis(500));

    let signalled = Instant::now();
    server.signal(Signal::TERM);
    let status = server.wait_exit(LIMIT).expect("the server exits after SIGTERM");
    let took = signalled.elapsed();
    let output = bench.recv_timeout(LIMIT).unwrap_or_else(|_| {
        // Not reaped yet, so the pid is still the bench's.
        let pid = rustix::process::Pid::from_raw(bench_pid as i32).unwrap();
        rustix::process::kill_process(pid, Signal::KILL).ok();
        panic!("the bench still runs {LIMIT:?} after the server exited");
    });
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The summary is the server's last line: every line before it has been read.
    server.wait_for_line("shutdown:", LIMIT).expect("a summary after the signal");

    assert_eq!(status.code(), Some(0), "{status}");
    assert!(took < Duration::from_secs(2), "exit {took:?} after SIGTERM, more than --grace");
    let log = server.log();
    assert!(!log.iter().any(|line| line.contains("cut off")), "{log:#?}");
    let closes = log.iter().filter(|line| line.starts_with("close ")).count();
    let shutdowns = log.iter().filter(|line| line.starts_with("close ") && line.ends_with("reason=shutdown"));
    assert_eq!((closes, shutdowns.count()), (10, 10), "{log:#?}");

    // The bench checks every byte: a wrong echo is reported as one that "differs" or was "never
    // sent". Only the first error is named; a mismatch before the signal would be that one.
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("bench JSON: {err}; stderr: {stderr}"));
    let errors = report["errors"].as_u64().expect("errors");
    let lines = report["lines"].as_u64().expect("lines");
    assert_eq!(output.status.code(), Some(1), "the dropped connections are errors: {stderr}");
    assert!((1..=10).contains(&errors), "{errors} errors from 10 connections: {stderr}");
    assert!(lines > 0, "no line was echoed before the signal: {report}");
    assert!(!stderr.contains("differs") && !stderr.contains("never sent"), "{stderr}");
    assert!(
        stderr.contains("server closed the connection")
            || stderr.contains("reset")
            || stderr.contains("Broken pipe"),
        "the first error is not a dropped connection: {stderr}"
    );
    // Every line the bench verified, the server counted as echoed.
    let summary = log.iter().find(|line| line.starts_with("shutdown:")).expect("summary");
    let echoed: u64 =
        summary.split(", ").nth(1).and_then(|s| s.strip_suffix(" lines")?.parse().ok()).expect("line count");
    assert!(echoed >= lines, "server echoed {echoed} lines, the bench verified {lines}: {summary}");
    eprintln!("bench until SIGTERM: {report}; {}; server exit after {took:?}; {summary}", stderr.trim());
}
