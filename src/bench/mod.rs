//! The load generator: connections (or UDP flows) with lines in flight, every echo checked,
//! latency measured.
//!
//! One file per concept: `stream` loads a TCP or Unix stream server ([`bench()`]), `udp` a UDP
//! one ([`bench_udp`]); `run` holds what both share while they run (the counts, the
//! supervision, the quotas); `payload` the bytes they send, lines or raw messages with their
//! sequence numbers; `pace` when each line is due with a rate; `wire` what a stream connection
//! reads and writes, a socket or TLS; `report` what they return ([`BenchReport`]), and
//! `distribution` its whole latency histogram ([`Distribution`]).

mod config;
mod distribution;
mod pace;
mod payload;
mod report;
mod run;
mod stream;
mod udp;
mod wire;

pub use config::{BenchConfig, BenchLimit};
pub use distribution::Distribution;
pub use report::{BenchReport, Churn, Datagrams, Handshakes, Latency, Progress, Rate, Transport};
pub use stream::{bench, bench_until};
pub use udp::{bench_udp, bench_udp_until};
