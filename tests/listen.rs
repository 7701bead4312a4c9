//! The server process on every kind of socket: Unix stream sockets, UDP, and sockets passed in
//! by systemd socket activation.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ECHO, ServerProcess, SocketPath, assert_echoes, connect, output_within};
use rustix::process::Signal;

const LIMIT: Duration = Duration::from_secs(10);

/// Sends `sent` on a Unix connection, half-closes, and returns all that comes back.
fn unix_round_trip(path: &Path, sent: &[u8]) -> Vec<u8> {
    let mut stream = UnixStream::connect(path).expect("connect to the Unix socket");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.write_all(sent).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed).expect("read the echo");
    echoed
}

/// Sends one datagram from `socket` and returns the reply, or `None` after `wait`.
fn udp_round_trip(socket: &UdpSocket, to: &str, sent: &[u8], wait: Duration) -> Option<Vec<u8>> {
    socket.set_read_timeout(Some(wait)).unwrap();
    socket.send_to(sent, to).expect("send a datagram");
    let mut buf = vec![0; 70_000];
    let (len, _) = socket.recv_from(&mut buf).ok()?;
    Some(buf[..len].to_vec())
}

fn stop(server: &mut ServerProcess) -> String {
    server.signal(Signal::TERM);
    let status = server.wait_exit(LIMIT).expect("the server exits after SIGTERM");
    assert!(status.success(), "{status}; stderr: {:?}", server.log());
    server.summary()
}

#[test]
fn a_unix_socket_serves_lines_logs_its_connections_and_goes_on_exit() {
    let path = SocketPath::new("serve");
    let mut server = ServerProcess::start(&["--listen", &path.addr()], 1);
    assert_eq!(server.listening, [path.addr()]);
    assert_eq!(unix_round_trip(&path.0, b"hello\r\n\0\xff\r\n.\r\nafter\r\n"), b"hello\r\n\0\xff\r\n");
    let close = server.wait_for_line("close ", LIMIT).expect("a close line");
    assert!(close.starts_with(&format!("close {}#1 lines=2 bytes=11 ", path.addr())), "{close}");
    assert!(close.ends_with("reason=sentinel"), "{close}");
    let summary = stop(&mut server);
    assert!(summary.starts_with("shutdown: 1 connections, 2 lines, 11 bytes echoed"), "{summary}");
    assert!(!path.0.exists(), "the socket file is removed on exit");
}

#[test]
fn raw_mode_works_over_a_unix_socket() {
    let path = SocketPath::new("raw");
    let mut server = ServerProcess::start(&["--listen", &path.addr(), "--mode", "raw"], 1);
    let sent: Vec<u8> = (0..=255).cycle().take(100_000).collect();
    assert_eq!(unix_round_trip(&path.0, &sent), sent);
    stop(&mut server);
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_is_an_error() {
    let path = SocketPath::new("stale");
    let live = UnixListener::bind(&path.0).unwrap();
    let output = Command::new(ECHO).args(["serve", "--listen", &path.addr()]).output().expect("run echo");
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&path.addr()) && err.contains("a server is listening on it"), "{err}");
    assert!(path.0.exists(), "the live server's socket is left alone");

    // The listener is gone but its file is still there, as after a crash. A child that another
    // test forks at this moment holds the socket open until its exec: wait till it is gone.
    drop(live);
    let gone = std::time::Instant::now() + LIMIT;
    while UnixStream::connect(&path.0).is_ok() {
        assert!(std::time::Instant::now() < gone, "the dropped listener still answers");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut server = ServerProcess::start(&["--listen", &path.addr()], 1);
    assert_eq!(unix_round_trip(&path.0, b"again\r\n"), b"again\r\n");
    stop(&mut server);
    assert!(!path.0.exists());
}

#[test]
fn a_path_that_is_not_a_socket_is_never_removed() {
    let path = SocketPath::new("plain");
    std::fs::write(&path.0, b"precious").unwrap();
    let output = Command::new(ECHO).args(["serve", "--listen", &path.addr()]).output().expect("run echo");
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&path.0).unwrap(), b"precious");
}

#[test]
fn udp_echoes_each_datagram_unchanged_and_alone() {
    let mut server = ServerProcess::start(&["--udp", "127.0.0.1:0"], 1);
    // --udp alone serves UDP alone: no default TCP listener.
    let [udp] = &server.listening[..] else { panic!("{:?}", server.listening) };
    let to = udp.strip_prefix("udp:").expect("a udp listening line");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let big: Vec<u8> = (0..=255).cycle().take(65_507).collect();
    for sent in [&b"hello"[..], b"", b"no line ending", b"\r\n.\r\n", &big] {
        assert_eq!(udp_round_trip(&client, to, sent, LIMIT).as_deref(), Some(sent), "{} bytes", sent.len());
    }
    let summary = stop(&mut server);
    let bytes = 5 + 14 + 5 + 65_507;
    assert_eq!(summary, format!("shutdown: 0 connections, 0 lines, 5 datagrams, {bytes} bytes echoed"));
    assert!(!server.log().iter().any(|line| line.contains("listening on") && !line.contains("udp:")));
}

