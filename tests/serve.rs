//! `echo serve` as a process: its command line, listening lines, logs, limits and signals
//! (docs/protocol.md, "Command line", and docs/serving.md), through the built binary.

mod common;

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{ECHO, ServerProcess, assert_echoes, connect};
use rustix::process::Signal;

/// How long anything that should happen promptly may take before the test fails.
const LIMIT: Duration = Duration::from_secs(5);

/// Every line `flood` sends is this long, CR LF included: not a divisor of any buffer or
/// segment size, so that a cut at one of those falls inside a line.
const FLOOD_LINE: usize = 1000;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Reads until the server closes; a reset counts as a close too when `reset_ok`.
fn read_to_close(stream: &mut TcpStream, reset_ok: bool) -> Vec<u8> {
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => {}
        Err(err) if reset_ok && err.kind() == io::ErrorKind::ConnectionReset => {}
        Err(err) => panic!("reading until the server closes: {err} (after {} bytes)", got.len()),
    }
    got
}

/// True when nothing arrives on `stream` within `wait`.
fn silent_for(stream: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut byte = [0];
    let silent = loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
            break true;
        };
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut byte) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => break matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
            Ok(_) => break false,
        }
    };
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    silent
}

/// Connects and sends numbered lines without reading any echo, until the server stops
/// taking them: its echo is then blocked on us, and its receive buffer is full. Returns the
/// stream and exactly the bytes sent (the last line may be cut short).
fn flood(addr: SocketAddr) -> (TcpStream, Vec<u8>) {
    let mut stream = connect(addr);
    // A server that is only slow (a busy machine) still reads within this; one that waits for
    // us to take its echo never does.
    stream.set_write_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut sent = Vec::new();
    let mut written = 0;
    let mut stalls = 0;
    for chunk in 0.. {
        assert!(chunk < 4096, "the server took 256 MiB without blocking on its echo");
        for line in chunk * 64..(chunk + 1) * 64 {
            write!(sent, "{line:08}{}\r\n", "x".repeat(FLOOD_LINE - 10)).unwrap();
        }
        while written < sent.len() {
            match stream.write(&sent[written..]) {
                Ok(n) => (written, stalls) = (written + n, 0),
                Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    stalls += 1;
                    if stalls == 2 {
                        sent.truncate(written);
                        stream.set_write_timeout(Some(LIMIT)).unwrap();
                        return (stream, sent);
                    }
                }
                // Seen on gVisor when a write with a timeout blocks: try again.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => panic!("flooding the server: {err}"),
            }
        }
    }
    unreachable!()
}

/// Runs `echo ARGS` to its end, failing the test if it takes longer than `LIMIT`.
fn run_echo(args: &[&str]) -> Output {
    let child = Command::new(ECHO)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start echo");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(child.wait_with_output()).ok());
    match rx.recv_timeout(LIMIT) {
        Ok(output) => output.expect("wait for echo"),
        Err(_) => {
            // Not reaped yet, so the pid is still ours.
            rustix::process::kill_process(pid, Signal::KILL).ok();
            panic!("echo {args:?} still running after {LIMIT:?}");
        }
    }
}

/// The first stderr line starting with `prefix`, waiting up to `LIMIT` for it.
fn log_line(server: &ServerProcess, prefix: &str) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(line) = server.log().into_iter().find(|line| line.starts_with(prefix)) {
            return line;
        }
        assert!(Instant::now() < deadline, "no line starting with {prefix:?}; stderr: {:#?}", server.log());
        thread::sleep(Duration::from_millis(10));
    }
}

/// A parsed `close PEER lines=N bytes=M duration=D.DDDs reason=R` line.
#[derive(Debug)]
struct Closed {
    lines: u64,
    bytes: u64,
    secs: f64,
    reason: String,
}

/// Waits for the close line of the connection whose client is `client`, and parses it.
fn closed(server: &ServerProcess, client: &TcpStream) -> Closed {
    closed_peer(server, client.local_addr().unwrap())
}

