//! The server: accept on bound listeners, run a session per connection, stop gracefully.

use std::future::Future;
use std::io;
use std::net::UdpSocket;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use async_io::{Async, Timer};
use futures_lite::future::{self, FutureExt};

mod accept;
#[cfg(feature = "systemd")]
mod activation;
mod admit;
mod conn;
mod connection;
pub(crate) mod failures;
mod listener;
pub(crate) mod permits;
#[cfg(feature = "proxy")]
mod proxy;
mod sink;
mod sources;
mod stop;
mod udp;

#[cfg(feature = "systemd")]
pub use activation::activated;
pub use listener::{Bound, ListenAddr, Listener, bind, bind_each};

use crate::session::{EchoConfig, Mode};
use accept::{Acceptor, StreamListener};
use admit::Gate;
use connection::{Peer, connection};
use failures::Failures;
use listener::Kind;
use permits::Permits;
#[cfg(feature = "metrics")]
pub(crate) use sink::ListenerKind;
use sink::Sink;
use stop::Stop;
use udp::DatagramCounts;

/// How long the accept loop rests after an accept error (out of descriptors, memory, buffers),
/// so that a pending connection it cannot take does not spin a core.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A connection's task, handed to the caller's executor.
///
/// # Examples
///
/// ```
/// // What a spawn function given to `Server::run` receives: any executor can run it.
/// let task: smol_echo::server::ConnectionTask = Box::pin(async {});
/// futures_lite::future::block_on(task);
/// ```
pub type ConnectionTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// How the server treats connections.
///
/// Fields may be added in a minor release: build one from `..Default::default()`, as below, so
/// that such an addition breaks no caller.
///
/// # Examples
///
/// ```
/// use smol_echo::{Mode, ServerConfig};
///
/// let config = ServerConfig { mode: Mode::Raw, ..ServerConfig::default() };
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
    /// Connections served at once from one source, an IPv4 address or an IPv6 /64 (the
    /// address of the PROXY header when there is one); one more is closed at once, with reason
    /// `source limit`. 0: no limit. Unix socket peers without a header are not counted.
    pub max_per_source: usize,
    /// `Some`: every stream connection starts with a PROXY header (v1 or v2, told apart by its
    /// first byte), and its source is the one the header names. A connection whose header is
    /// missing, malformed, too long or late is closed alone, with reason `proxy header: ...`.
    #[cfg(feature = "proxy")]
    pub proxy: Option<crate::proxy::ProxyConfig>,
}

impl ServerConfig {
    /// The values [`ServerConfig::max_connections`] may take.
    pub const MAX_CONNECTIONS: std::ops::RangeInclusive<usize> = 1..=1_000_000;

    /// The values [`ServerConfig::max_per_source`] may take.
    pub const MAX_PER_SOURCE: std::ops::RangeInclusive<usize> = 0..=1_000_000;

    /// Refuses settings out of their documented ranges, as [`EchoConfig::check`] does, with
    /// [`ServerConfig::MAX_CONNECTIONS`] too.
    ///
    /// # Examples
    ///
    /// ```
    /// use smol_echo::ServerConfig;
    ///
    /// let none = ServerConfig { max_connections: 0, ..ServerConfig::default() };
    /// let err = none.check(&|field| field).unwrap_err();
    /// assert_eq!(err.to_string(), "max_connections must be from 1 to 1000000, not 0");
    /// ```
    pub fn check(&self, name: &dyn Fn(&'static str) -> &'static str) -> io::Result<()> {
        crate::session::in_range(name("max_connections"), self.max_connections, Self::MAX_CONNECTIONS)?;
        crate::session::in_range(name("max_per_source"), self.max_per_source, Self::MAX_PER_SOURCE)?;
        #[cfg(feature = "proxy")]
        if let Some(proxy) = &self.proxy {
            crate::session::check_duration(name("proxy_timeout"), proxy.timeout, Duration::from_nanos(1))?;
        }
        self.echo.check(name)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            echo: EchoConfig::default(),
            max_connections: 10000,
            mode: Mode::Line,
            max_per_source: 0,
            #[cfg(feature = "proxy")]
            proxy: None,
        }
    }
}

