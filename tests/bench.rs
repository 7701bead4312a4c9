//! `echo bench` through the binary: the report, exact line counts, and an error for every way an
//! echo can go wrong (a changed, doubled or reordered line, a closed or missing server).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{ECHO, InProcessServer, ServerProcess, within};
use serde_json::Value;
use smol_echo::{BenchConfig, BenchLimit, ServerConfig};

/// Runs `echo bench ARGS`; a bench still running after 20 s fails the test.
fn bench(args: &[&str]) -> Output {
    let mut child = Command::new(ECHO)
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start echo bench");
    let deadline = Instant::now() + Duration::from_secs(20);
    // The output is a few lines: it fits in the pipes while the bench runs.
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("echo bench {args:?} still running after 20 s");
        }
        thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("bench output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The one JSON object of a `--json` run.
fn report(output: &Output) -> Value {
    let stdout = String::from_utf8(output.stdout.clone()).expect("UTF-8 report");
    assert_eq!(stdout.lines().count(), 1, "one line of JSON: {stdout:?}; stderr: {}", stderr(output));
    serde_json::from_str(&stdout).expect("JSON report")
}

fn number(report: &Value, key: &str) -> f64 {
    report[key].as_f64().unwrap_or_else(|| panic!("no number {key} in {report}"))
}

#[test]
fn json_report_holds_every_field_with_sane_values() {
    let server = InProcessServer::start(ServerConfig::default());
    let addr = server.addr.to_string();
    let output = bench(&[&addr, "-c", "4", "-p", "2", "-s", "100", "-d", "300ms", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = report(&output);

    let keys: Vec<&str> = report.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = vec![
        "connections",
        "depth",
        "size",
        "duration_s",
        "lines",
        "lines_per_s",
        "mib_per_s",
        "latency_us",
        "errors",
    ];
    expected.sort();
    assert_eq!(keys, expected);
    assert_eq!(
        (number(&report, "connections"), number(&report, "depth"), number(&report, "size")),
        (4.0, 2.0, 100.0)
    );
    assert_eq!(number(&report, "errors"), 0.0);

    let (lines, secs) = (number(&report, "lines"), number(&report, "duration_s"));
    assert!(lines > 0.0);
    assert!((0.3..5.0).contains(&secs), "duration_s {secs}");
    let rate = number(&report, "lines_per_s");
    assert!((rate - lines / secs).abs() <= rate * 0.01 + 1.0, "{rate} lines/s for {lines} in {secs} s");
    let mib = number(&report, "mib_per_s");
    let expected_mib = lines * 100.0 / secs / 1048576.0;
    assert!(
        (mib - expected_mib).abs() <= expected_mib * 0.01 + 0.001,
        "{mib} MiB/s, expected {expected_mib}"
    );

    let latency = &report["latency_us"];
    let percentiles: Vec<f64> =
        ["p50", "p90", "p99", "p999", "max"].iter().map(|p| number(latency, p)).collect();
    assert_eq!(latency.as_object().unwrap().len(), 5);
    assert!(percentiles[0] > 0.0, "{latency}");
    assert!(percentiles.windows(2).all(|pair| pair[0] <= pair[1]), "{latency}");
}

#[test]
fn a_line_count_echoes_exactly_that_many_lines() {
    let server = InProcessServer::start(ServerConfig::default());
    let output = bench(&[&server.addr.to_string(), "-n", "1000", "-c", "7", "-p", "3", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(number(&report(&output), "lines"), 1000.0);
    assert_eq!(number(&report(&output), "connections"), 7.0);
    // Nothing more was sent either.
    assert_eq!(server.stop().lines, 1000);
}

#[test]
fn the_table_shows_rates_latency_and_errors() {
    let server = InProcessServer::start(ServerConfig::default());
    let output = bench(&[&server.addr.to_string(), "-n", "200", "-c", "2"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(table.starts_with("2 connections, depth 1, 64-byte lines"), "{table}");
    for row in ["lines                200", "lines/s", "MiB/s", "p99.9", "errors                 0"] {
        assert!(table.contains(row), "no {row:?} in {table}");
    }
}

/// A one-connection server that echoes lines of `size` bytes through `tamper(index, line, out)`.
fn tampering_server(
    size: usize,
    mut tamper: impl FnMut(usize, &[u8], &mut Vec<u8>) + Send + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (mut pending, mut buf, mut index) = (Vec::new(), [0; 4096], 0);
        // Ends when the bench closes, or after 10 s of silence.
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            pending.extend_from_slice(&buf[..n]);
            let mut out = Vec::new();
            while pending.len() >= size {
                let line: Vec<u8> = pending.drain(..size).collect();
                tamper(index, &line, &mut out);
                index += 1;
            }
            if stream.write_all(&out).is_err() {
                return;
            }
        }
    });
    addr
}

/// Runs a one-connection bench of 100 lines against a server that tampers with line 11.
fn bench_tampered(
    depth: &str,
    tamper: impl FnMut(usize, &[u8], &mut Vec<u8>) + Send + 'static,
) -> (Output, Value) {
    let addr = tampering_server(64, tamper).to_string();
    let output = bench(&[&addr, "-c", "1", "-p", depth, "-n", "100", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = report(&output);
    assert_eq!(number(&report, "errors"), 1.0);
    assert!(stderr(&output).contains("1 errors"), "{}", stderr(&output));
    (output, report)
}

#[test]
fn a_flipped_byte_is_an_error() {
    let (output, report) = bench_tampered("1", |index, line, out| {
        out.extend_from_slice(line);
        if index == 10 {
            let at = out.len() - line.len() + 3;
            out[at] ^= 1;
        }
    });
    // With one line in flight, the ten lines before it were checked and counted.
    assert_eq!(number(&report, "lines"), 10.0);
    assert!(stderr(&output).contains("line 11 differs at byte 4"), "{}", stderr(&output));
}

#[test]
fn a_doubled_line_is_an_error() {
    bench_tampered("1", |index, line, out| {
        out.extend_from_slice(line);
        if index == 10 {
            out.extend_from_slice(line);
        }
    });
}

#[test]
fn swapped_lines_are_an_error() {
    let mut held = Vec::new();
    let (output, _) = bench_tampered("4", move |index, line, out| match index {
        10 => held = line.to_vec(),
        11 => out.extend_from_slice(&[line, &held].concat()),
        _ => out.extend_from_slice(line),
    });
    assert!(stderr(&output).contains("line 11 differs"), "{}", stderr(&output));
}

#[test]
fn lines_longer_than_the_server_allows_are_errors() {
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--max-line", "100"], 1);
    let output = bench(&[&server.addr().to_string(), "-s", "200", "-c", "3", "-n", "30", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = report(&output);
    assert_eq!((number(&report, "errors"), number(&report, "lines")), (3.0, 0.0));
    assert!(stderr(&output).contains("3 errors"), "{}", stderr(&output));
    assert!(server.wait_for_line("line too long", Duration::from_secs(5)).is_some(), "{:?}", server.log());
}

#[test]
fn an_unreachable_server_exits_1() {
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    // The listener is closed: connecting is refused.
    let output = bench(&[&addr, "-n", "10"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(stderr(&output).starts_with(&format!("echo: cannot connect to {addr}: ")), "{}", stderr(&output));
}

#[test]
fn duration_with_line_count_is_a_usage_error() {
    let output = bench(&["127.0.0.1:1", "-d", "1s", "-n", "10"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = stderr(&output);
    assert!(stderr.starts_with("echo: -d and -n cannot be used together\n"), "{stderr}");
    assert!(stderr.lines().count() <= 2, "{stderr}");
}

#[test]
fn echoes_that_never_come_are_errors_after_the_timeout() {
    // Takes connections and reads, never echoes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(2) {
            held.push(stream.unwrap());
        }
        thread::sleep(Duration::from_secs(5));
    });
    let config = BenchConfig {
        connections: 2,
        limit: BenchLimit::Duration(Duration::from_millis(100)),
        timeout: Duration::from_millis(200),
        ..BenchConfig::default()
    };
    let report = within(Duration::from_secs(5), smol_echo::bench(&addr, &config, |_| {})).unwrap();
    assert_eq!((report.errors, report.lines), (2, 0));
    assert!(report.first_error.unwrap().contains("no echo"));
    // Stopped at the end plus the timeout, not later.
    assert!(report.duration_s < 1.0, "{}", report.duration_s);
}
