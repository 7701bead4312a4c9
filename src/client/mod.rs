//! The client: send lines (or raw bytes), print their echoes.

use std::cell::Cell;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_net::TcpStream;
use async_net::unix::UnixStream;
use futures_lite::future::{self, FutureExt};
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

mod udp;

pub use crate::net::{Address, MAX_DATAGRAM};

use crate::error::context;
use crate::net::{first_to_connect, within};
#[cfg(feature = "tls")]
use crate::tls::{TlsConnector, TlsStream};
pub use udp::{UdpClient, UdpReply, UdpStats};
// The UDP bench opens its sockets as the UDP client does.
#[cfg(feature = "bench")]
pub(crate) use udp::{connected_socket, first_address};

/// Buffer size for each direction: big enough that a piped file moves in few system calls.
const CHUNK: usize = 64 * 1024;

/// How a conversation with the server ended.
///
/// # Examples
///
/// ```
/// use smol_echo::client::Ending;
///
/// // A reset is a failure; the output closed is the reader leaving; the rest are closes.
/// let failed = |ending| ending == Ending::Reset;
/// assert!(!failed(Ending::InputEnded));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// The input ended: the connection was half-closed (no `.` sent) and the server closed it
    /// after the last echo.
    InputEnded,
    /// The input had the line `.`, which ends the session; nothing after it was sent. Never the
    /// ending of [`converse_raw`], which has no sentinel.
    Sentinel,
    /// The server closed the connection while the input was still open (idle timeout,
    /// shutdown).
    ServerClosed,
    /// The server reset the connection. The echoes that arrived before were written out.
    Reset,
    /// Writing the output failed because its reader went away (a broken pipe, a write that took
    /// nothing, a reset): the conversation was abandoned, as a Unix filter stops then.
    OutputClosed,
}

/// What a conversation did: how it ended, and what the server still owed when it closed.
///
/// # Examples
///
/// ```
/// use smol_echo::client::{Conversation, Ending};
///
/// let talk = Conversation { ending: Ending::InputEnded, unechoed: 2 };
/// // Closed with echoes owed: the server dropped something (a line too long, say).
/// assert!(talk.unechoed > 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversation {
    /// How it ended.
    pub ending: Ending,
    /// What was sent and never came back: lines for [`converse`] (a line partly sent counts; the
    /// sentinel `.` is owed no echo), bytes for [`converse_raw`]. Always 0 after [`Ending::OutputClosed`], whose count
    /// would say nothing about the server.
    pub unechoed: u64,
}

