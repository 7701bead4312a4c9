//! `echo bench` through the binary and the library: the report, exact line counts, and an error
//! for every way an echo can go wrong (a changed, doubled or reordered line, a closed or missing
//! server); Unix sockets, raw messages, and UDP with its loss.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{InProcessServer, ServerProcess, SocketPath, output_within, spawn_bench, within};
use futures_lite::future;
use serde_json::Value;
use smol_echo::bench::BenchLimit;
use smol_echo::{BenchConfig, EchoConfig, Mode, ServerConfig};

/// Runs `echo bench ARGS`; a bench still running after 20 s fails the test.
fn bench(args: &[&str]) -> Output {
    output_within(spawn_bench(args), Duration::from_secs(20))
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
        "mode",
        "connect_errors",
        "errors",
    ];
    expected.sort();
    assert_eq!(keys, expected);
    assert_eq!(
        (number(&report, "connections"), number(&report, "depth"), number(&report, "size")),
        (4.0, 2.0, 100.0)
    );
    assert_eq!(number(&report, "errors"), 0.0);
    assert_eq!(report["mode"], "line");

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
fn a_bench_needing_more_memory_than_there_is_fails_in_one_line() {
    let output = bench(&["127.0.0.1:1", "-c", "1000000", "-p", "65536", "-s", "16777216"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr(&output);
    assert!(stderr.starts_with("echo: the bench would need "), "{stderr}");
    assert!(stderr.contains("1000000 connections x depth 65536 x 16777216 bytes"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_bench_at_the_top_of_the_depth_and_size_ranges_runs() {
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--max-line", "16777216"], 1);
    let addr = server.addr().to_string();
    for args in [["-p", "65536", "-s", "8"], ["-p", "1", "-s", "16777216"]] {
        let output = bench(&[&addr, "-c", "1", "-n", "2", "--json", args[0], args[1], args[2], args[3]]);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr(&output));
        assert_eq!(report(&output)["lines"], 2, "{args:?}");
    }
}

/// A line server that accepts one connection every 2 ms: a burst of connections overflows its
/// listen backlog, and the ones left out open only when their SYN is sent again, a second or
/// more later. Each connection's lines are echoed by a thread of its own.
fn slow_accepting_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().take(400) {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let mut chunk = [0; 4096];
                while let Ok(n @ 1..) = stream.read(&mut chunk) {
                    if stream.write_all(&chunk[..n]).is_err() {
                        break;
                    }
                }
            });
            thread::sleep(Duration::from_millis(2));
        }
    });
    addr
}

#[test]
fn the_no_echo_clock_does_not_run_while_connections_are_still_opening() {
    let addr = slow_accepting_server().to_string();
    let output =
        bench(&[&addr, "-c", "400", "-n", "400", "--timeout", "300ms", "--connect-timeout", "10s", "--json"]);
    let report = report(&output);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!((report["lines"].as_u64(), report["errors"].as_u64()), (Some(400), Some(0)));
}

#[test]
fn connections_that_cannot_open_are_told_apart_from_ones_without_an_echo() {
    // Keeps its backlog full and never accepts: some connections are queued and get no echo,
    // the others never open.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let output = bench(&[
        &addr,
        "-c",
        "400",
        "-d",
        "1s",
        "--timeout",
        "300ms",
        "--connect-timeout",
        "300ms",
        "--json",
    ]);
    drop(listener);
    assert_eq!(output.status.code(), Some(1));
    let report = report(&output);
    let (errors, connect_errors) =
        (report["errors"].as_u64().unwrap(), report["connect_errors"].as_u64().unwrap());
    assert_eq!(errors, 400, "{report}");
    assert!((1..400).contains(&connect_errors), "{report}");
    let stderr = stderr(&output);
    assert!(stderr.contains(&format!("400 errors ({connect_errors} could not connect)")), "{stderr}");
}

