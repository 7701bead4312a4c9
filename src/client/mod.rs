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
use futures_lite::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};

mod udp;

pub use crate::net::{Address, MAX_DATAGRAM};

use crate::error::context;
use crate::net::{first_to_connect, within};
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
/// // Only a reset is a failure; every other ending is a close by the server.
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
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Stream {
    /// A TCP connection, with `TCP_NODELAY` set.
    Tcp(TcpStream),
    /// A Unix stream socket connection.
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Unix(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
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
            Stream::Unix(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Unix(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    /// The half-close: `shutdown(Write)`.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_close(cx),
            Stream::Unix(stream) => Pin::new(stream).poll_close(cx),
        }
    }
}

/// Connects to `addr`: `unix:/path` is a Unix stream socket; `host:port` or `[v6addr]:port` is
/// TCP, trying each address the host resolves to in turn until one accepts. Name resolution
/// and every attempt together get `timeout`.
///
/// The error is the resolver's, the last address's, or `TimedOut`.
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
    let attempt = async {
        match addr.parse()? {
            Address::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
            Address::Inet(addr) => {
                let (stream, _) =
                    first_to_connect(&async_net::resolve(&*addr).await?, TcpStream::connect).await?;
                // Typed lines are small and should not wait for an acknowledgement to be sent.
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
        }
    };
    within(timeout, attempt).await
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
/// Lines are sent, and echoes written, as soon as no complete line is left to read. With
/// `flush_each_line` (a terminal), `output` is also flushed then; otherwise only at the end.
///
/// The error is a failure to read `input` or write `output`, or a broken connection other than
/// a reset (which is [`Ending::Reset`]). Runs on any executor.
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
///     let ending = smol_echo::converse(stream, input, &mut printed, false).await?;
///     assert_eq!(ending, Ending::InputEnded);
///     assert_eq!(printed, b"hello\nworld\n");
///     server.await
/// })
/// .unwrap();
/// ```
pub async fn converse<S, I, O>(stream: S, input: I, output: O, flush_each_line: bool) -> io::Result<Ending>
where
    S: AsyncRead + AsyncWrite + Unpin,
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let (reader, writer) = futures_lite::io::split(stream);
    both_ways(send(input, writer), receive(reader, output, flush_each_line)).await
}

/// Talks to an RFC 862 echo server (`echo serve --mode raw`) over `stream`: copies `input` to
/// the connection and what comes back to `output`, byte for byte, at the same time, until the
/// server closes the connection.
///
/// Nothing is translated: no line ends are added or removed, and there is no sentinel. What
/// is read from `input` is written to the connection at once. At the end of `input` the
/// connection is half-closed and the rest of the echo awaited. With `flush_each_read` (a
/// terminal), `output` is flushed after each read from the connection; otherwise only at the
/// end. The ending is [`Ending::InputEnded`], [`Ending::ServerClosed`] or [`Ending::Reset`].
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
///     let ending = smol_echo::client::converse_raw(stream, input, &mut printed, false).await?;
///     assert_eq!(ending, Ending::InputEnded);
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
) -> io::Result<Ending>
where
    S: AsyncRead + AsyncWrite + Unpin,
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let (reader, writer) = futures_lite::io::split(stream);
    both_ways(send_raw(input, writer), receive_raw(reader, output, flush_each_read)).await
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