/// A connected stream to an echo server: TCP or a Unix stream socket, as [`connect`] returns.
///
/// It reads and writes like the socket inside; closing it (`AsyncWriteExt::close`) is the
/// half-close, `shutdown(Write)`: the server sees the end of input and can still send its
/// echoes. Clones share the socket, as the clones of the async-net streams do.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futures_lite::{AsyncReadExt, AsyncWriteExt};
/// use smol_echo::client::Stream;
///
/// smol::block_on(async {
///     let path = std::env::temp_dir().join(format!("smol-echo-doc-stream-{}.sock", std::process::id()));
///     let listener = async_net::unix::UnixListener::bind(&path)?;
///     let addr = format!("unix:{}", path.display());
///     let mut stream = smol_echo::connect(&addr, Duration::from_secs(5)).await?;
///     assert!(matches!(stream, Stream::Unix(_)));
///     let (mut server, _) = listener.accept().await?;
///     std::fs::remove_file(&path)?;
///
///     stream.write_all(b"ping").await?;
///     stream.close().await?; // the half-close: the server reads to the end...
///     let mut got = Vec::new();
///     server.read_to_end(&mut got).await?;
///     server.write_all(&got).await?; // ...and can still answer
///     drop(server);
///     let mut echoed = Vec::new();
///     stream.read_to_end(&mut echoed).await?;
///     assert_eq!(echoed, b"ping");
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Stream {
    /// A TCP connection, with `TCP_NODELAY` set.
    Tcp(TcpStream),
    /// A TLS connection over TCP, its handshake done; closing it sends close_notify, then
    /// half-closes the TCP connection.
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream<TcpStream>>),
    /// A Unix stream socket connection.
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Stream::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Unix(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Stream::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Unix(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Stream::Tls(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Stream::Unix(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            #[cfg(feature = "tls")]
            Stream::Tls(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Unix(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    /// The half-close: `shutdown(Write)`.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_close(cx),
            #[cfg(feature = "tls")]
            Stream::Tls(stream) => Pin::new(stream).poll_close(cx),
            Stream::Unix(stream) => Pin::new(stream).poll_close(cx),
        }
    }
}

/// Connects to `addr`: `unix:/path` is a Unix stream socket; `host:port` or `[v6addr]:port` is
/// TCP, trying each address the host resolves to in turn until one accepts; `tls:host:port` is
/// TLS over such a connection, the server verified against the system's trust store (see
/// [`connect_tls`] for other ways to verify it). Name resolution, every attempt and the
/// handshake together get `timeout`.
///
/// The error is the resolver's, the last address's, the handshake's (its text starting with
/// `tls: `), or `TimedOut`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use smol_echo::client::Stream;
///
/// smol::block_on(async {
///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
///     let addr = listener.local_addr()?;
///     let stream = smol_echo::connect(&addr.to_string(), Duration::from_secs(5)).await?;
///     let Stream::Tcp(tcp) = stream else { panic!("a TCP address gives a TCP stream") };
///     assert_eq!(tcp.peer_addr()?, addr);
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
pub async fn connect(addr: &str, timeout: Duration) -> io::Result<Stream> {
    connect_with(addr, &ConnectOptions::new(timeout)).await
}

/// [`connect`], verifying a `tls:` address's server as `connector` says: a private CA, another
/// name than the address's, or no verification at all. Other addresses connect as
/// [`connect`] does.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use smol_echo::tls::{TlsClientConfig, TlsConnector};
///
/// smol::block_on(async {
///     // A server that closes every connection: the handshake fails, saying so.
///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
///     let addr = format!("tls:{}", listener.local_addr()?);
///     smol::spawn(async move { drop(listener.accept().await) }).detach();
///     let connector = TlsConnector::new(&TlsClientConfig { insecure: true, ..Default::default() })?;
///     let err = smol_echo::client::connect_tls(&addr, Duration::from_secs(5), &connector).await.unwrap_err();
///     assert!(err.to_string().starts_with("tls: "), "{err}");
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
#[cfg(feature = "tls")]
pub async fn connect_tls(addr: &str, timeout: Duration, connector: &TlsConnector) -> io::Result<Stream> {
    connect_with(addr, &ConnectOptions { tls: Some(connector.clone()), ..ConnectOptions::new(timeout) }).await
}

/// How [`connect_with`] connects: within what time, how a `tls:` server is verified, and what
/// goes on the connection before anything else.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use smol_echo::client::ConnectOptions;
///
/// let options = ConnectOptions::new(Duration::from_secs(5));
/// assert_eq!(options.timeout, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// For name resolution, every attempt, the PROXY header and the handshake together.
    pub timeout: Duration,
    /// How the server of a `tls:` address is verified; `None` verifies it against the
    /// system's trust store, by the address's host.
    #[cfg(feature = "tls")]
    pub tls: Option<TlsConnector>,
    /// A PROXY protocol header to send first, naming this connection's own addresses (none for
    /// a Unix socket): on a `tls:` address, before the handshake, as a balancer would.
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_lite::AsyncReadExt;
    /// use smol_echo::client::ConnectOptions;
    /// use smol_echo::proxy::{Header, Version, parse};
    ///
    /// smol::block_on(async {
    ///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
    ///     let addr = listener.local_addr()?;
    ///     let options = ConnectOptions { proxy: Some(Version::V1), ..ConnectOptions::new(Duration::from_secs(5)) };
    ///     let _stream = smol_echo::client::connect_with(&addr.to_string(), &options).await?;
    ///     let (mut server, client) = listener.accept().await?;
    ///     let mut got = vec![0; 256];
    ///     let n = server.read(&mut got).await?;
    ///     let header = Header::Proxied { source: client, destination: addr };
    ///     assert_eq!(parse(&got[..n])?, Some((header, n)));
    ///     std::io::Result::Ok(())
    /// })
    /// .unwrap();
    /// ```
    #[cfg(feature = "proxy")]
    pub proxy: Option<crate::proxy::Version>,
}

impl ConnectOptions {
    /// Connects within `timeout`, verifying as [`connect`] does, with nothing sent first.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = smol_echo::client::ConnectOptions::new(std::time::Duration::from_millis(300));
    /// assert_eq!(options.timeout.as_millis(), 300);
    /// ```
    pub fn new(timeout: Duration) -> ConnectOptions {
        ConnectOptions {
            timeout,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "proxy")]
            proxy: None,
        }
    }
}