/// Waits for the close line of the connection from `peer`, and parses it.
fn closed_peer(server: &ServerProcess, peer: SocketAddr) -> Closed {
    let line = log_line(server, &format!("close {peer} "));
    let parse = || {
        let rest = line.strip_prefix(&format!("close {peer} lines="))?;
        let (lines, rest) = rest.split_once(" bytes=")?;
        let (bytes, rest) = rest.split_once(" duration=")?;
        let (secs, reason) = rest.split_once("s reason=")?;
        Some(Closed {
            lines: lines.parse().ok()?,
            bytes: bytes.parse().ok()?,
            secs: secs.parse().ok()?,
            reason: reason.to_string(),
        })
    };
    parse().unwrap_or_else(|| panic!("malformed close line: {line:?}"))
}

/// Sends `signal`, waits for the exit and the summary line, and returns the status and the time
/// from the signal to the exit.
fn stop(server: &mut ServerProcess, signal: Signal) -> (ExitStatus, Duration) {
    let signalled = Instant::now();
    server.signal(signal);
    let status = server
        .wait_exit(LIMIT)
        .unwrap_or_else(|| panic!("still running {LIMIT:?} after {signal:?}; stderr: {:#?}", server.log()));
    let took = signalled.elapsed();
    log_line(server, "shutdown:");
    (status, took)
}

/// Stderr lines starting with `prefix`.
fn lines_starting(server: &ServerProcess, prefix: &str) -> Vec<String> {
    server.log().into_iter().filter(|line| line.starts_with(prefix)).collect()
}

/// The CPU time (user + system) a process has used, in clock ticks of 1/100 s.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // The command name may hold spaces; the fields after it do not. utime and stime are
    // fields 14 and 15; the state (field 3) comes right after the name.
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat format").1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Listening

#[test]
fn port_0_listens_on_the_real_port_it_picked() {
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0"], 1);
    let addr = server.addr();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    assert_echoes(&mut connect(addr), b"hello\r\n");
}

#[test]
fn each_listen_flag_gets_its_own_socket_and_line() {
    let mut server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"], 2);
    assert_ne!(server.addrs[0].port(), server.addrs[1].port(), "each socket picks its own port");
    for addr in server.addrs.clone() {
        assert_echoes(&mut connect(addr), format!("to {addr}\r\n").as_bytes());
    }
    let (status, _) = stop(&mut server, Signal::TERM);
    assert!(status.success(), "{status}");
    assert_eq!(lines_starting(&server, "listening on ").len(), 2, "{:#?}", server.log());
}

#[test]
fn listens_on_ipv6_loopback() {
    if let Err(err) = TcpListener::bind("[::1]:0") {
        eprintln!("note: skipping the IPv6 test, this machine cannot bind [::1]: {err}");
        return;
    }
    let server = ServerProcess::start(&["--listen", "[::1]:0"], 1);
    let addr = server.addr();
    assert_eq!(addr.ip().to_string(), "::1");
    assert_ne!(addr.port(), 0);
    assert_echoes(&mut connect(addr), b"over v6\r\n");
}

#[test]
fn a_host_name_binds_every_address_it_resolves_to() {
    let resolved: BTreeSet<_> =
        ("localhost", 0).to_socket_addrs().expect("resolve localhost").map(|a| a.ip()).collect();
    let mut server = ServerProcess::start(&["--listen", "localhost:0"], resolved.len());
    for addr in server.addrs.clone() {
        assert_echoes(&mut connect(addr), b"local\r\n");
    }
    let (status, _) = stop(&mut server, Signal::TERM);
    assert!(status.success(), "{status}");
    // Stopped, so every listening line it will ever print is in the log.
    let listening: BTreeSet<_> = lines_starting(&server, "listening on ")
        .iter()
        .map(|line| line["listening on ".len()..].parse::<SocketAddr>().expect("address").ip())
        .collect();
    assert_eq!(listening, resolved);
    assert_eq!(lines_starting(&server, "listening on ").len(), resolved.len());
}

