//! One connection's way from accept to close: its checks (PROXY header, source cap), its TLS
//! handshake, its session, its log lines and its share of the totals.

use std::future::Future;
#[cfg(feature = "tls")]
use std::io;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use async_io::Async;

use super::accept::Accepted;
use super::admit::{Admitted, Gate, Refused};
use super::conn::SocketConn;
use super::sink::ListenerKind;
use super::sources::Slot;
use super::stop::Stopped;
use super::{ConnectionTask, ServerConfig, Totals};
use crate::session::{CloseReason, EchoConfig, Mode, Session};

/// One connection's session, with its log lines and its share of the totals. `hold` is kept
/// until the session ends: the connection-limit permit and the server's count of live sessions.
pub(super) fn connection<H: Send + 'static>(
    accepted: Accepted,
    config: &ServerConfig,
    gate: &Arc<Gate>,
    stop: Stopped,
    totals: Arc<Totals>,
    hold: H,
) -> ConnectionTask {
    let number = totals.connections.fetch_add(1, Relaxed) + 1;
    let started = Instant::now();
    let (kind, starting) = match accepted {
        Accepted::Tcp(stream, peer) => {
            (ListenerKind::Tcp, start(stream, Peer::Inet(peer), Layer::Plain, config, gate, stop))
        }
        #[cfg(feature = "tls")]
        Accepted::Tls(stream, peer, acceptor) => {
            (ListenerKind::Tls, start(stream, Peer::Inet(peer), Layer::Tls(acceptor), config, gate, stop))
        }
        Accepted::Unix(stream, listener) => {
            let peer = Peer::Unix(listener, number);
            (ListenerKind::Unix, start(stream, peer, Layer::Plain, config, gate, stop))
        }
    };
    totals.sink.opened(kind);
    match starting {
        // The task is then no larger than the session's own needs.
        Starting::Now(begun) => Box::pin(run(begun, kind, totals, hold, started)),
        Starting::Admitting(admitting) => {
            Box::pin(async move { run(admitting.await, kind, totals, hold, started).await })
        }
    }
}

/// Runs the session of a connection admitted, or logs its refusal; then lets go of `hold`.
///
/// Not an `async fn`, whose arguments would take room twice in the task, as arguments and as
/// the locals they are moved into.
#[allow(clippy::manual_async_fn)]
fn run<H: Send>(
    mut begun: Begun,
    kind: ListenerKind,
    totals: Arc<Totals>,
    hold: H,
    started: Instant,
) -> impl Future<Output = ()> + Send {
    async move {
        // By reference: moving the parts out would take room for them beside `begun` in the task.
        match &mut begun {
            Ok((peer, _slot, session)) => {
                let session = session.await;
                let duration = started.elapsed();
                totals.lines.fetch_add(session.lines, Relaxed);
                totals.bytes.fetch_add(session.bytes, Relaxed);
                totals.sink.closed(kind, &session, duration);
                log_close(peer, &session, duration);
            }
            Err(refused) => {
                totals.refused.fetch_add(1, Relaxed);
                let duration = started.elapsed();
                match refused {
                    Refused::Closed(peer, reason) => {
                        let session = Session { reason: reason.clone(), ..Session::default() };
                        totals.sink.closed(kind, &session, duration);
                        log_close(peer, &session, duration);
                    }
                    // Logged by the source's counts, not one line per connection.
                    Refused::SourceLimit => {
                        let reason = CloseReason::Protocol(Refused::SOURCE_LIMIT.to_string());
                        totals.sink.closed(kind, &Session { reason, ..Session::default() }, duration);
                    }
                }
            }
        }
        // The connection and its place in its source's count go before the totals are final.
        drop(begun);
        totals.closed.fetch_add(1, Relaxed);
        // Last: once every session has let go, the server reads the totals.
        drop(hold);
    }
}

/// A session ready to run (Mode::echo boxes it, so awaiting it moves a pointer, not the
/// session state), with who it is from and its place in its source's count; or why the
/// connection was refused.
type Begun = Result<(Peer, Option<Slot>, Pin<Box<dyn Future<Output = Session> + Send>>), Refused>;

/// A connection's way to its session: at once when there is nothing to check, else through the
/// checks, boxed: the header's read is large, and the connection's task lives as long as the
/// session.
enum Starting {
    Now(Begun),
    Admitting(Pin<Box<dyn Future<Output = Begun> + Send>>),
}

