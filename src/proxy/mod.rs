//! The PROXY protocol, HAProxy's versions 1 (text) and 2 (binary): the header a load balancer
//! sends first on each connection it relays, to say whose connection it is.
//!
//! The server reads it ([`ServerConfig::proxy`](crate::ServerConfig::proxy)); the bench and the
//! client send it, so that a server or a chain of balancers can be tested without one. The
//! header's fields are parsed by the `ppp` crate; this module finds where the header ends, so
//! that not one byte after it is taken from the session.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

mod cidr;

pub use cidr::Cidr;

/// The first bytes of every v2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The first bytes of every v1 header.
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The fixed part of a v2 header: signature, version and command, family, length.
const V2_FIXED: usize = 16;

/// The longest v1 header, CR LF included, as the specification bounds it.
///
/// ```
/// assert_eq!(smol_echo::proxy::MAX_V1_LEN, 107);
/// ```
pub const MAX_V1_LEN: usize = 107;

/// The longest v2 header accepted: its 16 fixed bytes and 2 KiB of addresses and TLVs, room for
/// every TLV that balancers are known to send. The format allows 64 KiB, which a connection would
/// have to buffer before its session starts.
///
/// ```
/// assert_eq!(smol_echo::proxy::MAX_V2_LEN, 16 + 2048);
/// ```
pub const MAX_V2_LEN: usize = V2_FIXED + 2048;

/// Which version of the header to send.
///
/// # Examples
///
/// ```
/// use smol_echo::proxy::Version;
///
/// assert_eq!("v2".parse::<Version>().unwrap(), Version::V2);
/// assert_eq!(Version::V1.to_string(), "v1");
/// assert!("v3".parse::<Version>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text header: `PROXY TCP4 203.0.113.7 192.0.2.1 41000 8007\r\n`.
    V1,
    /// The binary header, with the v2 signature.
    V2,
}

impl FromStr for Version {
    type Err = io::Error;

    fn from_str(text: &str) -> io::Result<Version> {
        match text {
            "v1" => Ok(Version::V1),
            "v2" => Ok(Version::V2),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid PROXY protocol version '{text}': use v1 or v2"),
            )),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

/// What a header says about its connection.
///
/// # Examples
///
/// ```
/// use smol_echo::proxy::{Header, parse};
///
/// let (header, len) = parse(b"PROXY UNKNOWN\r\nhello\r\n").unwrap().unwrap();
/// assert_eq!((header, len), (Header::Local, 15));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The connection is relayed: `source` is the client, `destination` the address it
    /// connected to on the balancer.
    Proxied {
        /// The client's address.
        source: SocketAddr,
        /// The address the client connected to.
        destination: SocketAddr,
    },
    /// The connection's own addresses stand: a v2 `LOCAL` header (the balancer's health
    /// check), a v1 `UNKNOWN`, or a v2 header of an unspecified or Unix family.
    Local,
}

/// How the server reads headers (see [`ServerConfig::proxy`](crate::ServerConfig::proxy)).
///
/// Fields may be added in a minor release: build one from `..Default::default()`.
///
/// # Examples
///
/// ```
/// use smol_echo::proxy::ProxyConfig;
///
/// let config = ProxyConfig { from: vec!["10.0.0.0/8".parse()?], ..ProxyConfig::default() };
/// assert!(config.accepts("10.1.2.3".parse().unwrap()));
/// assert!(!config.accepts("192.0.2.1".parse().unwrap()));
/// assert!(ProxyConfig::default().accepts("192.0.2.1".parse().unwrap()));
/// # std::io::Result::Ok(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The balancers' addresses: a TCP connection from any other address is refused. Empty
    /// accepts headers from every address. Unix socket peers are always accepted: the socket
    /// file's permissions say who may connect.
    pub from: Vec<Cidr>,
    /// How long the whole header may take to arrive. The server takes the idle timeout instead
    /// when that is shorter.
    pub timeout: Duration,
}

impl ProxyConfig {
    /// Whether a connection from `ip` may send a header.
    pub fn accepts(&self, ip: std::net::IpAddr) -> bool {
        self.from.is_empty() || self.from.iter().any(|cidr| cidr.contains(ip))
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig { from: Vec::new(), timeout: Duration::from_secs(5) }
    }
}

