//! The UDP client: one datagram at a time, each waiting for its echo, with ping-like counts.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use async_net::UdpSocket;
use futures_lite::future::{self, FutureExt};

use crate::error::context;
use crate::net::{MAX_DATAGRAM, RECEIVE_BUFFER, within};

/// What became of one datagram sent by [`UdpClient::ping`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use smol_echo::client::UdpReply;
///
/// let reply = UdpReply::Echoed(Duration::from_micros(80));
/// assert!(matches!(reply, UdpReply::Echoed(rtt) if rtt < Duration::from_millis(1)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UdpReply {
    /// Its echo came back, after this round trip.
    Echoed(Duration),
    /// No reply with the same bytes came within the timeout.
    TimedOut,
    /// The server's host answered that nothing listens on the port (ICMP port unreachable).
    Refused,
}

/// The counts of a [`UdpClient`]. `Display` writes them as one line, like ping's summary:
/// `3 datagrams sent, 2 received, 1 lost (33.3% loss), round trip min/avg/max =
/// 0.061/0.074/0.087 ms`, with `, N unexpected replies ignored` added when there were some.
///
/// Fields may be added in a minor release; read them, and build one (in tests) from
/// `..Default::default()`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use smol_echo::client::UdpStats;
///
/// let stats = UdpStats {
///     sent: 4,
///     received: 3,
///     rtt_min: Some(Duration::from_micros(50)),
///     rtt_max: Some(Duration::from_micros(90)),
///     rtt_total: Duration::from_micros(210),
///     ..UdpStats::default()
/// };
/// assert_eq!(stats.lost(), 1);
/// assert_eq!(stats.rtt_avg(), Some(Duration::from_micros(70)));
/// assert_eq!(
///     stats.to_string(),
///     "4 datagrams sent, 3 received, 1 lost (25% loss), round trip min/avg/max = 0.050/0.070/0.090 ms"
/// );
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams whose echo came back in time.
    pub received: u64,
    /// Replies that were not the echo awaited (a late echo of an earlier datagram, or other
    /// bytes): counted and ignored.
    pub unexpected: u64,
    /// The shortest round trip, once an echo came back.
    pub rtt_min: Option<Duration>,
    /// The longest round trip, once an echo came back.
    pub rtt_max: Option<Duration>,
    /// The sum of the round trips of the echoes received.
    pub rtt_total: Duration,
}

impl UdpStats {
    /// Datagrams without their echo: timed out, refused, or still awaited when counting
    /// stopped.
    pub fn lost(&self) -> u64 {
        self.sent - self.received
    }

    /// The mean round trip, once an echo came back.
    pub fn rtt_avg(&self) -> Option<Duration> {
        u32::try_from(self.received).ok().filter(|&n| n > 0).map(|n| self.rtt_total / n)
    }

    fn record(&mut self, rtt: Duration) {
        self.received += 1;
        self.rtt_total += rtt;
        self.rtt_min = Some(self.rtt_min.map_or(rtt, |min| min.min(rtt)));
        self.rtt_max = Some(self.rtt_max.map_or(rtt, |max| max.max(rtt)));
    }
}

impl fmt::Display for UdpStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.sent == 1 { "" } else { "s" };
        let loss = if self.sent == 0 { 0.0 } else { self.lost() as f64 * 100.0 / self.sent as f64 };
        // 33.3% but 25% and 100%, as people write them.
        let loss = format!("{loss:.1}");
        let loss = loss.strip_suffix(".0").unwrap_or(&loss);
        write!(
            f,
            "{} datagram{plural} sent, {} received, {} lost ({loss}% loss)",
            self.sent,
            self.received,
            self.lost()
        )?;
        if let (Some(min), Some(avg), Some(max)) = (self.rtt_min, self.rtt_avg(), self.rtt_max) {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            write!(f, ", round trip min/avg/max = {:.3}/{:.3}/{:.3} ms", ms(min), ms(avg), ms(max))?;
        }
        match self.unexpected {
            0 => Ok(()),
            1 => write!(f, ", 1 unexpected reply ignored"),
            n => write!(f, ", {n} unexpected replies ignored"),
        }
    }
}

