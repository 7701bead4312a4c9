//! TLS through the binary: `echo serve --listen tls:...` with its certificates, `echo connect`
//! and `echo bench` over TLS, against each other and against TLS peers that are not ours.
#![cfg(feature = "tls")]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rustix::process::Signal;

mod common;
use common::pki::{Pki, python_echo_server};
use common::{ServerProcess, echo_with_input, output_within, spawn_bench, spawn_echo};

const LIMIT: Duration = Duration::from_secs(20);

/// `echo serve --listen tls:127.0.0.1:0` with the test PKI's certificate and `args`.
fn serve_tls(pki: &Pki, args: &[&str]) -> ServerProcess {
    let (cert, key) = (pki.path("cert.pem"), pki.path("key.pem"));
    let mut all = vec!["--listen", "tls:127.0.0.1:0", "--tls-cert", cert.to_str().unwrap()];
    all.extend(["--tls-key", key.to_str().unwrap()]);
    all.extend(args);
    ServerProcess::start(&all, 1)
}

/// Runs `echo ARGS` with `input` on its standard input, within [`LIMIT`].
fn run_echo(args: &[&str], input: &[u8]) -> Output {
    echo_with_input(args, input, LIMIT)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `echo connect tls:ADDR` trusting the test CA, by the certificate's name `localhost`.
fn connect_args(pki: &Pki, addr: SocketAddr) -> Vec<String> {
    let ca = pki.path("ca.pem").display().to_string();
    ["connect", &format!("tls:{addr}"), "--tls-ca", &ca, "--tls-server-name", "localhost"]
        .map(String::from)
        .into()
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn our_client_gets_every_echo_over_tls_and_the_server_logs_the_close() {
    let pki = Pki::new("serve-connect");
    let server = serve_tls(&pki, &[]);
    assert_eq!(server.listening[0], format!("tls:{}", server.addr()));
    let output = run_echo(&as_strs(&connect_args(&pki, server.addr())), b"one\ntwo\n\x00\xff\n");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(output.stdout, b"one\ntwo\n\x00\xff\n");
    // End of input is close_notify then the TCP half-close: the session ends at end of input.
    let close = server.wait_for_line("close ", LIMIT).expect("a close line");
    assert!(close.contains("lines=3 ") && close.ends_with("reason=eof"), "{close}");
    assert!(server.log().iter().any(|line| line.contains("tls certificate SHA-256 fingerprint")));
}

#[test]
fn openssl_and_python_clients_are_served() {
    let pki = Pki::new("serve-peers");
    let server = serve_tls(&pki, &[]);
    let addr = server.addr();
    let mut s_client = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-servername", "localhost", "-connect"])
        .arg(addr.to_string())
        .arg("-CAfile")
        .arg(pki.path("ca.pem"))
        // A client certificate the server never asked for: it is not sent, and changes nothing.
        .arg("-cert")
        .arg(pki.path("cert.pem"))
        .arg("-key")
        .arg(pki.path("key.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed (.ci/run installs it)");
    // -quiet ignores end of input: the sentinel ends the session.
    s_client.stdin.take().unwrap().write_all(b"from openssl\r\n.\r\n").unwrap();
    let output = output_within(s_client, LIMIT);
    assert_eq!(output.stdout, b"from openssl\r\n", "{}", stderr(&output));
    let close = server.wait_for_line("close ", LIMIT).unwrap();
    assert!(close.ends_with("reason=sentinel"), "{close}");

    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
with socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"from python\r\n.\r\n")
        got = b""
        while chunk := tls.recv(4096):
            got += chunk
        sys.stdout.buffer.write(got)
"#;
    let python = Command::new("python3")
        .args(["-c", script])
        .arg(pki.path("ca.pem"))
        .arg(addr.port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is installed (.ci/run installs it)");
    let output = output_within(python, LIMIT);
    assert_eq!(output.stdout, b"from python\r\n", "{}", stderr(&output));
}

#[test]
fn our_client_talks_to_a_tls_echo_that_is_not_ours() {
    let pki = Pki::new("connect-python");
    let (mut python, addr) = python_echo_server(&pki);
    let output = run_echo(&as_strs(&connect_args(&pki, addr)), b"to python\nand back\n");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(output.stdout, b"to python\nand back\n");
    assert!(python.wait().unwrap().success());
}

#[test]
fn without_a_certificate_the_server_makes_one_and_says_so() {
    let server = ServerProcess::start(&["--listen", "tls:localhost:0"], 1);
    let addr = server.listening[0].clone();
    assert!(addr.starts_with("tls:127.0.0.1:") || addr.starts_with("tls:[::1]:"), "{addr}");
    let warning = server.log().into_iter().find(|line| line.contains("self-signed")).expect("a warning");
    assert!(warning.starts_with("warning: ") && warning.contains("localhost"), "{warning}");
    let fingerprint = warning.rsplit(' ').next().unwrap().to_string();

    // What a client sees is the certificate whose fingerprint was logged.
    let shown = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
            addr.trim_start_matches("tls:")
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim().rsplit('=').next().unwrap(), fingerprint);

    // The system's trust store does not know it; --tls-insecure does not ask.
    let refused = run_echo(&["connect", &addr], b"x\n");
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        stderr(&refused),
        format!("echo: cannot connect to {addr}: tls: invalid peer certificate: UnknownIssuer\n")
    );
    let insecure = run_echo(&["connect", &addr, "--tls-insecure"], b"trusting\n");
    assert!(insecure.status.success(), "{}", stderr(&insecure));
    assert_eq!(insecure.stdout, b"trusting\n");
    assert!(stderr(&insecure).contains("warning: --tls-insecure"), "{}", stderr(&insecure));
}

#[test]
fn a_name_the_certificate_does_not_have_is_refused() {
    let pki = Pki::new("connect-name");
    let server = serve_tls(&pki, &[]);
    let ca = pki.path("ca.pem").display().to_string();
    let addr = format!("tls:{}", server.addr());
    let output =
        run_echo(&["connect", &addr, "--tls-ca", &ca, "--tls-server-name", "elsewhere.example"], b"");
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!("echo: cannot connect to {addr}: tls: invalid peer certificate: ")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn unusable_certificate_files_fail_before_anything_listens() {
    let pki = Pki::new("bad-files");
    let missing = pki.path("missing.pem").display().to_string();
    let (cert, key) = (pki.path("cert.pem").display().to_string(), pki.path("key.pem").display().to_string());
    let other = pki.path("other-key.pem").display().to_string();
    for (cert, key, says) in [
        (&missing, &key, format!("echo: {missing}: ")),
        (&cert, &other, format!("echo: {cert}: the certificate does not match the key in {other}")),
        (&key, &key, format!("echo: {key}: no PEM certificate found")),
    ] {
        let args = ["serve", "--listen", "tls:127.0.0.1:0", "--tls-cert", cert, "--tls-key", key];
        let output = run_echo(&args, b"");
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let err = stderr(&output);
        assert!(err.starts_with(&says) && err.lines().count() == 1, "{args:?}: {err}");
        assert!(!err.contains("listening on"), "{err}");
    }
}

#[test]
fn tls_flags_that_cannot_apply_are_usage_errors() {
    let pki = Pki::new("usage");
    let cert = pki.path("cert.pem").display().to_string();
    for (args, says) in [
        (vec!["serve", "--listen", "tls:127.0.0.1:0", "--tls-cert", &cert], "--tls-cert needs --tls-key"),
        (vec!["serve", "--tls-cert", &cert, "--tls-key", &cert], "--tls-cert needs a tls: address"),
        (vec!["connect", "127.0.0.1:7", "--tls-insecure"], "--tls-insecure needs a tls: address"),
        (vec!["bench", "127.0.0.1:7", "--tls-ca", &cert], "--tls-ca needs a tls: address"),
        (vec!["connect", "tls:127.0.0.1:7", "--tls-insecure", "--tls-ca", &cert], "cannot be used together"),
        (vec!["connect", "--udp", "tls:127.0.0.1:7"], "TLS is not served over UDP"),
        (vec!["serve", "--udp", "tls:127.0.0.1:7"], "TLS cannot be used here"),
    ] {
        let output = run_echo(&args, b"");
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(says), "{args:?}: {}", stderr(&output));
    }
}

/// Connects with plain TCP, sends `bytes` and half-closes; returns the server's close line.
fn close_after(server: &ServerProcess, bytes: &[u8]) -> String {
    let mut tcp = TcpStream::connect(server.addr()).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    tcp.write_all(bytes).unwrap();
    tcp.shutdown(Shutdown::Write).unwrap();
    let mut alert = Vec::new();
    tcp.read_to_end(&mut alert).ok(); // the server may reset after its alert
    server.wait_for_line("close ", LIMIT).expect("a close line")
}

#[test]
fn bad_handshakes_close_their_connection_alone_with_a_tls_reason() {
    let pki = Pki::new("serve-bad");
    let server = serve_tls(&pki, &["--idle-timeout", "1s"]);
    // A session that stays open, and must go on, while the others fail; a line after each keeps
    // it inside its idle timeout however slow the machine.
    let mut good = spawn_echo(&connect_args(&pki, server.addr()));
    let mut good_in = good.stdin.take().unwrap();
    good_in.write_all(b"before\n").unwrap();
    server.wait_for_line("open ", LIMIT).unwrap();

    let plain = close_after(&server, b"GET / HTTP/1.0\r\n\r\n");
    assert!(plain.contains("lines=0 ") && plain.contains("reason=tls: received corrupt message"), "{plain}");
    good_in.write_all(b"between\n").unwrap();
    let truncated = close_after(&server, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]);
    assert!(truncated.ends_with("reason=tls: connection closed during the handshake"), "{truncated}");
    good_in.write_all(b"and\n").unwrap();
    let garbage = close_after(&server, &[0x16, 0x03, 0x01, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef]);
    assert!(garbage.contains("reason=tls: "), "{garbage}");
    good_in.write_all(b"after\n").unwrap();
    drop(good_in);
    let output = output_within(good, LIMIT);
    assert_eq!(output.stdout, b"before\nbetween\nand\nafter\n", "{}", stderr(&output));
    server.wait_for_line("reason=eof", LIMIT).expect("the good session's close");

    // Connected, and silent: the idle timeout covers the handshake.
    let silent = TcpStream::connect(server.addr()).unwrap();
    let close = server.wait_for_line(&format!("close {} ", silent.local_addr().unwrap()), LIMIT).unwrap();
    assert!(close.ends_with("reason=idle timeout"), "{close}");
}

