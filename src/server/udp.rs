//! The UDP echo of RFC 862: each datagram back to its sender, unchanged.

use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use async_io::Async;
use futures_lite::future::{self, FutureExt};

use super::failures::Failures;
use super::sink::Sink;
use crate::net::{RECEIVE_BUFFER, YIELD_EVERY};

/// Source ports of the small services (0 and the echo, discard, daytime, chargen and time
/// ports). A datagram from one is never answered: two echo-like services set to answer each
/// other would bounce one spoofed datagram between them for ever. The server's own UDP ports
/// are refused too, for the same reason: a datagram forged to come from the socket itself (or
/// from a sibling server on the same port) would otherwise be echoed to it again and again.
pub(crate) const REFUSED_SOURCE_PORTS: [u16; 6] = [0, 7, 9, 13, 19, 37];

/// The most datagrams answered after the stop: those queued then, but not a flood that goes on.
const DRAIN_AT_MOST: usize = 4096;

/// What one UDP socket did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DatagramCounts {
    pub(crate) echoed: u64,
    pub(crate) bytes: u64,
    /// Not answered: from a small service's port or one of the server's own.
    pub(crate) refused: u64,
}

/// Echoes datagrams on `socket` until `stop` completes, then answers those already queued and
/// returns the counts; each datagram is also reported to `sink` as it goes. Datagrams from
/// [`REFUSED_SOURCE_PORTS`] and from `own_ports` (those of every UDP socket the server serves)
/// are not answered. A failed receive is logged and retried after `backoff`; a failed send
/// loses that one datagram, as UDP may.
pub(crate) async fn echo_datagrams(
    socket: Arc<Async<UdpSocket>>,
    own_ports: Arc<[u16]>,
    stop: impl Future<Output = ()>,
    backoff: Duration,
    sink: Sink,
) -> DatagramCounts {
    let mut counts = DatagramCounts::default();
    let mut buf = vec![0; RECEIVE_BUFFER];
    let answer = |datagram: &[u8], peer: SocketAddr, counts: &mut DatagramCounts| {
        answer(&socket, datagram, peer, &own_ports, counts, &sink)
    };
    let serving = async {
        let mut in_a_row = 0;
        let mut failures = Failures::new("udp receive", backoff);
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((len, peer)) => answer(&buf[..len], peer, &mut counts),
                Err(err) => {
                    failures.rest(&err).await;
                }
            }
            in_a_row += 1;
            if in_a_row == YIELD_EVERY {
                in_a_row = 0;
                future::yield_now().await;
            }
        }
    };
    serving.or(stop).await;
    // What arrived before the stop is answered, as a stream session echoes its complete lines.
    for _ in 0..DRAIN_AT_MOST {
        let Ok((len, peer)) = socket.get_ref().recv_from(&mut buf) else { break };
        answer(&buf[..len], peer, &mut counts);
    }
    counts
}