/// What a server did from start to shutdown.
///
/// Fields may be added in a minor release; read them, and build one (in tests) from
/// `..Default::default()`.
///
/// # Examples
///
/// ```
/// let summary = smol_echo::server::Summary::default();
/// assert_eq!(summary.connections, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Connections accepted.
    pub connections: u64,
    /// Lines echoed over all connections.
    pub lines: u64,
    /// Bytes echoed over all connections and datagrams.
    pub bytes: u64,
    /// UDP datagrams echoed.
    pub datagrams: u64,
    /// UDP datagrams not answered because of their source port: a small service's or one of the
    /// server's own.
    pub refused_datagrams: u64,
    /// Connections still open when the grace period ran out.
    pub unfinished: u64,
    /// Connections closed before their session: a bad PROXY header, an address the header is
    /// not accepted from, a source over its limit.
    pub refused: u64,
}

/// The counts of the summary, and the sink that reports as they change.
#[derive(Default)]
struct Totals {
    sink: Sink,
    connections: AtomicU64,
    closed: AtomicU64,
    refused: AtomicU64,
    lines: AtomicU64,
    bytes: AtomicU64,
    datagrams: AtomicU64,
    refused_datagrams: AtomicU64,
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
    listeners: Vec<Listener>,
    config: ServerConfig,
    sink: Sink,
}

impl Server {
    /// A server that will serve on `listeners`: a session per connection on the stream ones,
    /// and the UDP echo on the datagram ones.
    pub fn new(listeners: Vec<Listener>, config: ServerConfig) -> Server {
        Server { listeners, config, sink: Sink::default() }
    }

    /// Reports what the server does to `metrics` as it happens, for
    /// [`metrics::serve`](crate::metrics::serve) to expose (feature `metrics`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use smol_echo::{Server, ServerConfig, metrics::Metrics};
    ///
    /// let metrics = Arc::new(Metrics::default());
    /// let server = Server::new(Vec::new(), ServerConfig::default()).with_metrics(metrics.clone());
    /// assert!(metrics.render().contains("echo_connections_total{listener=\"tcp\"} 0"));
    /// # drop(server);
    /// ```
    #[cfg(feature = "metrics")]
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Server {
        self.sink.metrics = Some(metrics);
        self
    }

    /// The addresses the listeners are bound to, with the real ports.
    pub fn local_addrs(&self) -> io::Result<Vec<ListenAddr>> {
        self.listeners.iter().map(Listener::local_addr).collect()
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
        let Server { listeners, config, sink } = self;
        let totals = Arc::new(Totals { sink, ..Totals::default() });
        // `stop` tells every session to drain; `done` is held once per session, so its receiver
        // sees the channel close when the last session ends.
        let stop = Stop::default();
        let (done_tx, done_rx) = async_channel::bounded::<()>(1);
        let permits = Permits::new(config.max_connections);

        let (streams, datagram_sockets) = by_kind(listeners);
        serve_datagrams(datagram_sockets, &stop, &totals, &done_tx, &spawn);
        let mut acceptor = Acceptor::new(streams);
        let accepting = accept_all(&mut acceptor, &permits, &config, &stop, &totals, &done_tx, &spawn);
        accepting.or(shutdown).await;
        // New clients are refused from now on rather than left waiting in the backlog.
        drop(acceptor);
        log::debug!("listeners closed; {} sessions draining", config.max_connections - permits.available());
        stop.stop();
        drop(done_tx);
        wait_for_sessions(&done_rx, config.echo.grace).await;
        totals.summary()
    }
}

impl Totals {
    fn summary(&self) -> Summary {
        let connections = self.connections.load(Relaxed);
        Summary {
            connections,
            lines: self.lines.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            datagrams: self.datagrams.load(Relaxed),
            refused_datagrams: self.refused_datagrams.load(Relaxed),
            unfinished: connections - self.closed.load(Relaxed),
            refused: self.refused.load(Relaxed),
        }
    }
}