/// [`connect`], as `options` say: [`connect_tls`]'s verification, and a PROXY protocol header
/// sent on the connection before anything else, for a server that expects one from its
/// balancer (see [`ConnectOptions`]). The header's failure reads `cannot send the PROXY header:
/// ...`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use smol_echo::client::{ConnectOptions, Stream};
///
/// smol::block_on(async {
///     let dir = std::env::temp_dir().join(format!("connect-with-{}", std::process::id()));
///     std::fs::create_dir_all(&dir)?;
///     let path = dir.join("echo.sock");
///     let _listener = async_net::unix::UnixListener::bind(&path)?;
///     let options = ConnectOptions::new(Duration::from_secs(5));
///     let stream = smol_echo::client::connect_with(&format!("unix:{}", path.display()), &options).await?;
///     assert!(matches!(stream, Stream::Unix(_)));
///     std::fs::remove_dir_all(&dir)
/// })
/// .unwrap();
/// ```
pub async fn connect_with(addr: &str, options: &ConnectOptions) -> io::Result<Stream> {
    let address: Address = addr.parse()?;
    // A connector to make is made before connecting, so that its failure costs no connection.
    #[cfg(feature = "tls")]
    let tls = match (&address, &options.tls) {
        (Address::Tls(host_port), Some(connector)) => {
            Some((connector.clone(), crate::net::host_of(host_port)))
        }
        (Address::Tls(host_port), None) => {
            Some((TlsConnector::new(&Default::default())?, crate::net::host_of(host_port)))
        }
        _ => None,
    };
    #[cfg(not(feature = "tls"))]
    if let Address::Tls(_) = address {
        return Err(crate::net::no_tls(addr));
    }
    let attempt = async {
        let stream = match &address {
            Address::Unix(path) => Stream::Unix(UnixStream::connect(path).await?),
            Address::Inet(host_port) | Address::Tls(host_port) => Stream::Tcp(connect_tcp(host_port).await?),
        };
        #[cfg(feature = "proxy")]
        let stream = match options.proxy {
            Some(version) => {
                let mut stream = stream;
                crate::proxy::send_header(&mut stream, version)
                    .await
                    .map_err(|err| context(err, "cannot send the PROXY header"))?;
                stream
            }
            None => stream,
        };
        #[cfg(feature = "tls")]
        let stream = match (tls, stream) {
            // The handshake verifies the server by the address's host.
            (Some((connector, host)), Stream::Tcp(tcp)) => {
                Stream::Tls(Box::new(connector.connect(host, tcp).await?))
            }
            (_, stream) => stream,
        };
        Ok(stream)
    };
    within(options.timeout, attempt).await
}

