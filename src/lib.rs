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
//! - [`echo`]: one session over any futures-io stream, with its [`EchoConfig`], returning a
//!   [`Session`] with its [`CloseReason`].
//! - [`echo_raw`]: the RFC 862 echo, every byte back as it arrives; [`Mode`] picks it or the
//!   line protocol for a session.
//! - [`Server`]: serves on [`Listener`]s (TCP, Unix stream, UDP) from [`bind`] or passed in by
//!   systemd ([`activated`]), runs a session per connection on the caller's executor, echoes
//!   datagrams, and stops gracefully when told to.
//! - [`converse`]: the client: sends input lines and writes their echoes at the same time, over a
//!   [`Stream`] (TCP or Unix socket) from [`connect`], until the server closes; returns how it
//!   ended, an [`Ending`]. [`converse_raw`] does the same for RFC 862, bytes unchanged.
//! - [`UdpClient`]: one datagram at a time, each waiting for its echo, with ping-like
//!   [`UdpStats`].
//! - [`bench()`]: the load generator: connections with lines in flight, every echo checked, as
//!   [`BenchConfig`] says; returns a [`BenchReport`] of lines/s, MiB/s and [`Latency`].
//! - `TlsAcceptor`, `TlsConnector` (feature `tls`, on by default): the server's and the
//!   client's TLS handshakes over any futures-io stream, handing back a `TlsStream` that
//!   [`echo`] and [`converse`] run over unchanged.
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
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod accept;
mod activation;
mod alarm;
mod bench;
mod bench_udp;
mod client;
mod conn;
mod failures;
mod framing;
mod listener;
mod pool;
mod raw;
mod server;
mod session;
mod stop;
#[cfg(feature = "tls")]
mod tls;
mod udp;
mod udp_client;

pub use activation::activated;
pub use bench::{BenchConfig, BenchLimit, BenchReport, Datagrams, Latency, Progress, bench};
pub use bench_udp::bench_udp;
pub use client::{Ending, Stream, connect, converse, converse_raw};
pub use listener::{ListenAddr, Listener, bind};
pub use raw::{Mode, echo_raw};
pub use server::{ConnectionTask, Server, ServerConfig, Summary};
pub use session::{CloseReason, EchoConfig, Session, echo};
#[cfg(feature = "tls")]
pub use tls::{TlsAcceptor, TlsClientConfig, TlsConnector, TlsStream};
pub use udp_client::{MAX_DATAGRAM, UdpClient, UdpReply, UdpStats};
