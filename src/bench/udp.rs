//! The UDP load generator: flows of datagrams, every reply checked, loss counted.
//!
//! Each flow is a connected UDP socket, a task of one single-threaded executor like the
//! connections of a stream bench, with `depth` datagrams in flight. A datagram carries its
//! sequence number in its first eight bytes, so a reply is matched to what was sent whatever the
//! order replies come in, and its bytes are checked against the flow's template. One timer per
//! flow, set for the oldest datagram in flight, finds those whose reply is overdue: they count
//! as lost and make room for new ones.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::{Async, Timer};

use super::config::BenchConfig;
use super::payload::{SEQ_BYTES, stamp, template};
use super::report::{BenchReport, Datagrams, Progress, Transport};
use super::run::{BUDGET, Shared, quotas, supervise};
use crate::client::{connected_socket, first_address};
use crate::error::context;
use crate::session::Mode;

/// Loads the UDP echo server at `addr` (`host:port` or `[v6addr]:port`) as `config` says:
/// `config.connections` flows, each a UDP socket of its own, keep `config.depth` datagrams of
/// `config.size` bytes in flight, and check every reply byte for byte. `progress` is called once
/// a second.
///
/// A datagram whose reply has not come within `config.timeout` is lost, and another is sent in
/// its place; a reply that comes later is ignored, and so is a second reply to the same
/// datagram. With [`BenchLimit::Lines`](super::BenchLimit::Lines) the count is of datagrams
/// sent. The run ends when every flow is done, or when no reply at all has come for twice the
/// timeout (then what is still in flight is lost), and at the latest `config.timeout` after the
/// duration. The report's [`Datagrams`] count what was sent, received and lost, and its latency
/// is that of the replies received. Errors: corrupted replies (wrong length or bytes, or a
/// sequence number never sent), flows that fail (e.g. the server's port refuses), and flows that
/// get no reply at all. `config.mode` does not apply: datagrams are raw bytes; a
/// `config.rate` or `config.churn` is refused (`InvalidInput`). `addr` is resolved once and its
/// first address taken.
///
/// # Examples
///
/// ```
/// use smol_echo::bench::{BenchConfig, BenchLimit};
///
/// smol::block_on(async {
///     // A UDP echo server of one datagram at a time.
///     let server = async_net::UdpSocket::bind("127.0.0.1:0").await?;
///     let addr = server.local_addr()?.to_string();
///     smol::spawn(async move {
///         let mut buf = vec![0; 65536];
///         while let Ok((n, peer)) = server.recv_from(&mut buf).await {
///             server.send_to(&buf[..n], peer).await.ok();
///         }
///     })
///     .detach();
///
///     let config = BenchConfig { connections: 2, limit: BenchLimit::Lines(100), ..Default::default() };
///     let report = smol_echo::bench::bench_udp(&addr, &config, |_| {}).await?;
///     let datagrams = report.datagrams.unwrap();
///     assert_eq!((datagrams.sent, datagrams.received, datagrams.lost), (100, 100, 0));
///     assert_eq!((report.lines, report.errors), (100, 0));
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
pub async fn bench_udp(
    addr: &str,
    config: &BenchConfig,
    progress: impl FnMut(&Progress),
) -> io::Result<BenchReport> {
    bench_udp_until(addr, config, progress, futures_lite::future::pending()).await
}

/// [`bench_udp()`], stopped early when `interrupt` completes, as
/// [`bench_until`](super::bench_until) stops a stream bench: the report says
/// [`BenchReport::interrupted`].
///
/// # Examples
///
/// ```
/// use smol_echo::bench::{BenchConfig, BenchLimit};
///
/// smol::block_on(async {
///     let server = async_net::UdpSocket::bind("127.0.0.1:0").await?;
///     let addr = server.local_addr()?.to_string();
///     smol::spawn(async move {
///         let mut buf = vec![0; 65536];
///         while let Ok((n, peer)) = server.recv_from(&mut buf).await {
///             server.send_to(&buf[..n], peer).await.ok();
///         }
///     })
///     .detach();
///
///     let config = BenchConfig { connections: 1, limit: BenchLimit::Lines(u64::MAX), ..Default::default() };
///     let interrupt = async_io::Timer::after(std::time::Duration::from_millis(200));
///     let report = smol_echo::bench::bench_udp_until(&addr, &config, |_| {}, async { interrupt.await; }).await?;
///     assert!(report.interrupted && report.lines > 0);
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
pub async fn bench_udp_until(
    addr: &str,
    config: &BenchConfig,
    mut progress: impl FnMut(&Progress),
    interrupt: impl Future<Output = ()>,
) -> io::Result<BenchReport> {
    config.check(&|field| field)?;
    config.check_memory()?;
    if config.rate.is_some() || config.churn.is_some() {
        let message = "a rate and churn apply to stream benches, not to UDP";
        return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    }
    if config.size > BenchConfig::MAX_UDP_SIZE {
        let message =
            format!("UDP datagrams can be at most {} bytes, not {}", BenchConfig::MAX_UDP_SIZE, config.size);
        return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    }
    let cannot = |err| context(err, format_args!("cannot send to {addr}"));
    let target = first_address(addr).await.map_err(cannot)?;
    let first = connected_socket(target).map_err(cannot)?;
    let (shared, counts) = (Shared::new(), Counts::default());
    let ex = LocalExecutor::new();
    Ok(ex.run(drive(&ex, &shared, &counts, config, target, first, &mut progress, interrupt)).await)
}

