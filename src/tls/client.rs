//! The client side: whom to trust, and the handshake of each connection the client or the
//! bench opens.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use futures_rustls::rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use futures_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use futures_rustls::rustls::{self, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{TlsStream, cert, file_error, provider, tls_error};

/// How a client checks the servers it connects to.
///
/// The default verifies against the system's trust store, by the name the client was given.
///
/// # Examples
///
/// ```
/// let config = smol_echo::tls::TlsClientConfig {
///     server_name: Some("echo.internal".into()),
///     ..Default::default()
/// };
/// assert!(config.ca.is_none() && !config.insecure);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsClientConfig {
    /// A PEM file of the CA certificates to trust instead of the system's.
    pub ca: Option<PathBuf>,
    /// The name to verify and to send (SNI), when the address is not the certificate's name.
    pub server_name: Option<String>,
    /// Accept any certificate: encryption without authentication.
    pub insecure: bool,
}

/// Opens TLS connections as a [`TlsClientConfig`] says. Cheap to clone: clones share one
/// configuration, so the bench's connections resume each other's sessions.
///
/// # Examples
///
/// ```
/// let insecure = smol_echo::tls::TlsClientConfig { insecure: true, ..Default::default() };
/// let connector = smol_echo::tls::TlsConnector::new(&insecure).unwrap();
/// # let _ = connector;
/// ```
#[derive(Clone)]
pub struct TlsConnector {
    connector: futures_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// Builds the connector: reads the CA file or the system trust store once, here.
    ///
    /// An unreadable CA file, one with no certificate, or a system store with no usable
    /// certificate is a one-line error; so is a server name that is neither a DNS name nor an
    /// IP address.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = smol_echo::tls::TlsClientConfig { ca: Some("/nonexistent.pem".into()), ..Default::default() };
    /// let err = smol_echo::tls::TlsConnector::new(&config).unwrap_err();
    /// assert!(err.to_string().starts_with("/nonexistent.pem: "));
    /// ```
    pub fn new(config: &TlsClientConfig) -> io::Result<TlsConnector> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|err| io::Error::other(format!("tls: {err}")))?;
        let client = if config.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth()
        } else {
            builder.with_root_certificates(roots(config)?).with_no_client_auth()
        };
        let server_name = config.server_name.as_deref().map(parse_server_name).transpose()?;
        Ok(TlsConnector { connector: Arc::new(client).into(), server_name })
    }

    /// Runs the client handshake on `stream` to the server `host` (the host part of the
    /// address, unless the configuration names the server).
    ///
    /// A failed verification or handshake is an error whose text starts with `tls: ` and gives
    /// rustls's reason, e.g. `tls: invalid peer certificate: UnknownIssuer`.
    ///
    /// # Examples
    ///
    /// ```
    /// let connector = smol_echo::tls::TlsConnector::new(&Default::default()).unwrap();
    /// let hung_up = futures_lite::io::Cursor::new(Vec::new());
    /// let err = smol::block_on(connector.connect("localhost", hung_up)).unwrap_err();
    /// assert!(err.to_string().starts_with("tls: "));
    /// ```
    pub async fn connect<S>(&self, host: &str, stream: S) -> io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            // `[::1]` is how an address names a v6 host; the name to verify has no brackets.
            None => parse_server_name(host.trim_start_matches('[').trim_end_matches(']'))?,
        };
        let stream = self.connector.connect(name, stream).await.map_err(tls_error)?;
        Ok(TlsStream::new(futures_rustls::TlsStream::Client(stream)))
    }
}

fn parse_server_name(name: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(name.to_string()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("tls: invalid server name {name:?}"))
    })
}

/// The CA file's certificates, or the system's.
fn roots(config: &TlsClientConfig) -> io::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = &config.ca {
        for ca in cert::load_certs(path)? {
            roots.add(ca).map_err(|err| file_error(path, format_args!("unusable CA certificate: {err}")))?;
        }
        return Ok(roots);
    }
    let system = rustls_native_certs::load_native_certs();
    // Unparsable entries in a system bundle are common and harmless while others are usable.
    roots.add_parsable_certificates(system.certs);
    if roots.is_empty() {
        let why = system.errors.first().map_or("none found".to_string(), |err| err.to_string());
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("tls: no usable certificate in the system trust store ({why}); use --tls-ca FILE"),
        ));
    }
    Ok(roots)
}

/// The verifier of `--tls-insecure`: any certificate for any name, but the handshake's
/// signatures are still checked, so the session is at least bound to the key the server showed.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
