//! Helpers shared by the integration tests: a server process on port 0, an in-process server,
//! and timeouts that turn a hang into a fast failure.
#![allow(dead_code)] // each test crate uses a different part of this module

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use smol_echo::server::{ListenAddr, Summary};
use smol_echo::{Server, ServerConfig};

/// The built `echo` binary.
pub const ECHO: &str = env!("CARGO_BIN_EXE_echo");

/// Starts `echo bench ARGS` with no input and its output piped for the test to read.
pub fn spawn_bench(args: &[&str]) -> Child {
    Command::new(ECHO)
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start echo bench")
}

/// Starts `echo ARGS` with its standard input, output and error piped for the test.
pub fn spawn_echo<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Child {
    Command::new(ECHO)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start echo")
}

/// Runs `echo ARGS` with `input` on its standard input and returns its output, within `limit`.
pub fn echo_with_input<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    input: &[u8],
    limit: Duration,
) -> std::process::Output {
    let mut child = spawn_echo(args);
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).expect("write the input");
    output_within(child, limit)
}

/// Waits for `child` to exit and returns its output; a child still running after `limit` is
/// killed and fails the test. The output must fit in the pipes meanwhile: a few lines.
pub fn output_within(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            let output = child.wait_with_output().expect("output");
            panic!("still running after {limit:?}; stderr: {}", String::from_utf8_lossy(&output.stderr));
        }
        thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

/// Runs `fut` to completion, failing the test if it takes longer than `limit`.
pub fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    smol::block_on(fut.or(async move {
        async_io::Timer::after(limit).await;
        panic!("timed out after {limit:?}");
    }))
}

/// An `echo serve` child process whose stderr is read line by line.
pub struct ServerProcess {
    pub child: Child,
    /// The TCP listening addresses, TLS ones included.
    pub addrs: Vec<SocketAddr>,
    /// Every listening line's address as printed: TCP, `udp:...`, `unix:...`.
    pub listening: Vec<String>,
    lines: mpsc::Receiver<String>,
    /// Every stderr line so far, including those already taken by `wait_for_line`.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `echo serve ARGS` and waits for `listeners` listening lines.
    pub fn start(args: &[&str], listeners: usize) -> ServerProcess {
        Self::start_command(Command::new(ECHO).arg("serve").args(args), listeners)
    }

    /// Starts a prepared command (e.g. under `prlimit`) and waits for its listening lines.
    pub fn start_command(command: &mut Command, listeners: usize) -> ServerProcess {
        Self::start_with_stdio(command, Stdio::null(), Stdio::null(), listeners)
    }

    /// Starts a prepared command with the given standard input and output (sockets to pass
    /// on, say) and waits for its listening lines.
    pub fn start_with_stdio(
        command: &mut Command,
        stdin: Stdio,
        stdout: Stdio,
        listeners: usize,
    ) -> ServerProcess {
        let mut child =
            command.stdin(stdin).stdout(stdout).stderr(Stdio::piped()).spawn().expect("start echo serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log_writer = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log_writer.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = ServerProcess { child, addrs: Vec::new(), listening: Vec::new(), lines, log };
        while server.listening.len() < listeners {
            let line = server
                .wait_for_line("listening on ", Duration::from_secs(10))
                .unwrap_or_else(|| panic!("no listening line; stderr: {:?}", server.log()));
            let name = line.trim_start_matches("listening on ").to_string();
            if !name.starts_with("udp:") && !name.starts_with("unix:") {
                server.addrs.push(name.trim_start_matches("tls:").parse().expect("address"));
            }
            server.listening.push(name);
        }
        server
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Waits for the next stderr line containing `pattern`, skipping others.
    pub fn wait_for_line(&self, pattern: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(pattern) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// The shutdown summary line. Waited for, not looked up: the process can have exited before
    /// the thread reading its stderr has taken the last lines.
    pub fn summary(&self) -> String {
        self.wait_for_line("shutdown:", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no summary line; stderr: {:?}", self.log()))
    }

    /// Every stderr line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Sends a signal (e.g. `rustix::process::Signal::TERM`) to the server.
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, signal).expect("signal the server");
    }

    /// Waits for the process to exit, or `None` after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's resident memory in bytes, from /proc.
    pub fn rss(&self) -> u64 {
        rss_of(self.child.id())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Already exited is fine; otherwise make sure no server outlives its test.
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Resident memory of a process in bytes, from /proc/PID/status.
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kib * 1024
}

/// A library server on 127.0.0.1:0, served by its own thread on smol's executor.
pub struct InProcessServer {
    pub addr: SocketAddr,
    stop: async_channel::Sender<()>,
    thread: Option<thread::JoinHandle<Summary>>,
}

impl InProcessServer {
    pub fn start(config: ServerConfig) -> InProcessServer {
        let listeners = smol::block_on(smol_echo::bind(&["127.0.0.1:0"])).expect("bind");
        let server = Server::new(listeners, config);
        let ListenAddr::Tcp(addr) = server.local_addrs().unwrap()[0] else { unreachable!("bound TCP") };
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let thread = thread::spawn(move || {
            let ex = smol::Executor::new();
            smol::block_on(ex.run(server.run(|task| ex.spawn(task).detach(), async move {
                stopped.recv().await.ok();
            })))
        });
        InProcessServer { addr, stop, thread: Some(thread) }
    }

    /// Asks for shutdown and returns the summary.
    pub fn stop(mut self) -> Summary {
        self.stop.close();
        self.thread.take().unwrap().join().expect("server thread")
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        self.stop.close();
    }
}
/// A blocking client with 5 s timeouts on connect, read and write, and TCP_NODELAY.
pub fn connect(addr: SocketAddr) -> std::net::TcpStream {
    let limit = Duration::from_secs(5);
    let stream = std::net::TcpStream::connect_timeout(&addr, limit)
        .unwrap_or_else(|err| panic!("connect {addr}: {err}"));
    stream.set_read_timeout(Some(limit)).unwrap();
    stream.set_write_timeout(Some(limit)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Sends `bytes` (complete lines) and checks they come back byte for byte.
pub fn assert_echoes(stream: &mut std::net::TcpStream, bytes: &[u8]) {
    use std::io::{Read, Write};
    stream.write_all(bytes).expect("send");
    let mut echo = vec![0; bytes.len()];
    stream.read_exact(&mut echo).expect("read the echo");
    assert_eq!(echo, bytes, "echo differs");
}

/// A Unix socket path under the temporary directory, unique to this process and `name`, with
/// nothing at it yet; removed when dropped.
pub struct SocketPath(pub std::path::PathBuf);

impl SocketPath {
    pub fn new(name: &str) -> SocketPath {
        let path = std::env::temp_dir().join(format!("smol-echo-{}-{name}.sock", std::process::id()));
        std::fs::remove_file(&path).ok();
        SocketPath(path)
    }

    /// The address as every subcommand takes it: `unix:/path`.
    pub fn addr(&self) -> String {
        format!("unix:{}", self.0.display())
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

pub mod mem;
#[cfg(feature = "tls")]
pub mod pki;
