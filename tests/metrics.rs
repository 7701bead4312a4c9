//! `echo serve --metrics` (docs/serving.md, "Metrics"): the counters after real load, read
//! by the Prometheus project's own text parser (Python's `prometheus_client`, which `.ci/run`
//! installs), and the endpoint's limits: one path, one method, bounded head, time and
//! connections, apart from the echo's.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ServerProcess, SocketPath, assert_echoes, connect, output_within, spawn_bench};
use futures_lite::FutureExt;
use smol_echo::metrics::{EndpointConfig, Metrics, serve};

const LIMIT: Duration = Duration::from_secs(5);

/// A server with TCP, Unix (named after the test: tests run at once), UDP and metrics
/// listeners; returns it, its metrics address, its
/// UDP address, and the Unix socket's path (kept until the test ends).
fn start(name: &str, extra: &[&str]) -> (ServerProcess, SocketAddr, SocketAddr, SocketPath) {
    let path = SocketPath::new(name);
    let unix = path.addr();
    let mut args = vec!["--listen", "127.0.0.1:0", "--listen", &unix, "--udp", "127.0.0.1:0"];
    args.extend(["--metrics", "127.0.0.1:0"]);
    args.extend(extra);
    let server = ServerProcess::start(&args, 3);
    let line = server
        .wait_for_line("metrics on ", LIMIT)
        .unwrap_or_else(|| panic!("no metrics line; stderr: {:?}", server.log()));
    let url = line.strip_prefix("metrics on http://").and_then(|rest| rest.strip_suffix("/metrics"));
    let metrics = url.unwrap_or_else(|| panic!("not a metrics URL: {line}")).parse().expect("address");
    let udp = server.listening[2].strip_prefix("udp:").unwrap().parse().unwrap();
    (server, metrics, udp, path)
}

/// Sends `request` and returns the status code, the head and the body of the answer.
fn http(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut stream = connect(addr);
    stream.write_all(request).expect("send the request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    let answer = String::from_utf8(answer).expect("UTF-8 answer");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {answer:?}"));
    let code = head.get(9..12).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    assert!(head.starts_with("HTTP/1.1 "), "{head}");
    (code, head.to_string(), body.to_string())
}

/// One sample: the metric's name and its labels.
type Series = (String, BTreeMap<String, String>);

/// Every sample's value, and each family's type, of one scrape.
type Parsed = (BTreeMap<Series, f64>, BTreeMap<String, String>);

/// Scrapes `addr` and returns the text, checking the status and the content type.
fn scrape_text(addr: SocketAddr) -> String {
    let (code, head, body) = http(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(code, 200, "{head}");
    let content_type = head.lines().find_map(|line| line.strip_prefix("Content-Type: "));
    assert_eq!(content_type, Some("text/plain; version=0.0.4; charset=utf-8"));
    body
}

/// Scrapes `addr` and parses the text with `prometheus_client.parser`.
fn scrape(addr: SocketAddr) -> Parsed {
    parse_with_prometheus_client(&[scrape_text(addr)]).remove(0)
}

/// Parses each text with `prometheus_client.parser`, which must be installed: a test that
/// cannot parse fails rather than skips. One Python for all, as it takes a while to start.
fn parse_with_prometheus_client(texts: &[String]) -> Vec<Parsed> {
    const PARSE: &str = "import json, sys
from prometheus_client.parser import text_string_to_metric_families
for text in sys.stdin.read().split('\\0'):
    print(json.dumps({'scrape': True}))
    for family in text_string_to_metric_families(text):
        print(json.dumps({'family': family.name, 'type': family.type}))
        for s in family.samples:
            print(json.dumps({'name': s.name, 'labels': s.labels, 'value': s.value}))
";
    let mut python = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed (.ci/run installs it with prometheus_client)");
    let input = texts.join("\0");
    // Written by a thread of its own: Python answers while it reads.
    let mut stdin = python.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let output = output_within(python, 2 * LIMIT);
    writer.join().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "prometheus_client could not parse a scrape: {err}\n{texts:#?}");
    let mut parsed: Vec<Parsed> = Vec::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let item: serde_json::Value = serde_json::from_str(line).unwrap();
        if item["scrape"].as_bool() == Some(true) {
            parsed.push(Parsed::default());
            continue;
        }
        let (samples, types) = parsed.last_mut().unwrap();
        if let Some(family) = item["family"].as_str() {
            types.insert(family.to_string(), item["type"].as_str().unwrap().to_string());
            continue;
        }
        let labels = item["labels"].as_object().unwrap();
        let labels = labels.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
        samples.insert((item["name"].as_str().unwrap().to_string(), labels), item["value"].as_f64().unwrap());
    }
    assert_eq!(parsed.len(), texts.len());
    parsed
}

