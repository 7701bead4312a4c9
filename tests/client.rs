//! `echo connect` through the binary: pipes, a terminal, endings, failures; over TCP, Unix
//! sockets and UDP, in line and raw mode. Also the library's client over a Unix socket.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{ECHO, InProcessServer, ServerProcess, SocketPath, within};
use futures_lite::future;
use smol_echo::client::{Ending, Stream};
use smol_echo::{CloseReason, EchoConfig, ServerConfig, Session};

const LIMIT: Duration = Duration::from_secs(10);

/// A running `echo connect` (or a command around it) whose output is collected as it comes.
struct Client {
    pid: u32,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    exited: mpsc::Receiver<(ExitStatus, Vec<u8>)>,
    done: bool,
}

/// How a client process ended.
#[derive(Debug)]
struct Finished {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

impl Client {
    /// Starts `echo ARGS` with piped standard streams.
    fn start(args: &[&str]) -> Client {
        Client::spawn(Command::new(ECHO).args(args))
    }

    /// Starts the shell command line `command` on a terminal of its own, through `script`.
    fn on_terminal(command: &str) -> Client {
        Client::spawn(Command::new("script").args(["-q", "-e", "-c", command, "/dev/null"]))
    }

    fn spawn(command: &mut Command) -> Client {
        let mut child: Child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the client");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let mut out_pipe = child.stdout.take().unwrap();
        let collected = stdout.clone();
        let reader = thread::spawn(move || {
            let mut chunk = [0; 64 * 1024];
            while let Ok(n @ 1..) = out_pipe.read(&mut chunk) {
                collected.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        let (tx, exited) = mpsc::channel();
        let stdin = child.stdin.take();
        let pid = child.id();
        thread::spawn(move || {
            let mut stderr = Vec::new();
            child.stderr.take().unwrap().read_to_end(&mut stderr).ok();
            let status = child.wait().expect("wait for the client");
            reader.join().ok();
            tx.send((status, stderr)).ok();
        });
        Client { pid, stdin, stdout, exited, done: false }
    }

    /// Runs `echo ARGS` with `input` on standard input (fed by its own thread, so that a client
    /// that stops reading fails the test instead of hanging it).
    fn run(args: &[&str], input: Vec<u8>) -> Finished {
        let mut client = Client::start(args);
        let mut stdin = client.stdin.take().unwrap();
        thread::spawn(move || {
            // The client may exit before reading everything (a sentinel): that is its right.
            stdin.write_all(&input).ok();
        });
        client.finish(LIMIT)
    }

    fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).and_then(|()| stdin.flush()).expect("write to the client");
    }

    /// Waits until standard output is exactly `expected`.
    fn wait_stdout(&self, expected: &[u8], limit: Duration) {
        let deadline = Instant::now() + limit;
        while *self.stdout.lock().unwrap() != expected {
            assert!(
                Instant::now() < deadline,
                "stdout {:?}, expected {:?}",
                String::from_utf8_lossy(&self.stdout.lock().unwrap()),
                String::from_utf8_lossy(expected)
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// On a terminal: types each of `lines` and waits for it to show twice, as typed (the
    /// terminal's echo, LF written as CR LF) and as echoed, before typing the next.
    fn type_lines_seeing_each_echoed(&mut self, lines: &[&str]) {
        let mut expected = Vec::new();
        for line in lines {
            self.write(format!("{line}\n").as_bytes());
            expected.extend_from_slice(format!("{line}\r\n{line}\r\n").as_bytes());
            self.wait_stdout(&expected, LIMIT);
        }
    }

    /// Waits for the exit (closing stdin if still open), failing after `limit`.
    fn finish(mut self, limit: Duration) -> Finished {
        self.stdin = None;
        let (status, stderr) = self.exited.recv_timeout(limit).expect("client exits in time");
        self.done = true;
        let stdout = std::mem::take(&mut *self.stdout.lock().unwrap());
        Finished { status, stdout, stderr: String::from_utf8_lossy(&stderr).into_owned() }
    }

    /// Waits for the exit with stdin still open.
    fn finish_keeping_stdin(mut self, limit: Duration) -> Finished {
        let stdin = self.stdin.take();
        let finished = self.finish(limit);
        drop(stdin);
        finished
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if !self.done {
            // Still running after a failed assertion: no client outlives its test.
            let pid = rustix::process::Pid::from_raw(self.pid as i32).unwrap();
            rustix::process::kill_process(pid, rustix::process::Signal::KILL).ok();
        }
    }
}

fn server() -> ServerProcess {
    ServerProcess::start(&["--listen", "127.0.0.1:0"], 1)
}

/// The server's `close` log line for the one connection.
fn close_line(server: &ServerProcess) -> String {
    server.wait_for_line("close ", LIMIT).unwrap_or_else(|| panic!("no close line: {:?}", server.log()))
}

#[test]
fn piped_lines_are_sent_with_crlf_and_printed_with_lf() {
    let server = server();
    let addr = server.addr().to_string();
    let out = Client::run(&["connect", &addr], b"a\nb\r\nc".to_vec());
    assert_eq!(out.stdout, b"a\nb\nc\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stderr, "", "no note when the input ended first");
    // Three lines with CR LF, the last one too, and no sentinel: the server saw end of input.
    let close = close_line(&server);
    assert!(close.contains("lines=3 bytes=9") && close.ends_with("reason=eof"), "{close}");
}

#[test]
fn bytes_are_not_checked_for_utf8() {
    let server = InProcessServer::start(ServerConfig::default());
    let line = b"nul\0 invalid \xff\xfe\xc3(\r bare cr";
    let input = [&line[..], b"\n"].concat();
    let out = Client::run(&["connect", &server.addr.to_string()], input.clone());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, input);
    assert_eq!(server.stop().bytes, line.len() as u64 + 2);
}

#[test]
fn the_line_dot_ends_the_session() {
    let server = server();
    let out = Client::run(&["connect", &server.addr().to_string()], b"a\n.\r\nb\n".to_vec());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"a\n");
    assert_eq!(out.stderr, "", "the session ended as asked: no note");
    let close = close_line(&server);
    assert!(close.contains("lines=1 ") && close.ends_with("reason=sentinel"), "{close}");
}

/// Far more than the socket buffers hold (about 8 MB stall a client that does not read while
/// it sends): a client that sent everything before reading would deadlock here.
#[test]
fn a_large_input_comes_back_complete_and_in_order() {
    let server = InProcessServer::start(ServerConfig::default());
    let input: Vec<u8> =
        (0..500_000).flat_map(|i| format!("line {i:08} of the big input file....\n").into_bytes()).collect();
    assert_eq!(input.len(), 20_000_000);
    let started = Instant::now();
    let out = Client::run(&["connect", &server.addr.to_string()], input.clone());
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout == input, "the echo differs from the input");
    assert_eq!(server.stop().lines, 500_000);
    eprintln!("{} bytes in {:?}", input.len(), started.elapsed());
}

/// On a terminal each typed line is echoed before the next one is typed: the pseudo-terminal
/// comes from util-linux `script`. The terminal echoes what is typed, so each line shows twice:
/// as typed, then as echoed by the server.
#[test]
fn on_a_terminal_each_line_is_echoed_at_once_and_dot_ends() {
    let server = InProcessServer::start(ServerConfig::default());
    let command = format!("{ECHO} connect {}", server.addr);
    let mut client = Client::on_terminal(&command);
    client.type_lines_seeing_each_echoed(&["first", "second \u{e9}"]);
    client.write(b".\n");
    let out = client.finish_keeping_stdin(LIMIT);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(server.stop().lines, 2);
}

/// One Ctrl-D on an empty line ends the input at once, even after lines were typed (a reader
/// that reads on after a short read would swallow it and wait for a second one).
#[test]
fn on_a_terminal_one_ctrl_d_half_closes() {
    let server = server();
    let command = format!("{ECHO} connect {}", server.addr());
    let mut client = Client::on_terminal(&command);
    client.write(b"typed\n");
    client.wait_stdout(b"typed\r\ntyped\r\n", LIMIT);
    client.write(b"\x04");
    let out = client.finish_keeping_stdin(LIMIT);
    assert!(out.status.success(), "{out:?}");
    let close = close_line(&server);
    assert!(close.contains("lines=1 ") && close.ends_with("reason=eof"), "{close}");
}

/// The server closes while a line is half typed: the note does not continue the typed text.
#[test]
fn on_a_terminal_the_server_closed_note_starts_a_line() {
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--idle-timeout", "300ms"], 1);
    let command = format!("{ECHO} connect {}", server.addr());
    let mut client = Client::on_terminal(&command);
    client.write(b"typed\n");
    client.wait_stdout(b"typed\r\ntyped\r\n", LIMIT);
    client.write(b"half");
    let out = client.finish_keeping_stdin(LIMIT);
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.ends_with("half\r\necho: the server closed the connection\r\n"), "{shown:?}");
}

#[test]
fn idle_timeout_with_input_open_prints_echoes_and_a_note() {
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--idle-timeout", "200ms"], 1);
    let mut client = Client::start(&["connect", &server.addr().to_string()]);
    client.write(b"hi\n");
    client.wait_stdout(b"hi\n", LIMIT);
    let out = client.finish_keeping_stdin(LIMIT);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"hi\n");
    assert_eq!(out.stderr, "echo: the server closed the connection\n");
    assert!(close_line(&server).ends_with("reason=idle timeout"));
}

#[test]
fn server_shutdown_with_input_open_exits_0_with_a_note() {
    let mut server = server();
    let mut client = Client::start(&["client", &server.addr().to_string()]);
    client.write(b"before shutdown\n");
    client.wait_stdout(b"before shutdown\n", LIMIT);
    server.signal(rustix::process::Signal::TERM);
    let out = client.finish_keeping_stdin(LIMIT);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"before shutdown\n");
    assert_eq!(out.stderr, "echo: the server closed the connection\n");
    assert!(server.wait_exit(LIMIT).expect("server exits").success());
}

