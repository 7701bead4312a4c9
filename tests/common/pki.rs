//! A private PKI made at test time, and a TLS echo that is not ours (Python's `ssl`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use smol_echo::tls::{TlsAcceptor, TlsClientConfig, TlsConnector};

/// A private CA and a leaf it signed for `localhost` and `127.0.0.1`, as PEM files in a
/// directory of their own, made for this test run.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new(test: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("smol-echo-tls-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "smol-echo test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
        let pki = Pki { dir };
        std::fs::write(pki.path("ca.pem"), ca.pem()).unwrap();
        std::fs::write(pki.path("cert.pem"), leaf.pem() + &ca.pem()).unwrap();
        std::fs::write(pki.path("key.pem"), leaf_key.serialize_pem()).unwrap();
        std::fs::write(pki.path("other-key.pem"), KeyPair::generate().unwrap().serialize_pem()).unwrap();
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from_pem_files(&self.path("cert.pem"), &self.path("key.pem")).unwrap()
    }

    pub fn connector(&self) -> TlsConnector {
        TlsConnector::new(&TlsClientConfig { ca: Some(self.path("ca.pem")), ..Default::default() }).unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok(); // a leftover temp directory harms nothing
    }
}

/// A TLS line echo in Python: prints its port, echoes one connection until end of input.
pub fn python_echo_server(pki: &Pki) -> (std::process::Child, SocketAddr) {
    let script = r#"
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv = socket.create_server(("127.0.0.1", 0))
srv.settimeout(10)
print(srv.getsockname()[1], flush=True)
raw, _ = srv.accept()
raw.settimeout(10)
tls = ctx.wrap_socket(raw, server_side=True)
while True:
    chunk = tls.recv(4096)
    if not chunk:
        break
    tls.sendall(chunk)
tls.close()
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(pki.path("cert.pem"))
        .arg(pki.path("key.pem"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut port)
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port.trim().parse().expect("the server printed its port")));
    (child, addr)
}