/// A TCP connection to the first address of `host_port` that accepts.
async fn connect_tcp(host_port: &str) -> io::Result<TcpStream> {
    let (stream, _) = first_to_connect(&async_net::resolve(host_port).await?, TcpStream::connect).await?;
    // Typed lines are small and should not wait for an acknowledgement to be sent.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Talks to an echo server over `stream`: sends each line of `input` and writes each echo to
/// `output`, at the same time, until the server closes the connection.
///
/// Input lines end with LF; a CR before the LF is dropped, and a last line without LF is still
/// sent. Each goes out with CR LF. The line `.` is sent and ends the session: nothing after it
/// is sent. At the end of `input` the connection is half-closed, without a `.`, and the echoes
/// still owed are awaited. Each echo is written without its CR LF and followed by LF; bytes are
/// not checked for UTF-8.
///
/// Nothing waits for a line to end: what is read from `input` is sent at once, and what arrives
/// is written at once, so a line of any length moves through a buffer of 64 KiB (the server
/// decides what is too long). With `flush_each_line` (a terminal), `output` is also flushed
/// after each write; otherwise only at the end.
///
/// The error is a failure to read `input` or write `output` (other than its reader leaving,
/// which is [`Ending::OutputClosed`]), or a broken connection other than a reset (which is
/// [`Ending::Reset`]). Runs on any executor.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futures_lite::future;
/// use smol_echo::EchoConfig;
/// use smol_echo::client::Ending;
///
/// smol::block_on(async {
///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
///     let addr = listener.local_addr()?.to_string();
///     let server = smol::spawn(async move {
///         let (stream, _) = listener.accept().await?;
///         smol_echo::echo(stream, &EchoConfig::default(), future::pending()).await;
///         std::io::Result::Ok(())
///     });
///
///     let stream = smol_echo::connect(&addr, Duration::from_secs(5)).await?;
///     let mut printed = Vec::new();
///     let input = &b"hello\r\nworld"[..];
///     let talk = smol_echo::converse(stream, input, &mut printed, false).await?;
///     assert_eq!((talk.ending, talk.unechoed), (Ending::InputEnded, 0));
///     assert_eq!(printed, b"hello\nworld\n");
///     server.await
/// })
/// .unwrap();
/// ```
pub async fn converse<S, I, O>(
    stream: S,
    input: I,
    output: O,
    flush_each_line: bool,
) -> io::Result<Conversation>
where
    S: AsyncRead + AsyncWrite + Unpin,
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let (reader, writer) = futures_lite::io::split(stream);
    let (sent, received) = (Cell::new(0), Cell::new(0));
    let ending =
        both_ways(send(input, writer, &sent), receive(reader, output, flush_each_line, &received)).await?;
    Ok(conversation(ending, sent.get(), received.get()))
}

/// Talks to an RFC 862 echo server (`echo serve --mode raw`) over `stream`: copies `input` to
/// the connection and what comes back to `output`, byte for byte, at the same time, until the
/// server closes the connection.
///
/// Nothing is translated: no line ends are added or removed, and there is no sentinel. What
/// is read from `input` is written to the connection at once. At the end of `input` the
/// connection is half-closed and the rest of the echo awaited. With `flush_each_read` (a
/// terminal), `output` is flushed after each read from the connection; otherwise only at the
/// end. The ending is [`Ending::InputEnded`], [`Ending::ServerClosed`], [`Ending::Reset`] or
/// [`Ending::OutputClosed`]; what is owed is counted in bytes.
///
/// The error is a failure to read `input` or write `output`, or a broken connection other than
/// a reset. Runs on any executor.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futures_lite::future;
/// use smol_echo::EchoConfig;
/// use smol_echo::client::Ending;
///
/// smol::block_on(async {
///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
///     let addr = listener.local_addr()?.to_string();
///     let server = smol::spawn(async move {
///         let (stream, _) = listener.accept().await?;
///         smol_echo::echo_raw(stream, &EchoConfig::default(), future::pending()).await;
///         std::io::Result::Ok(())
///     });
///
///     let stream = smol_echo::connect(&addr, Duration::from_secs(5)).await?;
///     let mut printed = Vec::new();
///     let input = &b"no\nline\r\nends\0\xff.\r\n"[..];
///     let talk = smol_echo::client::converse_raw(stream, input, &mut printed, false).await?;
///     assert_eq!((talk.ending, talk.unechoed), (Ending::InputEnded, 0));
///     assert_eq!(printed, input);
///     server.await
/// })
/// .unwrap();
/// ```
pub async fn converse_raw<S, I, O>(
    stream: S,
    input: I,
    output: O,
    flush_each_read: bool,
) -> io::Result<Conversation>
where
    S: AsyncRead + AsyncWrite + Unpin,
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let (reader, writer) = futures_lite::io::split(stream);
    let (sent, received) = (Cell::new(0), Cell::new(0));
    let ending =
        both_ways(send_raw(input, writer, &sent), receive_raw(reader, output, flush_each_read, &received))
            .await?;
    Ok(conversation(ending, sent.get(), received.get()))
}