/// Sends `datagram` back to `peer` unless the reflection guard refuses it.
fn answer(
    socket: &Async<UdpSocket>,
    datagram: &[u8],
    peer: SocketAddr,
    own_ports: &[u16],
    counts: &mut DatagramCounts,
    sink: &Sink,
) {
    if REFUSED_SOURCE_PORTS.contains(&peer.port()) || own_ports.contains(&peer.port()) {
        counts.refused += 1;
        sink.datagram(None);
        log::debug!(
            "udp {peer}: not answered, its port is a small service's or this server's ({} so far)",
            counts.refused
        );
        return;
    }
    // A full send buffer drops the datagram, as a router would; waiting for room would let one
    // fast sender hold up every other.
    match socket.get_ref().send_to(datagram, peer) {
        Ok(_) => {
            counts.echoed += 1;
            counts.bytes += datagram.len() as u64;
            sink.datagram(Some(datagram.len()));
            log::debug!("udp {peer}: {} bytes echoed", datagram.len());
        }
        Err(err) => log::debug!("udp {peer}: echo of {} bytes lost: {err}", datagram.len()),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use async_io::Timer;

    use super::*;
    use crate::net::MAX_DATAGRAM;

    async fn round_trip(
        server: &Async<UdpSocket>,
        client: &Async<UdpSocket>,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        client.send_to(payload, server.get_ref().local_addr().unwrap()).await.unwrap();
        let mut buf = vec![0; RECEIVE_BUFFER];
        let reply = async { Some(client.recv(&mut buf).await.unwrap()) };
        let len = reply.or(async {
            Timer::after(Duration::from_millis(300)).await;
            None
        });
        len.await.map(|len| buf[..len].to_vec())
    }

    /// Serves `server` while `checks` run, stops it when they end, and returns its counts with
    /// what the checks returned. A hang fails the test.
    fn serve_during<T>(
        server: &Arc<Async<UdpSocket>>,
        checks: impl Future<Output = T>,
    ) -> (DatagramCounts, T) {
        let own_ports = Arc::new([server.get_ref().local_addr().unwrap().port()]);
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let stopped = async move {
            stopped.recv().await.ok();
        };
        let serving =
            echo_datagrams(server.clone(), own_ports, stopped, Duration::from_millis(10), Sink::default());
        let checks = async {
            let checked = checks.await;
            stop.close();
            checked
        };
        let hung = async {
            Timer::after(Duration::from_secs(10)).await;
            panic!("the server did not stop");
        };
        future::block_on(future::zip(serving, checks).or(hung))
    }

    fn bind(ip: impl Into<std::net::IpAddr>) -> std::io::Result<Async<UdpSocket>> {
        Async::<UdpSocket>::bind((ip.into(), 0))
    }

    #[test]
    fn datagrams_come_back_unchanged_and_small_service_ports_get_nothing() {
        let server = Arc::new(bind(Ipv4Addr::LOCALHOST).unwrap());
        let (counts, refused) = serve_during(&server, async {
            let client = bind(Ipv4Addr::LOCALHOST).unwrap();
            let payload: Vec<u8> = (0..=255).cycle().take(MAX_DATAGRAM).collect();
            for sent in [&b"hello"[..], b"", b"\r\n.\r\n\0\xff", &payload] {
                assert_eq!(round_trip(&server, &client, sent).await.as_deref(), Some(sent));
            }
            // Binding port 7 needs privileges, and a free port: where it cannot be had, the
            // process tests still check ports that can.
            let echo_port = Async::<UdpSocket>::bind(([127, 0, 0, 1], 7));
            if let Ok(echo_port) = &echo_port {
                assert_eq!(round_trip(&server, echo_port, b"ping").await, None);
            }
            u64::from(echo_port.is_ok())
        });
        assert_eq!(counts.refused, refused);
        assert_eq!(counts.echoed, 4);
        assert_eq!(counts.bytes, 5 + 7 + MAX_DATAGRAM as u64);
    }

    #[test]
    fn a_datagram_from_the_socket_itself_is_not_answered() {
        // Sent by the server's own socket, to itself: were it answered, the answer would be
        // another such datagram, for ever, and the drain after the stop would never end.
        let server = Arc::new(bind(Ipv4Addr::LOCALHOST).unwrap());
        let (counts, ()) = serve_during(&server, async {
            server.send_to(b"loop", server.get_ref().local_addr().unwrap()).await.unwrap();
            Timer::after(Duration::from_millis(100)).await;
        });
        assert_eq!(counts, DatagramCounts { echoed: 0, bytes: 0, refused: 1 });
    }

    #[test]
    fn the_largest_ipv6_datagram_comes_back_whole() {
        // 65,535 less the 8-byte UDP header: 20 bytes more than IPv4 can carry.
        const IPV6_MAX: usize = 65_527;
        let Ok(server) = bind(Ipv6Addr::LOCALHOST) else {
            eprintln!("no IPv6 loopback here: nothing to check");
            return;
        };
        let server = Arc::new(server);
        let payload: Vec<u8> = (0..=255).cycle().take(IPV6_MAX).collect();
        let (counts, echoed) = serve_during(&server, async {
            round_trip(&server, &bind(Ipv6Addr::LOCALHOST).unwrap(), &payload).await
        });
        assert!(echoed.as_deref() == Some(&payload[..]), "{:?} bytes came back", echoed.map(|e| e.len()));
        assert_eq!((counts.echoed, counts.bytes), (1, IPV6_MAX as u64));
    }
}