#[test]
fn max_connections_counts_connections_still_in_their_handshake() {
    let pki = Pki::new("serve-limit");
    let server = serve_tls(&pki, &["--max-connections", "1", "--idle-timeout", "300ms"]);
    let silent = TcpStream::connect(server.addr()).unwrap();
    let first = server.wait_for_line("open ", LIMIT).unwrap();
    // The second waits in the backlog until the silent one times out in its handshake.
    let output = run_echo(&as_strs(&connect_args(&pki, server.addr())), b"waited\n");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(output.stdout, b"waited\n");
    let log = server.log();
    let at = |needle: &str| log.iter().position(|line| line.contains(needle)).unwrap();
    let silent_port = format!(":{} ", silent.local_addr().unwrap().port());
    let closed = log.iter().position(|l| l.contains("close ") && l.contains(&silent_port)).expect("closed");
    assert!(log[closed].ends_with("reason=idle timeout"), "{log:?}");
    let second_open = log.iter().rposition(|line| line.starts_with("open ")).unwrap();
    assert!(at(&first) < closed && closed < second_open, "{log:?}");
}

#[test]
fn a_stop_ends_handshakes_in_progress_at_once() {
    let pki = Pki::new("serve-stop");
    let mut server = serve_tls(&pki, &["--idle-timeout", "60s"]);
    let _silent = TcpStream::connect(server.addr()).unwrap();
    server.wait_for_line("open ", LIMIT).unwrap();
    server.signal(Signal::TERM);
    let status = server.wait_exit(Duration::from_secs(5)).expect("the server exits within the grace period");
    assert!(status.success());
    let close = server.wait_for_line("close ", LIMIT).unwrap();
    assert!(close.ends_with("reason=shutdown"), "{close}");
    assert!(server.summary().contains("1 connections"));
}