/// A server that echoes the first line, then closes with the second line unread, which makes
/// the kernel reset the connection.
fn resetting_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut first = [0; b"one\r\n".len()];
        stream.read_exact(&mut first).unwrap();
        stream.write_all(&first).unwrap();
        // Blocks until the next line has arrived, and leaves it unread.
        stream.peek(&mut [0]).unwrap();
    });
    addr
}

#[test]
fn a_reset_prints_earlier_echoes_then_fails() {
    let addr = resetting_server().to_string();
    let mut client = Client::start(&["connect", &addr]);
    client.write(b"one\n");
    client.wait_stdout(b"one\n", LIMIT);
    client.write(b"two\n");
    let out = client.finish_keeping_stdin(LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(out.stdout, b"one\n");
    assert_eq!(out.stderr, "echo: connection reset\n");
}

/// An address that refuses connections: a port that was just freed.
fn refusing_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[test]
fn a_refused_connection_fails_with_the_reason() {
    let addr = refusing_addr().to_string();
    let out = Client::run(&["connect", &addr], Vec::new());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let prefix = format!("echo: cannot connect to {addr}: ");
    assert!(out.stderr.starts_with(&prefix) && out.stderr.contains("refused"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1);
}

#[test]
fn a_name_that_does_not_resolve_says_so() {
    // A label over 63 bytes is refused by the resolver itself: no query leaves the machine.
    let host = format!("{}.invalid:8007", "a".repeat(64));
    let out = Client::run(&["connect", &host], Vec::new());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let prefix = format!("echo: cannot connect to {host}: ");
    assert!(out.stderr.starts_with(&prefix) && out.stderr.contains("lookup"), "{}", out.stderr);
}

/// The connect timeout bounds an attempt that gets no answer: a listener whose accept queue is
/// full drops new SYNs, so the handshake never completes.
#[test]
fn the_connect_timeout_bounds_the_attempt() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    let full = (0..1000).any(|_| match TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
        Ok(stream) => {
            queued.push(stream);
            false
        }
        Err(_) => true,
    });
    assert!(full, "the accept queue never filled");
    let started = Instant::now();
    let out = Client::run(&["connect", &addr.to_string(), "--connect-timeout", "300ms"], Vec::new());
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(out.stderr, format!("echo: cannot connect to {addr}: timed out after 300ms\n"));
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn localhost_reaches_a_server_on_127_0_0_1() {
    let server = InProcessServer::start(ServerConfig::default());
    let addr = format!("localhost:{}", server.addr.port());
    let out = Client::run(&["connect", &addr], b"via localhost\n".to_vec());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"via localhost\n");
}

