//! `echo connect` through the binary: pipes, a terminal, endings, failures.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{ECHO, InProcessServer, ServerProcess};
use smol_echo::ServerConfig;

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
    let mut client = Client::spawn(Command::new("script").args(["-q", "-e", "-c", &command, "/dev/null"]));
    let mut expected = Vec::new();
    for line in ["first", "second \u{e9}"] {
        client.write(format!("{line}\n").as_bytes());
        expected.extend_from_slice(format!("{line}\r\n{line}\r\n").as_bytes());
        client.wait_stdout(&expected, LIMIT);
    }
    client.write(b".\n");
    let out = client.finish_keeping_stdin(LIMIT);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(server.stop().lines, 2);
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
    for name in ["connect", "client"] {
        let out = Client::run(&[name, "--help"], Vec::new());
        assert!(out.status.success(), "{out:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(help.contains("\".\" ends the session"), "{help}");
        assert!(help.contains("half-closes"), "{help}");
        assert!(help.contains("--connect-timeout"), "{help}");
    }
}