/// A UDP echo client: a socket connected to one server, so that only its replies are read,
/// sending one datagram at a time and waiting for its echo (stop-and-wait), with the counts
/// in [`UdpStats`].
///
/// A reply is the echo when its bytes are those sent; any other reply that arrives (a late
/// echo of a datagram already counted lost) is counted as unexpected and ignored. Two equal
/// datagrams cannot be told apart: a late echo of the first would pass for the echo of the
/// second. Replies already waiting when a datagram is sent are discarded first, for that
/// reason.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use smol_echo::client::{UdpClient, UdpReply};
///
/// smol::block_on(async {
///     let server = async_net::UdpSocket::bind("127.0.0.1:0").await?;
///     let addr = server.local_addr()?.to_string();
///     let serving = smol::spawn(async move {
///         let mut buf = [0; 1500];
///         let (n, peer) = server.recv_from(&mut buf).await?;
///         server.send_to(&buf[..n], peer).await?;
///         std::io::Result::Ok(server)
///     });
///
///     let mut client = UdpClient::connect(&addr, Duration::from_secs(5)).await?;
///     let reply = client.ping(b"hello", Duration::from_secs(5)).await?;
///     assert!(matches!(reply, UdpReply::Echoed(_)));
///     // The server has stopped answering...
///     let server = serving.await?;
///     let reply = client.ping(b"again", Duration::from_millis(50)).await?;
///     assert_eq!(reply, UdpReply::TimedOut);
///     // ...and now nothing listens on its port.
///     drop(server);
///     let reply = client.ping(b"anyone?", Duration::from_secs(5)).await?;
///     assert_eq!(reply, UdpReply::Refused);
///     assert_eq!((client.stats().sent, client.stats().received, client.stats().lost()), (3, 1, 2));
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
#[derive(Debug)]
pub struct UdpClient {
    socket: UdpSocket,
    stats: UdpStats,
    /// [`RECEIVE_BUFFER`] bytes, so that no reply is cut short and mistaken for an echo.
    buffer: Vec<u8>,
}

impl UdpClient {
    /// Binds a socket on a free port and connects it to `addr` (`host:port` or
    /// `[v6addr]:port`), the first address the host resolves to. Resolution gets `timeout`.
    ///
    /// UDP sends nothing to connect: a server that is not there shows only as datagrams
    /// without echo ([`UdpReply::Refused`] when its host says so).
    pub async fn connect(addr: &str, timeout: Duration) -> io::Result<UdpClient> {
        let server = within(timeout, first_address(addr)).await?;
        let socket = UdpSocket::from(connected_socket(server)?);
        Ok(UdpClient { socket, stats: UdpStats::default(), buffer: vec![0; RECEIVE_BUFFER] })
    }

    /// The server's address.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let client = futures_lite::future::block_on(smol_echo::client::UdpClient::connect("127.0.0.1:7", Duration::from_secs(1)))?;
    /// assert_eq!(client.peer_addr()?.to_string(), "127.0.0.1:7");
    /// # std::io::Result::Ok(())
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.peer_addr()
    }

    /// The counts so far.
    pub fn stats(&self) -> &UdpStats {
        &self.stats
    }

    /// Sends `payload` as one datagram and waits up to `timeout` for its echo.
    ///
    /// The error is `InvalidInput` for a payload over [`MAX_DATAGRAM`] bytes (nothing is sent),
    /// or a failure of the socket other than a refusal.
    pub async fn ping(&mut self, payload: &[u8], timeout: Duration) -> io::Result<UdpReply> {
        if payload.len() > MAX_DATAGRAM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a datagram carries at most {MAX_DATAGRAM} bytes, not {}", payload.len()),
            ));
        }
        self.discard_waiting().await;
        let started = Instant::now();
        let sent = match self.socket.send(payload).await {
            // The refusal of an earlier datagram, reported now: this one was not sent.
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => self.socket.send(payload).await,
            other => other,
        };
        sent.map_err(|err| context(err, "cannot send"))?;
        self.stats.sent += 1;
        let deadline = started + timeout;
        loop {
            let Self { socket, buffer, .. } = self;
            let received = async { Some(socket.recv(buffer).await) };
            let timed_out = async {
                Timer::at(deadline).await;
                None
            };
            match received.or(timed_out).await {
                None => return Ok(UdpReply::TimedOut),
                Some(Ok(n)) if self.buffer[..n] == *payload => {
                    let rtt = started.elapsed();
                    self.stats.record(rtt);
                    return Ok(UdpReply::Echoed(rtt));
                }
                Some(Ok(_)) => self.stats.unexpected += 1,
                Some(Err(err)) if err.kind() == io::ErrorKind::ConnectionRefused => {
                    return Ok(UdpReply::Refused);
                }
                Some(Err(err)) => return Err(context(err, "cannot receive")),
            }
        }
    }

    /// Reads the replies already waiting, which belong to earlier datagrams, without waiting.
    async fn discard_waiting(&mut self) {
        // A read is tried before any wait, so one poll tells whether a reply is there.
        while let Some(received) = future::poll_once(self.socket.recv(&mut self.buffer)).await {
            match received {
                Ok(_) => self.stats.unexpected += 1,
                // An earlier datagram's error, consumed by this read.
                Err(_) => break,
            }
        }
    }
}