#[test]
fn an_ipv6_address_in_brackets_connects() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    let server = ServerProcess::start(&["--listen", "[::1]:0"], 1);
    let addr = server.addr();
    assert!(addr.is_ipv6());
    let out = Client::run(&["connect", &addr.to_string()], b"over v6\n".to_vec());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"over v6\n");
}

#[test]
fn help_explains_the_session_rules() {
    for (name, help) in [("connect", "--help"), ("client", "--help"), ("connect", "-h")] {
        let out = Client::run(&[name, help], Vec::new());
        assert!(out.status.success(), "{out:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(help.contains("\".\" ends the session"), "{help}");
        assert!(help.contains("half-closes"), "{help}");
        assert!(help.contains("--connect-timeout"), "{help}");
    }
}

// Unix stream sockets.

/// Listens on `path` and runs one line session, on its own thread; its result comes back on
/// the channel.
fn unix_echo_server(path: &SocketPath) -> mpsc::Receiver<Session> {
    let listener = async_net::unix::UnixListener::bind(&path.0).expect("bind the Unix socket");
    let (tx, session) = mpsc::channel();
    thread::spawn(move || {
        let served = smol::block_on(async {
            let (stream, _) = listener.accept().await.expect("accept");
            smol_echo::echo(stream, &EchoConfig::default(), future::pending()).await
        });
        tx.send(served).ok();
    });
    session
}

