//! What a bench returns: rates, latency, errors, and for UDP the datagrams lost.

use std::fmt;
use std::time::Duration;

use super::distribution::Distribution;
use crate::session::Mode;

/// What a bench sent, and over what.
///
/// # Examples
///
/// ```
/// use smol_echo::Mode;
/// use smol_echo::bench::Transport;
///
/// assert_eq!(Transport::stream(Mode::Raw), Transport::RawStream);
/// assert_eq!(Transport::Udp.units(), "datagrams");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// CR LF lines over a TCP or Unix stream, to a line server.
    #[default]
    Lines,
    /// Raw messages over a TCP or Unix stream, to an RFC 862 server ([`Mode::Raw`]).
    RawStream,
    /// Datagrams of raw bytes over UDP.
    Udp,
}

impl Transport {
    /// What a stream bench in `mode` sends.
    pub fn stream(mode: Mode) -> Transport {
        match mode {
            Mode::Line => Transport::Lines,
            Mode::Raw => Transport::RawStream,
        }
    }

    /// Its name in a report's JSON: `line`, `raw` or `udp`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Lines => "line",
            Transport::RawStream => "raw",
            Transport::Udp => "udp",
        }
    }

    /// What its units are called when counted: `lines`, `messages` or `datagrams`.
    pub fn units(self) -> &'static str {
        match self {
            Transport::Lines => "lines",
            Transport::RawStream => "messages",
            Transport::Udp => "datagrams",
        }
    }
}

/// Round-trip latency percentiles of the lines echoed, in microseconds.
///
/// # Examples
///
/// ```
/// let latency = smol_echo::bench::Latency::default();
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

impl Latency {
    /// `{"p50":...,"p90":...,"p99":...,"p999":...,"max":...}`, to a tenth.
    fn to_json(self) -> String {
        let Latency { p50, p90, p99, p999, max } = self;
        format!(r#"{{"p50":{p50:.1},"p90":{p90:.1},"p99":{p99:.1},"p999":{p999:.1},"max":{max:.1}}}"#)
    }

    /// `p50 ... max ...`, as the table shows them.
    fn row(self) -> String {
        let Latency { p50, p90, p99, p999, max } = self;
        format!("p50 {p50:.1}  p90 {p90:.1}  p99 {p99:.1}  p99.9 {p999:.1}  max {max:.1}")
    }
}

/// The TLS handshakes of a bench: how many completed, and how long each took from the TCP
/// connection made to the handshake done.
///
/// # Examples
///
/// ```
/// let handshakes = smol_echo::bench::Handshakes { count: 50, ..Default::default() };
/// assert_eq!(handshakes.latency_us.p99, 0.0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Handshakes {
    /// Handshakes completed.
    pub count: u64,
    /// Their durations' percentiles, in microseconds.
    pub latency_us: Latency,
}

/// The outcome of a bench.
///
/// `Display` renders it as a table; [`BenchReport::to_json`] as one JSON object. Whatever was
/// sent, the counts keep the names of the line protocol: over [`Transport::RawStream`] `lines`
/// counts raw messages, and over [`Transport::Udp`] datagrams that came back intact (see
/// [`Datagrams`]).
///
/// Fields may be added in a minor release; read them, and build one (in tests) from
/// `..Default::default()`.
///
/// # Examples
///
/// ```
/// let report = smol_echo::bench::BenchReport { lines: 1000, duration_s: 0.5, ..Default::default() };
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
    /// What was sent, and over what.
    pub transport: Transport,
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
    /// The bench was interrupted before its end (see [`bench_until`](super::bench_until)).
    pub interrupted: bool,
    /// The TLS handshakes of a bench of a `tls:` address; `None` for other benches.
    pub handshakes: Option<Handshakes>,
    /// With [`BenchConfig::rate`](super::BenchConfig::rate): the rate asked for and the rate
    /// kept; `latency_us` then runs from each line's due time.
    pub rate: Option<Rate>,
    /// With [`BenchConfig::churn`](super::BenchConfig::churn): the connections opened, how fast,
    /// and how long each took to open.
    pub churn: Option<Churn>,
    /// Every line's latency, for a closer look than `latency_us`: bars, or HdrHistogram's text.
    pub distribution: Distribution,
}

/// The rate of an open-loop bench ([`BenchConfig::rate`](super::BenchConfig::rate)).
///
/// # Examples
///
/// ```
/// let rate = smol_echo::bench::Rate { target_per_s: 2000, achieved_per_s: 1950.0 };
/// assert!(!rate.kept());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    /// Lines per second asked for, in total.
    pub target_per_s: u64,
    /// Lines per second sent: the lines sent over the time from the start to the last send,
    /// plus the one interval that line stands for, so that a schedule kept to the letter gives
    /// the target. A line due while `depth` lines are in flight waits, so a server that cannot
    /// keep up lowers it.
    pub achieved_per_s: f64,
}