/// Parses the header at the start of `bytes`: `Ok(Some((header, len)))` when it is complete
/// and is the first `len` bytes; `Ok(None)` when every byte given belongs to a header not yet
/// complete; an `InvalidData` error when `bytes` cannot start a valid header (none at all, a
/// malformed one, or one longer than [`MAX_V1_LEN`] or [`MAX_V2_LEN`]). The version is told
/// from the first byte.
///
/// # Examples
///
/// ```
/// use smol_echo::proxy::{Header, parse};
///
/// let input = b"PROXY TCP4 203.0.113.7 192.0.2.1 41000 8007\r\nhello\r\n";
/// let (header, len) = parse(input).unwrap().unwrap();
/// let source = "203.0.113.7:41000".parse().unwrap();
/// assert_eq!(header, Header::Proxied { source, destination: "192.0.2.1:8007".parse().unwrap() });
/// assert_eq!(&input[len..], b"hello\r\n");
/// assert_eq!(parse(b"PROXY TCP4 203.0").unwrap(), None);
/// assert!(parse(b"hello\r\n").is_err());
/// ```
pub fn parse(bytes: &[u8]) -> io::Result<Option<(Header, usize)>> {
    match header_len(bytes)? {
        Some(len) if len <= bytes.len() => Ok(Some((decode(&bytes[..len])?, len))),
        _ => Ok(None),
    }
}

/// The length of the header that `bytes` start, once it can be told: from the CR of a v1
/// header, or from the length field of a v2 one.
fn header_len(bytes: &[u8]) -> io::Result<Option<usize>> {
    let Some(&first) = bytes.first() else { return Ok(None) };
    let starts =
        |prefix: &[u8]| bytes[..bytes.len().min(prefix.len())] == prefix[..bytes.len().min(prefix.len())];
    if first == V2_SIGNATURE[0] {
        if !starts(V2_SIGNATURE) {
            return Err(missing(bytes));
        }
        let Some(length) = bytes.get(14..V2_FIXED) else { return Ok(None) };
        let len = V2_FIXED + usize::from(u16::from_be_bytes([length[0], length[1]]));
        if len > MAX_V2_LEN {
            return Err(invalid(format!("a v2 header of {len} bytes, more than {MAX_V2_LEN}")));
        }
        return Ok(Some(len));
    }
    if !starts(V1_PREFIX) {
        return Err(missing(bytes));
    }
    let window = &bytes[..bytes.len().min(MAX_V1_LEN)];
    match memchr::memchr(b'\r', window) {
        Some(cr) if cr + 2 <= MAX_V1_LEN => Ok(Some(cr + 2)),
        None if window.len() < MAX_V1_LEN => Ok(None),
        _ => Err(invalid(format!("a v1 header longer than {MAX_V1_LEN} bytes"))),
    }
}

/// The fields of a complete header, `bytes` being exactly its bytes.
fn decode(bytes: &[u8]) -> io::Result<Header> {
    use ppp::v2::{Addresses, Command};
    let proxied = |source, destination| Header::Proxied { source, destination };
    if bytes[0] == V2_SIGNATURE[0] {
        let header = ppp::v2::Header::try_from(bytes).map_err(|err| malformed("v2", err))?;
        return Ok(match (header.command, header.addresses) {
            (Command::Proxy, Addresses::IPv4(a)) => proxied(
                (a.source_address, a.source_port).into(),
                (a.destination_address, a.destination_port).into(),
            ),
            (Command::Proxy, Addresses::IPv6(a)) => proxied(
                (a.source_address, a.source_port).into(),
                (a.destination_address, a.destination_port).into(),
            ),
            _ => Header::Local,
        });
    }
    let header = ppp::v1::Header::try_from(bytes).map_err(|err| malformed("v1", err))?;
    Ok(match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => proxied(
            (a.source_address, a.source_port).into(),
            (a.destination_address, a.destination_port).into(),
        ),
        ppp::v1::Addresses::Tcp6(a) => proxied(
            (a.source_address, a.source_port).into(),
            (a.destination_address, a.destination_port).into(),
        ),
        ppp::v1::Addresses::Unknown => Header::Local,
    })
}

