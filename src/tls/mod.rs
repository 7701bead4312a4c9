//! TLS for every side of the tool: an acceptor for the server, a connector for the client and
//! the bench, and the stream both hand back, on rustls through `futures-rustls` (it speaks
//! futures-io, so the echo session runs over it unchanged).

use std::io;
use std::sync::Arc;

use futures_rustls::rustls;
use futures_rustls::rustls::crypto::CryptoProvider;

mod cert;
mod client;
mod server;
mod stream;

pub use client::{TlsClientConfig, TlsConnector};
pub use server::TlsAcceptor;
pub use stream::TlsStream;

/// The one crypto provider, ring: it builds with a C compiler alone, faster and smaller than
/// aws-lc-rs (figures in the README). Passed explicitly, so that no process-wide default is
/// installed behind an embedder's back.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An error of the TLS layer, its text starting with `tls: `, its kind kept (a reset stays a
/// reset) and the error itself kept as its cause. A rustls error (bad record, failed
/// verification, alert) is `InvalidData` and its text is rustls's reason.
fn tls_error(err: io::Error) -> io::Error {
    match err.kind() {
        io::ErrorKind::UnexpectedEof => {
            io::Error::new(io::ErrorKind::UnexpectedEof, "tls: connection closed during the handshake")
        }
        _ => crate::error::context(err, "tls"),
    }
}

/// A one-line error about `path`: `FILE: reason`, as the command line prints it.
fn file_error(path: &std::path::Path, reason: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{}: {reason}", path.display()))
}
