//! Certificates and keys: PEM files, ephemeral self-signed certificates, fingerprints.

use std::io;
use std::path::Path;

use futures_rustls::rustls::pki_types::pem::{self, PemObject};
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::file_error;

/// Reads every certificate of a PEM file, in order; none is an error.
pub(crate) fn load_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| file_error(path, pem_reason(err)))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate found"));
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub(crate) fn load_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|err| match err {
        pem::Error::NoItemsFound => file_error(path, "no PEM private key found (PKCS#8, PKCS#1 or SEC1)"),
        err => file_error(path, pem_reason(err)),
    })
}

/// The reason of a PEM error, as one line; a file that cannot be read says why as the OS does.
fn pem_reason(err: pem::Error) -> String {
    match err {
        pem::Error::Io(err) => err.to_string(),
        err => format!("bad PEM: {err}"),
    }
}

/// A self-signed certificate and its key for `names` (host names or IP addresses).
pub(crate) fn self_signed(names: &[String]) -> io::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|err| io::Error::other(format!("tls: cannot make a self-signed certificate: {err}")))?;
    let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    Ok((certified.cert.der().clone(), key))
}

/// The SHA-256 fingerprint of a DER certificate, as `AA:BB:...`, the form `openssl x509
/// -fingerprint -sha256` prints.
pub(crate) fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let hex: Vec<String> = digest.as_ref().iter().map(|byte| format!("{byte:02X}")).collect();
    hex.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_colon_separated_upper_hex_sha256() {
        // SHA-256 of the empty string, a known value.
        let empty = CertificateDer::from(Vec::new());
        assert_eq!(
            fingerprint(&empty),
            "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
        );
    }

    #[test]
    fn a_missing_file_names_itself_and_the_reason() {
        let err = load_certs(Path::new("/nonexistent/cert.pem")).unwrap_err();
        assert_eq!(err.to_string(), "/nonexistent/cert.pem: No such file or directory (os error 2)");
        let err = load_key(Path::new("/nonexistent/key.pem")).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/key.pem: No such file"), "{err}");
    }
}