/// The header a client sends first: `addresses` are its connection's (source, destination),
/// the local and the peer address; `None` (a Unix socket) sends v1 `UNKNOWN` or v2 `LOCAL`.
/// An IPv4 address mapped into IPv6 is sent as IPv4, so that a pair of mixed families is
/// rarer; a pair that stays mixed goes as v1 `UNKNOWN` or a v2 header of no family.
///
/// # Examples
///
/// ```
/// use smol_echo::proxy::{Header, Version, encode, parse};
///
/// let (source, destination) = ("127.0.0.2:41000".parse().unwrap(), "127.0.0.1:8007".parse().unwrap());
/// let v1 = encode(Version::V1, Some((source, destination)));
/// assert_eq!(v1, b"PROXY TCP4 127.0.0.2 127.0.0.1 41000 8007\r\n");
/// let v2 = encode(Version::V2, Some((source, destination)));
/// assert_eq!(parse(&v2).unwrap(), Some((Header::Proxied { source, destination }, 28)));
/// ```
pub fn encode(version: Version, addresses: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let canonical = |addr: SocketAddr| SocketAddr::new(addr.ip().to_canonical(), addr.port());
    let addresses = addresses.map(|(source, destination)| (canonical(source), canonical(destination)));
    match (version, addresses) {
        (Version::V1, Some(pair)) => ppp::v1::Addresses::from(pair).to_string().into_bytes(),
        (Version::V1, None) => ppp::v1::Addresses::Unknown.to_string().into_bytes(),
        (Version::V2, addresses) => {
            use ppp::v2::{AddressFamily, Builder, Command, Protocol, Version::Two};
            let builder = match addresses {
                Some(pair) => Builder::with_addresses(Two | Command::Proxy, Protocol::Stream, pair),
                None => {
                    Builder::new(Two | Command::Local, Protocol::Unspecified | AddressFamily::Unspecified)
                }
            };
            // Without TLVs the length (at most 36 bytes of addresses) always fits.
            builder.build().expect("a header without TLVs fits its length field")
        }
    }
}

/// Sends the header of `stream`'s own connection, its local and peer address ([`encode`]
/// with them), before anything else is sent on it: how `echo connect --proxy-protocol` tests
/// a server that reads headers, without a balancer.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futures_lite::AsyncReadExt;
/// use smol_echo::proxy::{Header, Version, parse, send_header};
///
/// smol::block_on(async {
///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
///     let mut stream = smol_echo::connect(&listener.local_addr()?.to_string(), Duration::from_secs(5)).await?;
///     send_header(&mut stream, Version::V2).await?;
///     let (mut server, client) = listener.accept().await?;
///     let mut got = [0; 28];
///     server.read_exact(&mut got).await?;
///     let header = Header::Proxied { source: client, destination: listener.local_addr()? };
///     assert_eq!(parse(&got)?, Some((header, 28)));
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
pub async fn send_header(stream: &mut crate::client::Stream, version: Version) -> io::Result<()> {
    use crate::client::Stream;
    use futures_lite::AsyncWriteExt;
    let addresses = match stream {
        Stream::Tcp(tcp) => Some((tcp.local_addr()?, tcp.peer_addr()?)),
        Stream::Unix(_) => None,
        #[cfg(feature = "tls")]
        Stream::Tls(_) => {
            let why = "the PROXY header goes before the TLS handshake, on the TCP connection";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        }
    };
    stream.write_all(&encode(version, addresses)).await
}

/// Bytes that start no header: what they are, escaped, so that the log line stays one line.
fn missing(bytes: &[u8]) -> io::Error {
    let start = bytes[..bytes.len().min(16)].escape_ascii();
    invalid(format!("missing: the connection starts with '{start}'"))
}

