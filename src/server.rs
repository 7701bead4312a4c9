//! The server: accept on bound listeners, run a session per connection, stop gracefully.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use async_io::Async;
use async_io::Timer;
use async_lock::Semaphore;
use async_net::TcpListener;
use futures_lite::future::{self, FutureExt};

use crate::accept::Acceptor;
use crate::raw::Mode;
use crate::session::EchoConfig;
use crate::stop::{Stop, Stopped};
use crate::tcp::TcpConn;

/// How long the accept loop rests after an accept error (out of descriptors, memory, buffers),
/// so that a pending connection it cannot take does not spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A connection's task, handed to the caller's executor.
pub type ConnectionTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// How the server treats connections.
///
/// # Examples
///
/// ```
/// let config = smol_echo::ServerConfig::default();
/// assert_eq!(config.max_connections, 10000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The limits of each session.
    pub echo: EchoConfig,
    /// Connections served at once across all listeners; at the limit the server stops
    /// accepting until one closes.
    pub max_connections: usize,
    /// The protocol each connection speaks.
    pub mode: Mode,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { echo: EchoConfig::default(), max_connections: 10000, mode: Mode::Line }
    }
}

/// What a server did from start to shutdown.
///
/// # Examples
///
/// ```
/// let summary = smol_echo::Summary::default();
/// assert_eq!(summary.connections, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Connections accepted.
    pub connections: u64,
    /// Lines echoed over all connections.
    pub lines: u64,
    /// Bytes echoed over all connections.
    pub bytes: u64,
    /// Connections still open when the grace period ran out.
    pub unfinished: u64,
}

#[derive(Default)]
struct Totals {
    connections: AtomicU64,
    closed: AtomicU64,
    lines: AtomicU64,
    bytes: AtomicU64,
}

/// Binds every address each of `addrs` resolves to (`host:port` or `[v6addr]:port`).
///
/// An address that fails while another binds is logged as a warning; none binding is an error.
/// Port 0 picks a free port for each socket.
///
/// # Examples
///
/// ```
/// let listeners = futures_lite::future::block_on(smol_echo::bind(&["127.0.0.1:0"])).unwrap();
/// assert_eq!(listeners.len(), 1);
/// ```
pub async fn bind<A: AsRef<str>>(addrs: &[A]) -> io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    let mut failures = Vec::new();
    for addr in addrs.iter().map(AsRef::as_ref) {
        let resolved = match async_net::resolve(addr).await {
            Ok(resolved) => resolved,
            Err(err) => {
                failures.push(io::Error::new(err.kind(), format!("cannot resolve {addr}: {err}")));
                continue;
            }
        };
        let mut seen = Vec::new();
        for socket_addr in resolved {
            if seen.contains(&socket_addr) {
                continue;
            }
            seen.push(socket_addr);
            match TcpListener::bind(socket_addr).await {
                Ok(listener) => listeners.push(listener),
                Err(err) => failures
                    .push(io::Error::new(err.kind(), format!("cannot listen on {socket_addr}: {err}"))),
            }
        }
    }
    if listeners.is_empty() {
        // Every failure is in the one error, so that it is reported once, on one line.
        let kind = failures.first().map_or(io::ErrorKind::InvalidInput, io::Error::kind);
        let reasons: Vec<String> = failures.iter().map(ToString::to_string).collect();
        return Err(match reasons.is_empty() {
            true => io::Error::new(kind, "no address to listen on"),
            false => io::Error::new(kind, reasons.join("; ")),
        });
    }
    for failure in failures {
        log::warn!("{failure}");
    }
    Ok(listeners)
}

/// An echo server over listeners that are already bound.
///
/// # Examples
///
/// ```
/// use futures_lite::future;
/// use smol_echo::{Server, ServerConfig};
///
/// future::block_on(async {
///     let listeners = smol_echo::bind(&["127.0.0.1:0"]).await?;
///     let server = Server::new(listeners, ServerConfig::default());
///     assert_eq!(server.local_addrs()?.len(), 1);
///     // Run on smol's executor until shutdown completes (here at once).
///     let summary = server.run(|task| smol::spawn(task).detach(), future::ready(())).await;
///     assert_eq!(summary.connections, 0);
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
#[derive(Debug)]
pub struct Server {
    acceptor: Acceptor,
    config: ServerConfig,
}

impl Server {
    /// A server that will accept on `listeners`.
    pub fn new(listeners: Vec<TcpListener>, config: ServerConfig) -> Server {
        Server { acceptor: Acceptor::new(listeners), config }
    }