#[test]
fn a_port_in_use_exits_1_with_one_line_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run_echo(&["serve", "--listen", &addr]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
    // One line: not a warning for the address followed by the same failure as the error.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn an_address_that_fails_while_another_binds_is_a_warning() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let taken = taken_addr.to_string();
    let server = ServerProcess::start(&["--listen", &taken, "--listen", "127.0.0.1:0"], 1);
    assert_ne!(server.addr(), taken_addr);
    assert_echoes(&mut connect(server.addr()), b"still serving\r\n");
    let warning = log_line(&server, "warning: ");
    assert!(warning.contains(&taken), "{warning}");
}

// ---------------------------------------------------------------------------------------------
// Command line

#[test]
fn bad_arguments_exit_2_with_a_short_message_and_start_nothing() {
    for (args, named) in [
        (&["serve", "--idle-timeout", "banana"][..], "banana"),
        (&["serve", "--bogus"][..], "--bogus"),
        (&["serve", "--max-line", "0"][..], "--max-line"),
        (&["serve", "--listen", "127.0.0.1:0", "--grace", "-1s"][..], "-1s"),
    ] {
        let output = run_echo(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert!((1..=2).contains(&lines.len()), "{args:?}: message and at most a hint:\n{stderr}");
        assert!(lines[0].contains(named), "{args:?}: the message names the argument:\n{stderr}");
        assert!(!stderr.contains("listening on"), "{args:?} started a server:\n{stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn numbers_past_their_ranges_are_usage_errors_naming_the_flag_and_the_range() {
    for (args, flag) in [
        (&["serve", "--threads", "20000"][..], "--threads"),
        (&["serve", "--threads", "100000"], "--threads"),
        (&["serve", "--threads", "0"], "--threads"),
        (&["serve", "--max-line", "1073741825"], "--max-line"),
        (&["serve", "--max-connections", "1000001"], "--max-connections"),
        (&["serve", "--idle-timeout", "604801"], "--idle-timeout"),
        (&["serve", "--grace", "1e19"], "--grace"),
        (&["serve", "--stdio", "--max-line", "2"], "--max-line"),
        (&["connect", "--connect-timeout", "0"], "--connect-timeout"),
        (&["bench", "-s", "99999999999", "-n", "1"], "-s"),
        (&["bench", "-p", "100000", "-s", "65536"], "-p"),
        (&["bench", "-c", "1000001"], "-c"),
    ] {
        let output = run_echo(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with(&format!("echo: {flag} must be ")), "{args:?}: {stderr}");
        assert!(first.contains(" to ") || first.contains(" at most "), "{args:?}: the range: {stderr}");
    }
}

#[test]
fn a_server_at_the_top_of_every_range_serves() {
    let mut server = ServerProcess::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--threads",
            "1024",
            "--max-line",
            "1073741824",
            "--max-connections",
            "1000000",
            "--idle-timeout",
            "604800",
            "--grace",
            "604800",
        ],
        1,
    );
    assert_echoes(&mut connect(server.addr()), b"at the limits\r\n");
    server.signal(Signal::TERM);
    assert!(server.wait_exit(LIMIT).expect("exits").success());
}

#[test]
fn no_subcommand_prints_the_usage_and_exits_2() {
    let output = run_echo(&[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    // docs/protocol.md: "`echo` alone prints the usage", so more than the two-line error.
    assert!(stderr.contains("Usage:") && stderr.contains("serve"), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
}

#[test]
fn version_prints_the_version() {
    let output = run_echo(&["--version"]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
}

#[test]
fn serve_help_lists_every_flag() {
    let output = run_echo(&["serve", "--help"]);
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--idle-timeout",
        "--max-line",
        "--max-connections",
        "--threads",
        "--grace",
        "-q, --quiet",
        "-v, --verbose",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn server_is_another_name_for_serve() {
    let server =
        ServerProcess::start_command(Command::new(ECHO).args(["server", "--listen", "127.0.0.1:0"]), 1);
    assert_echoes(&mut connect(server.addr()), b"alias\r\n");
}

// ---------------------------------------------------------------------------------------------
// Signals

/// Complete lines are echoed, the partial one is not, the client sees the end, and the process
/// exits 0 well within the grace period with its summary.
fn drains_and_exits_on(signal: Signal) {
    let mut server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--grace", "2s"], 1);
    let mut client = connect(server.addr());
    client.write_all(b"one\r\ntwo\r\npart").unwrap();
    // Let the bytes reach the server: the test is about what arrived before the signal.
    thread::sleep(Duration::from_millis(50));
    let signalled = Instant::now();
    server.signal(signal);
    assert_eq!(read_to_close(&mut client, false), b"one\r\ntwo\r\n");
    // Done, as a client that saw the end would be: the server need not wait on us any more.
    client.shutdown(Shutdown::Write).ok();
    let status = server.wait_exit(LIMIT).expect("exit");
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(took < Duration::from_secs(2), "took {took:?}, more than --grace");
    let summary = log_line(&server, "shutdown:");
    assert!(summary.contains(" 2 lines") && summary.contains(" 10 bytes"), "{summary}");
    assert_eq!(closed(&server, &client).reason, "shutdown");
}

#[test]
fn sigterm_echoes_complete_lines_closes_and_exits_0() {
    drains_and_exits_on(Signal::TERM);
}

#[test]
fn sigint_echoes_complete_lines_closes_and_exits_0() {
    drains_and_exits_on(Signal::INT);
}

/// A server started with ARGS, flooded by a client that reads nothing, then sent SIGTERM, and
/// still in its grace period 300 ms later because of the echo it owes. Returns the server, the
/// client, what it sent, and when the signal went.
///
/// On this machine (gVisor) the kernel now and then takes the whole echo after all, and the
/// server rightly ends at once; such a try is noted and made again.
fn held_in_grace(args: &[&str]) -> (ServerProcess, TcpStream, Vec<u8>, Instant) {
    for attempt in 1..=3 {
        let mut server = ServerProcess::start(args, 1);
        let (client, sent) = flood(server.addr());
        let signalled = Instant::now();
        server.signal(Signal::TERM);
        log_line(&server, "SIGTERM received");
        thread::sleep(Duration::from_millis(300));
        if server.child.try_wait().unwrap().is_none() {
            return (server, client, sent, signalled);
        }
        eprintln!(
            "note: try {attempt}: the server owed no echo at the signal after all: {:#?}",
            server.log()
        );
    }
    panic!("three times the server left its grace period with an echo still owed (or never owed one)");
}

#[test]
fn a_blocked_echo_is_finished_within_the_grace_period() {
    let (mut server, mut client, sent, signalled) =
        held_in_grace(&["--listen", "127.0.0.1:0", "--idle-timeout", "10s", "--grace", "2s"]);
    let echoed = read_to_close(&mut client, true);
    // Done with the connection: a server that reads on after closing may stop now.
    client.shutdown(Shutdown::Write).ok();
    let status = server.wait_exit(LIMIT).expect("exit");
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(signalled.elapsed() < Duration::from_secs(2), "exit after --grace");
    assert!(sent.starts_with(&echoed), "the echo is not what was sent");
    let close = closed(&server, &client);
    assert_eq!(close.reason, "shutdown");
    // BUG (session.rs `close`, intermittent): the drain stops at the first empty read while
    // the client is still sending; closing a socket with unread input makes the kernel send a
    // reset, which throws away the echo still queued in the server's send buffer. The client
    // then gets less than the log says was echoed, cut inside a line.
    assert_eq!(
        close.bytes,
        echoed.len() as u64,
        "BUG: the log counts bytes the client never got (reset on close with unread input?)"
    );
    // A server that gave up mid-write would almost surely cut a line.
    assert_eq!(echoed.len() % FLOOD_LINE, 0, "the echo stops inside a line: {} bytes", echoed.len());
}

#[test]
fn grace_0_exits_at_once_even_with_a_blocked_echo() {
    let mut server =
        ServerProcess::start(&["--listen", "127.0.0.1:0", "--idle-timeout", "10s", "--grace", "0"], 1);
    let (client, _) = flood(server.addr());
    let (status, took) = stop(&mut server, Signal::TERM);
    assert_eq!(status.code(), Some(0), "{status}");
    // The default grace would hold this connection 5 s, the idle timeout 10 s.
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(closed(&server, &client).reason, "shutdown");
}

#[test]
fn a_second_signal_ends_the_grace_period_at_once() {
    let (mut server, _client, _, _) =
        held_in_grace(&["--listen", "127.0.0.1:0", "--idle-timeout", "20s", "--grace", "20s"]);
    let signalled = Instant::now();
    server.signal(Signal::TERM);
    let status = server.wait_exit(LIMIT).expect("the second signal ends the process");
    let took = signalled.elapsed();
    assert!(
        status.code() == Some(128 + 15) || status.signal() == Some(15),
        "status {status}, want 143 or death by SIGTERM"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

// ---------------------------------------------------------------------------------------------
// Logs

#[test]
fn each_connection_logs_its_open_and_close_with_counts_and_reason() {
    let server =
        ServerProcess::start(&["--listen", "127.0.0.1:0", "--idle-timeout", "200ms", "--max-line", "16"], 1);
    let addr = server.addr();

    // End of input: the unterminated tail is echoed and counts as a line.
    let mut eof = connect(addr);
    eof.write_all(b"hello\r\nwor").unwrap();
    eof.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_close(&mut eof, false), b"hello\r\nwor");

    let mut sentinel = connect(addr);
    sentinel.write_all(b"a\r\nbb\r\n.\r\n").unwrap();
    assert_eq!(read_to_close(&mut sentinel, false), b"a\r\nbb\r\n");

    let mut idle = connect(addr);
    assert_echoes(&mut idle, b"x\r\n");
    idle.write_all(b"part").unwrap();
    assert_eq!(read_to_close(&mut idle, false), b"", "the partial line is not echoed");

    let mut too_long = connect(addr);
    assert_echoes(&mut too_long, b"ok\r\n");
    too_long.write_all(&[b'a'; 17]).unwrap();
    assert_eq!(read_to_close(&mut too_long, true), b"", "nothing of the long line is echoed");

    for (client, lines, bytes, reason) in [
        (&eof, 2, 10, "eof"),
        (&sentinel, 2, 7, "sentinel"),
        (&idle, 1, 3, "idle timeout"),
        (&too_long, 1, 4, "line too long"),
    ] {
        let peer = client.local_addr().unwrap();
        assert_eq!(log_line(&server, &format!("open {peer}")), format!("open {peer}"));
        let close = closed(&server, client);
        assert_eq!((close.lines, close.bytes, close.reason.as_str()), (lines, bytes, reason), "{close:?}");
        assert!(close.secs < LIMIT.as_secs_f64(), "{close:?}");
    }
    let idle_secs = closed(&server, &idle).secs;
    assert!(idle_secs >= 0.2, "closed for idleness after {idle_secs}s, before --idle-timeout");
}

/// One echoed connection, then a signal; returns the whole log.
fn log_of_one_session(flag: &str) -> Vec<String> {
    let mut server = ServerProcess::start(&["--listen", "127.0.0.1:0", flag], 1);
    let mut client = connect(server.addr());
    assert_echoes(&mut client, b"logged?\r\n");
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_close(&mut client, false), b"");
    let (status, _) = stop(&mut server, Signal::TERM);
    assert!(status.success(), "{flag}: {status}");
    let summary = log_line(&server, "shutdown:");
    assert!(summary.contains(" 9 bytes"), "{summary}");
    server.log()
}

#[test]
fn quiet_keeps_only_listening_lines_summary_and_warnings() {
    let log = log_of_one_session("-q");
    assert!(log.iter().any(|line| line.starts_with("listening on ")), "{log:#?}");
    // Nothing else is a warning or an error here: only these two lines may remain.
    let others: Vec<_> = log
        .iter()
        .filter(|line| !line.starts_with("listening on ") && !line.starts_with("shutdown:"))
        .collect();
    assert!(others.is_empty(), "-q still printed {others:#?}");
}

#[test]
fn verbose_serves_and_logs_at_least_what_the_default_does() {
    let log = log_of_one_session("-v");
    for prefix in ["listening on ", "open ", "close ", "SIGTERM received", "shutdown:"] {
        assert!(log.iter().any(|line| line.starts_with(prefix)), "no {prefix:?} line in {log:#?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Limits and failures

#[test]
fn accept_errors_are_logged_backed_off_and_survived() {
    // The server raises its soft limit to the hard one, so both are set.
    const NOFILE: usize = 32;
    let mut command = Command::new("prlimit");
    command.arg(format!("--nofile={NOFILE}:{NOFILE}")).arg(ECHO).args(["serve", "--listen", "127.0.0.1:0"]);
    let mut server = ServerProcess::start_command(&mut command, 1);
    let addr = server.addr();

    // More connections than descriptors: the kernel completes them all into the backlog.
    let burst: Vec<TcpStream> = (0..NOFILE + 16).map(|_| connect(addr)).collect();
    let warning = log_line(&server, "warning: accept failed");
    assert!(warning.contains("Too many open files") || warning.contains("os error 24"), "{warning}");

    // Connections it cannot take keep the listener readable: it must rest, not spin.
    let pid = server.child.id();
    let before = cpu_ticks(pid);
    thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - before;
    // Resting takes no measurable CPU; spinning on this machine (gVisor) showed 29 to 53 ticks,
    // less than a whole core because much of a syscall's cost is not charged to the process.
    assert!(used < 10, "{used} ticks of 1/100 s in 1 s while out of descriptors: spinning");

    drop(burst);
    let mut client = connect(addr);
    let payload: Vec<u8> =
        (0..200u32).flat_map(|i| [&i.to_le_bytes()[..], b"\0\xff line\r\n"].concat()).collect();
    assert_echoes(&mut client, &payload);
    assert!(server.child.try_wait().unwrap().is_none(), "the server exited");
    drop(client);
    let (status, _) = stop(&mut server, Signal::TERM);
    assert!(status.success(), "{status}");
}

#[test]
fn max_connections_counts_across_listeners_and_holds_the_rest_back() {
    let server = ServerProcess::start(
        &["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--max-connections", "2"],
        2,
    );
    let mut first = connect(server.addrs[0]);
    assert_echoes(&mut first, b"first\r\n");
    let mut second = connect(server.addrs[1]);
    assert_echoes(&mut second, b"second\r\n");

    // Third on the first listener: a per-listener count would let it in.
    let mut third = connect(server.addrs[0]);
    third.write_all(b"third\r\n").unwrap();
    assert!(silent_for(&mut third, Duration::from_millis(300)), "a third connection was served");

    first.write_all(b".\r\n").unwrap();
    assert_eq!(read_to_close(&mut first, false), b"");
    drop(first);
    let mut echo = [0; 7];
    third.read_exact(&mut echo).expect("the third connection is served once one leaves");
    assert_eq!(&echo, b"third\r\n");
    assert_echoes(&mut second, b"still\r\n");
}

#[test]
fn a_reset_connection_affects_no_other() {
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0"], 1);
    let mut other = connect(server.addr());
    assert_echoes(&mut other, b"before\r\n");

    let resetting = connect(server.addr());
    (&resetting).write_all(b"x\r\n").unwrap();
    // Wait for the echo and leave it unread: closing with unread data sends a reset.
    while let Err(err) = resetting.peek(&mut [0; 3]) {
        assert_eq!(err.kind(), io::ErrorKind::Interrupted, "waiting for the echo: {err}");
    }
    let peer = resetting.local_addr().unwrap();
    drop(resetting);
    let reason = closed_peer(&server, peer).reason;
    // A reset that lands after the server took the data looks like a plain end of input.
    assert!(reason == "reset" || reason == "eof", "reason={reason}");
    assert_echoes(&mut other, b"after\r\n");
    assert_echoes(&mut connect(server.addr()), b"new\r\n");
}