fn malformed(version: &str, err: impl fmt::Display) -> io::Error {
    let reason = err.to_string();
    invalid(format!("malformed {version} header: {}", reason.trim_end_matches('.')))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend([0x20 | command, family]);
        header.extend((payload.len() as u16).to_be_bytes());
        header.extend(payload);
        header
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete_and_the_whole_is_complete() {
        let source = "[2001:db8::7]:41000".parse().unwrap();
        let destination = "[2001:db8::1]:8007".parse().unwrap();
        for version in [Version::V1, Version::V2] {
            let header = encode(version, Some((source, destination)));
            for end in 0..header.len() {
                assert_eq!(parse(&header[..end]).unwrap(), None, "{version} {end}");
            }
            let mut input = header.clone();
            input.extend(b"PROXY next\r\n");
            let expected = Header::Proxied { source, destination };
            assert_eq!(parse(&input).unwrap(), Some((expected, header.len())), "{version}");
        }
    }

    #[test]
    fn local_unknown_and_unspecified_keep_the_connections_own_addresses() {
        assert_eq!(parse(&encode(Version::V2, None)).unwrap(), Some((Header::Local, 16)));
        // A v2 LOCAL with addresses (HAProxy's health checks send them) still means "mine".
        let ipv4 = [127, 0, 0, 1, 127, 0, 0, 2, 0, 80, 0, 81];
        assert_eq!(parse(&v2(0, 0x11, &ipv4)).unwrap(), Some((Header::Local, 28)));
        assert_eq!(parse(&v2(1, 0x00, &[])).unwrap(), Some((Header::Local, 16)));
        assert_eq!(parse(&v2(1, 0x31, &[0; 216])).unwrap(), Some((Header::Local, 232)));
        assert_eq!(parse(b"PROXY UNKNOWN whatever it says\r\n").unwrap(), Some((Header::Local, 32)));
    }

    #[test]
    fn mapped_and_mixed_addresses_are_sent_as_plainly_as_they_can_be() {
        let mapped = "[::ffff:127.0.0.2]:41000".parse().unwrap();
        let plain = "127.0.0.1:8007".parse().unwrap();
        assert_eq!(
            encode(Version::V1, Some((mapped, plain))),
            b"PROXY TCP4 127.0.0.2 127.0.0.1 41000 8007\r\n"
        );
        let v6 = "[2001:db8::1]:8007".parse().unwrap();
        assert_eq!(encode(Version::V1, Some((plain, v6))), b"PROXY UNKNOWN\r\n");
        assert_eq!(parse(&encode(Version::V2, Some((plain, v6)))).unwrap(), Some((Header::Local, 16)));
    }

    #[test]
    fn what_is_no_header_is_refused_from_its_first_bytes() {
        for input in [&b"GET / HTTP/1.1\r\n"[..], b"P", b"PROXY", b"\r\n\r\n\0\r\nQUIT\n"] {
            // The last three are the starts of headers: only complete ones are refused.
            let parsed = parse(input);
            assert_eq!(parsed.is_err(), input.starts_with(b"G"), "{:?}", input.escape_ascii().to_string());
        }
        let err = parse(b"hello\r\n").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), "missing: the connection starts with 'hello\\r\\n'");
        assert!(parse(b"PROXX").is_err());
        assert!(parse(b"\r\n\r\n\0\r\nQUIT!").is_err());
    }

    #[test]
    fn oversized_headers_are_refused_before_they_are_read() {
        let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 100]].concat();
        assert_eq!(parse(&long).unwrap_err().to_string(), "a v1 header longer than 107 bytes");
        // CR LF at bytes 107 and 108: one byte too many.
        let just_over = [&b"PROXY UNKNOWN "[..], &[b'x'; 92], b"\r\n"].concat();
        assert!(parse(&just_over).is_err());
        let just_in = [&b"PROXY UNKNOWN "[..], &[b'x'; 91], b"\r\n"].concat();
        assert_eq!(parse(&just_in).unwrap(), Some((Header::Local, 107)));
        let mut big = V2_SIGNATURE.to_vec();
        big.extend([0x21, 0x11, 0x08, 0x01]);
        assert_eq!(parse(&big).unwrap_err().to_string(), "a v2 header of 2065 bytes, more than 2064");
    }

    #[test]
    fn malformed_headers_say_what_is_wrong() {
        let err = parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 080 1\r\n").unwrap_err();
        assert!(err.to_string().starts_with("malformed v1 header: "), "{err}");
        assert!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r").is_err());
        assert!(parse(b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n").is_err());
        let err = parse(&v2(2, 0x11, &[0; 12])).unwrap_err();
        assert!(err.to_string().starts_with("malformed v2 header: "), "{err}");
        assert!(parse(&v2(1, 0x11, &[0; 4])).is_err());
    }
}