    /// The addresses the listeners are bound to, with the real ports.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.acceptor.local_addrs()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets every session echo the
    /// complete lines that had arrived within the grace period, and returns what was done.
    ///
    /// `spawn` runs one connection's task on the caller's executor, so the server works on
    /// any of them: `smol::spawn`, an `async_executor::Executor` shared by several threads, or
    /// another runtime's spawn.
    pub async fn run<S, F>(self, spawn: S, shutdown: F) -> Summary
    where
        S: Fn(ConnectionTask),
        F: Future<Output = ()>,
    {
        let Server { mut acceptor, config } = self;
        let totals = Arc::new(Totals::default());
        // `stop` tells every session to drain; `done` is held once per session, so its receiver
        // sees the channel close when the last session ends.
        let stop = Stop::default();
        let (done_tx, done_rx) = async_channel::bounded::<()>(1);
        let permits = Arc::new(Semaphore::new(config.max_connections));

        let accept_all = async {
            loop {
                let permit = match permits.try_acquire_arc() {
                    Some(permit) => permit,
                    None => {
                        log::debug!(
                            "{} connections open: accepting again when one closes",
                            config.max_connections
                        );
                        permits.acquire_arc().await
                    }
                };
                let stream = match future::poll_fn(|cx| acceptor.poll_accept(cx)).await {
                    Ok(stream) => stream,
                    Err(err) => {
                        log::warn!("accept failed: {err}; retrying in {ACCEPT_BACKOFF:?}");
                        Timer::after(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let done = done_tx.clone();
                spawn(connection(stream, &config, stop.listen(), totals.clone(), (permit, done)));
            }
        };
        accept_all.or(shutdown).await;
        // New clients are refused from now on rather than left waiting in the backlog.
        drop(acceptor);
        log::debug!(
            "listeners closed; {} sessions draining",
            config.max_connections - permits.available_permits()
        );
        stop.stop();
        drop(done_tx);
        // Sessions end themselves within the grace period; the margin covers a busy executor.
        let grace = Timer::after(config.echo.grace + Duration::from_millis(500));
        async {
            done_rx.recv().await.ok();
        }
        .or(async {
            grace.await;
        })
        .await;
        let connections = totals.connections.load(Relaxed);
        Summary {
            connections,
            lines: totals.lines.load(Relaxed),
            bytes: totals.bytes.load(Relaxed),
            unfinished: connections - totals.closed.load(Relaxed),
        }
    }
}

/// One connection's session, with its log lines and its share of the totals. `hold` is kept
/// until the session ends: the connection-limit permit and the server's count of live sessions.
fn connection<H: Send + 'static>(
    stream: Async<std::net::TcpStream>,
    config: &ServerConfig,
    stop: Stopped,
    totals: Arc<Totals>,
    hold: H,
) -> ConnectionTask {
    totals.connections.fetch_add(1, Relaxed);
    let started = Instant::now();
    let stream = TcpConn::new(stream);
    let peer = stream.peer_addr().ok();
    // Lines are small and latency matters more than packet count.
    stream.set_nodelay(true).ok();
    log::info!("open {}", Peer(peer));
    // Boxed so that awaiting it below moves a pointer, not the whole session state.
    let session = config.mode.echo(stream, &config.echo, stop);
    Box::pin(async move {
        let session = session.await;
        totals.lines.fetch_add(session.lines, Relaxed);
        totals.bytes.fetch_add(session.bytes, Relaxed);
        totals.closed.fetch_add(1, Relaxed);
        log::info!(
            "close {} lines={} bytes={} duration={:.3}s reason={}",
            Peer(peer),
            session.lines,
            session.bytes,
            started.elapsed().as_secs_f64(),
            session.reason
        );
        // Last: once every session has let go, the server reads the totals.
        drop(hold);
    })
}

/// A peer address for the log; the kernel may not know it once the peer has gone.
struct Peer(Option<SocketAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("(unknown peer)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::future;

    use super::*;

    #[test]
    fn bind_reports_the_address_that_failed() {
        future::block_on(async {
            let taken = bind(&["127.0.0.1:0"]).await.unwrap();
            let addr = taken[0].local_addr().unwrap().to_string();
            let err = bind(&[addr.as_str()]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
            assert!(err.to_string().contains(&addr), "{err}");
        });
    }

    #[test]
    fn bind_keeps_the_addresses_that_work() {
        future::block_on(async {
            let taken = bind(&["127.0.0.1:0"]).await.unwrap();
            let addr = taken[0].local_addr().unwrap().to_string();
            let bound = bind(&[addr.as_str(), "127.0.0.1:0"]).await.unwrap();
            assert_eq!(bound.len(), 1);
        });
    }
}
