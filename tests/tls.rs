//! TLS: our acceptor and connector against each other and against TLS peers that are not ours
//! (OpenSSL's `s_client`, Python's `ssl`), with bad input and both ways of hanging up.
#![cfg(feature = "tls")]

use std::future::Future;
use std::io::Write as _;
use std::net::{Shutdown, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt, future};
use smol_echo::tls::{TlsAcceptor, TlsClientConfig, TlsConnector};
use smol_echo::{CloseReason, EchoConfig, Session, echo};

mod common;
use common::pki::{Pki, python_echo_server};

/// Fails the test instead of hanging it.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    fut.or(async {
        Timer::after(Duration::from_secs(10)).await;
        panic!("{what}: no result within 10 s")
    })
    .await
}

/// How one served connection ended: the session, or the handshake's error text.
type Served = Result<Session, (std::io::ErrorKind, String)>;

/// Serves the echo over TLS on a free port: each connection's handshake within the idle
/// timeout, then a session; reports each connection's end.
fn serve(acceptor: TlsAcceptor, idle: Duration) -> (SocketAddr, async_channel::Receiver<Served>) {
    let listener = future::block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let (report, reports) = async_channel::unbounded();
    smol::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, report) = (acceptor.clone(), report.clone());
            smol::spawn(async move {
                let config = EchoConfig { idle_timeout: Some(idle), ..EchoConfig::default() };
                let served = match acceptor.accept(tcp, config.idle_timeout).await {
                    Ok(tls) => Ok(echo(tls, &config, future::pending()).await),
                    Err(err) => Err((err.kind(), err.to_string())),
                };
                report.send(served).await.ok(); // the test may have stopped listening
            })
            .detach();
        }
    })
    .detach();
    (addr, reports)
}

/// One session with our connector: sends `input`, half-closes with close_notify, returns the
/// echoes.
async fn converse(connector: &TlsConnector, addr: SocketAddr, input: &[u8]) -> std::io::Result<Vec<u8>> {
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector.connect("localhost", tcp).await?;
    tls.write_all(input).await?;
    tls.close().await?;
    let mut echoed = Vec::new();
    tls.read_to_end(&mut echoed).await?;
    Ok(echoed)
}

#[test]
fn our_connector_gets_every_echo_after_close_notify_and_shutdown() {
    let pki = Pki::new("ours");
    let (addr, reports) = serve(pki.acceptor(), Duration::from_secs(5));
    smol::block_on(within("session", async {
        let echoed = converse(&pki.connector(), addr, b"one\r\ntwo\r\ntail").await.unwrap();
        assert_eq!(echoed, b"one\r\ntwo\r\ntail");
        let session = reports.recv().await.unwrap().unwrap();
        assert_eq!((session.lines, session.reason), (3, CloseReason::Eof));
    }));
}

#[test]
fn a_peer_that_hangs_up_without_close_notify_still_gets_its_echoes() {
    let pki = Pki::new("no-notify");
    let (addr, reports) = serve(pki.acceptor(), Duration::from_secs(5));
    smol::block_on(within("session", async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = pki.connector().connect("localhost", tcp.clone()).await.unwrap();
        tls.write_all(b"first\r\nlast\r\n").await.unwrap();
        tls.flush().await.unwrap();
        // TCP's half-close alone: no close_notify goes out.
        tcp.shutdown(Shutdown::Write).unwrap();
        let mut echoed = Vec::new();
        tls.read_to_end(&mut echoed).await.unwrap();
        assert_eq!(echoed, b"first\r\nlast\r\n");
        let session = reports.recv().await.unwrap().unwrap();
        assert_eq!((session.lines, session.reason), (2, CloseReason::Eof));
    }));
}

