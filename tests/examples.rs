//! The examples, run as their users would: `minimal` driven over TCP, `pipe` and `executor`
//! checked by their exit status and output (each asserts what it shows).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::output_within;

/// The built example `name`. `cargo test` builds the examples next to the test binaries
/// (`target/<profile>/examples/`); when a narrower `cargo test --test examples` did not, this
/// builds it with the same cargo and profile.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "--example", name]).current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        assert!(build.status().expect("run cargo").success(), "cargo build --example {name} failed");
    }
    path
}

/// Reads from `stream` until the peer closes it; `None` if that takes longer than 5 s.
fn read_to_close(stream: &mut TcpStream) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).ok().map(|_| got)
}

#[test]
fn minimal_echoes_lines_ends_at_the_sentinel_and_drops_idle_clients() {
    let mut server = Command::new(example("minimal"))
        .args(["127.0.0.1:0", "200"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the minimal example");
    let mut first = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let addr = first.trim().strip_prefix("listening on ").expect("a listening line").to_owned();

    let mut lines = TcpStream::connect(&addr).unwrap();
    lines.write_all(b"hello\r\na bare\nLF\r\n.\r\nafter the sentinel\r\n").unwrap();
    assert_eq!(read_to_close(&mut lines).unwrap(), b"hello\r\na bare\nLF\r\n");

    let mut tail = TcpStream::connect(&addr).unwrap();
    tail.write_all(b"line\r\ntail").unwrap();
    tail.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_close(&mut tail).unwrap(), b"line\r\ntail");

    let mut silent = TcpStream::connect(&addr).unwrap();
    silent.write_all(b"half a line").unwrap();
    let started = Instant::now();
    assert_eq!(read_to_close(&mut silent).expect("closed at the idle timeout"), b"");
    assert!(started.elapsed() >= Duration::from_millis(150), "closed after {:?}", started.elapsed());

    server.kill().ok();
    server.wait().unwrap();
}

#[test]
fn pipe_runs_a_session_with_no_executor() {
    let run = Command::new(example("pipe")).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let output = output_within(run, Duration::from_secs(20));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.ends_with("session: 2 lines, 29 bytes, ended by sentinel\n"), "{stdout}");
}

#[test]
fn executor_serves_on_its_own_executor_and_stops_on_its_own_signal() {
    let run =
        Command::new(example("executor")).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let output = output_within(run, Duration::from_secs(20));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.ends_with("served 2 connections, 2 lines\n"), "{stdout}");
}