#[test]
fn a_unix_socket_address_connects_there() {
    let path = SocketPath::new("binary");
    let session = unix_echo_server(&path);
    let out = Client::run(&["connect", &path.addr()], b"over a unix socket\nand \xff\0 bytes".to_vec());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"over a unix socket\nand \xff\0 bytes\n");
    assert_eq!(out.stderr, "");
    let session = session.recv_timeout(LIMIT).expect("the session ends");
    assert_eq!((session.lines, session.reason), (2, CloseReason::Eof));
}

#[test]
fn the_library_connects_to_a_unix_socket_and_half_closes_it() {
    let path = SocketPath::new("library");
    let session = unix_echo_server(&path);
    let (ending, printed) = within(LIMIT, async {
        let stream = smol_echo::connect(&path.addr(), LIMIT).await.expect("connect");
        assert!(matches!(stream, Stream::Unix(_)), "{stream:?}");
        let mut printed = Vec::new();
        let ending =
            smol_echo::converse(stream, &b"one\ntwo"[..], &mut printed, false).await.expect("converse");
        (ending.ending, printed)
    });
    // The server saw the end of input, not a sentinel, and still sent both echoes.
    assert_eq!(ending, Ending::InputEnded);
    assert_eq!(printed, b"one\ntwo\n");
    assert_eq!(session.recv_timeout(LIMIT).expect("the session ends").reason, CloseReason::Eof);
}

#[test]
fn a_missing_unix_socket_fails_with_the_reason() {
    let path = SocketPath::new("missing");
    let out = Client::run(&["connect", &path.addr()], Vec::new());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let prefix = format!("echo: cannot connect to {}: ", path.addr());
    assert!(out.stderr.starts_with(&prefix) && out.stderr.contains("No such file"), "{}", out.stderr);
}

