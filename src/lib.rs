//! A CRLF line echo server, client and load generator, on the smol family of crates and usable
//! on any executor.
//!
//! The line protocol: every line (bytes up to and including CR LF) is echoed back byte for byte;
//! the line `.` ends the session; a session that completes no line within the idle timeout, takes
//! no echo within it, or sends a line longer than the maximum is closed. End of input echoes any
//! unterminated tail and closes.
//!
//! # Layout
//!
//! One module per role; the protocol itself, and each role's entry point with its config, are
//! also at the root, so that the common cases need one `use`.
//!
//! - The session, at the root: [`echo`] runs the line protocol over any futures-io stream, with
//!   its [`EchoConfig`], and returns a [`Session`] with its [`CloseReason`]; [`echo_raw`] is the
//!   RFC 862 echo, every byte back as it arrives; [`Mode`] picks one of them for a session. Both
//!   run on one engine and differ only in how much of what was read they echo at once.
//! - [`server`]: the [`Server`] serves on [`Listener`](server::Listener)s (TCP, TLS, Unix
//!   stream, UDP) from [`bind`] or passed in by systemd ([`activated`](server::activated)), runs a
//!   session per connection on the caller's executor, echoes datagrams, and stops gracefully
//!   when told to, with a [`Summary`](server::Summary).
//! - [`client`]: [`converse`] sends input lines and writes their echoes at the same time, over
//!   a [`Stream`](client::Stream) (TCP, TLS or Unix socket) from [`connect`], until the server
//!   closes, and returns a [`Conversation`](client::Conversation): how it ended and what the
//!   server still owed; [`converse_raw`](client::converse_raw) does the same for RFC 862, bytes
//!   unchanged.
//!   [`UdpClient`](client::UdpClient) sends one datagram at a time, each waiting for its echo.
//! - [`bench`](mod@bench): [`bench()`] is the load generator: connections with lines in
//!   flight, every echo checked, as [`BenchConfig`] says; it returns a
//!   [`BenchReport`](bench::BenchReport) of lines/s, MiB/s and latency.
//!   [`bench_udp`](bench::bench_udp) does the same with datagrams;
//!   [`bench_until`](bench::bench_until) and [`bench_udp_until`](bench::bench_udp_until) stop
//!   early when told (a signal) and report what they measured. [`BenchConfig::rate`] makes it
//!   an open loop (latency from each line's due time), [`BenchConfig::churn`] reconnects every
//!   K lines; the report's [`Distribution`](bench::Distribution) holds every line's latency.
//! - [`error`]: [`context`](error::context) puts what was being done in front of an I/O error
//!   and keeps the error itself as its `source()`.
//!
//! Inside, each role's folder holds one file per job, and imports go from the roles down to the
//! session and to a private `net` module (the address parser and socket constants they share),
//! never up and never in a circle; `docs/library.md` in the repository has the map of files.
//!
//! # Features
//!
//! The default build has everything. With `default-features = false` the library is its core:
//! [`echo`], [`echo_raw`], [`Server`], [`bind`], the client and
//! [`UdpClient`](client::UdpClient), on no crate that async-net, async-io and futures-lite do not
//! bring anyway. On top of it:
//!
//! - `bench`: [`bench()`] and [`bench_udp`](bench::bench_udp) (async-executor, hdrhistogram);
//! - `metrics`: [`metrics`], Prometheus metrics of a [`Server`] and their HTTP endpoint
//!   (prometheus-client);
//! - `systemd`: [`activated`](server::activated), socket activation (listenfd);
//! - `proxy`: [`proxy`], the PROXY protocol behind a load balancer: the server reads v1 and v2
//!   headers ([`ServerConfig::proxy`]), the client and the bench send them (ppp);
//! - `tls` (default): [`tls`], rustls on the ring provider, system roots, self-signed
//!   certificates (futures-rustls, rcgen, rustls-native-certs);
//! - `cli` (default): the `echo` binary, with `bench`, `metrics`, `proxy` and `systemd` (argh,
//!   async-signal, smol).
//!
//! # Beyond the design's shape
//!
//! `examples/minimal.rs` is the echo in its simplest shape: a `BufReader` per connection,
//! `read_until` raced against a `Timer`, one write per line. [`echo`] keeps that contract and
//! adds what a server facing real clients needs. Measured in one run, each server on one pinned
//! core (5,000 idle connections; S2 is 50 connections with one line in flight, S3 the same with
//! 32 in flight):
//!
//! | | minimal | [`echo`] |
//! |---|---|---|
//! | memory per idle connection | 9,527 B | 1,442 B |
//! | S2 / S3 lines/s | 118,524 / 588,482 | 122,827 / 3,521,842 |
//! | S2 / S3 syscalls per line | 4.08 / 1.08 | 3.17 / 0.10 |
//!
//! - No read buffer held while idle: buffers are lent per read by a per-thread pool, where a
//!   `BufReader` keeps 8 KiB per connection for its whole life.
//! - One write per batch of lines: every complete line already read goes back in one write,
//!   and no read is tried that would only fail with `EAGAIN`.
//! - A drip cannot hold a connection: the idle deadline runs from the last complete line, as
//!   the minimal race over a whole line read does, but as one lazy timer re-armed only when it
//!   fires early, not a new timer registered for every line.
//! - A write timeout: a peer that sends but never reads is closed, not left to fill memory.
//! - A bounded line (`max_line`): a peer without CR LF cannot grow a buffer without end.
//! - The linger before close: after `.`, an over-long line or shutdown the session reads and
//!   discards for a moment, so the kernel does not reset the connection and drop echoes owed.
//! - A graceful shutdown that echoes the lines already received.
//! - [`tls`] (feature `tls`, on by default): the server's and the client's TLS handshakes over
//!   any futures-io stream, handing back a [`TlsStream`](tls::TlsStream) that [`echo`] and
//!   [`converse`] run over unchanged.
//!
//! # Examples
//!
//! Serve on a free port, echo one line, and shut down:
//!
//! ```
//! use futures_lite::{AsyncReadExt, AsyncWriteExt, future};
//! use smol_echo::{Server, ServerConfig};
//!
//! smol::block_on(async {
//!     let listeners = smol_echo::bind(&["127.0.0.1:0"]).await?;
//!     let server = Server::new(listeners, ServerConfig::default());
//!     let addr = server.local_addrs()?[0].to_string();
//!     let (stop, stopped) = async_channel::bounded::<()>(1);
//!     let serving = smol::spawn(server.run(|task| smol::spawn(task).detach(), async move {
//!         stopped.recv().await.ok();
//!     }));
//!
//!     let mut client = async_net::TcpStream::connect(&*addr).await?;
//!     client.write_all(b"hello\r\n.\r\n").await?;
//!     let mut echoed = Vec::new();
//!     client.read_to_end(&mut echoed).await?;
//!     assert_eq!(echoed, b"hello\r\n");
//!
//!     stop.close();
//!     let summary = serving.await;
//!     assert_eq!((summary.connections, summary.lines), (1, 1));
//!     std::io::Result::Ok(())
//! })
//! .unwrap();
//! ```

#![forbid(unsafe_code)]
// Without `bench`, `metrics`, `proxy` or `systemd` the links to their items above stay plain text.
#![cfg_attr(
    not(all(feature = "bench", feature = "metrics", feature = "systemd", feature = "proxy")),
    allow(rustdoc::broken_intra_doc_links)
)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

#[cfg(feature = "bench")]
pub mod bench;
pub mod client;
pub mod error;
#[cfg(feature = "metrics")]
pub mod metrics;
mod net;
#[cfg(feature = "proxy")]
pub mod proxy;
pub mod server;
mod session;
#[cfg(feature = "tls")]
pub mod tls;

#[cfg(feature = "bench")]
pub use bench::{BenchConfig, bench};
pub use client::{connect, converse};
pub use server::{Server, ServerConfig, bind};
pub use session::{CloseReason, EchoConfig, MAX_DURATION, Mode, Session, check_duration, echo, echo_raw};

/// The README's library example compiles (`no_run`: it serves until it is killed).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
