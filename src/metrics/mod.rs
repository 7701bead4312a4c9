//! Prometheus metrics of a server (feature `metrics`): [`Metrics`], the counters a
//! [`Server`](crate::Server) updates once given them by
//! [`with_metrics`](crate::Server::with_metrics), written in the Prometheus text format by
//! [`Metrics::render`], and [`serve`], the HTTP endpoint that answers `GET /metrics` with them.
//!
//! The counters are atomics added to when a connection opens and closes, and per datagram:
//! nothing per line. A connection's lines and bytes count when it closes.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::server::ListenerKind;
use crate::{CloseReason, Session};

mod endpoint;
mod request;

pub use endpoint::{EndpointConfig, serve};

/// The `Content-Type` of [`Metrics::render`]'s text: the Prometheus text format, version 0.0.4.
///
/// # Examples
///
/// ```
/// assert!(smol_echo::metrics::CONTENT_TYPE.starts_with("text/plain; version=0.0.4"));
/// ```
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds of the session duration histogram's buckets, in seconds: from a bench's
/// connection to a day-long one, a decade or so apart.
const DURATION_BUCKETS: [f64; 8] = [0.001, 0.01, 0.1, 1.0, 10.0, 60.0, 600.0, 3600.0];

/// The close reasons counted in a slot of their own, so that each has a series from the start;
/// any other (`error: ...`) goes to a map, whose lock is taken only at such a close.
const REASONS: [CloseReason; 7] = [
    CloseReason::Eof,
    CloseReason::Sentinel,
    CloseReason::IdleTimeout,
    CloseReason::LineTooLong,
    CloseReason::WriteTimeout,
    CloseReason::Reset,
    CloseReason::Shutdown,
];

const KINDS: usize = ListenerKind::ALL.len();

/// What a server has done so far, for Prometheus: connections open and accepted, lines and
/// bytes (by listener kind), closes by reason, datagrams echoed and refused, accept errors, and
/// how long sessions lasted.
///
/// Share one between the server and the endpoint through an `Arc`.
///
/// # Examples
///
/// ```
/// let metrics = smol_echo::metrics::Metrics::default();
/// let text = metrics.render();
/// assert!(text.contains("echo_build_info{version=\""));
/// assert!(text.contains("echo_closes_total{reason=\"idle timeout\"} 0"));
/// ```
#[derive(Debug, Default)]
pub struct Metrics {
    opened: [AtomicU64; KINDS],
    closed: [AtomicU64; KINDS],
    lines: [AtomicU64; KINDS],
    bytes: [AtomicU64; KINDS],
    closes: [AtomicU64; REASONS.len()],
    other_closes: Mutex<BTreeMap<String, u64>>,
    datagrams: AtomicU64,
    refused_datagrams: AtomicU64,
    accept_errors: AtomicU64,
    /// Sessions per bucket of [`DURATION_BUCKETS`], and past the last one.
    durations: [AtomicU64; DURATION_BUCKETS.len() + 1],
    duration_micros: AtomicU64,
}

impl Metrics {
    /// The metrics in the Prometheus text format (version 0.0.4, [`CONTENT_TYPE`]), read from
    /// the counters now.
    pub fn render(&self) -> String {
        let mut registry = Registry::with_prefix("echo");
        registry.register_collector(Box::new(self.snapshot()));
        let mut text = String::new();
        // Writing to a String cannot fail, and every name and label is ours.
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("the metrics encode");
        text
    }