// Raw mode (RFC 862).

fn raw_server() -> ServerProcess {
    ServerProcess::start(&["--mode", "raw", "--listen", "127.0.0.1:0"], 1)
}

#[test]
fn raw_mode_sends_and_prints_bytes_unchanged() {
    let server = raw_server();
    // Line ends of every kind, the sentinel, NUL, invalid UTF-8, and no line end at the end: in
    // line mode each of these would be changed or end the session.
    let input = b"a\r\nb\nc\rd\r\n.\r\n.\n\0nul \xff\xfe\xc3( tail".to_vec();
    let out = Client::run(&["connect", "--mode", "raw", &server.addr().to_string()], input.clone());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, input);
    assert_eq!(out.stderr, "");
    let close = close_line(&server);
    assert!(close.contains(&format!("bytes={} ", input.len())) && close.ends_with("reason=eof"), "{close}");
}

#[test]
fn raw_mode_sends_and_receives_at_once() {
    let server = raw_server();
    // More than the socket buffers hold: a client that sent all before reading would stall.
    let input: Vec<u8> = (0..=255u8).cycle().take(8 << 20).collect();
    let out = Client::run(&["connect", "--mode", "raw", &server.addr().to_string()], input.clone());
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout == input, "the echo differs ({} bytes of {})", out.stdout.len(), input.len());
}

#[test]
fn raw_mode_on_a_terminal_prints_each_echo_at_once() {
    let server = raw_server();
    let command = format!("{ECHO} connect --mode raw {}", server.addr());
    let mut client = Client::on_terminal(&command);
    client.type_lines_seeing_each_echoed(&["first", "."]);
    // Ctrl-D: the end of input, which half-closes; the server then closes.
    client.write(b"\x04");
    let out = client.finish_keeping_stdin(LIMIT);
    assert!(out.status.success(), "{out:?}");
    assert!(close_line(&server).ends_with("reason=eof"));
}

#[test]
fn raw_mode_reports_a_reset() {
    let addr = resetting_server().to_string();
    let mut client = Client::start(&["connect", "--mode", "raw", &addr]);
    client.write(b"one\r\n");
    client.wait_stdout(b"one\r\n", LIMIT);
    client.write(b"two");
    let out = client.finish_keeping_stdin(LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(out.stdout, b"one\r\n");
    assert_eq!(out.stderr, "echo: connection reset\n");
}

#[test]
fn an_unknown_client_mode_is_a_usage_error() {
    let out = Client::run(&["connect", "--mode", "lines", "127.0.0.1:9"], Vec::new());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("invalid mode 'lines'"), "{}", out.stderr);
}

// UDP.

/// A UDP server on its own thread. `answer(n, payload)` gives the replies to send for the n-th
/// datagram (from 1); every payload received is kept, in order.
struct UdpServer {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl UdpServer {
    fn start(mut answer: impl FnMut(usize, &[u8]) -> Vec<Vec<u8>> + Send + 'static) -> UdpServer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Short, so that the thread sees the stop flag soon.
        socket.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let addr = socket.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (received.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut buf = vec![0; 64 * 1024];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else { continue };
                seen.lock().unwrap().push(buf[..n].to_vec());
                let count = seen.lock().unwrap().len();
                for reply in answer(count, &buf[..n]) {
                    socket.send_to(&reply, peer).unwrap();
                }
            }
        });
        UdpServer { addr, received, stop, thread: Some(thread) }
    }

    /// Echoes every datagram.
    fn echo() -> UdpServer {
        UdpServer::start(|_, payload| vec![payload.to_vec()])
    }

    fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().ok();
    }
}

/// The summary: the last line of stderr.
fn summary(stderr: &str) -> &str {
    stderr.lines().last().unwrap_or_default()
}

