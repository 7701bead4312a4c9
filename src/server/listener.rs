//! The sockets a server serves on: binding them, naming them, and cleaning up after them.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use async_io::Async;
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType, socket_with};

use crate::error::context;
use crate::net::Address;
#[cfg(feature = "tls")]
use crate::tls::TlsAcceptor;

/// A socket the server serves on: a TCP or Unix stream listener, or a UDP socket.
///
/// Made by [`bind`], by [socket activation](super::activated), or from an
/// `async-net` socket bound some other way.
///
/// # Examples
///
/// ```
/// use smol_echo::server::{ListenAddr, Listener};
///
/// smol::block_on(async {
///     let socket = async_net::UdpSocket::bind("127.0.0.1:0").await?;
///     let listener = Listener::from(socket);
///     assert!(matches!(listener.local_addr()?, ListenAddr::Udp(_)));
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
#[derive(Debug)]
pub struct Listener(pub(crate) Kind);

#[derive(Debug)]
pub(crate) enum Kind {
    Tcp(Arc<Async<TcpListener>>),
    /// Each connection's handshake is run by the acceptor before its session.
    #[cfg(feature = "tls")]
    Tls(Arc<Async<TcpListener>>, TlsAcceptor),
    /// The file is removed with the listener when this process made it.
    Unix(Arc<Async<UnixListener>>, Option<SocketFile>),
    Udp(Arc<Async<UdpSocket>>),
}

impl Listener {
    /// The address the socket is bound to, with the real port when port 0 was asked.
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        Ok(match &self.0 {
            Kind::Tcp(socket) => ListenAddr::Tcp(socket.get_ref().local_addr()?),
            #[cfg(feature = "tls")]
            Kind::Tls(socket, _) => ListenAddr::Tls(socket.get_ref().local_addr()?),
            Kind::Udp(socket) => ListenAddr::Udp(socket.get_ref().local_addr()?),
            Kind::Unix(socket, _) => {
                let addr = socket.get_ref().local_addr()?;
                ListenAddr::Unix(addr.as_pathname().map(Path::to_path_buf).unwrap_or_default())
            }
        })
    }
}

#[cfg(feature = "tls")]
impl Listener {
    /// Serves TLS with `acceptor` on this listener: a TCP one becomes a TLS one, a TLS one
    /// changes its certificate (e.g. the self-signed one [`bind`] made for it). A Unix or UDP
    /// listener is returned as it is.
    ///
    /// # Examples
    ///
    /// ```
    /// use smol_echo::server::{ListenAddr, Listener};
    /// use smol_echo::tls::TlsAcceptor;
    ///
    /// smol::block_on(async {
    ///     let tcp = Listener::from(async_net::TcpListener::bind("127.0.0.1:0").await?);
    ///     let tls = tcp.with_tls(TlsAcceptor::self_signed(&[])?);
    ///     assert!(matches!(tls.local_addr()?, ListenAddr::Tls(_)));
    ///     std::io::Result::Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn with_tls(self, acceptor: TlsAcceptor) -> Listener {
        match self.0 {
            Kind::Tcp(socket) | Kind::Tls(socket, _) => Listener(Kind::Tls(socket, acceptor)),
            other => Listener(other),
        }
    }
}

impl From<async_net::TcpListener> for Listener {
    fn from(listener: async_net::TcpListener) -> Listener {
        Listener(Kind::Tcp(listener.into()))
    }
}

/// A Unix listener bound elsewhere; its socket file is left in place when it closes.
impl From<async_net::unix::UnixListener> for Listener {
    fn from(listener: async_net::unix::UnixListener) -> Listener {
        Listener(Kind::Unix(listener.into(), None))
    }
}

impl From<async_net::UdpSocket> for Listener {
    fn from(socket: async_net::UdpSocket) -> Listener {
        Listener(Kind::Udp(socket.into()))
    }
}