/// The value of `name` with `labels`; absent is a failure.
fn value(samples: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let series = (name.to_string(), labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    *samples.get(&series).unwrap_or_else(|| panic!("no {name}{labels:?} in {samples:#?}"))
}

/// What the exact load below sends, to compare with the counters' growth.
#[derive(Debug, Default)]
struct Sent {
    lines: [u64; 2],
    bytes: [u64; 2],
    datagram_bytes: u64,
}

/// Closed connections with known lines (TCP by the sentinel, Unix by end of input), one TCP
/// connection left open, and two datagrams. Returns what was echoed and the open connection.
fn exact_load(server: &ServerProcess, udp: SocketAddr, unix: &SocketPath) -> (Sent, TcpStream) {
    let mut sent = Sent::default();
    for lines in 1..=3 {
        let mut stream = connect(server.addr());
        let batch: String = (0..lines).map(|n| format!("line {n} of {lines}\r\n")).collect();
        assert_echoes(&mut stream, batch.as_bytes());
        stream.write_all(b".\r\n").unwrap();
        assert_eq!(stream.read(&mut [0; 16]).unwrap(), 0, "the sentinel closes");
        sent.lines[0] += lines;
        sent.bytes[0] += batch.len() as u64;
    }
    let mut stream = UnixStream::connect(&unix.0).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.write_all(b"unix one\r\nunix two\r\n").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed).unwrap();
    assert_eq!(echoed, b"unix one\r\nunix two\r\n");
    (sent.lines[1], sent.bytes[1]) = (2, echoed.len() as u64);

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    for datagram in [&b"first datagram"[..], b"second"] {
        socket.send_to(datagram, udp).unwrap();
        let mut buf = [0; 64];
        let (len, _) = socket.recv_from(&mut buf).expect("the datagram's echo");
        assert_eq!(&buf[..len], datagram);
        sent.datagram_bytes += len as u64;
    }

    let mut open = connect(server.addr());
    assert_echoes(&mut open, b"still open\r\n");
    (sent, open)
}

#[test]
fn a_scrape_during_and_after_load_counts_what_was_sent() {
    let (server, metrics, udp, unix) = start("metrics-load", &[]);

    // During a bench: every scrape parses, and some see its connections open.
    let addr = server.addr().to_string();
    let mut bench = spawn_bench(&[&addr, "-c", "4", "-p", "4", "-d", "1s", "--json"]);
    let started = Instant::now();
    let mut during = Vec::new();
    while bench.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < 3 * LIMIT, "the bench did not end");
        during.push(scrape_text(metrics));
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = output_within(bench, LIMIT);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut most_open = 0.0f64;
    for (samples, types) in parse_with_prometheus_client(&during) {
        assert_eq!(types["echo_connections_open"], "gauge");
        assert_eq!(types["echo_session_duration_seconds"], "histogram");
        most_open = most_open.max(value(&samples, "echo_connections_open", &[("listener", "tcp")]));
    }
    assert_eq!(most_open, 4.0, "no scrape of {} saw the bench's connections open", during.len());

    // After it: the bench's closes count its lines, at least all it saw echoed.
    let deadline = Instant::now() + LIMIT;
    let before = loop {
        let text = scrape_text(metrics);
        if text.contains("\necho_connections_open{listener=\"tcp\"} 0\n") || Instant::now() > deadline {
            break parse_with_prometheus_client(&[text]).remove(0).0;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(value(&before, "echo_connections_open", &[("listener", "tcp")]), 0.0);
    assert_eq!(value(&before, "echo_connections_total", &[("listener", "tcp")]), 4.0);
    let bench_lines = report["lines"].as_f64().unwrap();
    assert!(value(&before, "echo_lines_total", &[("listener", "tcp")]) >= bench_lines, "{report}");

    // Then exact load: every counter grows by exactly what was sent.
    let (sent, open) = exact_load(&server, udp, &unix);
    let (after, _) = scrape(metrics);
    let grew =
        |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);
    let tcp = [("listener", "tcp")];
    let unix_kind = [("listener", "unix")];
    assert_eq!(grew("echo_connections_total", &tcp), 4.0);
    assert_eq!(value(&after, "echo_connections_open", &tcp), 1.0, "the connection left open");
    assert_eq!(grew("echo_connections_total", &unix_kind), 1.0);
    assert_eq!(value(&after, "echo_connections_open", &unix_kind), 0.0);
    assert_eq!(grew("echo_lines_total", &tcp), sent.lines[0] as f64, "the open one counts at its close");
    assert_eq!(grew("echo_bytes_total", &tcp), sent.bytes[0] as f64);
    assert_eq!(grew("echo_lines_total", &unix_kind), sent.lines[1] as f64);
    assert_eq!(grew("echo_bytes_total", &unix_kind), sent.bytes[1] as f64);
    assert_eq!(grew("echo_bytes_total", &[("listener", "udp")]), sent.datagram_bytes as f64);
    assert_eq!(grew("echo_datagrams_total", &[]), 2.0);
    assert_eq!(grew("echo_closes_total", &[("reason", "sentinel")]), 3.0);
    assert_eq!(grew("echo_closes_total", &[("reason", "eof")]), 1.0);
    assert_eq!(grew("echo_session_duration_seconds_count", &[]), 4.0);
    assert_eq!(value(&after, "echo_session_duration_seconds_bucket", &[("le", "+Inf")]), 8.0);
    assert_eq!(value(&after, "echo_refused_datagrams_total", &[]), 0.0);
    assert_eq!(value(&after, "echo_accept_errors_total", &[]), 0.0);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(value(&after, "echo_build_info", &[("version", version)]), 1.0);
    drop(open);
}

