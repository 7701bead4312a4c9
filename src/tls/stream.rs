//! The TLS stream a handshake hands back, with errors a session and a log can use.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_lite::io::{AsyncRead, AsyncWrite};

/// A TLS connection over `S`, client or server side, after its handshake.
///
/// Closing it sends close_notify, then closes `S` (for an async-net socket: shuts down its
/// write half), so the peer reads end of input after every byte written: the TLS half-close.
/// Reads end (`Ok(0)`) at the peer's close_notify, and also when the peer hangs up without one:
/// an echo has nothing a truncation could forge, and the peer that did so still gets its
/// echoes. A bad record is an `InvalidData` error whose text starts with `tls: `.
///
/// # Examples
///
/// ```no_run
/// use futures_lite::{AsyncReadExt, AsyncWriteExt};
/// use smol_echo::tls::{TlsClientConfig, TlsConnector};
///
/// smol::block_on(async {
///     let connector = TlsConnector::new(&TlsClientConfig::default())?;
///     let tcp = async_net::TcpStream::connect("example.com:443").await?;
///     let mut tls = connector.connect("example.com", tcp).await?;
///     tls.write_all(b"hello\r\n").await?;
///     tls.close().await?;
///     let mut echoed = Vec::new();
///     tls.read_to_end(&mut echoed).await?;
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
#[derive(Debug)]
pub struct TlsStream<S> {
    inner: futures_rustls::TlsStream<S>,
}

impl<S> TlsStream<S> {
    pub(crate) fn new(inner: futures_rustls::TlsStream<S>) -> TlsStream<S> {
        TlsStream { inner }
    }

    /// The stream under TLS, e.g. to ask a socket for its peer's address.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(tls: smol_echo::tls::TlsStream<async_net::TcpStream>) -> std::io::Result<()> {
    /// let peer = tls.get_ref().peer_addr()?;
    /// # Ok(()) }
    /// ```
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref().0
    }

    /// The negotiated protocol version and cipher suite, e.g. `TLSv1_3` and
    /// `TLS13_AES_256_GCM_SHA384`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(tls: smol_echo::tls::TlsStream<async_net::TcpStream>) {
    /// let (version, suite) = tls.negotiated();
    /// println!("{version} {suite}");
    /// # }
    /// ```
    pub fn negotiated(&self) -> (String, String) {
        let state = self.inner.get_ref().1;
        let version = state.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
        let suite = state.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default();
        (version, suite)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match ready!(Pin::new(&mut self.inner).poll_read(cx, buf)) {
            // The peer closed its socket without close_notify; futures-rustls has already shut
            // its read side, so later reads return 0 too.
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(0)),
            Err(err) if err.kind() == io::ErrorKind::InvalidData => Poll::Ready(Err(super::tls_error(err))),
            other => Poll::Ready(other),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    /// rustls takes every slice into its records at once, so a caller's parts cost one write.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
