//! `echo serve --proxy-protocol`, `--proxy-from` and `--max-per-source` as a process
//! (docs/balancing.md), with hand-built headers and with `echo connect --proxy-protocol`.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{ECHO, ServerProcess, assert_echoes, connect};
use smol_echo::proxy::{Version, encode};

/// How long anything that should happen promptly may take before the test fails.
const LIMIT: Duration = Duration::from_secs(5);

fn serve(args: &[&str]) -> ServerProcess {
    let mut all = vec!["--listen", "127.0.0.1:0", "--threads", "2"];
    all.extend(args);
    ServerProcess::start(&all, 1)
}

/// A connection to `addr` from `source` (a loopback address: Linux routes all of 127/8 to the
/// loopback interface, so each is a different client to the server).
fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType, bind, socket};
    let socket = socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    let source: SocketAddr = format!("{source}:0").parse().unwrap();
    bind(&socket, &source).expect("bind the client to its source address");
    rustix::net::connect(&socket, &addr).expect("connect");
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.set_write_timeout(Some(LIMIT)).unwrap();
    stream
}

/// Reads until the server closes; a reset (the server closed with our bytes unread) is a close.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {}
        Err(err) => panic!("reading until the server closes: {err}"),
    }
    got
}

/// The close line of the connection from `client` (as the server sees it: no header, or one
/// that failed), waiting for it.
fn close_line(server: &ServerProcess, client: &TcpStream) -> String {
    let pattern = format!("close {} ", client.local_addr().unwrap());
    server
        .wait_for_line(&pattern, LIMIT)
        .unwrap_or_else(|| panic!("no {pattern:?}; stderr: {:#?}", server.log()))
}

/// 200 numbered lines, some long, as one buffer.
fn lines() -> Vec<u8> {
    (0..200).flat_map(|n| format!("{n:05} {}\r\n", "x".repeat(n * 7 % 300)).into_bytes()).collect()
}

#[test]
fn a_header_of_either_version_names_the_client_and_every_byte_after_it_is_echoed() {
    let server = serve(&["--proxy-protocol"]);
    let source: SocketAddr = "203.0.113.7:41000".parse().unwrap();
    let destination: SocketAddr = "192.0.2.1:8007".parse().unwrap();
    for version in [Version::V1, Version::V2] {
        let header = encode(version, Some((source, destination)));
        let body = lines();
        // The header ends inside a write that carries the first lines too, after a write that
        // split it: the session must get every byte after its last one.
        let split = header.len() / 2;
        let mut stream = connect(server.addr());
        stream.write_all(&header[..split]).unwrap();
        thread::sleep(Duration::from_millis(20));
        stream.write_all(&[&header[split..], &body[..1000]].concat()).unwrap();
        stream.write_all(&body[1000..]).unwrap();
        let mut echo = vec![0; body.len()];
        stream.read_exact(&mut echo).unwrap();
        assert!(echo == body, "{version}: the echo differs");
        let via = stream.local_addr().unwrap();
        let open = server.wait_for_line("open ", LIMIT).expect("an open line");
        assert_eq!(open, format!("open {source} via {via}"), "{version}");
        drop(stream);
        let close = server.wait_for_line("close ", LIMIT).expect("a close line");
        assert!(close.starts_with(&format!("close {source} via {via} lines=200 ")), "{close}");
    }
}

#[test]
fn echo_connect_sends_its_own_addresses() {
    let server = serve(&["--proxy-protocol"]);
    for version in ["v1", "v2"] {
        let addr = server.addr().to_string();
        let args = ["connect", "--proxy-protocol", version, &addr];
        let output = common::echo_with_input(&args, b"hello\nworld\n", LIMIT);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(output.stdout, b"hello\nworld\n");
        // Its own addresses: the source it names is the connection's own end.
        let open = server.wait_for_line("open ", LIMIT).expect("an open line");
        let (source, via) = open["open ".len()..].split_once(" via ").expect("a proxied open line");
        assert_eq!(source, via, "{open}");
    }
}

#[test]
fn a_local_header_is_the_balancers_own_connection() {
    let server = serve(&["--proxy-protocol"]);
    for header in [encode(Version::V2, None), b"PROXY UNKNOWN\r\n".to_vec()] {
        let mut stream = connect(server.addr());
        stream.write_all(&header).unwrap();
        assert_echoes(&mut stream, b"health\r\n");
        let open = server.wait_for_line("open ", LIMIT).expect("an open line");
        assert_eq!(open, format!("open {}", stream.local_addr().unwrap()));
    }
}