impl Rate {
    /// The rate was kept: at least 99 % of the target was sent.
    pub fn kept(&self) -> bool {
        self.achieved_per_s >= self.target_per_s as f64 * 0.99
    }
}

/// The connections of a bench with churn ([`BenchConfig::churn`](super::BenchConfig::churn)).
///
/// # Examples
///
/// ```
/// let churn = smol_echo::bench::Churn { lines_per_connection: 10, connects: 500, ..Default::default() };
/// assert_eq!(churn.connect_us.max, 0.0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Churn {
    /// Lines each connection sends before it closes and another opens.
    pub lines_per_connection: u64,
    /// Connections opened, the first ones included.
    pub connects: u64,
    /// `connects / duration_s`.
    pub connects_per_s: f64,
    /// How long a connection took to open (TCP: the handshake, as `connect` returns).
    pub connect_us: Latency,
}

impl BenchReport {
    /// The report as one JSON object, with the keys `connections`, `depth`, `size`,
    /// `duration_s`, `lines`, `lines_per_s`, `mib_per_s`, `latency_us` (`p50`, `p90`, `p99`,
    /// `p999`, `max`), `mode` (`"line"`, `"raw"` or `"udp"`), for UDP `sent`, `received`, `lost`
    /// and `loss_pct`, with a rate `rate` (`target_per_s`, `achieved_per_s`, `kept`), with churn
    /// `churn` (`lines_per_connection`, `connects`, `connects_per_s`, `connect_us` with the keys
    /// of `latency_us`), over TLS `handshakes` (`count`, `latency_us`), `interrupted` (only when
    /// true), `connect_errors`, and last `errors`.
    ///
    /// # Examples
    ///
    /// ```
    /// let json = smol_echo::bench::BenchReport::default().to_json();
    /// assert!(json.starts_with(r#"{"connections":0,"#) && json.ends_with(r#""mode":"line","connect_errors":0,"errors":0}"#));
    /// ```
    pub fn to_json(&self) -> String {
        let handshakes = self.handshakes.map_or(String::new(), |h| {
            format!(r#""handshakes":{{"count":{},"latency_us":{}}},"#, h.count, h.latency_us.to_json())
        });
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
                r#""lines_per_s":{:.1},"mib_per_s":{:.3},"latency_us":{},"#,
                r#""mode":"{}",{}{}{}{}{}"connect_errors":{},"errors":{}}}"#
            ),
            self.connections,
            self.depth,
            self.size,
            self.duration_s,
            self.lines,
            self.lines_per_s,
            self.mib_per_s,
            self.latency_us.to_json(),
            self.transport.name(),
            datagrams,
            self.rate.map_or(String::new(), |r| format!(
                r#""rate":{{"target_per_s":{},"achieved_per_s":{:.1},"kept":{}}},"#,
                r.target_per_s,
                r.achieved_per_s,
                r.kept()
            )),
            self.churn.map_or(String::new(), |c| format!(
                r#""churn":{{"lines_per_connection":{},"connects":{},"connects_per_s":{:.1},"connect_us":{}}},"#,
                c.lines_per_connection,
                c.connects,
                c.connects_per_s,
                c.connect_us.to_json()
            )),
            handshakes,
            if self.interrupted { r#""interrupted":true,"# } else { "" },
            self.connect_errors,
            self.errors
        )
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = self.transport.units();
        let (who, what) = match self.transport {
            Transport::Udp => ("flows", "datagrams"),
            Transport::RawStream => ("connections", "raw messages"),
            Transport::Lines => ("connections", "lines"),
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
        if let Some(rate) = self.rate {
            let (target, achieved) = (rate.target_per_s, rate.achieved_per_s);
            let under = if rate.kept() { "" } else { "  (under 99 %)" };
            writeln!(f, "  rate/s      {target:>12}  asked, {achieved:.1} sent{under}")?;
        }
        writeln!(f, "  latency µs  {}", self.latency_us.row())?;
        if let Some(churn) = self.churn {
            let (connects, per_s, every) = (churn.connects, churn.connects_per_s, churn.lines_per_connection);
            writeln!(f, "  connects    {connects:>12}  ({per_s:.1}/s, one per {every} {unit})")?;
            writeln!(f, "  connect µs  {}", churn.connect_us.row())?;
        }
        if let Some(h) = self.handshakes {
            writeln!(f, "  handshakes  {:>12}", h.count)?;
            writeln!(f, "  tls µs      {}", h.latency_us.row())?;
        }
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
/// let d = smol_echo::bench::Datagrams { sent: 200, received: 150, lost: 50 };
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
/// let progress = smol_echo::bench::Progress::default();
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