    pub(crate) fn opened(&self, kind: ListenerKind) {
        self.opened[kind as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn closed(&self, kind: ListenerKind, session: &Session, duration: Duration) {
        let k = kind as usize;
        self.lines[k].fetch_add(session.lines, Relaxed);
        self.bytes[k].fetch_add(session.bytes, Relaxed);
        match REASONS.iter().position(|reason| *reason == session.reason) {
            Some(i) => {
                self.closes[i].fetch_add(1, Relaxed);
            }
            None => {
                let mut other = self.other_closes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                *other.entry(reason_label(&session.reason)).or_default() += 1;
            }
        }
        let secs = duration.as_secs_f64();
        let bucket =
            DURATION_BUCKETS.iter().position(|&upper| secs <= upper).unwrap_or(DURATION_BUCKETS.len());
        self.durations[bucket].fetch_add(1, Relaxed);
        self.duration_micros.fetch_add(duration.as_micros().try_into().unwrap_or(u64::MAX), Relaxed);
        // Last, so that a scrape never sees a connection closed whose figures are missing.
        self.closed[k].fetch_add(1, Relaxed);
    }

    pub(crate) fn datagram(&self, len: Option<usize>) {
        match len {
            Some(len) => {
                self.datagrams.fetch_add(1, Relaxed);
                self.bytes[ListenerKind::Udp as usize].fetch_add(len as u64, Relaxed);
            }
            None => {
                self.refused_datagrams.fetch_add(1, Relaxed);
            }
        }
    }

    pub(crate) fn accept_failed(&self) {
        self.accept_errors.fetch_add(1, Relaxed);
    }

    fn snapshot(&self) -> Snapshot {
        let load = |counters: &[AtomicU64]| counters.iter().map(|n| n.load(Relaxed)).collect::<Vec<_>>();
        // Closed before opened: a connection that closes in between is then never counted
        // closed and not opened (the open gauge would go below zero).
        let closed = load(&self.closed);
        Snapshot {
            opened: load(&self.opened),
            closed,
            lines: load(&self.lines),
            bytes: load(&self.bytes),
            closes: load(&self.closes),
            other_closes: self.other_closes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone(),
            datagrams: self.datagrams.load(Relaxed),
            refused_datagrams: self.refused_datagrams.load(Relaxed),
            accept_errors: self.accept_errors.load(Relaxed),
            durations: load(&self.durations),
            duration_secs: self.duration_micros.load(Relaxed) as f64 / 1e6,
        }
    }
}

/// The counters as read for one scrape.
#[derive(Debug)]
struct Snapshot {
    opened: Vec<u64>,
    closed: Vec<u64>,
    lines: Vec<u64>,
    bytes: Vec<u64>,
    closes: Vec<u64>,
    other_closes: BTreeMap<String, u64>,
    datagrams: u64,
    refused_datagrams: u64,
    accept_errors: u64,
    durations: Vec<u64>,
    duration_secs: f64,
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        encoder
            .encode_descriptor("build", "The server's version.", None, MetricType::Info)?
            .encode_info(&version)?;

        // UDP carries no connections: it has no series of them rather than zeros.
        let by_kind = |values: &[u64], streams_only: bool| -> Vec<(String, u64)> {
            ListenerKind::ALL
                .into_iter()
                .filter(|kind| kind.is_stream() || !streams_only)
                .map(|kind| (kind.label().to_string(), values[kind as usize]))
                .collect()
        };
        let streams = |values: &[u64]| by_kind(values, true);
        let open: Vec<u64> =
            self.opened.iter().zip(&self.closed).map(|(o, c)| o.saturating_sub(*c)).collect();
        let reasons = REASONS.iter().map(ToString::to_string).zip(self.closes.iter().copied());
        let others = self.other_closes.iter().map(|(reason, n)| (reason.clone(), *n));
        let closes: Vec<(String, u64)> = reasons.chain(others).collect();
        for (name, help, label, metric_type, series) in [
            ("connections_open", "Connections open now.", "listener", MetricType::Gauge, streams(&open)),
            ("connections", "Connections accepted.", "listener", MetricType::Counter, streams(&self.opened)),
            (
                "lines",
                "Lines echoed by connections that have closed.",
                "listener",
                MetricType::Counter,
                streams(&self.lines),
            ),
            (
                "bytes",
                "Bytes echoed, by connections that have closed and in datagrams.",
                "listener",
                MetricType::Counter,
                by_kind(&self.bytes, false),
            ),
            ("closes", "Sessions ended, by reason.", "reason", MetricType::Counter, closes),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
            for (value_of_label, value) in series {
                let labels = [(label, value_of_label)];
                let metric = family.encode_family(&labels)?;
                match metric_type {
                    MetricType::Gauge => ConstGauge::new(value as i64).encode(metric)?,
                    _ => ConstCounter::new(value).encode(metric)?,
                }
            }
        }

        for (name, help, value) in [
            ("datagrams", "UDP datagrams echoed.", self.datagrams),
            (
                "refused_datagrams",
                "UDP datagrams not answered for their source port: a small service's or the server's own.",
                self.refused_datagrams,
            ),
            (
                "accept_errors",
                "Accepts that failed (the server rests 100 ms after each).",
                self.accept_errors,
            ),
        ] {
            ConstCounter::new(value).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Counter,
            )?)?;
        }

