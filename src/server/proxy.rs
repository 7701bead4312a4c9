//! The PROXY header at the start of a connection: read to its last byte and not one byte more,
//! so that the session gets everything the client sent after it.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::time::Duration;

use async_io::Async;
use futures_lite::AsyncReadExt;
use rustix::net::RecvFlags;

use crate::net::within_saying;
use crate::proxy::{Header, MAX_V1_LEN, MAX_V2_LEN, parse};

/// Reads the header that starts the connection on `socket`, all of it within `timeout`.
///
/// Each round peeks at what has arrived, parses the header's bytes so far, and takes off the
/// socket only the bytes that belong to the header: the whole of what was peeked while the
/// header goes on (so that the next wait is for new bytes, not a readiness already seen), and
/// up to its last byte once it is complete. A header that arrives at once costs a peek and a
/// read.
pub(crate) async fn read_header<S>(socket: &Async<S>, timeout: Duration) -> io::Result<Header>
where
    S: AsFd,
    for<'a> &'a S: Read,
{
    let read = async {
        let mut buf = Vec::new();
        loop {
            let have = buf.len();
            // Room for the longest header this can still be, told by its first byte.
            let room = if buf.first() == Some(&b'\r') { MAX_V2_LEN } else { MAX_V1_LEN };
            buf.resize(room, 0);
            let peeked = socket
                .read_with(|socket| Ok(rustix::net::recv(socket, &mut buf[have..], RecvFlags::PEEK)?.0))
                .await?;
            if peeked == 0 {
                let message = match have {
                    0 => "missing: the connection closed".to_string(),
                    _ => format!("the connection closed after {have} bytes of it"),
                };
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, message));
            }
            let (header, end) = match parse(&buf[..have + peeked])? {
                Some((header, len)) => (Some(header), len),
                None => (None, have + peeked),
            };
            // The same bytes again, now taken: they are there, so this does not wait.
            (&mut &*socket).read_exact(&mut buf[have..end]).await?;
            buf.truncate(end);
            if let Some(header) = header {
                return Ok(header);
            }
        }
    };
    within_saying(timeout, read, "not complete within").await
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    use futures_lite::future;

    use super::*;
    use crate::proxy::{Version, encode};

    /// A connected pair: the client's end, and the server's end registered with the reactor.
    fn pair() -> (TcpStream, Async<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, Async::new(server).unwrap())
    }

    #[test]
    fn a_header_sent_with_the_first_line_leaves_the_line_to_the_session() {
        let source = "203.0.113.7:41000".parse().unwrap();
        let destination = "192.0.2.1:8007".parse().unwrap();
        for version in [Version::V1, Version::V2] {
            let (mut client, server) = pair();
            client
                .write_all(&[encode(version, Some((source, destination))), b"hello\r\n".to_vec()].concat())
                .unwrap();
            let header = future::block_on(read_header(&server, Duration::from_secs(5))).unwrap();
            assert_eq!(header, Header::Proxied { source, destination });
            let mut rest = [0; 7];
            future::block_on((&mut &server).read_exact(&mut rest)).unwrap();
            assert_eq!(&rest, b"hello\r\n");
        }
    }

    #[test]
    fn a_header_byte_by_byte_is_read_whole() {
        let (mut client, server) = pair();
        let header = encode(Version::V1, None);
        let writer = std::thread::spawn(move || {
            for byte in header.iter().chain(b"x") {
                client.write_all(&[*byte]).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
            client
        });
        assert_eq!(future::block_on(read_header(&server, Duration::from_secs(5))).unwrap(), Header::Local);
        let _client = writer.join().unwrap();
        let mut rest = [0; 1];
        future::block_on((&mut &server).read_exact(&mut rest)).unwrap();
        assert_eq!(&rest, b"x");
    }

    #[test]
    fn a_header_that_stops_short_times_out_or_ends() {
        let (mut client, server) = pair();
        client.write_all(b"PROXY TCP4 ").unwrap();
        let err = future::block_on(read_header(&server, Duration::from_millis(50))).unwrap_err();
        assert_eq!(err.to_string(), "not complete within 50ms");
        let (mut client, server) = pair();
        client.write_all(b"PROXY TCP4 ").unwrap();
        drop(client);
        let err = future::block_on(read_header(&server, Duration::from_secs(5))).unwrap_err();
        assert_eq!(err.to_string(), "the connection closed after 11 bytes of it");
    }
}