fn conversation(ending: Ending, sent: u64, received: u64) -> Conversation {
    let unechoed = match ending {
        Ending::OutputClosed => 0,
        _ => sent.saturating_sub(received),
    };
    Conversation { ending, unechoed }
}

/// Runs the upload and the download of a conversation at once, until the download ends.
async fn both_ways(
    upload: impl Future<Output = io::Result<Sent>>,
    download: impl Future<Output = io::Result<Option<Ending>>>,
) -> io::Result<Ending> {
    let sent = Cell::new(None);
    let upload = async {
        sent.set(Some(upload.await?));
        // Whatever the upload did, the conversation lasts until the server closes.
        future::pending().await
    };
    let received = download.or(upload).await?;
    conclude(received, sent.take())
}

/// How the conversation ended, from how the download ended (`Some` when not by end of stream)
/// and how the upload did, if it had.
fn conclude(received: Option<Ending>, sent: Option<Sent>) -> io::Result<Ending> {
    Ok(match (received, sent) {
        (Some(ending), _) => ending,
        (None, Some(Sent::InputEnded)) => Ending::InputEnded,
        (None, Some(Sent::Sentinel)) => Ending::Sentinel,
        (None, Some(Sent::Refused(err))) => ended_by(err)?,
        (None, None) => Ending::ServerClosed,
    })
}

/// How the sending half ended.
enum Sent {
    /// The input ended; the connection was half-closed.
    InputEnded,
    /// The line `.` was sent; the connection was half-closed.
    Sentinel,
    /// Writing to the connection failed. Not an error yet: the download, still running, tells
    /// how the server ended the connection.
    Refused(io::Error),
}

/// Line ends rewritten as a stream goes by, one chunk at a time, without holding a line: an LF,
/// with the CR before it if there is one, becomes `end`.
struct LineEnds {
    end: &'static [u8],
    /// Whether the line `.` ends the stream: nothing after it is passed on.
    sentinel: bool,
    /// A CR ended the last chunk: dropped if an LF comes next, passed on otherwise.
    held_cr: bool,
    /// Bytes of the current line passed on so far, and whether the first was `.`.
    len: u64,
    dot: bool,
    /// The line `.` was passed on, with `sentinel`.
    ended: bool,
}

impl LineEnds {
    fn new(end: &'static [u8], sentinel: bool) -> LineEnds {
        LineEnds { end, sentinel, held_cr: false, len: 0, dot: false, ended: false }
    }