/// Sends the input line by line with CR LF. Only a failure to read the input is an error.
async fn send<R, W>(input: R, writer: W) -> io::Result<Sent>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut input = BufReader::with_capacity(CHUNK, input);
    let mut writer = BufWriter::with_capacity(CHUNK, writer);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read =
            input.read_until(b'\n', &mut line).await.map_err(|err| context(err, "cannot read the input"))?;
        let last = if read == 0 {
            Some(Sent::InputEnded)
        } else {
            strip_eol(&mut line);
            let sentinel = line == b".";
            line.extend_from_slice(b"\r\n");
            sentinel.then_some(Sent::Sentinel)
        };
        let written = async {
            writer.write_all(&line).await?;
            if last.is_some() {
                // Flushes, then half-closes: the server echoes what it owes and closes.
                writer.close().await
            } else if !has_line(&input) {
                // Send what was read before waiting for more input: a typed line goes out now.
                writer.flush().await
            } else {
                Ok(())
            }
        };
        match (written.await, last) {
            (Err(err), _) => return Ok(Sent::Refused(err)),
            (Ok(()), Some(sent)) => return Ok(sent),
            (Ok(()), None) => {}
        }
    }
}

/// Writes each echo without its CR LF, followed by LF, until the server closes the connection.
/// `Some` when it ended otherwise than by end of stream.
async fn receive<R, W>(reader: R, mut output: W, flush_each_line: bool) -> io::Result<Option<Ending>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BufReader::with_capacity(CHUNK, reader);
    let mut line = Vec::new();
    let mut printed = Vec::with_capacity(CHUNK);
    let ended = loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) => break Ok(None),
            Ok(_) => {}
            Err(err) => break ended_by(err).map(Some),
        }
        strip_eol(&mut line);
        printed.extend_from_slice(&line);
        printed.push(b'\n');
        // Write what arrived before waiting for more, so that nothing received is held back.
        if !has_line(&reader) {
            output.write_all(&printed).await.map_err(output_error)?;
            printed.clear();
            if flush_each_line {
                output.flush().await.map_err(output_error)?;
            }
        }
    };
    output.flush().await.map_err(output_error)?;
    ended
}

/// Sends the input as it is read, and half-closes at its end. Only a failure to read the input
/// is an error.
async fn send_raw<R, W>(mut input: R, mut writer: W) -> io::Result<Sent>
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
            (Ok(()), _) => {}
        }
    }
}

/// Writes what arrives as it is, until the server closes the connection. `Some` when it ended
/// otherwise than by end of stream.
async fn receive_raw<R, W>(mut reader: R, mut output: W, flush_each_read: bool) -> io::Result<Option<Ending>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunk = vec![0; CHUNK];
    let ended = loop {
        match reader.read(&mut chunk).await {
            Ok(0) => break Ok(None),
            Ok(n) => {
                output.write_all(&chunk[..n]).await.map_err(output_error)?;
                if flush_each_read {
                    output.flush().await.map_err(output_error)?;
                }
            }
            Err(err) => break ended_by(err).map(Some),
        }
    };
    output.flush().await.map_err(output_error)?;
    ended
}

/// Whether a complete line is already buffered, so that reading it will not wait.
fn has_line<R>(reader: &BufReader<R>) -> bool {
    memchr::memchr(b'\n', reader.buffer()).is_some()
}

/// Drops a line's LF and the CR before it.
fn strip_eol(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
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

fn output_error(err: io::Error) -> io::Error {
    context(err, "cannot write the output")
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

    #[test]
    fn a_line_loses_its_lf_and_the_cr_before_it_only() {
        for (line, stripped) in [
            (&b"a\r\n"[..], &b"a"[..]),
            (b"a\n", b"a"),
            (b"a\r", b"a\r"),
            (b"a\rb\r\r\n", b"a\rb\r"),
            (b"\n", b""),
        ] {
            let mut line = line.to_vec();
            strip_eol(&mut line);
            assert_eq!(line, stripped);
        }
    }

    #[test]
    fn resets_and_closes_are_endings_other_failures_errors() {
        let ending = |kind| ended_by(io::Error::from(kind)).ok();
        assert_eq!(ending(io::ErrorKind::ConnectionReset), Some(Ending::Reset));
        assert_eq!(ending(io::ErrorKind::BrokenPipe), Some(Ending::ServerClosed));
        assert_eq!(ending(io::ErrorKind::TimedOut), None);
    }
}