#[test]
fn the_sentinel_ends_a_session_for_openssl_s_client() {
    let pki = Pki::new("s-client");
    let (addr, reports) = serve(pki.acceptor(), Duration::from_secs(5));
    let mut client = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-servername", "localhost", "-connect"])
        .arg(addr.to_string())
        .arg("-CAfile")
        .arg(pki.path("ca.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed (.ci/run installs it)");
    // -quiet ignores end of input: the sentinel is what ends the session.
    client.stdin.take().unwrap().write_all(b"hello\r\n\x00\xff bytes\r\n.\r\n").unwrap();
    let session = smol::block_on(within("s_client session", reports.recv())).unwrap().unwrap();
    assert_eq!((session.lines, session.reason), (2, CloseReason::Sentinel));
    let output = client.wait_with_output().unwrap();
    assert_eq!(output.stdout, b"hello\r\n\x00\xff bytes\r\n", "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn python_ssl_client_gets_its_echoes() {
    let pki = Pki::new("py-client");
    let (addr, reports) = serve(pki.acceptor(), Duration::from_secs(5));
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
with socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"py\r\nthon\r\n.\r\n")
        got = b""
        while True:
            chunk = tls.recv(4096)
            if not chunk:
                break
            got += chunk
        sys.stdout.buffer.write(got)
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(pki.path("ca.pem"))
        .arg(addr.port().to_string())
        .output()
        .unwrap();
    assert_eq!(output.stdout, b"py\r\nthon\r\n", "{}", String::from_utf8_lossy(&output.stderr));
    let session = smol::block_on(within("python session", reports.recv())).unwrap().unwrap();
    assert_eq!(session.reason, CloseReason::Sentinel);
}

#[test]
fn our_connector_talks_to_a_python_ssl_echo() {
    let pki = Pki::new("py-server");
    let (mut server, addr) = python_echo_server(&pki);
    let echoed = smol::block_on(within("python echo", converse(&pki.connector(), addr, b"to python\r\n")));
    assert_eq!(echoed.unwrap(), b"to python\r\n");
    assert!(server.wait().unwrap().success());
}

#[test]
fn verification_failures_give_rustls_reason() {
    let pki = Pki::new("verify");
    let (addr, _reports) = serve(pki.acceptor(), Duration::from_secs(5));
    smol::block_on(within("failed handshakes", async {
        // The system's trust store does not know the test CA.
        let system = TlsConnector::new(&TlsClientConfig::default()).unwrap();
        let err = converse(&system, addr, b"x\r\n").await.unwrap_err();
        assert_eq!(err.to_string(), "tls: invalid peer certificate: UnknownIssuer");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);

        let elsewhere = TlsClientConfig {
            ca: Some(pki.path("ca.pem")),
            server_name: Some("elsewhere.example".into()),
            ..Default::default()
        };
        let err = converse(&TlsConnector::new(&elsewhere).unwrap(), addr, b"x\r\n").await.unwrap_err();
        assert!(
            err.to_string().starts_with("tls: invalid peer certificate: certificate not valid for name"),
            "{err}"
        );

        // The name override is what is verified: the certificate also names 127.0.0.1.
        let by_ip = TlsClientConfig {
            ca: Some(pki.path("ca.pem")),
            server_name: Some("127.0.0.1".into()),
            ..Default::default()
        };
        let echoed = converse(&TlsConnector::new(&by_ip).unwrap(), addr, b"by ip\r\n").await.unwrap();
        assert_eq!(echoed, b"by ip\r\n");
    }));
}

#[test]
fn insecure_mode_accepts_a_self_signed_server() {
    let acceptor = TlsAcceptor::self_signed(&["localhost".to_string()]).unwrap();
    let (addr, _reports) = serve(acceptor, Duration::from_secs(5));
    let insecure = TlsConnector::new(&TlsClientConfig { insecure: true, ..Default::default() }).unwrap();
    let echoed = smol::block_on(within("insecure session", converse(&insecure, addr, b"hi\r\n"))).unwrap();
    assert_eq!(echoed, b"hi\r\n");
}

#[test]
fn the_self_signed_fingerprint_is_the_one_openssl_computes() {
    let acceptor = TlsAcceptor::self_signed(&["localhost".to_string()]).unwrap();
    let (addr, _reports) = serve(acceptor.clone(), Duration::from_secs(5));
    let shown = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        ))
        .output()
        .unwrap();
    let shown = String::from_utf8(shown.stdout).unwrap();
    assert_eq!(shown.trim().rsplit('=').next().unwrap(), acceptor.fingerprint());
}

/// Connects with plain TCP, sends `bytes`, half-closes, and returns what the server reported.
fn handshake_error_after(
    addr: SocketAddr,
    reports: &async_channel::Receiver<Served>,
    bytes: &[u8],
) -> String {
    smol::block_on(within("bad handshake", async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(bytes).await.unwrap();
        tcp.shutdown(Shutdown::Write).unwrap();
        let mut alert = Vec::new();
        tcp.read_to_end(&mut alert).await.ok(); // the server may reset after its alert
        reports.recv().await.unwrap().unwrap_err().1
    }))
}