    /// Appends `chunk` to `out` with its line ends rewritten, up to the line `.` with
    /// `sentinel`; returns the lines it completed (the line `.` among them).
    fn push(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) -> u64 {
        let mut lines = 0;
        while let Some(at) = memchr::memchr(b'\n', chunk) {
            let (line, rest) = (&chunk[..at], &chunk[at + 1..]);
            if line.is_empty() {
                // A CR held from the chunk before was this line's end.
                self.held_cr = false;
            } else {
                self.release_cr(out);
                self.pass(line.strip_suffix(b"\r").unwrap_or(line), out);
            }
            lines += 1;
            if self.end_line(out) {
                return lines;
            }
            chunk = rest;
        }
        if !chunk.is_empty() {
            self.release_cr(out);
            let line = chunk.strip_suffix(b"\r");
            self.pass(line.unwrap_or(chunk), out);
            self.held_cr = line.is_some();
        }
        lines
    }

    /// The end of the stream: an unterminated last line gets its line end. Whether there was one.
    fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        if !self.in_line() {
            return false;
        }
        self.release_cr(out);
        self.end_line(out);
        true
    }

    /// Whether part of a line has been passed on (or held), and not its end.
    fn in_line(&self) -> bool {
        self.len > 0 || self.held_cr
    }

    /// Ends the current line in `out`: whether it was the line `.` that ends the stream.
    fn end_line(&mut self, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(self.end);
        self.ended = self.sentinel && self.len == 1 && self.dot;
        (self.len, self.dot) = (0, false);
        self.ended
    }

    fn release_cr(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.held_cr) {
            self.pass(b"\r", out);
        }
    }

    fn pass(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if let (0, Some(&first)) = (self.len, bytes.first()) {
            self.dot = first == b'.';
        }
        self.len += bytes.len() as u64;
        out.extend_from_slice(bytes);
    }
}

/// Sends the input with CR LF line ends as it is read, counting the lines sent in `sent` (not
/// the line `.`; a line partly sent counts). Only a failure to read the input is an error.
async fn send<R, W>(mut input: R, mut writer: W, sent: &Cell<u64>) -> io::Result<Sent>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunk = vec![0; CHUNK];
    // Every LF may become CR LF.
    let mut out = Vec::with_capacity(2 * CHUNK);
    let mut lines = LineEnds::new(b"\r\n", true);
    let mut total = 0;
    loop {
        let read = input.read(&mut chunk).await.map_err(|err| context(err, "cannot read the input"))?;
        out.clear();
        let (completed, last) = if read == 0 {
            let sentinel = lines.finish(&mut out) && lines.ended;
            (u64::from(!out.is_empty()), Some(if sentinel { Sent::Sentinel } else { Sent::InputEnded }))
        } else {
            let completed = lines.push(&chunk[..read], &mut out);
            (completed, lines.ended.then_some(Sent::Sentinel))
        };
        let written = async {
            writer.write_all(&out).await?;
            match last {
                // Flushes, then half-closes: the server echoes what it owes and closes.
                Some(_) => writer.close().await,
                None => writer.flush().await,
            }
        };
        if let Err(err) = written.await {
            return Ok(Sent::Refused(err));
        }
        total += completed - u64::from(lines.ended);
        // A line partly sent is owed too: a server that closes now never echoes it.
        sent.set(total + u64::from(lines.in_line()));
        if let Some(last) = last {
            return Ok(last);
        }
    }
}

/// Writes each echo without its CR LF, followed by LF, as it arrives, counting the complete
/// echoes in `received`, until the server closes the connection. `Some` when it ended otherwise
/// than by end of stream.
async fn receive<R, W>(
    mut reader: R,
    mut output: W,
    flush_each_line: bool,
    received: &Cell<u64>,
) -> io::Result<Option<Ending>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunk = vec![0; CHUNK];
    let mut printed = Vec::with_capacity(CHUNK);
    let mut lines = LineEnds::new(b"\n", false);
    loop {
        printed.clear();
        // `Some` once the connection has ended, holding how unless by end of stream.
        let ended = match reader.read(&mut chunk).await {
            Ok(0) => {
                // An echo cut short is printed as it came, and not counted.
                lines.finish(&mut printed);
                Some(None)
            }
            Ok(n) => {
                received.set(received.get() + lines.push(&chunk[..n], &mut printed));
                None
            }
            Err(err) => Some(Some(ended_by(err)?)),
        };
        if let Some(closed) = write_out(&mut output, &printed, flush_each_line || ended.is_some()).await? {
            return Ok(Some(closed));
        }
        if let Some(ending) = ended {
            return Ok(ending);
        }
    }
}

