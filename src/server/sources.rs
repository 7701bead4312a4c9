//! Connections open per source, for `max_per_source`: a source is an IPv4 address or an IPv6
//! /64, the block one host or one customer usually holds.
//!
//! The counts sit in shards, each a small map under its own lock, taken once when a connection
//! is admitted and once when it closes: never per line. Refusals are logged at most once per
//! [`REPORT_EVERY`] per source, with how many there were.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How often a source's refusals may be logged.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Shards of the counts: enough that threads admitting connections rarely meet on one lock.
const SHARDS: usize = 16;

/// Who a connection counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    V4(Ipv4Addr),
    /// The first 64 bits of the address.
    V6(u64),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Source {
        // A dual-stack socket shows IPv4 peers mapped into IPv6: they count as IPv4.
        match ip.to_canonical() {
            IpAddr::V4(ip) => Source::V4(ip),
            IpAddr::V6(ip) => Source::V6((ip.to_bits() >> 64) as u64),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::V4(ip) => ip.fmt(f),
            Source::V6(prefix) => write!(f, "{}/64", Ipv6Addr::from_bits(u128::from(*prefix) << 64)),
        }
    }
}

/// The connections open per source, each at most `max`.
pub(crate) struct Sources {
    max: usize,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<Source, usize>>]>,
    reports: Mutex<Reports>,
}

/// The refusals of the sources refused lately.
struct Reports {
    by_source: HashMap<Source, Report>,
    swept: Instant,
}

struct Report {
    logged: Instant,
    /// Refusals since the last line about this source.
    unlogged: u64,
}

/// One connection's place in its source's count, given back when it is dropped.
pub(crate) struct Slot {
    sources: Arc<Sources>,
    source: Source,
}

impl Sources {
    pub(crate) fn new(max: usize) -> Arc<Sources> {
        let shards = (0..SHARDS).map(|_| Mutex::default()).collect();
        let reports = Mutex::new(Reports { by_source: HashMap::new(), swept: Instant::now() });
        Arc::new(Sources { max, hasher: RandomState::new(), shards, reports })
    }

    /// A slot for one more connection from `ip`, or `None` when its source already has `max`
    /// open (the refusal is logged, at most once per [`REPORT_EVERY`]).
    pub(crate) fn enter(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Option<Slot> {
        let source = Source::from(ip);
        {
            let mut shard = self.shard(source);
            let open = shard.entry(source).or_insert(0);
            if *open < self.max {
                *open += 1;
                return Some(Slot { sources: self.clone(), source });
            }
        }
        self.refused(source, now);
        None
    }

    fn shard(&self, source: Source) -> MutexGuard<'_, HashMap<Source, usize>> {
        let shard = &self.shards[self.hasher.hash_one(source) as usize % SHARDS];
        // Each change is one insert, update or remove: the map is consistent whatever a
        // panicking holder did.
        shard.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a refusal, and logs the source's refusals unless it was logged lately.
    fn refused(&self, source: Source, now: Instant) {
        let mut reports = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
        let first = !reports.by_source.contains_key(&source);
        let report = reports.by_source.entry(source).or_insert(Report { logged: now, unlogged: 0 });
        report.unlogged += 1;
        if first || now.duration_since(report.logged) >= REPORT_EVERY {
            self.log(source, report.unlogged);
            (report.logged, report.unlogged) = (now, 0);
        }
        // Sources not refused lately are forgotten, their last refusals logged first, so that
        // the map holds only the sources of the last few seconds.
        if now.duration_since(reports.swept) >= REPORT_EVERY {
            reports.swept = now;
            reports.by_source.retain(|&source, report| {
                let recent = now.duration_since(report.logged) < REPORT_EVERY;
                if !recent && report.unlogged > 0 {
                    self.log(source, report.unlogged);
                }
                recent
            });
        }
    }

    fn log(&self, source: Source, refused: u64) {
        let max = self.max;
        log::warn!(
            "source limit: refused {refused} connection(s) from {source} (at most {max} open per source)"
        );
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut shard = self.sources.shard(self.source);
        if let Some(open) = shard.get_mut(&self.source) {
            *open -= 1;
            if *open == 0 {
                shard.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn each_source_has_its_own_cap_and_a_closed_connection_frees_its_place() {
        let sources = Sources::new(2);
        let now = Instant::now();
        let first = sources.enter(ip("127.0.0.2"), now).unwrap();
        let _second = sources.enter(ip("::ffff:127.0.0.2"), now).unwrap();
        assert!(sources.enter(ip("127.0.0.2"), now).is_none());
        let _other = sources.enter(ip("127.0.0.3"), now).unwrap();
        drop(first);
        let _again = sources.enter(ip("127.0.0.2"), now).unwrap();
    }

    #[test]
    fn ipv6_counts_per_64() {
        let sources = Sources::new(1);
        let now = Instant::now();
        let _one = sources.enter(ip("2001:db8:1:2::1"), now).unwrap();
        assert!(sources.enter(ip("2001:db8:1:2:ffff::9"), now).is_none());
        let _next = sources.enter(ip("2001:db8:1:3::1"), now).unwrap();
        assert_eq!(Source::from(ip("2001:db8:1:2::1")).to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn the_counts_are_forgotten_when_connections_close() {
        let sources = Sources::new(3);
        let slots: Vec<_> = (0..3).map(|_| sources.enter(ip("10.0.0.1"), Instant::now()).unwrap()).collect();
        drop(slots);
        assert!(sources.shards.iter().all(|shard| shard.lock().unwrap().is_empty()));
    }

    #[test]
    fn refusals_are_reported_once_per_period_and_old_sources_forgotten() {
        let sources = Sources::new(1);
        let start = Instant::now();
        let _held = sources.enter(ip("10.0.0.1"), start).unwrap();
        for _ in 0..3 {
            assert!(sources.enter(ip("10.0.0.1"), start).is_none());
        }
        let unlogged = |sources: &Sources| {
            let reports = sources.reports.lock().unwrap();
            reports.by_source.get(&Source::from(ip("10.0.0.1"))).map(|report| report.unlogged)
        };
        // The first was logged; the next two wait for the period to end.
        assert_eq!(unlogged(&sources), Some(2));
        let later = start + REPORT_EVERY;
        assert!(sources.enter(ip("10.0.0.1"), later).is_none());
        assert_eq!(unlogged(&sources), Some(0));
        // Another source's refusal, a period later still, sweeps the first away.
        let _other = sources.enter(ip("10.0.0.2"), later).unwrap();
        assert!(sources.enter(ip("10.0.0.2"), later + REPORT_EVERY).is_none());
        assert_eq!(unlogged(&sources), None);
    }
}