#[test]
fn udp_sends_each_line_as_a_datagram_and_prints_each_echo() {
    let server = UdpServer::echo();
    let input = b"first\nsecond\r\n\nbare\rcr\nno line end".to_vec();
    let out = Client::run(&["connect", "--udp", &server.addr.to_string()], input);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"first\nsecond\n\nbare\rcr\nno line end\n");
    // Each datagram is the line without its LF or CR LF, an empty line an empty datagram.
    let sent: Vec<&[u8]> = vec![b"first", b"second", b"", b"bare\rcr", b"no line end"];
    assert_eq!(server.received(), sent);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    let summary = summary(&out.stderr);
    assert!(
        summary.starts_with("5 datagrams sent, 5 received, 0 lost (0% loss), round trip min/avg/max = ")
            && summary.ends_with(" ms"),
        "{summary}"
    );
}

#[test]
fn udp_counts_a_datagram_without_echo_as_lost() {
    let server = UdpServer::start(|n, payload| if n == 2 { vec![] } else { vec![payload.to_vec()] });
    let addr = server.addr.to_string();
    let started = Instant::now();
    let out = Client::run(&["connect", "--udp", &addr, "--timeout", "200ms"], b"one\ntwo\nthree\n".to_vec());
    assert!(started.elapsed() >= Duration::from_millis(200), "the lost datagram was waited for");
    // One echo or more came back: success, as ping.
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"one\nthree\n");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines[0], "echo: no reply to datagram 2 within 200ms", "{}", out.stderr);
    assert!(
        lines[1].starts_with("3 datagrams sent, 2 received, 1 lost (33.3% loss), round trip "),
        "{}",
        lines[1]
    );
    assert_eq!(lines.len(), 2, "{}", out.stderr);
}

#[test]
fn udp_fails_when_every_datagram_is_lost() {
    let server = UdpServer::start(|_, _| vec![]);
    let out =
        Client::run(&["connect", "--udp", &server.addr.to_string(), "--timeout", "50ms"], b"a\nb\n".to_vec());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(out.stdout, b"");
    assert_eq!(
        out.stderr,
        "echo: no reply to datagram 1 within 50ms\necho: no reply to datagram 2 within 50ms\n\
         2 datagrams sent, 0 received, 2 lost (100% loss)\n"
    );
    assert_eq!(server.received().len(), 2);
}

/// The echo of the first datagram comes only after the second is sent, just before the second's
/// echo: it is not taken for the second's echo, nor printed.
#[test]
fn udp_ignores_a_late_echo() {
    let mut held = Vec::new();
    let server = UdpServer::start(move |n, payload| {
        if n == 1 {
            held = payload.to_vec();
            vec![]
        } else {
            vec![std::mem::take(&mut held), payload.to_vec()]
        }
    });
    let out = Client::run(
        &["connect", "--udp", &server.addr.to_string(), "--timeout", "100ms"],
        b"1\n2\n".to_vec(),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"2\n");
    let summary = summary(&out.stderr);
    assert!(summary.starts_with("2 datagrams sent, 1 received, 1 lost (50% loss), round trip "), "{summary}");
    assert!(summary.ends_with(" ms, 1 unexpected reply ignored"), "{summary}");
}

/// Nothing listens on the port: the kernel answers with ICMP port unreachable (never rate
/// limited on loopback), long before the timeout.
#[test]
fn udp_reports_a_refused_datagram_without_waiting() {
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let out =
        Client::run(&["connect", "--udp", &format!("127.0.0.1:{port}"), "--timeout", "5s"], b"x\n".to_vec());
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        out.stderr,
        "echo: no reply to datagram 1: connection refused\n1 datagram sent, 0 received, 1 lost (100% loss)\n"
    );
}

#[test]
fn udp_with_no_input_sends_nothing_and_succeeds() {
    let server = UdpServer::echo();
    let out = Client::run(&["connect", "--udp", &server.addr.to_string()], Vec::new());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stderr, "0 datagrams sent, 0 received, 0 lost (0% loss)\n");
}