#[test]
fn a_signal_stops_the_bench_which_reports_what_it_measured() {
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0"], 1);
    let addr = server.addr().to_string();
    for (signal, status, json) in
        [(rustix::process::Signal::INT, 130, true), (rustix::process::Signal::TERM, 143, false)]
    {
        let mut args = vec![&addr[..], "-c", "2", "-d", "60s"];
        if json {
            args.push("--json");
        }
        let child = spawn_bench(&args);
        // Both connections are open: the bench is measuring.
        for _ in 0..2 {
            server.wait_for_line("open ", Duration::from_secs(5)).expect("the bench connects");
        }
        let started = Instant::now();
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
        let output = output_within(child, Duration::from_secs(5));
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert_eq!(output.status.code(), Some(status), "{}", stderr(&output));
        if json {
            let report = report(&output);
            assert_eq!((report["interrupted"].as_bool(), report["errors"].as_u64()), (Some(true), Some(0)));
        } else {
            let table = String::from_utf8(output.stdout).unwrap();
            assert!(
                table.starts_with("2 connections, depth 1, 64-byte lines, ")
                    && table.contains(", interrupted\n")
            );
        }
    }
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

/// Serves the line protocol on `path` with the library's `echo`, a task per connection; adds
/// the lines each session echoed to `lines`.
fn serve_unix(path: &Path, lines: Arc<AtomicU64>) -> smol::Task<()> {
    let listener = async_net::unix::UnixListener::bind(path).expect("bind the Unix socket");
    smol::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let lines = lines.clone();
            smol::spawn(async move {
                let session = smol_echo::echo(stream, &EchoConfig::default(), future::pending()).await;
                lines.fetch_add(session.lines, Ordering::Relaxed);
            })
            .detach();
        }
    })
}

#[test]
fn a_unix_socket_server_is_loaded_and_checked() {
    let path = SocketPath::new("unix");
    let echoed = Arc::new(AtomicU64::new(0));
    let config =
        BenchConfig { connections: 5, depth: 3, limit: BenchLimit::Lines(2000), ..Default::default() };
    let report = within(Duration::from_secs(10), async {
        let _server = serve_unix(&path.0, echoed.clone());
        smol_echo::bench(&path.addr(), &config, |_| {}).await
    })
    .expect("bench over a Unix socket");
    assert_eq!((report.lines, report.errors, report.connections), (2000, 0, 5), "{report:?}");
    let bytes = report.mib_per_s * report.duration_s * 1048576.0;
    assert!((bytes - 2000.0 * 64.0).abs() < 1.0, "{bytes} bytes echoed");
    // Every line went through the listener: the sessions end when the bench closes.
    let deadline = Instant::now() + Duration::from_secs(5);
    while echoed.load(Ordering::Relaxed) < 2000 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(echoed.load(Ordering::Relaxed), 2000);
}

#[test]
fn a_unix_socket_through_the_binary_and_a_missing_one() {
    let path = SocketPath::new("binary");
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let server = thread::spawn({
        let path = path.0.clone();
        move || {
            smol::block_on(async {
                let _server = serve_unix(&path, Arc::new(AtomicU64::new(0)));
                stopped.recv().await.ok();
            })
        }
    });
    // The listener is bound once the path exists.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !path.0.exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let output = bench(&[&path.addr(), "-c", "3", "-n", "300", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(number(&report(&output), "lines"), 300.0);
    stop.close();
    server.join().expect("server thread");

    let missing = SocketPath::new("missing");
    let output = bench(&[&missing.addr(), "-n", "10"]);
    assert_eq!(output.status.code(), Some(1));
    let expected = format!("echo: cannot connect to {}: ", missing.addr());
    assert!(stderr(&output).starts_with(&expected), "{}", stderr(&output));
}