/// Flows counted by how they went, for the flows that got no reply at all.
#[derive(Default)]
struct Counts {
    sent: Cell<u64>,
    /// Flows that got an intact reply.
    answered: Cell<u64>,
    /// Flows that failed before any intact reply: already errors.
    failed: Cell<u64>,
}

/// Runs the flows to the end and makes the report.
#[allow(clippy::too_many_arguments)]
async fn drive<'a>(
    ex: &LocalExecutor<'a>,
    shared: &'a Shared,
    counts: &'a Counts,
    config: &BenchConfig,
    target: SocketAddr,
    first: Async<UdpSocket>,
    progress: &mut impl FnMut(&Progress),
    interrupt: impl Future<Output = ()>,
) -> BenchReport {
    let quotas = quotas(config);
    // As in a stream bench, each task holds a sender and `recv` fails once all are gone.
    let (running, finished) = async_channel::bounded::<()>(1);
    let start = Instant::now();
    let mut first = Some(first);
    for (id, &quota) in quotas.iter().enumerate() {
        let socket = first.take().map_or_else(|| connected_socket(target), Ok);
        let flow = flow(id, target, socket, quota, config.clone(), shared, counts, running.clone());
        ex.spawn(flow).detach();
    }
    drop(running);
    // Lost datagrams are replaced, so a pause of one timeout is normal; two are not. Whatever
    // is still in flight when it gives up is lost, which the counts below say already.
    let quiet_limit = config.timeout.saturating_mul(2);
    let interrupted =
        supervise(shared, config, start, quiet_limit, &finished, progress, interrupt).await.interrupted;

    let flows = quotas.len() as u64;
    let silent = flows - counts.answered.get() - counts.failed.get();
    if silent > 0 {
        shared.fail(silent, format!("{silent} flow(s) to {target} got no reply at all"));
    }
    let (sent, received) = (counts.sent.get(), shared.lines.get());
    let datagrams = Datagrams { sent, received, lost: sent - received };
    BenchReport { interrupted, ..shared.report(config, quotas.len(), Transport::Udp, start, Some(datagrams)) }
}

/// One flow's task: send its datagrams and check their replies. Failures are counted in
/// `shared`; `_running` is dropped at the end.
#[allow(clippy::too_many_arguments)]
async fn flow(
    id: usize,
    target: SocketAddr,
    socket: io::Result<Async<UdpSocket>>,
    quota: Option<u64>,
    config: BenchConfig,
    shared: &Shared,
    counts: &Counts,
    _running: async_channel::Sender<()>,
) {
    let mut flow = None;
    let result = match socket {
        Ok(socket) => {
            let flow = flow.insert(Flow::new(id, socket, quota, &config, shared, counts));
            poll_fn(|cx| flow.poll_run(cx)).await
        }
        Err(err) => Err(context(err, "cannot open a socket")),
    };
    if let Err(err) = result {
        shared.fail(1, format!("flow {} to {target}: {err}", id + 1));
        if !flow.is_some_and(|flow| flow.answered) {
            counts.failed.set(counts.failed.get() + 1);
        }
    }
}

/// One flow at work: its socket and its datagrams in flight.
struct Flow<'a> {
    id: usize,
    socket: Async<UdpSocket>,
    /// The flow's datagram, stamped with each sequence number as it is sent.
    datagram: Box<[u8]>,
    depth: usize,
    quota: Option<u64>,
    timeout: Duration,
    /// When datagrams `oldest..` were sent, by sequence number; `None` once answered. The
    /// front is always `Some`: answered ones are popped from it.
    in_flight: VecDeque<Option<Instant>>,
    oldest: u64,
    /// The `Some` entries of `in_flight`.
    waiting: usize,
    /// Set no later than the deadline of the oldest datagram waiting, whenever one waits.
    expiry: Timer,
    /// A receive may find a datagram without waiting for readiness.
    readable: bool,
    answered: bool,
    shared: &'a Shared,
    counts: &'a Counts,
}