#[test]
fn udp_carries_the_largest_datagram_and_refuses_a_larger_line() {
    let server = UdpServer::echo();
    let largest = vec![b'x'; 65_507];
    let input = [&largest[..], b"\r\n", &largest[..], b"y\n", b"never sent\n"].concat();
    let out = Client::run(&["connect", "--udp", &server.addr.to_string()], input);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(out.stdout, [&largest[..], b"\n"].concat());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines[0], "echo: line 2 is longer than a UDP datagram can carry (65507 bytes)");
    assert!(lines[1].starts_with("1 datagram sent, 1 received, 0 lost (0% loss)"), "{}", lines[1]);
    assert_eq!(server.received().len(), 1);
}

#[test]
fn udp_prints_the_summary_on_sigint() {
    let server = UdpServer::echo();
    let mut client = Client::start(&["connect", "--udp", &server.addr.to_string()]);
    client.write(b"hi\n");
    client.wait_stdout(b"hi\n", LIMIT);
    let pid = rustix::process::Pid::from_raw(client.pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = client.finish_keeping_stdin(LIMIT);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.starts_with("1 datagram sent, 1 received, 0 lost (0% loss), round trip "),
        "{}",
        out.stderr
    );
}

#[test]
fn udp_takes_only_host_and_port_and_its_own_flags() {
    for (args, message) in [
        (
            &["--udp", "unix:/tmp/echo.sock"][..],
            "--udp needs host:port, not a Unix socket ('unix:/tmp/echo.sock')",
        ),
        (&["--udp", "--mode", "raw", "127.0.0.1:9"], "--mode cannot be used with --udp"),
        (&["--udp", "--timeout", "0", "127.0.0.1:9"], "--timeout must be more than 0"),
        (&["--timeout", "1s", "127.0.0.1:9"], "--timeout is for --udp"),
    ] {
        let out = Client::run(&[&["connect"][..], args].concat(), Vec::new());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stderr.starts_with(&format!("echo: {message}")), "{args:?}: {}", out.stderr);
        assert!(out.stderr.ends_with("run echo connect --help for usage\n"), "{}", out.stderr);
    }
}

#[test]
fn echo_connect_talks_to_echo_serve_over_unix_and_udp() {
    let path = SocketPath::new("client-serve");
    let mut server = ServerProcess::start(&["--listen", &path.addr(), "--udp", "127.0.0.1:0"], 2);
    let udp = server.listening.iter().find_map(|name| name.strip_prefix("udp:")).unwrap().to_string();

    let out = Client::run(&["connect", &path.addr()], b"over unix\nsecond\n".to_vec());
    assert_eq!((out.status.code(), out.stdout.as_slice()), (Some(0), &b"over unix\nsecond\n"[..]), "{out:?}");

    let out = Client::run(&["connect", "--udp", &udp], b"one\ntwo\n".to_vec());
    assert_eq!((out.status.code(), out.stdout.as_slice()), (Some(0), &b"one\ntwo\n"[..]), "{out:?}");
    assert!(out.stderr.starts_with("2 datagrams sent, 2 received, 0 lost (0% loss)"), "{out:?}");
    server.signal(rustix::process::Signal::TERM);
    assert!(server.wait_exit(LIMIT).expect("the server exits").success());
    let summary = server.summary();
    assert!(summary.starts_with("shutdown: 1 connections, 2 lines, 2 datagrams"), "{summary}");
}

// ---------------------------------------------------------------------------------------------
// Streaming, echoes owed, a closed output.

/// A server that reads and counts every byte and never answers.
fn counting_sink() -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = count.clone();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut chunk = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = stream.read(&mut chunk) {
            counted.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    (addr, count)
}