#[test]
fn bad_handshakes_fail_alone_with_a_tls_reason() {
    let pki = Pki::new("bad-input");
    let (addr, reports) = serve(pki.acceptor(), Duration::from_secs(5));
    let plain = handshake_error_after(addr, &reports, b"hello in plain text\r\n");
    assert!(plain.starts_with("tls: received corrupt message"), "{plain}");
    // A handshake record header announcing a ClientHello, then nothing.
    let truncated =
        handshake_error_after(addr, &reports, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]);
    assert_eq!(truncated, "tls: connection closed during the handshake");
    let garbage =
        handshake_error_after(addr, &reports, &[0x16, 0x03, 0x01, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef]);
    assert!(garbage.starts_with("tls: received corrupt message"), "{garbage}");
    // The server goes on serving others.
    let echoed = smol::block_on(within("good session", converse(&pki.connector(), addr, b"still here\r\n")));
    assert_eq!(echoed.unwrap(), b"still here\r\n");
}

#[test]
fn a_peer_that_never_completes_the_handshake_times_out() {
    let pki = Pki::new("silent");
    let (addr, reports) = serve(pki.acceptor(), Duration::from_millis(200));
    smol::block_on(within("silent peer", async {
        let _silent = TcpStream::connect(addr).await.unwrap();
        let (kind, _) = reports.recv().await.unwrap().unwrap_err();
        assert_eq!(kind, std::io::ErrorKind::TimedOut);
    }));
}

#[test]
fn garbage_records_after_the_handshake_are_a_tls_error() {
    let pki = Pki::new("garbage");
    let acceptor = pki.acceptor();
    smol::block_on(within("garbage record", async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = smol::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp, None).await.unwrap();
            let mut buf = [0; 64];
            tls.read(&mut buf).await.unwrap_err()
        });
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let _tls = pki.connector().connect("localhost", tcp.clone()).await.unwrap();
        // An application-data record whose bytes no key made.
        let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x20];
        record.extend([0x5a; 0x20]);
        tcp.write_all(&record).await.unwrap();
        let err = server.await;
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().starts_with("tls: "), "{err}");
    }));
}

#[test]
fn pem_files_load_in_every_key_format_and_mismatches_are_named() {
    let pki = Pki::new("pem");
    let cert = pki.path("cert.pem");
    let err = TlsAcceptor::from_pem_files(&cert, &pki.path("other-key.pem")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: the certificate does not match the key in {}",
            cert.display(),
            pki.path("other-key.pem").display()
        )
    );
    let err = TlsAcceptor::from_pem_files(&cert, &cert).unwrap_err();
    assert!(err.to_string().starts_with(&format!("{}: no PEM private key found", cert.display())), "{err}");
    let err = TlsAcceptor::from_pem_files(&pki.path("key.pem"), &pki.path("key.pem")).unwrap_err();
    assert!(err.to_string().ends_with("key.pem: no PEM certificate found"), "{err}");

    // SEC1 ("EC PRIVATE KEY") from our PKCS#8 key, and an RSA key in PKCS#1 with its own certificate.
    openssl(&["ec", "-in", &s(&pki.path("key.pem")), "-out", &s(&pki.path("sec1.pem"))]);
    assert!(std::fs::read_to_string(pki.path("sec1.pem")).unwrap().contains("BEGIN EC PRIVATE KEY"));
    TlsAcceptor::from_pem_files(&cert, &pki.path("sec1.pem")).unwrap();
    openssl(&["genrsa", "-traditional", "-out", &s(&pki.path("rsa.pem")), "2048"]);
    assert!(std::fs::read_to_string(pki.path("rsa.pem")).unwrap().contains("BEGIN RSA PRIVATE KEY"));
    openssl(&[
        "req",
        "-x509",
        "-key",
        &s(&pki.path("rsa.pem")),
        "-subj",
        "/CN=localhost",
        "-days",
        "1",
        "-addext",
        "subjectAltName=DNS:localhost",
        "-out",
        &s(&pki.path("rsa-cert.pem")),
    ]);
    let rsa = TlsAcceptor::from_pem_files(&pki.path("rsa-cert.pem"), &pki.path("rsa.pem")).unwrap();
    let (addr, _reports) = serve(rsa, Duration::from_secs(5));
    let insecure = TlsConnector::new(&TlsClientConfig { insecure: true, ..Default::default() }).unwrap();
    let echoed = smol::block_on(within("rsa session", converse(&insecure, addr, b"rsa\r\n")));
    assert_eq!(echoed.unwrap(), b"rsa\r\n");
}

fn s(path: &Path) -> String {
    path.display().to_string()
}

fn openssl(args: &[&str]) {
    let output = Command::new("openssl").args(args).output().unwrap();
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}
