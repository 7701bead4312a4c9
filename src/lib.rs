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
//! - [`server`]: the [`Server`] serves on [`Listener`](server::Listener)s (TCP, Unix stream,
//!   UDP) from [`bind`] or passed in by systemd ([`activated`](server::activated)), runs a
//!   session per connection on the caller's executor, echoes datagrams, and stops gracefully
//!   when told to, with a [`Summary`](server::Summary).
//! - [`client`]: [`converse`] sends input lines and writes their echoes at the same time, over
//!   a [`Stream`](client::Stream) (TCP or Unix socket) from [`connect`], until the server
//!   closes; [`converse_raw`](client::converse_raw) does the same for RFC 862, bytes unchanged.
//!   [`UdpClient`](client::UdpClient) sends one datagram at a time, each waiting for its echo.
//! - [`bench`](mod@bench): [`bench()`] is the load generator: connections with lines in
//!   flight, every echo checked, as [`BenchConfig`] says; it returns a
//!   [`BenchReport`](bench::BenchReport) of lines/s, MiB/s and latency.
//!   [`bench_udp`](bench::bench_udp) does the same with datagrams.
//! - [`error`]: [`context`](error::context) puts what was being done in front of an I/O error
//!   and keeps the error itself as its `source()`.
//!
//! Inside, each role's folder holds one file per job, and imports go from the roles down to the
//! session and to a private `net` module (the address parser and socket constants they share),
//! never up and never in a circle; the README has the map of files.
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

pub mod bench;
pub mod client;
pub mod error;
mod net;
pub mod server;
mod session;

pub use bench::{BenchConfig, bench};
pub use client::{connect, converse};
pub use server::{Server, ServerConfig, bind};
pub use session::{CloseReason, EchoConfig, Mode, Session, echo, echo_raw};