/// What runs between a connection's socket and its session.
enum Layer {
    Plain,
    /// The handshake first (after the PROXY header, if any), then the session over TLS.
    #[cfg(feature = "tls")]
    Tls(crate::tls::TlsAcceptor),
}

/// Starts the connection's way to its session; the open line is logged once it is admitted.
fn start<S>(
    stream: Async<S>,
    peer: Peer,
    layer: Layer,
    config: &ServerConfig,
    gate: &Arc<Gate>,
    stop: Stopped,
) -> Starting
where
    S: AsFd + Send + Sync + 'static,
    for<'a> &'a S: Read + Write,
{
    let begin =
        move |stream: Async<S>, peer: Peer, slot, mode: Mode, echo: &EchoConfig, stop: Stopped| -> Begun {
            log::info!(event = "open", peer:% = peer; "open {peer}");
            let conn = SocketConn::new(stream, stop.flag());
            let session = match layer {
                Layer::Plain => mode.echo(conn, echo, stop),
                #[cfg(feature = "tls")]
                Layer::Tls(acceptor) => tls_session(acceptor, conn, mode, echo.clone(), stop),
            };
            Ok((peer, slot, session))
        };
    if !gate.checks() {
        return Starting::Now(begin(stream, peer, None, config.mode, &config.echo, stop));
    }
    let (gate, mode, echo) = (gate.clone(), config.mode, config.echo.clone());
    Starting::Admitting(Box::pin(async move {
        let mut stop = stop;
        let Admitted { peer, slot } = gate.admit(&stream, peer, &mut stop).await?;
        begin(stream, peer, slot, mode, &echo, stop)
    }))
}

/// The close line of a session, or of a connection refused before it: as text, and as the
/// fields a structured logger writes.
fn log_close(peer: &Peer, session: &Session, duration: Duration) {
    // Rounded as the text is, so that both say the same.
    let duration_s = (duration.as_secs_f64() * 1000.0).round() / 1000.0;
    log::info!(
        event = "close", peer:% = peer, lines = session.lines, bytes = session.bytes, duration_s,
        reason:% = session.reason;
        "close {peer} lines={} bytes={} duration={duration_s:.3}s reason={}",
        session.lines,
        session.bytes,
        session.reason
    );
}

/// The handshake, within the idle timeout and cut short by a stop, then the session over TLS.
/// A failed handshake is the session's end, with the handshake's reason and nothing echoed.
#[cfg(feature = "tls")]
fn tls_session<S>(
    acceptor: crate::tls::TlsAcceptor,
    stream: SocketConn<S>,
    mode: Mode,
    echo: EchoConfig,
    mut stop: Stopped,
) -> Pin<Box<dyn Future<Output = Session> + Send>>
where
    S: AsFd + Send + Sync + 'static,
    for<'a> &'a S: Read + Write,
{
    Box::pin(async move {
        let handshake = stop.until(acceptor.accept(stream, echo.idle_timeout)).await;
        let reason = match handshake {
            Some(Ok(tls)) => return mode.echo(tls, &echo, stop).await,
            // The stop came first, or the handshake failed as it came.
            None => CloseReason::Shutdown,
            Some(Err(_)) if stop.flag().is_set() => CloseReason::Shutdown,
            Some(Err(err)) if err.kind() == io::ErrorKind::TimedOut => CloseReason::IdleTimeout,
            // Every other handshake error's text starts with `tls: ` and says what failed.
            Some(Err(err)) => CloseReason::Protocol(err.to_string()),
        };
        Session { reason, ..Default::default() }
    })
}

/// Who a connection's log lines are about. Unix peers are nameless, so they go by the
/// listener's path and the connection's number: `unix:/run/echo.sock#17`.
/// A connection relayed by a balancer goes by the source its PROXY header names, and by the
/// balancer's end: `203.0.113.7:41000 via 127.0.0.1:52100`.
pub(super) enum Peer {
    Inet(SocketAddr),
    Unix(Arc<str>, u64),
    #[cfg_attr(not(feature = "proxy"), allow(dead_code))]
    Proxied {
        source: SocketAddr,
        via: Box<Peer>,
    },
}

impl Peer {
    /// The address the connection counts against, when it has one.
    pub(super) fn ip(&self) -> Option<IpAddr> {
        match self {
            Peer::Inet(addr) | Peer::Proxied { source: addr, .. } => Some(addr.ip()),
            Peer::Unix(..) => None,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Inet(addr) => addr.fmt(f),
            Peer::Unix(listener, number) => write!(f, "{listener}#{number}"),
            Peer::Proxied { source, via } => write!(f, "{source} via {via}"),
        }
    }
}