#[test]
fn raw_mode_loads_a_raw_server_and_checks_every_byte() {
    let server = InProcessServer::start(ServerConfig { mode: Mode::Raw, ..ServerConfig::default() });
    let addr = server.addr.to_string();
    let output = bench(&[&addr, "--mode", "raw", "-n", "1200", "-c", "3", "-p", "4", "-s", "300", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = report(&output);
    assert_eq!(report["mode"], "raw");
    assert_eq!((number(&report, "lines"), number(&report, "errors")), (1200.0, 0.0));
    assert_eq!(number(&report, "size"), 300.0);
    // Exactly the messages' bytes went through the server.
    assert_eq!(server.stop().bytes, 1200 * 300);

    let server = InProcessServer::start(ServerConfig { mode: Mode::Raw, ..ServerConfig::default() });
    let table = bench(&[&server.addr.to_string(), "--mode", "raw", "-n", "50", "-c", "1"]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.starts_with("1 connections, depth 1, 64-byte raw messages"), "{table}");
    assert!(table.contains("messages              50") && table.contains("messages/s"), "{table}");
}

#[test]
fn raw_messages_make_a_line_server_close_and_that_is_an_error() {
    // Each message holds CR LF and a line `.`: a line server takes it for the end of the session.
    let server = InProcessServer::start(ServerConfig::default());
    let output = bench(&[&server.addr.to_string(), "--mode", "raw", "-c", "2", "-n", "100", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(number(&report(&output), "errors"), 2.0);
    assert!(stderr(&output).contains("message(s) not echoed"), "{}", stderr(&output));
}

#[test]
fn a_corrupting_raw_echo_is_an_error() {
    // Raw messages are not lines: the server echoes byte chunks of the message size.
    let addr = tampering_server(64, |index, message, out| {
        out.extend_from_slice(message);
        if index == 10 {
            let at = out.len() - message.len() + 40;
            out[at] = out[at].wrapping_add(1);
        }
    });
    let output = bench(&[&addr.to_string(), "--mode", "raw", "-c", "1", "-p", "2", "-n", "100", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(number(&report(&output), "errors"), 1.0);
    assert!(stderr(&output).contains("echo of message 11 differs at byte 41"), "{}", stderr(&output));
}

/// A UDP echo on 127.0.0.1:0 in a thread: `answer(index, datagram)` may change the datagram and
/// tells whether to send it back. Stops when dropped.
struct UdpEcho {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl UdpEcho {
    fn start(mut answer: impl FnMut(u64, &mut [u8]) -> bool + Send + 'static) -> UdpEcho {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let addr = socket.local_addr().unwrap();
        thread::spawn(move || {
            let (mut buf, mut index) = (vec![0; 65536], 0);
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else { continue };
                if answer(index, &mut buf[..n]) {
                    socket.send_to(&buf[..n], peer).ok();
                }
                index += 1;
            }
        });
        UdpEcho { addr, stop }
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn udp_replies_are_counted_and_checked() {
    let server = UdpEcho::start(|_, _| true);
    let output = bench_udp(server.addr, "-c 3 -p 4 -s 1000 -n 900");
    assert!(output.status.success(), "{}", stderr(&output));
    let report = report(&output);
    let keys: Vec<&str> = report.as_object().unwrap().keys().map(String::as_str).collect();
    for key in ["sent", "received", "lost", "loss_pct", "mode", "lines", "latency_us", "errors"] {
        assert!(keys.contains(&key), "no {key} in {report}");
    }
    assert_eq!(report["mode"], "udp");
    let counts: Vec<f64> =
        ["sent", "received", "lost", "lines", "errors"].iter().map(|k| number(&report, k)).collect();
    assert_eq!(counts, [900.0, 900.0, 0.0, 900.0, 0.0]);
    assert_eq!(number(&report, "loss_pct"), 0.0);
    assert!(number(&report["latency_us"], "p50") > 0.0, "{report}");

    let output = bench(&["--udp", &server.addr.to_string(), "-c", "2", "-n", "40"]);
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(table.starts_with("2 flows, depth 1, 64-byte datagrams"), "{table}");
    for row in ["sent                  40", "received              40", "lost                   0  (0.000 %)"]
    {
        assert!(table.contains(row), "no {row:?} in {table}");
    }
}

/// Runs `echo bench --udp ADDR ARGS --json`, ARGS split at spaces.
fn bench_udp(addr: SocketAddr, args: &str) -> Output {
    let addr = addr.to_string();
    let mut all = vec!["--udp", &addr, "--json"];
    all.extend(args.split(' '));
    bench(&all)
}

#[test]
fn udp_loss_is_reported_and_lost_datagrams_are_replaced() {
    // Drops every 5th datagram it gets: a fifth of those sent are lost.
    let server = UdpEcho::start(|index, _| index % 5 != 4);
    let start = Instant::now();
    let output = bench_udp(server.addr, "-c 2 -p 4 -n 200 --timeout 250ms");
    // Loss alone is no error: UDP may lose.
    assert!(output.status.success(), "{}", stderr(&output));
    let report = report(&output);
    let (sent, received, lost) =
        (number(&report, "sent"), number(&report, "received"), number(&report, "lost"));
    assert_eq!((sent, received + lost), (200.0, 200.0), "{report}");
    // 40 dropped; a reply delayed past the timeout on a busy machine would add to them.
    assert!((38.0..=50.0).contains(&lost), "{report}");
    assert!((number(&report, "loss_pct") - lost / 2.0).abs() < 0.01, "{report}");
    assert_eq!(number(&report, "errors"), 0.0);
    // 40 losses over 8 slots, each held 250 ms: a little over a second, not a timeout each.
    assert!(start.elapsed() < Duration::from_secs(6), "{:?}", start.elapsed());
}

#[test]
fn udp_corrupted_replies_are_errors() {
    // Every 10th reply has a byte changed past its sequence number.
    let server = UdpEcho::start(|index, datagram| {
        if index % 10 == 9 {
            datagram[30] ^= 0x55;
        }
        true
    });
    let output = bench_udp(server.addr, "-c 1 -p 10 -n 100 --timeout 500ms");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = report(&output);
    assert_eq!(number(&report, "errors"), 10.0, "{report}");
    // A corrupted reply answers nothing: its datagram is lost.
    assert_eq!((number(&report, "received"), number(&report, "lost")), (90.0, 10.0), "{report}");
    assert!(stderr(&output).contains("differs at byte 31"), "{}", stderr(&output));
}

#[test]
fn a_udp_server_that_never_answers_ends_the_run_in_time_with_total_loss() {
    let server = UdpEcho::start(|_, _| false);
    for limit in ["-d 400ms", "-n 1000"] {
        let start = Instant::now();
        let output = bench_udp(server.addr, &format!("-c 3 -p 2 {limit} --timeout 200ms"));
        let elapsed = start.elapsed();
        assert_eq!(output.status.code(), Some(1), "{limit}: {}", stderr(&output));
        let report = report(&output);
        assert!(number(&report, "sent") >= 6.0, "{report}");
        assert_eq!(number(&report, "lost"), number(&report, "sent"), "{report}");
        assert_eq!((number(&report, "loss_pct"), number(&report, "received")), (100.0, 0.0), "{report}");
        assert_eq!(number(&report, "errors"), 3.0, "{report}");
        assert!(stderr(&output).contains("3 flow(s)"), "{}", stderr(&output));
        // Two timeouts of silence (400 ms), never past the duration plus the timeout (600 ms);
        // with room for a slow machine and for starting the process.
        assert!(number(&report, "duration_s") < 1.0, "{report}");
        assert!(elapsed < Duration::from_secs(3), "{limit}: {elapsed:?}");
    }
}

#[test]
fn udp_through_the_library_reports_datagrams() {
    let server = UdpEcho::start(|_, _| true);
    let config =
        BenchConfig { connections: 2, depth: 8, limit: BenchLimit::Lines(500), ..Default::default() };
    let report = within(
        Duration::from_secs(10),
        smol_echo::bench::bench_udp(&server.addr.to_string(), &config, |_| {}),
    )
    .unwrap();
    let datagrams = report.datagrams.expect("datagram counts");
    assert_eq!((datagrams.sent, datagrams.received, datagrams.lost), (500, 500, 0));
    assert_eq!((report.lines, report.errors), (500, 0));
    assert!(report.to_json().contains(
        r#""mode":"udp","sent":500,"received":500,"lost":0,"loss_pct":0.000,"connect_errors":0,"errors":0}"#
    ));
}

#[test]
fn udp_usage_errors() {
    for (args, message) in [
        (&["--udp", "unix:/tmp/x.sock"][..], "--udp needs host:port"),
        (&["--udp", "127.0.0.1:7", "-s", "65508"][..], "-s must be from 8 to 65507 with --udp, not 65508"),
        (&["--udp", "127.0.0.1:7", "--mode", "line"][..], "--mode line does not apply"),
        (&["127.0.0.1:7", "--mode", "lines"][..], "invalid mode 'lines'"),
        (&["127.0.0.1:7", "--timeout", "0"][..], "--timeout must be more than 0"),
    ] {
        let output = bench(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty());
        assert!(
            stderr(&output).starts_with("echo: ") && stderr(&output).contains(message),
            "{}",
            stderr(&output)
        );
    }
}

/// The `latency_us` percentile `key` of a JSON report, in microseconds.
fn latency(report: &Value, key: &str) -> f64 {
    number(&report["latency_us"], key)
}

#[test]
fn a_rate_is_kept_and_reported_under_its_own_key() {
    let server = InProcessServer::start(ServerConfig::default());
    let output = bench(&[&server.addr.to_string(), "-c", "4", "--rate", "2000", "-d", "1s", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stderr(&output), "", "no warning when the rate is kept");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let report = report(&output);
    let rate = &report["rate"];
    assert_eq!(number(rate, "target_per_s"), 2000.0);
    assert_eq!(rate["kept"], true, "{report}");
    // Lenient: CI has two cores. The schedule holds 2000 lines; all of them were echoed.
    let achieved = number(rate, "achieved_per_s");
    assert!((1800.0..2200.0).contains(&achieved), "{report}");
    assert!((1800.0..=2000.0).contains(&number(&report, "lines")), "{report}");
    assert!(number(&report, "lines_per_s") > 1600.0, "{report}");
    // A new key between the old ones, which keep their order: `errors` is still last.
    assert!(stdout.contains(r#""mode":"line","rate":{"target_per_s":2000,"#), "{stdout}");
    assert!(stdout.trim_end().ends_with(r#","connect_errors":0,"errors":0}"#), "{stdout}");
    assert!(report.get("churn").is_none());
}

#[test]
fn a_stalled_server_shows_in_the_percentiles_of_an_open_loop_and_not_of_a_closed_one() {
    // Echoes at once, except that it stops for 300 ms before the 50th line.
    let stalling = || {
        tampering_server(16, |index, line, out| {
            if index == 50 {
                thread::sleep(Duration::from_millis(300));
            }
            out.extend_from_slice(line);
        })
    };
    // 500 lines/s for a second: the 150 due during the stall each count their wait.
    let addr = stalling().to_string();
    let open = bench(&[&addr, "-c", "1", "-p", "1000", "-s", "16", "-n", "500", "--rate", "500", "--json"]);
    assert!(open.status.success(), "{}", stderr(&open));
    let open = report(&open);
    // Closed loop, the stall holds back the load instead, and only one line sees it.
    let addr = stalling().to_string();
    let closed = bench(&[&addr, "-c", "1", "-s", "16", "-n", "500", "--json"]);
    assert!(closed.status.success(), "{}", stderr(&closed));
    let closed = report(&closed);
    for report in [&open, &closed] {
        assert_eq!(number(report, "lines"), 500.0);
        assert!(latency(report, "max") >= 290_000.0, "{report}");
    }
    assert!(latency(&open, "p90") > 100_000.0, "open loop: {open}");
    assert!(latency(&closed, "p90") < 50_000.0, "closed loop: {closed}");
}

#[test]
fn a_rate_the_server_cannot_keep_is_told_on_stderr_and_in_the_json() {
    // 10 ms per line: at most 100 lines/s with one in flight.
    let addr = tampering_server(16, |_, line, out| {
        thread::sleep(Duration::from_millis(10));
        out.extend_from_slice(line);
    });
    let output =
        bench(&[&addr.to_string(), "-c", "1", "-s", "16", "--rate", "1000", "-d", "500ms", "--json"]);
    assert!(output.status.success(), "a warning, not an error: {}", stderr(&output));
    let report = report(&output);
    assert_eq!(report["rate"]["kept"], false, "{report}");
    assert!(number(&report["rate"], "achieved_per_s") < 200.0, "{report}");
    let stderr = stderr(&output);
    assert!(stderr.starts_with("echo: sent ") && stderr.contains("under 99 % of --rate 1000"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Latency counts from the due time: the line due last waited for the whole backlog.
    assert!(latency(&report, "max") > 200_000.0, "{report}");
}

#[test]
fn churn_opens_a_connection_every_k_lines_and_closes_each_cleanly() {
    let server = InProcessServer::start(ServerConfig::default());
    let output =
        bench(&[&server.addr.to_string(), "-c", "3", "--churn", "10", "-n", "300", "-p", "4", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let report = report(&output);
    assert_eq!((number(&report, "lines"), number(&report, "errors")), (300.0, 0.0));
    let churn = &report["churn"];
    assert_eq!((number(churn, "lines_per_connection"), number(churn, "connects")), (10.0, 30.0));
    let per_s = number(churn, "connects_per_s");
    assert!((per_s - 30.0 / number(&report, "duration_s")).abs() < 0.1 * per_s + 1.0, "{report}");
    let connect = &churn["connect_us"];
    let percentiles: Vec<f64> =
        ["p50", "p90", "p99", "p999", "max"].iter().map(|p| number(connect, p)).collect();
    assert!(percentiles[0] > 0.0 && percentiles.windows(2).all(|pair| pair[0] <= pair[1]), "{connect}");
    assert!(stdout.trim_end().ends_with(r#"}},"connect_errors":0,"errors":0}"#), "{stdout}");
    // The server saw every connection, each with its ten lines, ended as a client ends it.
    let summary = server.stop();
    assert_eq!((summary.connections, summary.lines, summary.unfinished), (30, 300, 0));
}

#[test]
fn churn_with_a_rate_and_a_duration_and_in_the_table() {
    let server = InProcessServer::start(ServerConfig::default());
    let addr = server.addr.to_string();
    let output = bench(&[&addr, "-c", "2", "--churn", "5", "--rate", "400", "-d", "500ms"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = String::from_utf8(output.stdout).unwrap();
    for row in [
        "rate/s               400  asked, ",
        "connects     ",
        "(",
        "/s, one per 5 lines)",
        "connect µs  p50 ",
    ] {
        assert!(table.contains(row), "no {row:?} in {table}");
    }
    // Not a terminal: no bars.
    assert!(!table.contains('█'), "{table}");
    let summary = server.stop();
    // 200 lines due in the half second, five a connection.
    assert!((36..=40).contains(&summary.connections), "{summary:?}");
    assert_eq!(summary.lines, summary.connections * 5);
}

#[test]
fn percentiles_are_written_in_hdrhistograms_format() {
    let server = InProcessServer::start(ServerConfig::default());
    let path = std::env::temp_dir().join(format!("smol-echo-{}-latency.hgrm", std::process::id()));
    let output =
        bench(&[&server.addr.to_string(), "-n", "200", "-c", "2", "--percentiles", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(&path).expect("the percentiles file");
    std::fs::remove_file(&path).ok();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("       Value     Percentile TotalCount 1/(1-Percentile)"));
    assert_eq!(lines.next(), Some(""));
    let (rows, footer): (Vec<&str>, Vec<&str>) = lines.partition(|line| !line.starts_with('#'));
    let rows: Vec<Vec<f64>> = rows
        .iter()
        .map(|row| row.split_whitespace().map(|cell| cell.parse().expect(row)).collect())
        .collect();
    let (last, steps) = rows.split_last().expect("rows");
    assert!(steps.iter().all(|row| row.len() == 4), "{text}");
    assert_eq!(last[1..], [1.0, 200.0], "{text}");
    // Milliseconds: loopback round trips are well under a second, and more than a microsecond.
    assert!(steps.iter().all(|row| (0.001..1000.0).contains(&row[0])), "{text}");
    assert_eq!(footer.len(), 3, "{text}");
    assert!(
        footer[1].starts_with("#[Max     = ") && footer[1].ends_with("Total count    =          200]"),
        "{text}"
    );
}

#[test]
fn a_percentiles_file_that_cannot_be_written_fails_before_the_run() {
    let output = bench(&["127.0.0.1:1", "--percentiles", "/nonexistent/dir/latency.hgrm"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr(&output);
    assert!(stderr.starts_with("echo: cannot write /nonexistent/dir/latency.hgrm: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "before any connection: {stderr}");
}

#[test]
fn rate_and_churn_usage_errors() {
    for (args, message) in [
        (&["127.0.0.1:7", "--rate", "0"][..], "--rate must be from 1 to 1000000000, not 0"),
        (&["127.0.0.1:7", "--rate", "fast"][..], "'--rate' with value 'fast'"),
        (&["127.0.0.1:7", "--churn", "0"][..], "--churn must be from 1 to"),
        (
            &["--udp", "127.0.0.1:7", "--rate", "10"][..],
            "--rate and --churn apply to stream benches, not --udp",
        ),
        (
            &["--udp", "127.0.0.1:7", "--churn", "10"][..],
            "--rate and --churn apply to stream benches, not --udp",
        ),
    ] {
        let output = bench(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty());
        let stderr = stderr(&output);
        assert!(stderr.starts_with("echo: ") && stderr.lines().next().unwrap().contains(message), "{stderr}");
        assert!(stderr.lines().count() <= 2, "{stderr}");
    }
}