#[test]
fn the_endpoint_answers_get_metrics_only() {
    let (_server, metrics, _, _unix) = start("metrics-paths", &[]);
    let (code, _, body) = http(metrics, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n");
    assert_eq!(code, 200);
    assert!(body.contains("\necho_connections_total{listener=\"tcp\"} 0\n"), "{body}");
    assert_eq!(http(metrics, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").0, 404);
    assert_eq!(http(metrics, b"GET /favicon.ico HTTP/1.1\r\n\r\n").0, 404);
    let (code, head, _) = http(metrics, b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(code, 405);
    assert!(head.contains("\r\nAllow: GET\r\n"), "{head}");
    assert_eq!(http(metrics, b"HELLO\r\n\r\n").0, 400);
    assert_eq!(http(metrics, b"GET /metrics HTTP/1.1\r\nbroken header\r\n\r\n").0, 400);

    // 16 KiB of head: answered at 8 KiB, and the rest read and dropped so the answer is not
    // lost to a reset.
    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    while huge.len() < 16 * 1024 {
        huge.extend_from_slice(b"X-Filler: abcdefghijklmnopqrstuvwxyz\r\n");
    }
    huge.extend_from_slice(b"\r\n");
    assert_eq!(http(metrics, &huge).0, 431);
}

#[test]
fn scrapes_cannot_take_the_echo_s_places_nor_echoes_the_scrapes() {
    let (server, metrics, _, _unix) = start("metrics-places", &["--max-connections", "1"]);
    // Ten idle scrape connections, more than the endpoint serves at once.
    let idle: Vec<TcpStream> = (0..10).map(|_| connect(metrics)).collect();
    let mut echo = connect(server.addr());
    assert_echoes(&mut echo, b"served beside idle scrapes\r\n");
    drop(idle);
    // The one echo place is held; a scrape is still answered, within its own limit.
    let (samples, _) = scrape(metrics);
    assert_eq!(value(&samples, "echo_connections_open", &[("listener", "tcp")]), 1.0);
}

/// Serves the endpoint in this process with `config` until `checks` return.
fn with_endpoint<T>(config: EndpointConfig, checks: impl FnOnce(SocketAddr) -> T + Send + 'static) -> T
where
    T: Send + 'static,
{
    let listener = smol::block_on(async_net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let checking = std::thread::spawn(move || checks(addr));
    let endpoint = serve(listener, Arc::new(Metrics::default()), config, |task| smol::spawn(task).detach());
    let done = smol::unblock(move || checking.join());
    let checked = common::within(
        4 * LIMIT,
        done.or(async {
            endpoint.await;
            unreachable!("the endpoint serves for ever")
        }),
    );
    checked.expect("the checks")
}

#[test]
fn a_slow_request_is_closed_at_the_timeout_and_frees_its_place() {
    let config = EndpointConfig { timeout: Duration::from_millis(300), max_scrapes: 1 };
    let waited = with_endpoint(config, |addr| {
        // Half a request, then nothing: closed without an answer at the timeout.
        let mut slow = connect(addr);
        slow.write_all(b"GET /metr").unwrap();
        let started = Instant::now();
        // The only place is taken: this scrape waits in the backlog until the slow one ends.
        let (code, _, _) = http(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(code, 200);
        let waited = started.elapsed();
        let mut rest = Vec::new();
        assert_eq!(slow.read_to_end(&mut rest).unwrap(), 0, "no answer to half a request");
        waited
    });
    assert!(waited >= Duration::from_millis(250), "answered after {waited:?}, while the only place was held");
}

/// The value of the one sample `series` (`name{labels}`) in a rendered text; fails if the
/// series is missing or appears more than once (the text would not be valid exposition).
fn sample_of(text: &str, series: &str) -> f64 {
    let values: Vec<f64> =
        text.lines().filter_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).collect();
    assert_eq!(values.len(), 1, "{series} in:\n{text}");
    values[0]
}

/// Connections turned away are closes too: one over its source's cap under `source limit`,
/// one stopped while its PROXY header was awaited under the sessions' own `shutdown`; neither
/// stays counted open.
#[test]
fn refused_connections_are_counted_closed_each_under_one_reason() {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use smol_echo::proxy::{ProxyConfig, Version, encode};
    use smol_echo::{Server, ServerConfig};

    let run = async {
        let listeners = smol_echo::bind(&["127.0.0.1:0"]).await?;
        // Only the stop ends the wait for the silent connection's header (the idle timeout, 30 s,
        // bounds it otherwise).
        let proxy = ProxyConfig { timeout: Duration::from_secs(60), ..ProxyConfig::default() };
        let config = ServerConfig { max_per_source: 1, proxy: Some(proxy), ..ServerConfig::default() };
        let metrics = Arc::new(Metrics::default());
        let server = Server::new(listeners, config).with_metrics(metrics.clone());
        let addr = server.local_addrs()?[0].to_string();
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let serving = smol::spawn(server.run(|task| smol::spawn(task).detach(), async move {
            stopped.recv().await.ok();
        }));
        let source: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let header = |local| encode(Version::V1, Some((source, local)));

        let mut served = async_net::TcpStream::connect(&*addr).await?;
        served.write_all(&header(served.local_addr()?)).await?;
        served.write_all(b"served\r\n").await?;
        let mut echo = [0; 8];
        served.read_exact(&mut echo).await?;
        assert_eq!(&echo, b"served\r\n");

        let mut over = async_net::TcpStream::connect(&*addr).await?;
        over.write_all(&header(over.local_addr()?)).await?;
        assert_eq!(over.read(&mut [0; 8]).await?, 0, "over the source's cap: closed");
        let _silent = async_net::TcpStream::connect(&*addr).await?;
        // Open: the served one and the one whose header is awaited, not the one turned away.
        while sample_of(&metrics.render(), "echo_connections_total{listener=\"tcp\"}") < 3.0
            || sample_of(&metrics.render(), "echo_connections_open{listener=\"tcp\"}") != 2.0
        {
            smol::Timer::after(Duration::from_millis(10)).await;
        }

        stop.send(()).await.ok();
        let summary = serving.await;
        assert_eq!((summary.connections, summary.refused), (3, 2));
        let text = metrics.render();
        assert_eq!(sample_of(&text, "echo_connections_open{listener=\"tcp\"}"), 0.0, "{text}");
        assert_eq!(sample_of(&text, "echo_closes_total{reason=\"source limit\"}"), 1.0);
        assert_eq!(sample_of(&text, "echo_closes_total{reason=\"shutdown\"}"), 2.0);
        std::io::Result::Ok(())
    };
    smol::block_on(run.or(async {
        smol::Timer::after(3 * LIMIT).await;
        panic!("the refusals were not counted within {:?}", 3 * LIMIT)
    }))
    .unwrap();
}