/// Sends the input as it is read, counting its bytes in `sent`, and half-closes at its end.
/// Only a failure to read the input is an error.
async fn send_raw<R, W>(mut input: R, mut writer: W, sent: &Cell<u64>) -> io::Result<Sent>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunk = vec![0; CHUNK];
    loop {
        let read = input.read(&mut chunk).await.map_err(|err| context(err, "cannot read the input"))?;
        let written = match read {
            0 => writer.close().await,
            n => writer.write_all(&chunk[..n]).await,
        };
        match (written, read) {
            (Err(err), _) => return Ok(Sent::Refused(err)),
            (Ok(()), 0) => return Ok(Sent::InputEnded),
            (Ok(()), n) => sent.set(sent.get() + n as u64),
        }
    }
}

/// Writes what arrives as it is, counting its bytes in `received`, until the server closes the
/// connection. `Some` when it ended otherwise than by end of stream.
async fn receive_raw<R, W>(
    mut reader: R,
    mut output: W,
    flush_each_read: bool,
    received: &Cell<u64>,
) -> io::Result<Option<Ending>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunk = vec![0; CHUNK];
    loop {
        // `ended` is `Some` once the connection has ended, holding how unless by end of stream.
        let (n, ended) = match reader.read(&mut chunk).await {
            Ok(0) => (0, Some(None)),
            Ok(n) => (n, None),
            Err(err) => (0, Some(Some(ended_by(err)?))),
        };
        received.set(received.get() + n as u64);
        if let Some(closed) = write_out(&mut output, &chunk[..n], flush_each_read || ended.is_some()).await? {
            return Ok(Some(closed));
        }
        if let Some(ending) = ended {
            return Ok(ending);
        }
    }
}

/// Writes `bytes` to the output, then flushes if asked. `Some(Ending::OutputClosed)` when the
/// output's reader is gone.
async fn write_out<W: AsyncWrite + Unpin>(
    output: &mut W,
    bytes: &[u8],
    flush: bool,
) -> io::Result<Option<Ending>> {
    let written = async {
        output.write_all(bytes).await?;
        if flush {
            output.flush().await?;
        }
        io::Result::Ok(())
    };
    match written.await {
        Ok(()) => Ok(None),
        Err(err) if reader_gone(&err) => Ok(Some(Ending::OutputClosed)),
        Err(err) => Err(context(err, "cannot write the output")),
    }
}

/// Whether a failed write to an output means that its reader left: a pipe closed (`| head`),
/// seen as EPIPE or, through a blocking-I/O thread such as `smol::Unblock`'s, as a write that
/// took nothing; or a socket reset. A Unix filter stops quietly then.
///
/// # Examples
///
/// ```
/// use std::io;
///
/// assert!(smol_echo::client::reader_gone(&io::ErrorKind::BrokenPipe.into()));
/// assert!(!smol_echo::client::reader_gone(&io::ErrorKind::PermissionDenied.into()));
/// ```
pub fn reader_gone(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::WriteZero | io::ErrorKind::ConnectionReset
    )
}

