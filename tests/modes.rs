//! Other ways to serve: one session over standard input and output (`echo serve --stdio`) and
//! the RFC 862 raw echo (`--mode raw`), through the built binary.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{ECHO, ServerProcess};

/// How long anything that should happen promptly may take before the test fails.
const LIMIT: Duration = Duration::from_secs(5);

/// A running `echo serve --stdio ARGS`, with its output read by threads so it never blocks.
struct StdioSession {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<Vec<u8>>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl StdioSession {
    fn start(args: &[&str]) -> StdioSession {
        let mut child = Command::new(ECHO)
            .args(["serve", "--stdio"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start echo serve --stdio");
        let mut out = child.stdout.take().unwrap();
        let (tx, stdout) = mpsc::channel();
        thread::spawn(move || {
            let mut chunk = [0; 4096];
            while let Ok(n @ 1..) = out.read(&mut chunk) {
                if tx.send(chunk[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            err.read_to_string(&mut text).ok();
            text
        });
        let stdin = child.stdin.take();
        StdioSession { child, stdin, stdout, stderr: Some(stderr) }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stdin.as_mut().expect("stdin open").write_all(bytes).expect("write to stdin");
    }

    /// Ends standard input.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Reads standard output until it holds `len` bytes.
    fn read(&self, len: usize) -> Vec<u8> {
        let deadline = Instant::now() + LIMIT;
        let mut got = Vec::new();
        while got.len() < len {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(chunk) => got.extend(chunk),
                Err(_) => panic!("wanted {len} bytes on stdout, got {got:?}"),
            }
        }
        got
    }

    /// Waits for the exit; returns the status, everything else on stdout, and stderr.
    fn finish(mut self) -> (ExitStatus, Vec<u8>, String) {
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() >= deadline {
                self.child.kill().ok();
                panic!("echo serve --stdio did not exit within {LIMIT:?}");
            }
            thread::sleep(Duration::from_millis(10));
        };
        self.stdin = None;
        let rest = self.stdout.iter().flatten().collect();
        (status, rest, self.stderr.take().unwrap().join().unwrap())
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, signal).expect("signal");
    }
}

impl Drop for StdioSession {
    fn drop(&mut self) {
        // Already exited is fine; otherwise no child outlives its test.
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// The one `close stdio` log line.
fn close_line(stderr: &str) -> &str {
    let mut lines = stderr.lines().filter(|line| line.starts_with("close stdio "));
    let line = lines.next().unwrap_or_else(|| panic!("no close line in {stderr:?}"));
    assert!(lines.next().is_none(), "more than one close line: {stderr:?}");
    line
}

// ---------------------------------------------------------------------------------------------
// --stdio

#[test]
fn stdio_echoes_lines_until_the_sentinel() {
    let mut session = StdioSession::start(&[]);
    session.send(b"hello\r\nbare\nlf\r\n.\r\nafter\r\n");
    session.close_stdin();
    let (status, out, err) = session.finish();
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(out, b"hello\r\nbare\nlf\r\n");
    assert!(close_line(&err).contains("lines=2 bytes=16 "), "{err}");
    assert!(close_line(&err).ends_with("reason=sentinel"), "{err}");
    assert!(!err.contains("listening on"), "{err}");
}

#[test]
fn stdio_echoes_the_unterminated_tail_at_end_of_input() {
    let mut session = StdioSession::start(&[]);
    session.send(b"one\r\n\x00\xfftail");
    session.close_stdin();
    let (status, out, err) = session.finish();
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(out, b"one\r\n\x00\xfftail");
    assert!(close_line(&err).contains("lines=2 bytes=11 "), "{err}");
    assert!(close_line(&err).ends_with("reason=eof"), "{err}");
}

#[test]
fn stdio_closes_an_idle_session_while_stdin_stays_open() {
    let mut session = StdioSession::start(&["--idle-timeout", "200ms"]);
    let started = Instant::now();
    session.send(b"partial");
    let (status, out, err) = session.finish();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(out, b"", "a partial line is not echoed on an idle close");
    assert!(close_line(&err).ends_with("reason=idle timeout"), "{err}");
}

#[test]
fn stdio_closes_on_a_line_too_long() {
    let mut session = StdioSession::start(&["--max-line", "8", "--idle-timeout", "2s"]);
    session.send(b"ok\r\n0123456789");
    assert_eq!(session.read(4), b"ok\r\n");
    let (status, out, err) = session.finish();
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(out, b"");
    assert!(close_line(&err).ends_with("reason=line too long"), "{err}");
}

#[test]
fn stdio_drains_on_sigterm() {
    let mut session = StdioSession::start(&[]);
    session.send(b"before\r\n");
    assert_eq!(session.read(8), b"before\r\n");
    session.signal(rustix::process::Signal::TERM);
    let (status, out, err) = session.finish();
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(out, b"");
    assert!(err.contains("SIGTERM received"), "{err}");
    assert!(close_line(&err).ends_with("reason=shutdown"), "{err}");
}

#[test]
fn stdio_refuses_listen_and_udp() {
    for flag in ["--listen", "--udp"] {
        let output = Command::new(ECHO)
            .args(["serve", "--stdio", flag, "127.0.0.1:0"])
            .stdin(Stdio::null())
            .output()
            .expect("run echo");
        assert_eq!(output.status.code(), Some(2), "{flag}");
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(err.contains("--listen and --udp cannot be used with --stdio"), "{err}");
    }
}

#[test]
fn stdio_raw_echoes_bytes_without_line_rules() {
    let mut session = StdioSession::start(&["--mode", "raw"]);
    session.send(b"no end");
    assert_eq!(session.read(6), b"no end", "bytes come back before any CR LF");
    session.send(b".\r\n\x00\xff");
    session.close_stdin();
    let (status, out, err) = session.finish();
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(out, b".\r\n\x00\xff", "the sentinel means nothing in raw mode");
    assert!(close_line(&err).contains("bytes=11 "), "{err}");
    assert!(close_line(&err).ends_with("reason=eof"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// --mode raw over TCP

/// A blocking client whose reads and writes fail after `LIMIT` instead of hanging.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, LIMIT).expect("connect");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.set_write_timeout(Some(LIMIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

fn raw_server(idle: &str) -> ServerProcess {
    ServerProcess::start(&["--mode", "raw", "--listen", "127.0.0.1:0", "--idle-timeout", idle], 1)
}

#[test]
fn raw_echoes_each_byte_as_it_arrives_and_ignores_the_sentinel() {
    let server = raw_server("5s");
    let mut client = connect(server.addr());
    for chunk in [&b"a"[..], b"no line end", b".\r\n", b"\n\r"] {
        client.write_all(chunk).unwrap();
        let mut echo = vec![0; chunk.len()];
        client.read_exact(&mut echo).expect("the echo of a chunk without waiting for a line end");
        assert_eq!(echo, chunk);
    }
    client.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"");
    let line = server.wait_for_line("close ", LIMIT).expect("close line");
    assert!(line.contains("lines=0 bytes=17 "), "{line}");
    assert!(line.ends_with("reason=eof"), "{line}");
}

#[test]
fn raw_echoes_binary_data_in_bulk() {
    let server = raw_server("5s");
    let mut client = connect(server.addr());
    let data: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    let mut writer = client.try_clone().unwrap();
    let sent = data.clone();
    // Send and receive at once: the echo of a megabyte does not fit in the socket buffers.
    let sending = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut echo = Vec::new();
    client.read_to_end(&mut echo).unwrap();
    sending.join().unwrap();
    assert!(echo == data, "echo differs ({} bytes of {})", echo.len(), data.len());
    let line = server.wait_for_line("close ", LIMIT).expect("close line");
    assert!(line.contains(&format!("bytes={} ", data.len())), "{line}");
}

#[test]
fn raw_closes_an_idle_connection() {
    let server = raw_server("200ms");
    let mut client = connect(server.addr());
    client.write_all(b"x").unwrap();
    let mut byte = [0];
    client.read_exact(&mut byte).unwrap();
    let after_byte = Instant::now();
    assert_eq!(client.read(&mut byte).expect("a clean close"), 0);
    assert!(after_byte.elapsed() >= Duration::from_millis(150), "{:?}", after_byte.elapsed());
    let line = server.wait_for_line("close ", LIMIT).expect("close line");
    assert!(line.ends_with("reason=idle timeout"), "{line}");
}

#[test]
fn raw_closes_a_peer_that_does_not_read() {
    let server = raw_server("300ms");
    let mut client = connect(server.addr());
    let chunk = vec![b'z'; 64 * 1024];
    // Send and never read: the server's writes block once the buffers fill, and after the write
    // timeout it closes, which fails one of these writes. Bounded by count and by time.
    let started = Instant::now();
    let mut failed = false;
    for _ in 0..1024 {
        if let Err(err) = client.write_all(&chunk) {
            assert!(
                matches!(err.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe),
                "{err}"
            );
            failed = true;
            break;
        }
        if started.elapsed() > LIMIT {
            break;
        }
    }
    assert!(failed, "the server kept taking bytes from a peer that reads nothing");
    let line = server.wait_for_line("close ", LIMIT).expect("close line");
    assert!(line.ends_with("reason=write timeout"), "{line}");
}

/// What inetd (`nowait`) and systemd (`Accept=yes`) do: the accepted socket is both standard
/// input and standard output of one `echo serve --stdio`.
#[test]
fn stdio_serves_a_socket_handed_over_as_stdin_and_stdout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = connect(listener.local_addr().unwrap());
    let (accepted, _) = listener.accept().unwrap();
    let stdout = accepted.try_clone().unwrap();
    let mut child = Command::new(ECHO)
        .args(["serve", "--stdio", "-q"])
        .stdin(std::os::fd::OwnedFd::from(accepted))
        .stdout(std::os::fd::OwnedFd::from(stdout))
        .stderr(Stdio::null())
        .spawn()
        .expect("start echo serve --stdio");
    client.write_all(b"over a socket\r\n").unwrap();
    let mut echo = [0; 15];
    client.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"over a socket\r\n");
    client.write_all(b".\r\n").unwrap();
    let mut rest = Vec::new();
    // The process exits after the sentinel, and with it the last holder of the socket.
    client.read_to_end(&mut rest).expect("the end of the session");
    assert_eq!(rest, b"");
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "echo serve --stdio did not exit");
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn an_unknown_mode_is_a_usage_error() {
    let output =
        Command::new(ECHO).args(["serve", "--mode", "udp"]).stdin(Stdio::null()).output().expect("run echo");
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("invalid mode 'udp'"), "{err}");
}

#[test]
fn stdio_exits_1_on_an_input_error() {
    // Reading a directory fails with an error that is not the peer going away.
    let output = Command::new(ECHO)
        .args(["serve", "--stdio", "-q"])
        .stdin(std::fs::File::open("/").unwrap())
        .output()
        .expect("run echo");
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.starts_with("echo: error: "), "{err}");
}

/// `yes | echo serve --stdio | head -1`: the reader of standard output leaves while input keeps
/// coming. That is the peer going away (reason `reset`, exit 0), in either mode.
#[test]
fn stdio_exits_0_with_reason_reset_when_its_output_is_closed() {
    for mode in ["line", "raw"] {
        let mut session = StdioSession::start(&["--mode", mode]);
        let mut stdin = session.stdin.take().unwrap();
        // Bounded: 64 MiB at most, far more than the pipes between the processes hold.
        let feeder = thread::spawn(move || {
            let block = b"x\r\n".repeat(1024);
            for _ in 0..(64 << 20) / block.len() {
                if stdin.write_all(&block).is_err() {
                    return;
                }
            }
        });
        session.read(3);
        // Only the reading thread holds the pipe's read end: replace its channel's receiver.
        let (_, closed) = mpsc::channel();
        drop(std::mem::replace(&mut session.stdout, closed));
        let (status, _, err) = session.finish();
        feeder.join().unwrap();
        assert_eq!(status.code(), Some(0), "{mode}: {err}");
        assert!(close_line(&err).ends_with("reason=reset"), "{mode}: {err}");
    }
}

/// Under inetd or systemd `Accept=yes`, a client that sends without reading and then leaves:
/// the session ends with reason `reset` and the process exits 0.
#[test]
fn stdio_on_a_socket_exits_0_with_reason_reset_when_the_client_leaves_without_reading() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = connect(listener.local_addr().unwrap());
    let (accepted, _) = listener.accept().unwrap();
    let stdout = accepted.try_clone().unwrap();
    let child = Command::new(ECHO)
        .args(["serve", "--stdio"])
        .stdin(std::os::fd::OwnedFd::from(accepted))
        .stdout(std::os::fd::OwnedFd::from(stdout))
        .stderr(Stdio::piped())
        .spawn()
        .expect("start echo serve --stdio");
    let mut writer = client.try_clone().unwrap();
    let feeder = thread::spawn(move || {
        // Bounded: 64 MiB at most; it stops at the first write after the shutdown below.
        let block = b"never read\r\n".repeat(1000);
        for _ in 0..(64 << 20) / block.len() {
            if writer.write_all(&block).is_err() {
                return;
            }
        }
    });
    thread::sleep(Duration::from_millis(200));
    client.shutdown(Shutdown::Both).unwrap();
    feeder.join().unwrap();
    // Closed with echoes unread: the kernel resets the connection.
    drop(client);
    let output = common::output_within(child, LIMIT);
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(close_line(&err).ends_with("reason=reset"), "{err}");
}