#[test]
fn udp_never_answers_a_small_service_port() {
    let mut server = ServerProcess::start(&["--udp", "127.0.0.1:0", "--listen", "127.0.0.1:0", "-v"], 2);
    let udp = server.listening.iter().find_map(|name| name.strip_prefix("udp:")).unwrap().to_string();
    // These ports are below 1024: binding them needs root, which the test machines have.
    let mut refused = 0;
    for port in [7, 9, 13, 19, 37] {
        let service = UdpSocket::bind(("127.0.0.1", port)).expect("bind a small service's port (needs root)");
        assert_eq!(udp_round_trip(&service, &udp, b"ping", Duration::from_millis(200)), None, "port {port}");
        refused += 1;
    }
    // The guard is by port alone: an ordinary port beside them is answered.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(udp_round_trip(&client, &udp, b"pong", LIMIT).as_deref(), Some(&b"pong"[..]));
    // TCP beside UDP is served as usual.
    assert_echoes(&mut connect(server.addr()), b"tcp too\r\n");
    let summary = stop(&mut server);
    assert!(summary.contains(", 1 datagrams, "), "{summary}");
    assert!(
        summary.ends_with(&format!(", {refused} datagrams from refused ports not answered")),
        "{summary}"
    );
    let debug = server.log().iter().filter(|line| line.contains("its port is a small service's")).count();
    assert_eq!(debug, refused, "one debug line per refused datagram");
}

/// `echo serve ARGS` through a shell that does what systemd does before exec: the sockets given
/// as standard input and output become descriptors 3 and 4, and LISTEN_PID is the process's own.
fn activated_command(fds: usize, args: &[&str]) -> Command {
    let script =
        format!(r#"LISTEN_PID=$$ LISTEN_FDS={fds} exec "$0" serve "$@" 3<&0 4>&1 </dev/null >/dev/null"#);
    let mut command = Command::new("sh");
    command.arg("-c").arg(script).arg(ECHO).args(args);
    command
}

#[test]
fn socket_activation_serves_the_passed_tcp_and_udp_sockets() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (tcp_addr, udp_addr) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
    let mut command = activated_command(2, &["--listen", "127.0.0.1:0"]);
    let (stdin, stdout) = (Stdio::from(OwnedFd::from(tcp)), Stdio::from(OwnedFd::from(udp)));
    let mut server = ServerProcess::start_with_stdio(&mut command, stdin, stdout, 2);
    assert_eq!(server.listening, [tcp_addr.to_string(), format!("udp:{udp_addr}")]);
    assert!(
        server.log().iter().any(|line| line.contains("--listen and --udp are ignored")),
        "{:?}",
        server.log()
    );

    assert_echoes(&mut connect(tcp_addr), b"passed in\r\n");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = udp_addr.to_string();
    assert_eq!(udp_round_trip(&client, &to, b"datagram", LIMIT).as_deref(), Some(&b"datagram"[..]));
    let summary = stop(&mut server);
    assert!(summary.starts_with("shutdown: 1 connections, 1 lines, 1 datagrams"), "{summary}");
}

#[test]
fn socket_activation_leaves_a_passed_unix_socket_in_place() {
    let path = SocketPath::new("activated");
    let listener = UnixListener::bind(&path.0).unwrap();
    let mut command = activated_command(1, &[]);
    let mut server =
        ServerProcess::start_with_stdio(&mut command, OwnedFd::from(listener).into(), Stdio::null(), 1);
    assert_eq!(server.listening, [path.addr()]);
    assert_eq!(unix_round_trip(&path.0, b"activated\r\n"), b"activated\r\n");
    stop(&mut server);
    assert!(path.0.exists(), "the socket belongs to systemd, which passes it to the next instance");
}