/// How a failed read or write on the connection ended the conversation.
fn ended_by(err: io::Error) -> io::Result<Ending> {
    match err.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => Ok(Ending::Reset),
        // A write after the server's close is answered with a reset, and the next write fails
        // with EPIPE: the server closed first.
        io::ErrorKind::BrokenPipe => Ok(Ending::ServerClosed),
        _ => Err(context(err, "connection lost")),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use async_net::TcpListener;
    use futures_lite::future::block_on;

    /// A loopback address nothing listens on: a port that was just freed.
    fn refusing() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
    }

    #[test]
    fn each_address_is_tried_until_one_accepts() {
        block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let good = listener.local_addr().unwrap();
            let (stream, addr) = first_to_connect(&[refusing(), good], TcpStream::connect)
                .await
                .expect("falls back to the second");
            assert_eq!((stream.peer_addr().unwrap(), addr), (good, good));
        });
    }

    #[test]
    fn the_last_failure_is_reported() {
        let err = block_on(first_to_connect(&[refusing(), refusing()], TcpStream::connect)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let err = block_on(first_to_connect(&[], TcpStream::connect)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    /// `input` through `LineEnds`, cut into chunks of `size`: the output, the lines completed,
    /// and whether the line `.` ended it.
    fn rewrite(input: &[u8], size: usize, end: &'static [u8]) -> (Vec<u8>, u64, bool) {
        let mut lines = LineEnds::new(end, true);
        let (mut out, mut completed) = (Vec::new(), 0);
        for chunk in input.chunks(size) {
            completed += lines.push(chunk, &mut out);
            if lines.ended {
                return (out, completed, true);
            }
        }
        lines.finish(&mut out);
        (out, completed, lines.ended)
    }

    #[test]
    fn a_line_loses_its_lf_and_the_cr_before_it_only_however_it_is_cut() {
        for (input, rewritten, completed) in [
            (&b"a\r\n"[..], &b"a|"[..], 1),
            (b"a\n", b"a|", 1),
            (b"a\r", b"a\r|", 0),
            (b"a\rb\r\r\n", b"a\rb\r|", 1),
            (b"\n\r\n", b"||", 2),
            (b"\r\r\n\r", b"\r|\r|", 1),
            (b"no end", b"no end|", 0),
            (b"", b"", 0),
        ] {
            for size in 1..=input.len().max(1) {
                assert_eq!(
                    rewrite(input, size, b"|"),
                    (rewritten.to_vec(), completed, false),
                    "{input:?} by {size}"
                );
            }
        }
    }

    #[test]
    fn the_line_dot_ends_the_stream_and_nothing_after_it_passes() {
        for (input, rewritten) in [(&b"a\n.\nb\n"[..], &b"a|.|"[..]), (b".\r\nb", b".|"), (b".", b".|")] {
            for size in 1..=input.len() {
                let (out, _, ended) = rewrite(input, size, b"|");
                assert_eq!((out, ended), (rewritten.to_vec(), true), "{input:?} by {size}");
            }
        }
        for not_dot in [&b"..\n"[..], b".\r\r\n", b" .\n", b"a\n.b"] {
            assert!(!rewrite(not_dot, 1, b"|").2, "{not_dot:?}");
        }
    }

    #[test]
    fn a_long_line_is_passed_on_chunk_by_chunk() {
        let mut lines = LineEnds::new(b"\r\n", true);
        let mut out = Vec::new();
        for _ in 0..1000 {
            out.clear();
            assert_eq!(lines.push(&[b'a'; 1024], &mut out), 0);
            assert_eq!(out.len(), 1024, "nothing is held back");
            assert!(lines.in_line());
        }
    }

    #[test]
    fn the_output_reader_leaving_is_told_apart_from_other_failures() {
        for kind in [io::ErrorKind::BrokenPipe, io::ErrorKind::WriteZero, io::ErrorKind::ConnectionReset] {
            assert!(reader_gone(&kind.into()), "{kind:?}");
        }
        assert!(!reader_gone(&io::ErrorKind::StorageFull.into()));
    }

    #[test]
    fn resets_and_closes_are_endings_other_failures_errors() {
        let ending = |kind| ended_by(io::Error::from(kind)).ok();
        assert_eq!(ending(io::ErrorKind::ConnectionReset), Some(Ending::Reset));
        assert_eq!(ending(io::ErrorKind::BrokenPipe), Some(Ending::ServerClosed));
        assert_eq!(ending(io::ErrorKind::TimedOut), None);
    }
}