        let buckets: Vec<(f64, u64)> =
            DURATION_BUCKETS.into_iter().chain([f64::INFINITY]).zip(self.durations.iter().copied()).collect();
        let count = self.durations.iter().sum();
        encoder
            .encode_descriptor(
                "session_duration",
                "How long sessions lasted, from accept to close.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(self.duration_secs, count, &buckets, None)
    }
}

/// The `reason` label of a close: the reason as the close line gives it, except that a layer's
/// failure (`tls: ...`, `proxy header: ...`) counts by its layer, so that the peers' own bytes
/// and the TLS library's wording cannot make new series without end.
fn reason_label(reason: &CloseReason) -> String {
    match reason {
        CloseReason::Protocol(text) => text.split(':').next().unwrap_or_default().to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(lines: u64, bytes: u64, reason: CloseReason) -> Session {
        Session { lines, bytes, reason }
    }

    #[test]
    fn counts_show_up_under_their_labels() {
        let metrics = Metrics::default();
        metrics.opened(ListenerKind::Tcp);
        metrics.opened(ListenerKind::Tcp);
        metrics.opened(ListenerKind::Unix);
        metrics.closed(ListenerKind::Tcp, &session(3, 42, CloseReason::Eof), Duration::from_millis(5));
        let reset = CloseReason::Error(std::io::ErrorKind::TimedOut);
        metrics.closed(ListenerKind::Unix, &session(1, 7, reset), Duration::from_secs(2));
        metrics.datagram(Some(100));
        metrics.datagram(None);
        metrics.accept_failed();
        let text = metrics.render();
        for line in [
            "echo_connections_open{listener=\"tcp\"} 1",
            "echo_connections_open{listener=\"unix\"} 0",
            "echo_connections_total{listener=\"tcp\"} 2",
            "echo_lines_total{listener=\"tcp\"} 3",
            "echo_bytes_total{listener=\"unix\"} 7",
            "echo_bytes_total{listener=\"udp\"} 100",
            "echo_closes_total{reason=\"eof\"} 1",
            "echo_closes_total{reason=\"sentinel\"} 0",
            "echo_closes_total{reason=\"error: timed out\"} 1",
            "echo_datagrams_total 1",
            "echo_refused_datagrams_total 1",
            "echo_accept_errors_total 1",
            "echo_session_duration_seconds_bucket{le=\"0.001\"} 0",
            "echo_session_duration_seconds_bucket{le=\"0.01\"} 1",
            "echo_session_duration_seconds_bucket{le=\"1\"} 1",
            "echo_session_duration_seconds_bucket{le=\"10\"} 2",
            "echo_session_duration_seconds_bucket{le=\"+Inf\"} 2",
            "echo_session_duration_seconds_sum 2.005",
            "echo_session_duration_seconds_count 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
        // UDP carries no connections: no series says it has none.
        assert!(!text.contains("echo_connections_total{listener=\"udp\"}"), "{text}");
    }

    #[test]
    fn a_layers_failures_count_under_the_layers_name() {
        let metrics = Metrics::default();
        for text in
            ["tls: received corrupt message of type InvalidContentType", "tls: peer sent no certificates"]
        {
            let reason = CloseReason::Protocol(text.into());
            metrics.closed(ListenerKind::Tls, &session(0, 0, reason), Duration::from_millis(1));
        }
        let missing = CloseReason::Protocol("proxy header: missing: the connection starts with 'GET'".into());
        metrics.closed(ListenerKind::Tcp, &session(0, 0, missing), Duration::from_millis(1));
        let text = metrics.render();
        assert!(text.lines().any(|l| l == "echo_closes_total{reason=\"tls\"} 2"), "{text}");
        assert!(text.lines().any(|l| l == "echo_closes_total{reason=\"proxy header\"} 1"), "{text}");
        assert!(!text.contains("GET") && !text.contains("corrupt"), "{text}");
    }
}