#[test]
fn a_line_without_end_is_streamed_through_a_bounded_buffer_in_both_modes() {
    const SENT: u64 = 64 << 20;
    for mode in ["line", "raw"] {
        let (addr, received) = counting_sink();
        let mut client = Client::start(&["connect", &addr.to_string(), "--mode", mode]);
        let pid = client.pid;
        let mut stdin = client.stdin.take().unwrap();
        let (fed, all_fed) = mpsc::channel();
        thread::spawn(move || {
            let block = vec![b'a'; 64 * 1024];
            for _ in 0..SENT / block.len() as u64 {
                stdin.write_all(&block).expect("feed the client");
            }
            // The input stays open: nothing may wait for the line's end.
            fed.send(stdin).ok();
        });
        let deadline = Instant::now() + LIMIT;
        while received.load(Ordering::Relaxed) < SENT {
            assert!(Instant::now() < deadline, "{mode}: {} bytes arrived", received.load(Ordering::Relaxed));
            thread::sleep(Duration::from_millis(5));
        }
        let rss = common::rss_of(pid);
        assert!(rss < 32 << 20, "{mode}: the client holds {rss} bytes");
        drop(all_fed.recv_timeout(LIMIT));
        drop(client);
    }
}

#[test]
fn a_close_with_echoes_owed_after_the_input_ended_fails_with_the_count() {
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--max-line", "100"], 1);
    let mut input = b"ok\n".to_vec();
    input.extend([b'a'; 200]);
    input.push(b'\n');
    let out = Client::run(&["connect", &server.addr().to_string()], input);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(out.stdout, b"ok\n");
    assert_eq!(out.stderr, "echo: the server closed the connection with 1 line(s) not echoed\n");
    assert!(close_line(&server).ends_with("reason=line too long"));
}

#[test]
fn a_close_with_a_line_partly_sent_and_input_open_fails_with_the_count() {
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--max-line", "100"], 1);
    let mut client = Client::start(&["connect", &server.addr().to_string()]);
    client.write(b"one\ntwo\n");
    client.wait_stdout(b"one\ntwo\n", LIMIT);
    client.write(&[b'a'; 200]);
    let out = client.finish_keeping_stdin(LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(out.stdout, b"one\ntwo\n");
    assert_eq!(out.stderr, "echo: the server closed the connection with 1 line(s) not echoed\n");
}

#[test]
fn a_close_after_the_sentinel_owes_nothing() {
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--max-line", "100"], 1);
    let out = Client::run(&["connect", &server.addr().to_string()], b"one\n.\nnot sent\n".to_vec());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!((&out.stdout[..], &out.stderr[..]), (&b"one\n"[..], ""));
}

#[test]
fn raw_mode_counts_the_bytes_not_echoed() {
    // Reads five bytes, echoes none, closes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.read_exact(&mut [0; 5]).unwrap();
    });
    let mut client = Client::start(&["connect", &addr.to_string(), "--mode", "raw"]);
    client.write(b"hello");
    let out = client.finish_keeping_stdin(LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(out.stderr, "echo: the server closed the connection with 5 byte(s) not echoed\n");
}

/// `echo connect ARGS < endless | head -c 6`: the client's output is closed after a few bytes
/// while its input goes on. Returns the exit status and stderr.
fn with_output_closed_early(args: &[&str]) -> (Option<i32>, String) {
    let mut child = common::spawn_echo(args);
    let mut stdin = child.stdin.take().unwrap();
    thread::spawn(move || {
        // Bounded: 64 MiB at most, far more than the pipes and sockets between hold.
        let block = b"hello\n".repeat(1000);
        for _ in 0..(64 << 20) / block.len() {
            if stdin.write_all(&block).is_err() {
                return;
            }
        }
    });
    let mut stdout = child.stdout.take().unwrap();
    stdout.read_exact(&mut [0; 6]).expect("the first echo");
    drop(stdout);
    let out = common::output_within(child, LIMIT);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_closed_output_ends_the_client_quietly_with_141_in_every_mode() {
    let line = server();
    let raw = raw_server();
    let udp = UdpServer::echo();
    let (line, raw, udp) = (line.addr().to_string(), raw.addr().to_string(), udp.addr.to_string());
    for args in [
        vec!["connect", &line, "--mode", "line"],
        vec!["connect", &raw, "--mode", "raw"],
        vec!["connect", "--udp", &udp],
    ] {
        assert_eq!(with_output_closed_early(&args), (Some(141), String::new()), "{args:?}");
    }
}