#[test]
fn a_bad_missing_or_oversized_header_closes_that_connection_alone() {
    let server = serve(&["--proxy-protocol"]);
    let mut oversized_v2 = encode(Version::V2, None);
    oversized_v2[14..16].copy_from_slice(&4096u16.to_be_bytes());
    let cases: [(&[u8], &str); 5] = [
        (b"hello\r\n", "proxy header: missing: the connection starts with 'hello\\r\\n'"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 1\r\nhello\r\n", "proxy header: malformed v1 header: "),
        (b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\nhello\r\n", "proxy header: malformed v1 header: "),
        (&[b"PROXY UNKNOWN ", &[b'x'; 120][..]].concat(), "proxy header: a v1 header longer than 107 bytes"),
        (&oversized_v2, "proxy header: a v2 header of 4112 bytes, more than 2064"),
    ];
    // One connection that is served all along: the others' failures are theirs alone.
    let mut good = connect(server.addr());
    good.write_all(&encode(Version::V1, Some(("198.51.100.1:1".parse().unwrap(), server.addr())))).unwrap();
    for (input, reason) in cases {
        let mut bad = connect(server.addr());
        bad.write_all(input).unwrap();
        assert_eq!(read_to_close(&mut bad), b"", "nothing is echoed without a header");
        let close = close_line(&server, &bad);
        assert!(close.contains(" lines=0 bytes=0 "), "{close}");
        assert!(close.split_once(" reason=").unwrap().1.starts_with(reason), "{close}");
        assert_echoes(&mut good, b"still here\r\n");
    }
    let closed_early = connect(server.addr());
    closed_early.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(
        close_line(&server, &closed_early).ends_with("reason=proxy header: missing: the connection closed")
    );
}

#[test]
fn a_header_that_does_not_arrive_in_time_is_given_up() {
    let server = serve(&["--proxy-protocol", "--idle-timeout", "300ms"]);
    let mut slow = connect(server.addr());
    let started = Instant::now();
    slow.write_all(b"PROXY TCP4 203.0.113.7 ").unwrap();
    assert_eq!(read_to_close(&mut slow), b"");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250) && waited < LIMIT, "closed after {waited:?}");
    assert!(close_line(&server, &slow).ends_with("reason=proxy header: not complete within 300ms"));
}

#[test]
fn proxy_from_refuses_other_balancers_at_once() {
    let server = serve(&["--proxy-protocol", "--proxy-from", "127.0.0.2", "--proxy-from", "10.0.0.0/8"]);
    let header = encode(Version::V1, Some(("203.0.113.9:5000".parse().unwrap(), server.addr())));
    let mut stranger = connect_from("127.0.0.3", server.addr());
    // Refused before its header is read: sent or not, it is closed at once.
    let started = Instant::now();
    assert_eq!(read_to_close(&mut stranger), b"");
    assert!(started.elapsed() < LIMIT);
    let close = close_line(&server, &stranger);
    assert!(close.ends_with("reason=proxy header: not accepted from this address"), "{close}");
    let mut balancer = connect_from("127.0.0.2", server.addr());
    balancer.write_all(&header).unwrap();
    assert_echoes(&mut balancer, b"through the balancer\r\n");
    let open = server.wait_for_line("open ", LIMIT).unwrap();
    assert_eq!(open, format!("open 203.0.113.9:5000 via {}", balancer.local_addr().unwrap()));
    let summary_args = ["serve", "--proxy-from", "127.0.0.1"];
    let output = Command::new(ECHO).args(summary_args).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "--proxy-from without --proxy-protocol is a usage error");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--proxy-from needs --proxy-protocol"));
}

/// Two connections from 127.0.0.2 fill its share; a third is closed at once while 127.0.0.3 is
/// served at once, byte for byte; a place freed is taken again.
fn check_source_limit(server: &ServerProcess, open: &dyn Fn(&str) -> TcpStream) {
    let mut first = open("127.0.0.2");
    let mut second = open("127.0.0.2");
    assert_echoes(&mut first, b"one\r\n");
    assert_echoes(&mut second, b"two\r\n");
    let mut third = open("127.0.0.2");
    let started = Instant::now();
    third.write_all(b"three\r\n").ok();
    assert_eq!(read_to_close(&mut third), b"", "over the cap, nothing is echoed");
    assert!(started.elapsed() < Duration::from_secs(2), "closed at once, not after a timeout");
    let mut other = open("127.0.0.3");
    let body = lines();
    assert_echoes(&mut other, &body);
    let refusal = server.wait_for_line("source limit", LIMIT).expect("a source limit line");
    assert!(
        refusal.ends_with("source limit: refused 1 connection(s) from 127.0.0.2 (at most 2 open per source)"),
        "{refusal}"
    );
    // A second refusal within 10 s is counted, not logged.
    let mut fourth = open("127.0.0.2");
    assert_eq!(read_to_close(&mut fourth), b"");
    drop(first);
    let deadline = Instant::now() + LIMIT;
    let mut again = loop {
        // The close of `first` is seen by the server a moment after ours.
        let mut again = open("127.0.0.2");
        if again.write_all(b"again\r\n").is_ok() {
            let mut echo = [0; 7];
            if again.read_exact(&mut echo).is_ok() {
                assert_eq!(&echo, b"again\r\n");
                break again;
            }
        }
        assert!(Instant::now() < deadline, "the place of a closed connection is never freed");
        thread::sleep(Duration::from_millis(20));
    };
    assert_echoes(&mut again, b"served\r\n");
    assert!(!server.log().iter().any(|line| line.contains("refused 2 ")), "{:#?}", server.log());
}

#[test]
fn one_source_over_its_cap_leaves_another_served_by_address() {
    let server = serve(&["--max-per-source", "2"]);
    check_source_limit(&server, &|source| connect_from(source, server.addr()));
}

#[test]
fn one_source_over_its_cap_leaves_another_served_by_header() {
    // Every connection comes from 127.0.0.1, a balancer: the header names the source.
    let server = serve(&["--max-per-source", "2", "--proxy-protocol"]);
    check_source_limit(&server, &|source| {
        let mut stream = connect(server.addr());
        // The balancer's port for the client's: each connection has its own, as real ones do.
        let source = format!("{source}:{}", stream.local_addr().unwrap().port());
        stream.write_all(&encode(Version::V2, Some((source.parse().unwrap(), server.addr())))).unwrap();
        stream
    });
}