#[test]
fn socket_activation_refuses_a_descriptor_that_is_not_a_socket() {
    let child = activated_command(1, &[]).stdin(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let output = output_within(child, LIMIT);
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(err.trim_end(), "echo: passed descriptor 3 is not a TCP, UDP or Unix stream socket");
}

#[test]
fn socket_activation_refuses_a_connection_where_a_listener_belongs() {
    // What `Accept=yes` passes: a connection. Accepting on it would fail for ever.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (unix, _peer) = UnixStream::pair().unwrap();
    for connection in [OwnedFd::from(tcp), OwnedFd::from(unix)] {
        let child = activated_command(1, &[]).stdin(connection).stderr(Stdio::piped()).spawn().unwrap();
        let output = output_within(child, LIMIT);
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{err}");
        assert_eq!(
            err.trim_end(),
            "echo: passed descriptor 3 is a stream socket that is not listening (Accept=yes? use --stdio)"
        );
    }
}

#[test]
fn sockets_passed_to_another_process_are_not_taken() {
    // LISTEN_PID names another process (as when a parent's variables leak to a child): bind.
    let mut command = Command::new(ECHO);
    command.args(["serve", "--listen", "127.0.0.1:0"]).env("LISTEN_PID", "1").env("LISTEN_FDS", "1");
    let mut server = ServerProcess::start_command(&mut command, 1);
    assert_echoes(&mut connect(server.addr()), b"bound here\r\n");
    stop(&mut server);
}

#[test]
fn unix_connections_count_against_the_same_connection_limit() {
    let path = SocketPath::new("limit");
    let server = ServerProcess::start(
        &["--listen", "127.0.0.1:0", "--listen", &path.addr(), "--max-connections", "1"],
        2,
    );
    let mut tcp = connect(server.addr());
    assert_echoes(&mut tcp, b"first\r\n");

    let mut unix = UnixStream::connect(&path.0).unwrap();
    unix.write_all(b"waiting\r\n").unwrap();
    unix.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let early = unix.read(&mut [0; 16]);
    assert!(early.is_err(), "the Unix connection was served past the limit: {early:?}");

    drop(tcp);
    unix.set_read_timeout(Some(LIMIT)).unwrap();
    let mut echo = [0; 9];
    unix.read_exact(&mut echo).expect("served once the TCP connection left");
    assert_eq!(&echo, b"waiting\r\n");
}

#[test]
fn shutdown_drains_unix_and_udp_sockets_too() {
    let path = SocketPath::new("drain");
    let mut server = ServerProcess::start(&["--listen", &path.addr(), "--udp", "127.0.0.1:0"], 2);
    let mut unix = UnixStream::connect(&path.0).unwrap();
    unix.set_read_timeout(Some(LIMIT)).unwrap();
    unix.write_all(b"one\r\n").unwrap();
    let mut echo = [0; 5];
    unix.read_exact(&mut echo).unwrap();
    // A complete line and a partial one are in flight when the signal comes.
    unix.write_all(b"two\r\nhalf").unwrap();
    server.wait_for_line("open ", LIMIT).expect("the connection is open");
    let summary = stop(&mut server);
    let mut rest = Vec::new();
    unix.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"two\r\n", "complete lines are echoed, the partial one is not; {:?}", server.log());
    let close = server.log().into_iter().find(|line| line.starts_with("close ")).expect("a close line");
    assert!(close.ends_with("reason=shutdown"), "{close}");
    assert!(summary.starts_with("shutdown: 1 connections, 2 lines, 0 datagrams"), "{summary}");
    assert!(!path.0.exists());
}

#[test]
fn a_unix_socket_file_goes_when_shutdown_begins_not_when_the_grace_period_ends() {
    let path = SocketPath::new("grace");
    let mut server = ServerProcess::start(&["--listen", &path.addr(), "--grace", "20s"], 1);
    // A client that sends lines and reads none: the server's echo blocks once both directions'
    // buffers are full, and its session then holds the grace period open.
    let mut held = UnixStream::connect(&path.0).unwrap();
    server.wait_for_line("open ", LIMIT).expect("the connection is served");
    // Two writes in a row that find no room for this long: the server has stopped reading, not
    // merely paused on a busy machine.
    held.set_write_timeout(Some(Duration::from_millis(300))).unwrap();
    let line = [b"x".repeat(1000), b"\r\n".to_vec()].concat();
    // Where the stream stands within a line: a write may take part of one.
    let (mut sent, mut at, mut stalls) = (0, 0, 0);
    while sent < 64 << 20 && stalls < 2 {
        match held.write(&line[at..]) {
            Ok(n) => (sent, at, stalls) = (sent + n, (at + n) % line.len(), 0),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => stalls += 1,
            Err(err) => panic!("send: {err}"),
        }
    }
    assert!(sent < 64 << 20, "the server took 64 MiB from a client that reads nothing");
    server.signal(Signal::TERM);
    server.wait_for_line("received: shutting down", LIMIT).expect("the signal is taken");
    let gone = std::time::Instant::now() + LIMIT;
    while path.0.exists() {
        assert!(std::time::Instant::now() < gone, "the socket file outlived the start of shutdown");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Still in its grace period, and no longer reachable through the file.
    assert!(server.log().iter().all(|line| !line.starts_with("shutdown:")), "{:?}", server.log());
    assert!(UnixStream::connect(&path.0).is_err());
    // Taking the echo lets the session, and the server, finish.
    held.set_read_timeout(Some(LIMIT)).unwrap();
    let mut echoed = Vec::new();
    held.read_to_end(&mut echoed).unwrap();
    assert_eq!(echoed.len(), sent - at, "every complete line is echoed, the partial one is not");
    let status = server.wait_exit(LIMIT).expect("the server exits once its last session ends");
    assert!(status.success(), "{status}; stderr: {:?}", server.log());
}
