//! What the stream and UDP benches share while they run: the counts, the supervision that
//! ends a run, the quotas of lines.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::FutureExt;

use super::config::{BenchConfig, BenchLimit};
use super::distribution::Distribution;
use super::report::{BenchReport, Churn, Datagrams, Handshakes, Progress, Rate, Transport};

/// Rounds of writing and reading one connection (or sending and receiving one UDP flow) may do
/// before it lets the others run.
pub(super) const BUDGET: usize = 32;

/// How often the progress callback is called.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Size of the read buffer shared by all connections.
const READ_BUFFER: usize = 64 * 1024;

/// Waits until every task has dropped its sender of `finished`, calling `progress` once a
/// second and setting `shared.stop` at the end of the duration or when `interrupt` completes.
/// Gives up when no echo at all has come for `quiet_limit` (while no connection is opening),
/// or for `config.timeout` after the end of the duration (a moment after an interruption), and
/// then tells how many tasks were still running.
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
        // Nor does it while no connection owes an echo, waiting for its next line (`rate`).
        let owed = finished.sender_count().saturating_sub(shared.idle.get());
        if shared.bytes.get() != bytes_seen || shared.opening.get() > 0 || owed == 0 {
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
    /// Connections with nothing in flight that wait for their next line to be due (`rate`):
    /// they owe no echo, so the no-echo clock does not run while all the others are opening.
    pub(crate) idle: Cell<usize>,
    /// Lines sent on a schedule (`rate`), and when the last one was.
    pub(crate) paced: Cell<u64>,
    pub(crate) last_paced: Cell<Option<Instant>>,
    first_error: RefCell<Option<String>>,
    /// Round trips in nanoseconds.
    pub(crate) latency: RefCell<Distribution>,
    /// Connections opened, and how long each took, in nanoseconds.
    pub(crate) connects: RefCell<Distribution>,
    /// TLS handshakes in nanoseconds, from the TCP connection made to the handshake done.
    handshakes: RefCell<Distribution>,
    /// Where echoes are read, one connection at a time; large enough for any UDP datagram.
    pub(crate) rx: RefCell<Box<[u8]>>,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            stop: Cell::new(false),
            lines: Cell::new(0),
            bytes: Cell::new(0),
            errors: Cell::new(0),
            opening: Cell::new(0),
            connect_errors: Cell::new(0),
            idle: Cell::new(0),
            paced: Cell::new(0),
            last_paced: Cell::new(None),
            first_error: RefCell::new(None),
            latency: RefCell::default(),
            connects: RefCell::default(),
            handshakes: RefCell::default(),
            rx: RefCell::new(vec![0; READ_BUFFER].into_boxed_slice()),
        }
    }

    /// Counts `count` errors; the first error's message is kept.
    pub(crate) fn fail(&self, count: u64, message: String) {
        self.errors.set(self.errors.get() + count);
        self.first_error.borrow_mut().get_or_insert(message);
    }

    /// Counts a connection opened in `took`.
    pub(crate) fn connected(&self, took: Duration) {
        self.connects.borrow_mut().record(took);
    }

    #[cfg(feature = "tls")]
    pub(crate) fn record_handshake(&self, took: Duration) {
        self.handshakes.borrow_mut().record(took);
    }

    /// The handshakes recorded so far.
    pub(crate) fn handshakes(&self) -> Handshakes {
        let handshakes = self.handshakes.borrow();
        Handshakes { count: handshakes.len(), latency_us: handshakes.latency_us() }
    }

    /// The report of a bench of `connections` that started at `start` and ends now.
    pub(crate) fn report(
        &self,
        config: &BenchConfig,
        connections: usize,
        transport: Transport,
        start: Instant,
        datagrams: Option<Datagrams>,
    ) -> BenchReport {
        let duration_s = start.elapsed().as_secs_f64();
        let lines = self.lines.get();
        let latency = self.latency.borrow();
        let connects = self.connects.borrow();
        let rate = config.rate.map(|target| {
            // From the start to the last line sent, and the interval that line stands for: a
            // schedule kept to the letter gives `target`.
            let sending = self.last_paced.get().map_or(Duration::ZERO, |last| last - start);
            let achieved = self.paced.get() as f64 / (sending.as_secs_f64() + 1.0 / target as f64);
            Rate { target_per_s: target, achieved_per_s: achieved }
        });
        let churn = config.churn.map(|lines_per_connection| Churn {
            lines_per_connection,
            connects: connects.len(),
            connects_per_s: connects.len() as f64 / duration_s,
            connect_us: connects.latency_us(),
        });
        BenchReport {
            connections,
            depth: config.depth,
            size: config.size,
            duration_s,
            lines,
            lines_per_s: lines as f64 / duration_s,
            mib_per_s: self.bytes.get() as f64 / duration_s / (1024.0 * 1024.0),
            latency_us: latency.latency_us(),
            transport,
            datagrams,
            errors: self.errors.get(),
            connect_errors: self.connect_errors.get(),
            first_error: self.first_error.borrow().clone(),
            interrupted: false,
            rate,
            churn,
            distribution: latency.clone(),
            handshakes: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
