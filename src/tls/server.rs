//! The server side: a certificate to present and the handshake of each accepted connection.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_rustls::rustls;
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{TlsStream, cert, file_error, provider, tls_error};
use crate::net::within_saying;

/// What a TLS listener presents, and the handshake of each connection it accepts.
///
/// Cheap to clone: every clone shares one configuration (and one session cache).
/// Client certificates are not asked for.
///
/// # Examples
///
/// ```
/// let acceptor = smol_echo::tls::TlsAcceptor::self_signed(&["localhost".to_string()]).unwrap();
/// assert!(acceptor.is_self_signed());
/// assert_eq!(acceptor.fingerprint().len(), 32 * 3 - 1);
/// ```
#[derive(Clone)]
pub struct TlsAcceptor {
    acceptor: futures_rustls::TlsAcceptor,
    /// Shared, as the acceptor is cloned for every connection a listener takes.
    fingerprint: Arc<str>,
    self_signed: bool,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("fingerprint", &self.fingerprint)
            .field("self_signed", &self.self_signed)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Presents the PEM chain in `cert` (leaf first) with the PEM key in `key` (PKCS#8, PKCS#1
    /// or SEC1).
    ///
    /// A file that cannot be read or parsed, or a key that does not match the leaf certificate,
    /// is a one-line error naming the file and the reason, found here rather than at the first
    /// handshake.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = smol_echo::tls::TlsAcceptor::from_pem_files("/nonexistent.pem".as_ref(), "/k.pem".as_ref())
    ///     .unwrap_err();
    /// assert!(err.to_string().starts_with("/nonexistent.pem: "));
    /// ```
    pub fn from_pem_files(cert: &Path, key: &Path) -> io::Result<TlsAcceptor> {
        let chain = cert::load_certs(cert)?;
        let private_key = cert::load_key(key)?;
        // rustls loads the key and compares its public half with the leaf's; a failure is told
        // by the file it is about.
        TlsAcceptor::new(chain, private_key, false).map_err(|err| match err {
            rustls::Error::InconsistentKeys(_) => {
                file_error(cert, format_args!("the certificate does not match the key in {}", key.display()))
            }
            err => file_error(key, format_args!("unusable private key: {err}")),
        })
    }

    /// Presents a new self-signed certificate for `names` (host names or IP addresses; none
    /// means `localhost`), made in memory for this process: its [`fingerprint`] is what a
    /// client can check.
    ///
    /// [`fingerprint`]: TlsAcceptor::fingerprint
    ///
    /// # Examples
    ///
    /// ```
    /// let names = ["localhost".to_string(), "127.0.0.1".to_string()];
    /// let acceptor = smol_echo::tls::TlsAcceptor::self_signed(&names).unwrap();
    /// assert!(acceptor.fingerprint().contains(':'));
    /// ```
    pub fn self_signed(names: &[String]) -> io::Result<TlsAcceptor> {
        let localhost = ["localhost".to_string()];
        let (cert, key) = cert::self_signed(if names.is_empty() { &localhost } else { names })?;
        TlsAcceptor::new(vec![cert], key, true)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, format!("tls: {err}")))
    }

    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        self_signed: bool,
    ) -> Result<TlsAcceptor, rustls::Error> {
        let fingerprint = cert::fingerprint(&chain[0]).into();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))?;
        Ok(TlsAcceptor { acceptor: Arc::new(config).into(), fingerprint, self_signed })
    }

    /// The SHA-256 fingerprint of the leaf certificate, as `AA:BB:...`.
    ///
    /// # Examples
    ///
    /// ```
    /// let acceptor = smol_echo::tls::TlsAcceptor::self_signed(&[]).unwrap();
    /// assert!(acceptor.fingerprint().bytes().all(|b| b == b':' || b.is_ascii_hexdigit()));
    /// ```
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether the certificate was made by [`TlsAcceptor::self_signed`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(smol_echo::tls::TlsAcceptor::self_signed(&[]).unwrap().is_self_signed());
    /// ```
    pub fn is_self_signed(&self) -> bool {
        self.self_signed
    }

    /// Runs the server handshake on `stream`, within `timeout` if there is one.
    ///
    /// A peer that has not completed the handshake in time gets an error of kind `TimedOut`
    /// (the server's reason `idle timeout`); a failed handshake (plain text, a truncated or
    /// garbled hello, a protocol the server does not offer) gets an error whose text starts
    /// with `tls: ` and gives rustls's reason. Either way rustls has sent its alert if it could.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// // A peer that hangs up before its hello.
    /// let acceptor = smol_echo::tls::TlsAcceptor::self_signed(&[]).unwrap();
    /// let hung_up = futures_lite::io::Cursor::new(Vec::new());
    /// let err = smol::block_on(acceptor.accept(hung_up, Some(Duration::from_secs(5)))).unwrap_err();
    /// assert_eq!(err.to_string(), "tls: connection closed during the handshake");
    /// ```
    pub async fn accept<S>(&self, stream: S, timeout: Option<Duration>) -> io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let handshake = async { self.acceptor.accept(stream).await.map_err(tls_error) };
        let stream = match timeout {
            Some(timeout) => within_saying(timeout, handshake, "tls: handshake not completed within").await?,
            None => handshake.await?,
        };
        Ok(TlsStream::new(futures_rustls::TlsStream::Server(stream)))
    }
}