/// The first address `addr` (`host:port` or `[v6addr]:port`) resolves to: UDP sends nothing to
/// connect, so there is no telling which of several would answer.
pub(crate) async fn first_address(addr: &str) -> io::Result<SocketAddr> {
    let addrs = async_net::resolve(addr).await?;
    addrs.first().copied().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the name has no address"))
}

/// A UDP socket on an ephemeral port, connected to `server`: it sends there only, and the kernel
/// drops datagrams from anywhere else.
pub(crate) fn connected_socket(server: SocketAddr) -> io::Result<Async<std::net::UdpSocket>> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(local)?;
    socket.connect(server)?;
    Async::new(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    /// Runs `test`, failing if it hangs.
    fn within(test: impl Future<Output = ()>) {
        future::block_on(test.or(async {
            Timer::after(Duration::from_secs(10)).await;
            panic!("timed out");
        }));
    }

    fn stats(sent: u64, received: u64, unexpected: u64) -> UdpStats {
        let mut stats = UdpStats { sent, unexpected, ..UdpStats::default() };
        for micros in (0..received).map(|i| 100 + 100 * i) {
            stats.record(Duration::from_micros(micros));
        }
        stats
    }

    #[test]
    fn the_summary_reads_like_pings() {
        assert_eq!(stats(0, 0, 0).to_string(), "0 datagrams sent, 0 received, 0 lost (0% loss)");
        assert_eq!(
            stats(1, 1, 0).to_string(),
            "1 datagram sent, 1 received, 0 lost (0% loss), round trip min/avg/max = 0.100/0.100/0.100 ms"
        );
        assert_eq!(
            stats(3, 2, 1).to_string(),
            "3 datagrams sent, 2 received, 1 lost (33.3% loss), round trip min/avg/max = 0.100/0.150/0.200 ms, \
             1 unexpected reply ignored"
        );
        assert_eq!(
            stats(2, 0, 2).to_string(),
            "2 datagrams sent, 0 received, 2 lost (100% loss), 2 unexpected replies ignored"
        );
    }

    #[test]
    fn waiting_replies_are_discarded_before_a_send() {
        within(async {
            let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut client =
                UdpClient::connect(&server.local_addr().unwrap().to_string(), Duration::from_secs(5))
                    .await
                    .unwrap();
            // A stale copy of what is about to be sent, already there: it must not pass for
            // the echo.
            server.send_to(b"next", client.socket.local_addr().unwrap()).await.unwrap();
            client.socket.peek(&mut [0; 16]).await.unwrap();
            let reply = client.ping(b"next", Duration::from_millis(100)).await.unwrap();
            assert_eq!(reply, UdpReply::TimedOut, "a reply that came before the send is not its echo");
            assert_eq!(client.stats().unexpected, 1);
        });
    }

    #[test]
    fn an_oversized_payload_is_refused_before_sending() {
        within(async {
            let mut client = UdpClient::connect("127.0.0.1:9", Duration::from_secs(5)).await.unwrap();
            let err = client.ping(&vec![0; MAX_DATAGRAM + 1], Duration::from_secs(1)).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(client.stats().sent, 0);
        });
    }
}