/// The stream listeners, to accept on, and the UDP sockets, to echo on.
fn by_kind(listeners: Vec<Listener>) -> (Vec<StreamListener>, Vec<Arc<Async<UdpSocket>>>) {
    let (mut streams, mut datagram_sockets) = (Vec::new(), Vec::new());
    for listener in listeners {
        let addr = listener.local_addr();
        match listener.0 {
            Kind::Tcp(socket) => streams.push(StreamListener::Tcp(socket)),
            #[cfg(feature = "tls")]
            Kind::Tls(socket, acceptor) => streams.push(StreamListener::Tls(socket, acceptor)),
            Kind::Unix(socket, file) => {
                // What the listener's nameless peers are logged as.
                let name = addr.map_or_else(|_| "unix:".into(), |addr| addr.to_string().into());
                streams.push(StreamListener::Unix { socket, name, _file: file });
            }
            Kind::Udp(socket) => datagram_sockets.push(socket),
        }
    }
    (streams, datagram_sockets)
}

/// Spawns the UDP echo of each of `sockets`, until `stop`.
fn serve_datagrams<H: Clone + Send + 'static>(
    sockets: Vec<Arc<Async<UdpSocket>>>,
    stop: &Stop,
    totals: &Arc<Totals>,
    hold: &H,
    spawn: &impl Fn(ConnectionTask),
) {
    // A datagram from one of these ports could be the server's own echo coming back.
    let own_ports: Arc<[u16]> =
        sockets.iter().filter_map(|socket| Some(socket.get_ref().local_addr().ok()?.port())).collect();
    for socket in sockets {
        let sink = totals.sink.clone();
        let datagrams = udp::echo_datagrams(socket, own_ports.clone(), stop.listen(), ACCEPT_BACKOFF, sink);
        spawn(datagram_task(datagrams, totals.clone(), hold.clone()));
    }
}

/// Accepts for ever, within the connection limit, and spawns a session per connection. An
/// accept error is logged (see [`Failures`]) and the loop rests before it tries again.
async fn accept_all<H: Clone + Send + 'static>(
    acceptor: &mut Acceptor,
    permits: &Arc<Permits>,
    config: &ServerConfig,
    stop: &Stop,
    totals: &Arc<Totals>,
    hold: &H,
    spawn: &impl Fn(ConnectionTask),
) {
    let mut failures = Failures::new("accept", ACCEPT_BACKOFF);
    let gate = Arc::new(Gate::new(config));
    loop {
        let permit = match permits.try_acquire() {
            Some(permit) => permit,
            None => {
                log::debug!("{} connections open: accepting again when one closes", config.max_connections);
                permits.acquire().await
            }
        };
        let accepted = match future::poll_fn(|cx| acceptor.poll_accept(cx)).await {
            Ok(accepted) => accepted,
            Err(err) => {
                totals.sink.accept_failed();
                failures.rest(&err).await;
                continue;
            }
        };
        spawn(connection(accepted, config, &gate, stop.listen(), totals.clone(), (permit, hold.clone())));
    }
}

/// Waits until every session has let go of its sender of `done`, or the grace period (with a
/// margin for a busy executor) is over: sessions end themselves within it.
async fn wait_for_sessions(done: &async_channel::Receiver<()>, grace: Duration) {
    let grace = Timer::after(grace + Duration::from_millis(500));
    async {
        done.recv().await.ok();
    }
    .or(async {
        grace.await;
    })
    .await;
}

/// One UDP socket's task: its counts go into the totals when it ends, then `hold` is let go.
fn datagram_task<H: Send + 'static>(
    datagrams: impl Future<Output = DatagramCounts> + Send + 'static,
    totals: Arc<Totals>,
    hold: H,
) -> ConnectionTask {
    Box::pin(async move {
        let counts = datagrams.await;
        totals.datagrams.fetch_add(counts.echoed, Relaxed);
        totals.bytes.fetch_add(counts.bytes, Relaxed);
        totals.refused_datagrams.fetch_add(counts.refused, Relaxed);
        drop(hold);
    })
}
