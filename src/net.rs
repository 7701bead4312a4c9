//! What the server, the client and the bench share about sockets: how an address is written,
//! how large a datagram can be, how long a task may keep a ready socket to itself, and how a
//! connect is bounded in time and tried on each resolved address.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use async_io::Timer;
use futures_lite::FutureExt;

/// The largest UDP payload over IPv4: 65535 bytes less the IP and UDP headers.
///
/// # Examples
///
/// ```
/// assert_eq!(smol_echo::client::MAX_DATAGRAM, 65_535 - 20 - 8);
/// ```
pub const MAX_DATAGRAM: usize = 65_507;

/// Room for the largest datagram of either IP version (65,527 bytes over IPv6), so that none is
/// cut short: a receive into a smaller buffer truncates without a word.
pub(crate) const RECEIVE_BUFFER: usize = u16::MAX as usize + 1;

/// How many ready reads (or datagrams) a session or a UDP socket's task handles in a row before
/// it lets the others on its thread run. A peer that keeps its socket always ready never makes
/// the loop wait, and executors have no budget of their own: without this the task would keep
/// its thread.
pub(crate) const YIELD_EVERY: u32 = 64;

/// Where to connect, written `host:port`, `[v6addr]:port`, `tls:host:port` or `unix:/path`;
/// parsed but not resolved, so a host name stays a name until it is used.
///
/// The `unix:` and `tls:` schemes are parsed here and nowhere else: the client, the bench and
/// the server's [`bind`](crate::bind) all read addresses through this type. A `tls:` address
/// needs the `tls` feature where it is used; without it, using one is an error that says so.
///
/// # Examples
///
/// ```
/// use smol_echo::client::Address;
///
/// let addr: Address = "unix:/run/echo.sock".parse().unwrap();
/// assert_eq!(addr, Address::Unix("/run/echo.sock".into()));
/// assert_eq!("[::1]:8007".parse::<Address>().unwrap().to_string(), "[::1]:8007");
/// assert!("localhost".parse::<Address>().is_err());
/// assert_eq!("tls:localhost:8443".parse::<Address>().unwrap(), Address::Tls("localhost:8443".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `host:port` or `[v6addr]:port`, as written: the host may be a name.
    Inet(String),
    /// TLS over TCP to `host:port` or `[v6addr]:port`, written without its `tls:`.
    Tls(String),
    /// A Unix stream socket, by its path.
    Unix(PathBuf),
}

impl Address {
    /// The host of an Internet address, without its port or an IPv6 address's brackets:
    /// `localhost` for `tls:localhost:8443`, `::1` for `[::1]:7`; none for a Unix socket.
    ///
    /// # Examples
    ///
    /// ```
    /// use smol_echo::client::Address;
    ///
    /// assert_eq!("tls:localhost:8443".parse::<Address>().unwrap().host(), Some("localhost"));
    /// assert_eq!("[::1]:7".parse::<Address>().unwrap().host(), Some("::1"));
    /// assert_eq!("unix:/run/echo.sock".parse::<Address>().unwrap().host(), None);
    /// ```
    pub fn host(&self) -> Option<&str> {
        match self {
            Address::Inet(host_port) | Address::Tls(host_port) => Some(host_of(host_port)),
            Address::Unix(_) => None,
        }
    }

    /// `text` as `host:port` or `[v6addr]:port`: the addresses of UDP, which has no Unix form.
    pub fn inet(text: &str) -> io::Result<Address> {
        host_port(text).map(Address::Inet)
    }
}

/// `text`, checked to be `host:port` or `[v6addr]:port`: what [`Address::Inet`] and
/// [`Address::Tls`] hold.
fn host_port(text: &str) -> io::Result<String> {
    let invalid =
        |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("invalid address '{text}': {why}"));
    if text.starts_with("unix:") {
        return Err(invalid("a Unix socket cannot be used here; use host:port"));
    }
    if text.starts_with("tls:") {
        return Err(invalid("TLS cannot be used here; use host:port"));
    }
    if text.starts_with('[') && text.ends_with(']') {
        return Err(invalid("the port is missing, e.g. [::1]:8007"));
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(|| invalid("use host:port or [v6addr]:port"))?;
    port.parse::<u16>().map_err(|_| invalid("the port must be a number from 0 to 65535"))?;
    match host.strip_prefix('[').map(|inner| inner.strip_suffix(']')) {
        Some(Some(v6)) if v6.parse::<std::net::Ipv6Addr>().is_ok() => Ok(text.to_string()),
        Some(_) => Err(invalid("the part in brackets must be an IPv6 address")),
        None if host.is_empty() => Err(invalid("the host is missing")),
        None if host.contains(':') => Err(invalid("put an IPv6 address in brackets, e.g. [::1]:8007")),
        None => Ok(text.to_string()),
    }
}

impl FromStr for Address {
    type Err = io::Error;

    fn from_str(text: &str) -> io::Result<Address> {
        match text.strip_prefix("unix:") {
            Some("") => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid address '{text}': the socket path is missing, e.g. unix:/run/echo.sock"),
            )),
            Some(path) => Ok(Address::Unix(PathBuf::from(path))),
            None => match text.strip_prefix("tls:") {
                Some(rest) => host_port(rest).map(Address::Tls),
                None => Address::inet(text),
            },
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Inet(host_port) => f.write_str(host_port),
            Address::Tls(host_port) => write!(f, "tls:{host_port}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The host of `host:port` or `[v6addr]:port`, as [`Address::host`] gives it.
pub(crate) fn host_of(host_port: &str) -> &str {
    let host = host_port.rsplit_once(':').map_or(host_port, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The error of using a `tls:` address in a build without the `tls` feature.
#[cfg(not(feature = "tls"))]
pub(crate) fn no_tls(addr: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{addr}: TLS is not built in (smol-echo's tls feature)"),
    )
}

/// Half-closes a stream socket, TCP or Unix: the peer reads the end of input after what was
/// sent, and may still send.
pub(crate) fn shut_write(socket: &impl AsFd) -> io::Result<()> {
    Ok(rustix::net::shutdown(socket, rustix::net::Shutdown::Write)?)
}

/// `fut`, or a `TimedOut` error once `timeout` has passed.
pub(crate) async fn within<T>(timeout: Duration, fut: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    within_saying(timeout, fut, "timed out after").await
}

/// [`within`], its error saying `what` and the timeout: `not complete within 5s`.
pub(crate) async fn within_saying<T>(
    timeout: Duration,
    fut: impl Future<Output = io::Result<T>>,
    what: &str,
) -> io::Result<T> {
    fut.or(async {
        Timer::after(timeout).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, format!("{what} {timeout:?}")))
    })
    .await
}

/// Tries `connect` on each of `addrs` in turn: the first connection made, and its address, or
/// the last failure.
pub(crate) async fn first_to_connect<T, F>(
    addrs: &[SocketAddr],
    mut connect: impl FnMut(SocketAddr) -> F,
) -> io::Result<(T, SocketAddr)>
where
    F: Future<Output = io::Result<T>>,
{
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for &addr in addrs {
        match connect(addr).await {
            Ok(connected) => return Ok((connected, addr)),
            Err(err) => last_error = err,
        }
    }
    Err(last_error)
}