/// Where a [`Listener`] is bound, written the way [`bind`] takes it:
/// `127.0.0.1:8007`, `tls:127.0.0.1:8443`, `udp:127.0.0.1:8007`, `unix:/run/echo.sock`.
///
/// # Examples
///
/// ```
/// use smol_echo::server::ListenAddr;
///
/// let addr = ListenAddr::Udp("127.0.0.1:7".parse().unwrap());
/// assert_eq!(addr.to_string(), "udp:127.0.0.1:7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenAddr {
    /// A TCP listener.
    Tcp(SocketAddr),
    /// A TCP listener that serves TLS.
    Tls(SocketAddr),
    /// A UDP socket.
    Udp(SocketAddr),
    /// A Unix stream listener, by its path (empty when it has none).
    Unix(PathBuf),
}

/// Parses what [`Display`](fmt::Display) writes: the socket addresses are literal, not names.
///
/// # Examples
///
/// ```
/// use smol_echo::server::ListenAddr;
///
/// let addr: ListenAddr = "udp:[::1]:7".parse().unwrap();
/// assert_eq!(addr, ListenAddr::Udp("[::1]:7".parse().unwrap()));
/// assert!("udp:localhost:7".parse::<ListenAddr>().is_err());
/// ```
impl FromStr for ListenAddr {
    type Err = io::Error;

    fn from_str(text: &str) -> io::Result<ListenAddr> {
        let literal = |host_port: &str| {
            host_port.parse::<SocketAddr>().map_err(|err| {
                context(
                    io::Error::new(io::ErrorKind::InvalidInput, err),
                    format_args!("invalid address '{text}'"),
                )
            })
        };
        Ok(match Wanted::parse(text)? {
            Wanted::Stream(Address::Unix(path)) => ListenAddr::Unix(path),
            Wanted::Stream(Address::Inet(host_port)) => ListenAddr::Tcp(literal(&host_port)?),
            Wanted::Stream(Address::Tls(host_port)) => ListenAddr::Tls(literal(&host_port)?),
            Wanted::Udp(host_port) => ListenAddr::Udp(literal(&host_port)?),
        })
    }
}

/// What one of [`bind`]'s addresses asks for: a stream listener, or with `udp:` a UDP socket.
enum Wanted {
    Stream(Address),
    /// `host:port` or `[v6addr]:port`.
    Udp(String),
}

