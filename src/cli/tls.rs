//! The TLS flags: the server's certificate, and how `connect` and `bench` verify a server.
//!
//! The flags exist in every build, so that the manual is the same; a build without the `tls`
//! feature refuses them, and the library refuses `tls:` addresses.

use std::path::PathBuf;

/// The verification flags of `connect` and `bench`, checked and converted here once for both.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Verify {
    pub(crate) ca: Option<PathBuf>,
    pub(crate) server_name: Option<String>,
    pub(crate) insecure: bool,
}

impl Verify {
    /// Refuses verification flags without a `tls:` address, and contradictory ones.
    pub(crate) fn check(&self, addr: &str) -> Result<(), String> {
        let given = [
            (self.ca.is_some(), "--tls-ca"),
            (self.server_name.is_some(), "--tls-server-name"),
            (self.insecure, "--tls-insecure"),
        ];
        let Some((_, first)) = given.iter().find(|(set, _)| *set) else { return Ok(()) };
        built_in(first)?;
        if !addr.starts_with("tls:") {
            return Err(format!("{first} needs a tls: address, e.g. tls:{addr}"));
        }
        if self.insecure && self.ca.is_some() {
            return Err("--tls-insecure and --tls-ca cannot be used together".into());
        }
        Ok(())
    }

    /// Says, before a run, that nothing will be verified.
    pub(crate) fn warn(&self) {
        if self.insecure {
            eprintln!("echo: warning: --tls-insecure: the server's certificate is not verified");
        }
    }

    /// The library's configuration.
    #[cfg(feature = "tls")]
    pub(crate) fn config(&self) -> smol_echo::tls::TlsClientConfig {
        smol_echo::tls::TlsClientConfig {
            ca: self.ca.clone(),
            server_name: self.server_name.clone(),
            insecure: self.insecure,
        }
    }
}

/// Refuses a TLS flag in a build without TLS.
pub(crate) fn built_in(flag: &str) -> Result<(), String> {
    match cfg!(feature = "tls") {
        true => Ok(()),
        false => Err(format!("{flag}: TLS is not built in (smol-echo's tls feature)")),
    }
}

#[cfg(feature = "tls")]
pub(crate) use server::{certify, load};

#[cfg(feature = "tls")]
mod server {
    use std::io;
    use std::path::PathBuf;

    use smol_echo::client::Address;
    use smol_echo::server::{ListenAddr, Listener};
    use smol_echo::tls::TlsAcceptor;

    /// Gives every TLS listener its certificate: the one in `cert` and `key` when given (read
    /// before anything listens, by [`load`]), or else one self-signed certificate for the host
    /// names of the `tls:` addresses in `listen` and the addresses bound, with a warning and its
    /// fingerprint, so that a client can check it.
    pub(crate) fn certify(
        listeners: Vec<Listener>,
        given: Option<TlsAcceptor>,
        listen: &[String],
    ) -> io::Result<Vec<Listener>> {
        let tls_addrs: Vec<_> = listeners
            .iter()
            .filter_map(|listener| match listener.local_addr() {
                Ok(ListenAddr::Tls(addr)) => Some(addr),
                _ => None,
            })
            .collect();
        if tls_addrs.is_empty() {
            return Ok(listeners);
        }
        let acceptor = match given {
            Some(acceptor) => {
                log::info!("tls certificate SHA-256 fingerprint {}", acceptor.fingerprint());
                acceptor
            }
            None => {
                let mut names: Vec<String> = listen
                    .iter()
                    .filter_map(|addr| match addr.parse() {
                        Ok(tls @ Address::Tls(_)) => tls.host().map(str::to_string),
                        _ => None,
                    })
                    .collect();
                names.extend(tls_addrs.iter().map(|addr| addr.ip().to_string()));
                names.dedup();
                let acceptor = TlsAcceptor::self_signed(&names)?;
                log::warn!(
                    "no --tls-cert: serving a self-signed certificate for {} made for this run; \
                     SHA-256 fingerprint {}",
                    names.join(", "),
                    acceptor.fingerprint()
                );
                acceptor
            }
        };
        Ok(listeners
            .into_iter()
            .map(|listener| match listener.local_addr() {
                Ok(ListenAddr::Tls(_)) => listener.with_tls(acceptor.clone()),
                _ => listener,
            })
            .collect())
    }

    /// The certificate of `--tls-cert` and `--tls-key`, if given.
    pub(crate) fn load(cert: &Option<PathBuf>, key: &Option<PathBuf>) -> io::Result<Option<TlsAcceptor>> {
        match (cert, key) {
            (Some(cert), Some(key)) => TlsAcceptor::from_pem_files(cert, key).map(Some),
            _ => Ok(None),
        }
    }
}
