//! What the stream and UDP benches share while they run: the counts, the supervision that
//! ends a run, the quotas of lines.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::FutureExt;
use hdrhistogram::Histogram;

use super::config::{BenchConfig, BenchLimit};
use super::report::{BenchReport, Datagrams, Handshakes, Latency, Progress, Transport};

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
    /// TLS handshakes in nanoseconds, from the TCP connection made to the handshake done.
    handshakes: RefCell<Histogram<u64>>,
    /// Where echoes are read, one connection at a time; large enough for any UDP datagram.
    pub(crate) rx: RefCell<Box<[u8]>>,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        // One nanosecond to one hour, three significant digits: fixed size, never resized.
        let histogram = || Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds");
        Shared {
            stop: Cell::new(false),
            lines: Cell::new(0),
            bytes: Cell::new(0),
            errors: Cell::new(0),
            opening: Cell::new(0),
            connect_errors: Cell::new(0),
            first_error: RefCell::new(None),
            latency: RefCell::new(histogram()),
            handshakes: RefCell::new(histogram()),
            rx: RefCell::new(vec![0; READ_BUFFER].into_boxed_slice()),
        }
    }

    /// Counts `count` errors; the first error's message is kept.
    pub(crate) fn fail(&self, count: u64, message: String) {
        self.errors.set(self.errors.get() + count);
        self.first_error.borrow_mut().get_or_insert(message);
    }

    #[cfg(feature = "tls")]
    pub(crate) fn record_handshake(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.handshakes.borrow_mut().saturating_record(nanos);
    }

    /// The handshakes recorded so far.
    pub(crate) fn handshakes(&self) -> Handshakes {
        let handshakes = self.handshakes.borrow();
        Handshakes { count: handshakes.len(), latency_us: latency_us(&handshakes) }
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
        BenchReport {
            connections,
            depth: config.depth,
            size: config.size,
            duration_s,
            lines,
            lines_per_s: lines as f64 / duration_s,
            mib_per_s: self.bytes.get() as f64 / duration_s / (1024.0 * 1024.0),
            latency_us: latency_us(&self.latency.borrow()),
            transport,
            datagrams,
            errors: self.errors.get(),
            connect_errors: self.connect_errors.get(),
            first_error: self.first_error.borrow().clone(),
            interrupted: false,
            handshakes: None,
        }
    }
}

/// The percentiles of a histogram of nanoseconds, in microseconds.
fn latency_us(histogram: &Histogram<u64>) -> Latency {
    let us = |quantile| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    Latency {
        p50: us(0.5),
        p90: us(0.9),
        p99: us(0.99),
        p999: us(0.999),
        max: histogram.max() as f64 / 1000.0,
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