impl Wanted {
    /// The one place the `udp:` scheme is parsed; [`Address`] parses the rest.
    fn parse(text: &str) -> io::Result<Wanted> {
        match text.strip_prefix("udp:") {
            Some(host_port) => match Address::inet(host_port)? {
                Address::Inet(host_port) => Ok(Wanted::Udp(host_port)),
                _ => unreachable!("Address::inet gives only Inet"),
            },
            None => Ok(Wanted::Stream(text.parse()?)),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => addr.fmt(f),
            ListenAddr::Tls(addr) => write!(f, "tls:{addr}"),
            ListenAddr::Udp(addr) => write!(f, "udp:{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Binds every address each of `addrs` names: `host:port` or `[v6addr]:port` for TCP,
/// `tls:host:port` for TLS over TCP, `udp:host:port` for UDP, `unix:/path` for a Unix stream
/// socket.
///
/// A TLS listener starts with a self-signed certificate made for its host name and addresses;
/// give it a real one with [`Listener::with_tls`]. Without the `tls` feature a `tls:` address
/// fails to bind, saying why.
///
/// A host name binds every address it resolves to. An address that fails while another binds
/// is left out ([`bind_each`] also returns why); none binding is an error. Port 0 picks a free
/// port for each socket.
///
/// A Unix socket file left by a server that is gone is replaced; one that a live server
/// listens on is an error (`AddrInUse`), and so is a path that is not a socket. The file is
/// removed when the listener closes.
///
/// # Examples
///
/// ```
/// let listeners = futures_lite::future::block_on(smol_echo::bind(&["127.0.0.1:0", "udp:127.0.0.1:0"]));
/// assert_eq!(listeners.unwrap().len(), 2);
/// ```
pub async fn bind<A: AsRef<str>>(addrs: &[A]) -> io::Result<Vec<Listener>> {
    Ok(bind_each(addrs).await?.listeners)
}

/// What [`bind_each`] bound, and why the addresses that failed while others bound did.
#[derive(Debug)]
pub struct Bound {
    /// The sockets bound, in the order of the addresses.
    pub listeners: Vec<Listener>,
    /// One error per address (or resolved address) that failed, naming it.
    pub failures: Vec<io::Error>,
}

/// [`bind`], returning the failures of the addresses that did not bind as well, for the caller
/// to report: a library logs nothing on its own.
///
/// # Examples
///
/// ```
/// use futures_lite::future::block_on;
///
/// let taken = block_on(smol_echo::bind(&["127.0.0.1:0"])).unwrap();
/// let busy = taken[0].local_addr().unwrap().to_string();
/// let bound = block_on(smol_echo::server::bind_each(&[busy.as_str(), "127.0.0.1:0"])).unwrap();
/// assert_eq!(bound.listeners.len(), 1);
/// assert!(bound.failures[0].to_string().contains(&busy));
/// ```
pub async fn bind_each<A: AsRef<str>>(addrs: &[A]) -> io::Result<Bound> {
    let mut listeners = Vec::new();
    let mut failures = Vec::new();
    for addr in addrs.iter().map(AsRef::as_ref) {
        let (kind, host_port) = match Wanted::parse(addr) {
            Ok(Wanted::Stream(Address::Unix(path))) => {
                match bind_unix(&path) {
                    Ok(listener) => listeners.push(listener),
                    Err(err) => failures.push(context(err, format_args!("cannot listen on {addr}"))),
                }
                continue;
            }
            Ok(Wanted::Stream(Address::Inet(host_port))) => (Socket::Tcp, host_port),
            #[cfg(feature = "tls")]
            Ok(Wanted::Stream(Address::Tls(host_port))) => (Socket::Tls, host_port),
            #[cfg(not(feature = "tls"))]
            Ok(Wanted::Stream(Address::Tls(_))) => {
                failures.push(crate::net::no_tls(addr));
                continue;
            }
            Ok(Wanted::Udp(host_port)) => (Socket::Udp, host_port),
            Err(err) => {
                failures.push(err);
                continue;
            }
        };
        let resolved = match async_net::resolve(&*host_port).await {
            Ok(resolved) => resolved,
            Err(err) => {
                failures.push(context(err, format_args!("cannot resolve {host_port}")));
                continue;
            }
        };
        let mut seen = Vec::new();
        for socket_addr in resolved {
            if !seen.contains(&socket_addr) {
                seen.push(socket_addr);
            }
        }
        #[cfg(feature = "tls")]
        let acceptor = match kind {
            Socket::Tls => match self_signed_for(&host_port, &seen) {
                Ok(acceptor) => Some(acceptor),
                Err(err) => {
                    failures.push(context(err, format_args!("cannot listen on {addr}")));
                    continue;
                }
            },
            _ => None,
        };
        for socket_addr in seen {
            let bound = match kind {
                Socket::Udp => {
                    Async::<UdpSocket>::bind(socket_addr).map(|s| Listener(Kind::Udp(Arc::new(s))))
                }
                _ => Async::<TcpListener>::bind(socket_addr)
                    .and_then(deepen_backlog)
                    .map(|l| Listener(Kind::Tcp(Arc::new(l)))),
            };
            #[cfg(feature = "tls")]
            let bound = bound.map(|listener| match &acceptor {
                Some(acceptor) => listener.with_tls(acceptor.clone()),
                None => listener,
            });
            match bound {
                Ok(listener) => listeners.push(listener),
                Err(err) => {
                    let name = match kind {
                        Socket::Tcp => ListenAddr::Tcp(socket_addr),
                        #[cfg(feature = "tls")]
                        Socket::Tls => ListenAddr::Tls(socket_addr),
                        Socket::Udp => ListenAddr::Udp(socket_addr),
                    };
                    failures.push(context(err, format_args!("cannot listen on {name}")))
                }
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
    Ok(Bound { listeners, failures })
}

/// The sockets an Internet address can ask for.
#[derive(Clone, Copy)]
enum Socket {
    Tcp,
    #[cfg(feature = "tls")]
    Tls,
    Udp,
}

/// A self-signed certificate for the host `host_port` names and the addresses it resolved to,
/// until the caller gives the listener one of its own ([`Listener::with_tls`]).
#[cfg(feature = "tls")]
fn self_signed_for(host_port: &str, addrs: &[SocketAddr]) -> io::Result<TlsAcceptor> {
    let mut names = vec![crate::net::host_of(host_port).to_string()];
    for addr in addrs {
        let ip = addr.ip().to_string();
        if !names.contains(&ip) {
            names.push(ip);
        }
    }
    TlsAcceptor::self_signed(&names)
}

/// Binds a Unix stream listener at `path`, replacing the socket file of a server that is gone.
fn bind_unix(path: &Path) -> io::Result<Listener> {
    let listener = match UnixListener::bind(path) {
        Err(err) if err.kind() == io::ErrorKind::AddrInUse => {
            remove_stale_socket(path)?;
            UnixListener::bind(path)?
        }
        bound => bound?,
    };
    let file = SocketFile::of(path)?;
    let listener = deepen_backlog(Async::new(listener)?)?;
    Ok(Listener(Kind::Unix(Arc::new(listener), Some(file))))
}

/// The deepest accept queue the system allows: the kernel caps a listen backlog at
/// `net.core.somaxconn` (4096 by default on Linux).
const BACKLOG: i32 = i32::MAX;

/// Lets `listener`'s accept queue grow past std's 128. With 128, a burst of connects that
/// arrives while every thread is busy has its SYNs dropped, and each such client stalls for
/// the one-second SYN retransmission; a second `listen` on a listening socket resizes its queue.
fn deepen_backlog<L: AsFd>(listener: Async<L>) -> io::Result<Async<L>> {
    rustix::net::listen(listener.get_ref(), BACKLOG)?;
    Ok(listener)
}

/// Removes the socket file at `path` if nothing listens on it any more.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    if !std::fs::symlink_metadata(path)?.file_type().is_socket() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "the path exists and is not a socket"));
    }
    match try_connect_unix(path)? {
        Ok(_) | Err(Errno::AGAIN | Errno::INPROGRESS) => {
            Err(io::Error::new(io::ErrorKind::AddrInUse, "a server is listening on it"))
        }
        Err(Errno::CONNREFUSED) => {
            log::info!("removing the stale socket unix:{}", path.display());
            std::fs::remove_file(path)
        }
        Err(err) => Err(err.into()),
    }
}

/// A non-blocking connect to the Unix socket at `path`: the outer error is one of making the
/// socket, the inner one the connect's. Not blocking, because a connect to a live server whose
/// backlog is full would wait for room.
fn try_connect_unix(path: &Path) -> io::Result<Result<OwnedFd, Errno>> {
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    let socket = socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)?;
    Ok(rustix::net::connect(&socket, &SocketAddrUnix::new(path)?).map(|()| socket))
}

/// The socket file a listener made, removed when the listener closes unless another file has
/// taken its place (a second server that replaced it as stale, say).
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    fn of(path: &Path) -> io::Result<SocketFile> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(SocketFile { path: path.to_path_buf(), dev: meta.dev(), ino: meta.ino() })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == (self.dev, self.ino));
        if ours {
            // Nothing to do if it fails: the next server replaces a stale file anyway.
            std::fs::remove_file(&self.path).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use futures_lite::future;

    use super::*;

    fn temp_socket(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("smol-echo-{}-{name}.sock", std::process::id()));
        std::fs::remove_file(&path).ok();
        path
    }

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
    fn a_burst_of_connects_waits_in_the_backlog_while_nothing_accepts() {
        // Past a backlog of 128 the kernel drops the SYN, and the connect stalls for a second.
        // Twice that, for each of two sockets, stays well inside the usual limit of 1024 files.
        const BURST: usize = 256;
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn");
        if somaxconn.is_ok_and(|max| max.trim().parse::<usize>().is_ok_and(|max| max < BURST)) {
            eprintln!("net.core.somaxconn is below {BURST} here: no backlog can hold the burst");
            return;
        }
        let unix = temp_socket("burst");
        let listeners =
            future::block_on(bind(&["127.0.0.1:0".to_string(), format!("unix:{}", unix.display())]));
        let mut waiting = Vec::new();
        for listener in listeners.unwrap() {
            match listener.local_addr().unwrap() {
                ListenAddr::Tcp(addr) => {
                    for n in 0..BURST {
                        // Well under the retransmission timeout: a dropped SYN fails the connect.
                        let connected =
                            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500));
                        let stream = connected.unwrap_or_else(|err| panic!("connect {n} to {addr}: {err}"));
                        waiting.push(OwnedFd::from(stream));
                    }
                }
                ListenAddr::Unix(path) => {
                    for n in 0..BURST {
                        // A full Unix backlog blocks a connect: this one fails at once instead.
                        let connected = try_connect_unix(&path).unwrap();
                        waiting
                            .push(connected.unwrap_or_else(|err| panic!("connect {n} to {path:?}: {err}")));
                    }
                }
                other => unreachable!("only TCP and Unix listeners were bound, not {other}"),
            }
        }
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

    #[test]
    fn each_kind_names_itself_as_bind_takes_it() {
        let path = temp_socket("names");
        let unix = format!("unix:{}", path.display());
        future::block_on(async {
            let bound = bind(&["127.0.0.1:0", "udp:127.0.0.1:0", unix.as_str()]).await.unwrap();
            let names: Vec<String> = bound.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
            assert!(names[0].starts_with("127.0.0.1:"), "{names:?}");
            assert!(names[1].starts_with("udp:127.0.0.1:"), "{names:?}");
            assert_eq!(names[2], unix);
            // The names bind again: the ports are taken, the stale-or-live check sees a live server.
            for name in &names {
                assert_eq!(
                    bind(&[name.as_str()]).await.unwrap_err().kind(),
                    io::ErrorKind::AddrInUse,
                    "{name}"
                );
            }
        });
        assert!(!path.exists(), "the socket file goes with its listener");
    }

    #[test]
    fn each_kind_parses_back_from_its_name() {
        for name in ["127.0.0.1:8007", "[::1]:0", "udp:127.0.0.1:7", "udp:[::1]:7", "unix:/run/echo.sock"] {
            assert_eq!(name.parse::<ListenAddr>().unwrap().to_string(), name);
        }
        for bad in ["localhost:8007", "udp:unix:/run/echo.sock", "udp:localhost", "unix:"] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_stale_socket_file_is_replaced() {
        let path = temp_socket("stale");
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let bound = bind_unix(&path).unwrap();
        UnixStream::connect(&path).expect("the new listener answers");
        drop(bound);
        assert!(!path.exists());
    }

    #[test]
    fn a_live_server_with_a_full_backlog_is_still_live() {
        let path = temp_socket("busy");
        let busy = socket_with(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None).unwrap();
        rustix::net::bind(&busy, &SocketAddrUnix::new(&path).unwrap()).unwrap();
        rustix::net::listen(&busy, 0).unwrap();
        // Fill its backlog with connections it never accepts, till one finds no room.
        let mut waiting = Vec::new();
        loop {
            match try_connect_unix(&path).unwrap() {
                Ok(client) => waiting.push(client),
                Err(Errno::AGAIN) => break,
                Err(err) => panic!("connect: {err}"),
            }
            assert!(waiting.len() < 10_000, "the backlog never filled");
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let probing = path.clone();
        std::thread::spawn(move || tx.send(bind_unix(&probing).map(drop)));
        let result = rx.recv_timeout(Duration::from_secs(5)).expect("the check for a live server hung");
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::AddrInUse);
        assert!(path.exists());
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_left_alone() {
        let path = temp_socket("plain");
        std::fs::write(&path, b"keep me").unwrap();
        let err = bind_unix(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_replaced_socket_file_is_not_removed_by_the_old_listener() {
        let path = temp_socket("replaced");
        let old = bind_unix(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let new = UnixListener::bind(&path).unwrap();
        drop(old);
        assert!(path.exists(), "the old listener removed the new server's file");
        drop(new);
        std::fs::remove_file(&path).unwrap();
    }
}