#[test]
fn the_bench_checks_every_byte_over_tls_and_counts_handshakes() {
    let pki = Pki::new("bench");
    let server = serve_tls(&pki, &[]);
    let ca = pki.path("ca.pem").display().to_string();
    let addr = format!("tls:{}", server.addr());
    let args = [&addr, "--tls-ca", &ca, "--tls-server-name", "localhost", "-c", "4", "-p", "4", "-n", "400"];
    let output = output_within(spawn_bench(&[&args[..], &["--json"]].concat()), LIMIT);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((report["lines"].as_u64(), report["errors"].as_u64()), (Some(400), Some(0)), "{report}");
    assert_eq!(report["handshakes"]["count"], 4, "{report}");
    assert!(report["handshakes"]["latency_us"]["p50"].as_f64().unwrap() > 0.0, "{report}");

    // Unverifiable: the bench cannot start, and says why.
    let output = output_within(spawn_bench(&[&addr, "-n", "10"]), LIMIT);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!("echo: cannot connect to {addr}: tls: invalid peer certificate: UnknownIssuer\n")
    );
}

#[test]
fn a_proxy_header_comes_first_then_the_handshake() {
    let pki = Pki::new("proxy-tls");
    let server = serve_tls(&pki, &["--proxy-protocol"]);
    let mut args = connect_args(&pki, server.addr());
    args.extend(["--proxy-protocol".to_string(), "v2".to_string()]);
    let output = run_echo(&as_strs(&args), b"behind a balancer\n");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(output.stdout, b"behind a balancer\n");
    let open = server.wait_for_line("open ", LIMIT).unwrap();
    assert!(open.contains(" via 127.0.0.1:"), "{open}");

    let ca = pki.path("ca.pem").display().to_string();
    let addr = format!("tls:{}", server.addr());
    let bench =
        [&addr, "--tls-ca", &ca, "--tls-server-name", "localhost", "--proxy-protocol", "v1", "-c", "2"];
    let output = output_within(spawn_bench(&[&bench[..], &["-n", "100", "--json"]].concat()), LIMIT);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((report["lines"].as_u64(), report["handshakes"]["count"].as_u64()), (Some(100), Some(2)));

    // A handshake where the header should be is a missing header, and that connection alone.
    let plain_tls = run_echo(&as_strs(&connect_args(&pki, server.addr())), b"x\n");
    assert_eq!(plain_tls.status.code(), Some(1), "{}", stderr(&plain_tls));
    let refused = server.wait_for_line("reason=proxy header", LIMIT).expect("a proxy header close");
    assert!(refused.contains("missing"), "{refused}");
}