impl<'a> Flow<'a> {
    /// Flow `id` with nothing sent yet.
    fn new(
        id: usize,
        socket: Async<UdpSocket>,
        quota: Option<u64>,
        config: &BenchConfig,
        shared: &'a Shared,
        counts: &'a Counts,
    ) -> Flow<'a> {
        Flow {
            id,
            socket,
            datagram: template(Mode::Raw, id, config.size).into_boxed_slice(),
            depth: config.depth,
            quota,
            timeout: config.timeout,
            in_flight: VecDeque::with_capacity(config.depth),
            oldest: 0,
            waiting: 0,
            expiry: Timer::never(),
            readable: false,
            answered: false,
            shared,
            counts,
        }
    }

    /// Sends, receives and expires until the flow is done, or nothing can move.
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        for _ in 0..BUDGET {
            let sent = self.poll_send(cx)?;
            let received = self.poll_receive(cx)?;
            let expired = self.poll_expire(cx);
            if self.waiting == 0 && !self.wants_more() {
                return Poll::Ready(Ok(()));
            }
            if !sent && !received && !expired {
                return Poll::Pending;
            }
        }
        // Busy: let the other flows run, then come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Datagrams sent so far: the sequence number of the next.
    fn sent(&self) -> u64 {
        self.oldest + self.in_flight.len() as u64
    }

    fn wants_more(&self) -> bool {
        !self.shared.stop.get() && self.quota.is_none_or(|quota| self.sent() < quota)
    }

    /// Sends datagrams until `depth` wait for a reply, or the quota is reached. Tells whether
    /// any was sent.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        let mut sent = false;
        while self.waiting < self.depth && self.wants_more() {
            let seq = self.sent();
            stamp(Mode::Raw, &mut self.datagram, seq);
            match self.socket.get_ref().send(&self.datagram) {
                Ok(_) => {
                    let now = Instant::now();
                    if self.waiting == 0 {
                        self.expiry.set_at(now + self.timeout);
                    }
                    self.in_flight.push_back(Some(now));
                    self.waiting += 1;
                    self.counts.sent.set(self.counts.sent.get() + 1);
                    sent = true;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => match self.socket.poll_writable(cx) {
                    Poll::Ready(ready) => ready?,
                    Poll::Pending => break,
                },
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(sent)
    }

    /// Receives and checks the replies that have come, when a reply is owed. Tells whether any
    /// came.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        let shared = self.shared;
        let mut rx = shared.rx.borrow_mut();
        let mut received = false;
        for _ in 0..self.depth {
            if self.waiting == 0 {
                break;
            }
            if !self.readable {
                match self.socket.poll_readable(cx) {
                    Poll::Ready(ready) => ready?,
                    Poll::Pending => break,
                }
            }
            match self.socket.get_ref().recv(&mut rx) {
                Ok(n) => {
                    self.readable = true;
                    received = true;
                    if let Err(message) = self.check(&rx[..n], Instant::now()) {
                        shared.fail(1, format!("flow {}: {message}", self.id + 1));
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(received)
    }

    /// Checks `reply` and counts it when it answers a datagram still waiting; late and doubled
    /// replies count nothing. A corrupted reply is an error, and the datagram still waits.
    fn check(&mut self, reply: &[u8], now: Instant) -> Result<(), String> {
        let size = self.datagram.len();
        if reply.len() != size {
            return Err(format!("a reply of {} bytes to datagrams of {size} bytes", reply.len()));
        }
        let (seq, body) = reply.split_at(SEQ_BYTES);
        let seq = u64::from_le_bytes(seq.try_into().expect("eight bytes"));
        if let Some(at) = body.iter().zip(&self.datagram[SEQ_BYTES..]).position(|(got, sent)| got != sent) {
            return Err(format!(
                "reply to datagram {} differs at byte {}: sent '{}', got '{}'",
                seq.wrapping_add(1),
                SEQ_BYTES + at + 1,
                [self.datagram[SEQ_BYTES + at]].escape_ascii(),
                [body[at]].escape_ascii(),
            ));
        }
        if seq >= self.sent() {
            return Err(format!("a reply to datagram {}, never sent", seq.wrapping_add(1)));
        }
        let slot = seq.checked_sub(self.oldest).and_then(|index| self.in_flight.get_mut(index as usize));
        let Some(sent_at) = slot.and_then(Option::take) else {
            return Ok(());
        };
        self.waiting -= 1;
        self.shared.latency.borrow_mut().record(now.saturating_duration_since(sent_at));
        self.shared.lines.set(self.shared.lines.get() + 1);
        self.shared.bytes.set(self.shared.bytes.get() + size as u64);
        if !self.answered {
            self.answered = true;
            self.counts.answered.set(self.counts.answered.get() + 1);
        }
        self.pop_answered();
        Ok(())
    }

    fn pop_answered(&mut self) {
        while let Some(None) = self.in_flight.front() {
            self.in_flight.pop_front();
            self.oldest += 1;
        }
    }

    /// When the timer fires, counts the overdue datagrams as lost (they leave the window) and
    /// sets the timer for the next. Tells whether any was lost.
    fn poll_expire(&mut self, cx: &mut Context<'_>) -> bool {
        let mut expired = false;
        while self.waiting > 0 && Pin::new(&mut self.expiry).poll(cx).is_ready() {
            let now = Instant::now();
            while let Some(&Some(sent_at)) = self.in_flight.front() {
                if sent_at + self.timeout > now {
                    self.expiry.set_at(sent_at + self.timeout);
                    break;
                }
                self.in_flight.pop_front();
                self.oldest += 1;
                self.waiting -= 1;
                expired = true;
                self.pop_answered();
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flow with nothing sent, on a socket that goes nowhere.
    fn flow<'a>(shared: &'a Shared, counts: &'a Counts, size: usize, depth: usize) -> Flow<'a> {
        let socket = connected_socket("127.0.0.1:9".parse().unwrap()).unwrap();
        let config = BenchConfig { size, depth, timeout: Duration::from_secs(1), ..BenchConfig::default() };
        Flow::new(0, socket, None, &config, shared, counts)
    }

    /// Records `count` more datagrams as sent at `at`.
    fn send(flow: &mut Flow<'_>, count: usize, at: Instant) {
        for _ in 0..count {
            flow.in_flight.push_back(Some(at));
            flow.waiting += 1;
        }
    }

    /// Datagram `seq` of `flow`, as sent.
    fn datagram(flow: &Flow<'_>, seq: u64) -> Vec<u8> {
        let mut datagram = flow.datagram.to_vec();
        stamp(Mode::Raw, &mut datagram, seq);
        datagram
    }

    #[test]
    fn replies_in_any_order_are_matched_once_each() {
        let (shared, counts) = (Shared::new(), Counts::default());
        let mut flow = flow(&shared, &counts, 64, 4);
        let now = Instant::now();
        send(&mut flow, 4, now);
        for seq in [2, 0, 0, 3, 1] {
            assert_eq!(flow.check(&datagram(&flow, seq), now), Ok(()));
        }
        // The second reply to datagram 1 counted nothing.
        assert_eq!((shared.lines.get(), flow.waiting, flow.oldest), (4, 0, 4));
        assert!(flow.in_flight.is_empty());
        assert_eq!(counts.answered.get(), 1);
    }

    #[test]
    fn corrupted_and_unsent_replies_are_errors_and_leave_the_datagram_waiting() {
        let (shared, counts) = (Shared::new(), Counts::default());
        let mut flow = flow(&shared, &counts, 32, 2);
        send(&mut flow, 2, Instant::now());
        let mut flipped = datagram(&flow, 1);
        flipped[20] ^= 0x80;
        let err = flow.check(&flipped, Instant::now()).unwrap_err();
        assert!(err.contains("datagram 2 differs at byte 21"), "{err}");
        let err = flow.check(&datagram(&flow, 1)[..31], Instant::now()).unwrap_err();
        assert!(err.contains("a reply of 31 bytes to datagrams of 32 bytes"), "{err}");
        let err = flow.check(&datagram(&flow, 7), Instant::now()).unwrap_err();
        assert!(err.contains("datagram 8, never sent"), "{err}");
        assert_eq!((shared.lines.get(), flow.waiting), (0, 2));
    }

    #[test]
    fn overdue_datagrams_leave_the_window_and_late_replies_count_nothing() {
        let (shared, counts) = (Shared::new(), Counts::default());
        let mut flow = flow(&shared, &counts, 16, 3);
        let long_ago = Instant::now() - Duration::from_secs(5);
        send(&mut flow, 2, long_ago);
        send(&mut flow, 1, Instant::now());
        flow.expiry.set_at(long_ago + flow.timeout);
        let waker = std::task::Waker::noop();
        assert!(flow.poll_expire(&mut Context::from_waker(waker)));
        assert_eq!((flow.waiting, flow.oldest), (1, 2));
        assert_eq!(flow.check(&datagram(&flow, 0), Instant::now()), Ok(()));
        assert_eq!(shared.lines.get(), 0);
        assert_eq!(flow.check(&datagram(&flow, 2), Instant::now()), Ok(()));
        assert_eq!((shared.lines.get(), flow.waiting), (1, 0));
    }
}
