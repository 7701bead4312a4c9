//! The server over real sockets: timeouts, bounded memory, shutdown, other executors.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use common::{InProcessServer, ServerProcess, within};
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};
use smol_echo::server::Listener;
use smol_echo::{EchoConfig, Server, ServerConfig};

fn config(idle: Duration) -> ServerConfig {
    ServerConfig {
        echo: EchoConfig { idle_timeout: Some(idle), grace: Duration::from_secs(1), ..EchoConfig::default() },
        ..ServerConfig::default()
    }
}

/// Reads until EOF or an error; returns what arrived and when the stream ended.
fn read_all(stream: &mut TcpStream) -> (Vec<u8>, Instant) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0; 65536];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == ErrorKind::WouldBlock || err.kind() == ErrorKind::TimedOut => {
                panic!("no EOF within 10 s")
            }
            // A reset after the close still means the server closed.
            Err(_) => break,
        }
    }
    (got, Instant::now())
}

#[test]
fn a_drip_of_bytes_does_not_hold_a_connection_past_the_idle_timeout() {
    let server = InProcessServer::start(config(Duration::from_millis(300)));
    let mut client = TcpStream::connect(server.addr).unwrap();
    let start = Instant::now();
    let mut dripper = client.try_clone().unwrap();
    let drip = thread::spawn(move || {
        // One byte every 100 ms, never a line end, for at most 3 s.
        for _ in 0..30 {
            if dripper.write_all(b"x").is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let (got, closed) = read_all(&mut client);
    let lived = closed - start;
    assert!(got.is_empty(), "a partial line is not echoed on timeout: {got:?}");
    assert!(lived >= Duration::from_millis(250), "closed too early: {lived:?}");
    assert!(lived < Duration::from_millis(1500), "the drip kept the connection alive: {lived:?}");
    drip.join().unwrap();
}

#[test]
fn each_complete_line_restarts_the_idle_timeout() {
    let server = InProcessServer::start(config(Duration::from_millis(300)));
    let mut client = TcpStream::connect(server.addr).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Lines every 150 ms for 900 ms: three idle timeouts' worth, yet always within one.
    for i in 0..6 {
        let line = format!("line {i}\r\n");
        client.write_all(line.as_bytes()).unwrap();
        let mut echo = vec![0; line.len()];
        client.read_exact(&mut echo).unwrap();
        assert_eq!(echo, line.as_bytes());
        thread::sleep(Duration::from_millis(150));
    }
    let start = Instant::now();
    let (got, closed) = read_all(&mut client);
    assert!(got.is_empty());
    assert!(closed - start < Duration::from_secs(2));
}

#[test]
fn fifty_megabytes_without_a_line_end_closes_after_the_earlier_lines() {
    let server = InProcessServer::start(config(Duration::from_secs(5)));
    let mut client = TcpStream::connect(server.addr).unwrap();
    let mut writer = client.try_clone().unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let flood = thread::spawn(move || {
        writer.write_all(b"first\r\nsecond\r\n").unwrap();
        let block = vec![b'x'; 64 << 10];
        while counter.load(Relaxed) < 50 << 20 {
            match writer.write(&block) {
                Ok(n) => counter.fetch_add(n, Relaxed),
                Err(_) => break, // the server is gone
            };
        }
    });
    let (got, _) = read_all(&mut client);
    let sent_at_close = sent.load(Relaxed);
    assert_eq!(got, b"first\r\nsecond\r\n");
    assert!(sent_at_close < 50 << 20, "the server waited for all 50 MB of one line");
    flood.join().unwrap();
}

#[test]
fn a_peer_that_never_reads_is_closed_and_server_memory_stays_flat() {
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--idle-timeout", "500ms", "-q"], 1);
    let before = server.rss();
    let mut client = TcpStream::connect(server.addr()).unwrap();
    client.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let line = [&[b'y'; 1022][..], b"\r\n"].concat();
    let mut sent = 0usize;
    // Up to 50 MB of complete lines, never reading an echo.
    while sent < 50 << 20 {
        match client.write(&line) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    let blocked_for = started.elapsed();
    let after = server.rss();
    assert!(sent < 50 << 20, "the server took 50 MB from a peer that reads nothing");
    assert!(blocked_for < Duration::from_secs(5), "closed only after {blocked_for:?}");
    assert!(after < before + (8 << 20), "server RSS grew from {before} to {after}");
}

#[test]
fn shutdown_echoes_what_arrived_and_counts_it() {
    let server = InProcessServer::start(config(Duration::from_secs(30)));
    let mut client = TcpStream::connect(server.addr).unwrap();
    client.write_all(b"one\r\ntwo\r\n").unwrap();
    let mut echo = [0; 10];
    client.read_exact(&mut echo).unwrap();
    client.write_all(b"three\r\npart").unwrap();
    // Let the bytes reach the server's socket before shutdown asks for them.
    thread::sleep(Duration::from_millis(50));
    let summary = server.stop();
    let (got, _) = read_all(&mut client);
    assert_eq!(got, b"three\r\n");
    assert_eq!((summary.connections, summary.lines, summary.unfinished), (1, 3, 0));
}

#[test]
fn serves_on_an_executor_that_is_not_smol() {
    // futures-lite's block_on drives no reactor: async-io's own thread does, which is what makes
    // the library runtime-agnostic.
    let ex = async_executor::Executor::new();
    let summary = future::block_on(ex.run(async {
        let listeners = smol_echo::bind(&["127.0.0.1:0"]).await.unwrap();
        let server = Server::new(listeners, ServerConfig::default());
        let addr = server.local_addrs().unwrap()[0].to_string();
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let serving = server.run(|task| ex.spawn(task).detach(), async move {
            stopped.recv().await.ok();
        });
        let client = async {
            let mut client = async_net::TcpStream::connect(&*addr).await.unwrap();
            client.write_all(b"elsewhere\r\n.\r\n").await.unwrap();
            let mut echoed = Vec::new();
            client.read_to_end(&mut echoed).await.unwrap();
            assert_eq!(echoed, b"elsewhere\r\n");
            stop.close();
        };
        future::zip(serving, client).await.0
    }));
    assert_eq!((summary.connections, summary.lines), (1, 1));
}

#[test]
fn idle_timeout_zero_turns_timeouts_off() {
    let server = InProcessServer::start(ServerConfig {
        echo: EchoConfig { idle_timeout: None, ..EchoConfig::default() },
        ..ServerConfig::default()
    });
    within(Duration::from_secs(5), async {
        let mut client = async_net::TcpStream::connect(server.addr).await.unwrap();
        let mut byte = [0];
        // Nothing arrives and nothing closes for well past any short timeout.
        let waited = async {
            client.read(&mut byte).await.unwrap();
            panic!("the server closed an idle connection with timeouts off");
        };
        let quiet = async {
            async_io::Timer::after(Duration::from_millis(500)).await;
        };
        future::or(waited, quiet).await;
        client.write_all(b"still here\r\n").await.unwrap();
        let mut echo = [0; 12];
        client.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"still here\r\n");
    });
}

#[test]
fn a_datagram_between_two_of_the_servers_own_udp_sockets_is_not_answered() {
    // From one of the server's sockets to another: answered, each echo would be the next
    // datagram for the other socket, for ever.
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (forger, b_addr) = (a.try_clone().unwrap(), b.local_addr().unwrap());
    let listeners = [a, b].map(|socket| Listener::from(async_net::UdpSocket::try_from(socket).unwrap()));
    let server = Server::new(listeners.into(), ServerConfig::default());
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let serving = thread::spawn(move || {
        let ex = smol::Executor::new();
        smol::block_on(ex.run(server.run(|task| ex.spawn(task).detach(), async move {
            stopped.recv().await.ok();
        })))
    });
    forger.send_to(b"ping-pong?", b_addr).unwrap();
    thread::sleep(Duration::from_millis(200));
    stop.close();
    let summary = within(Duration::from_secs(5), async {
        while !serving.is_finished() {
            async_io::Timer::after(Duration::from_millis(10)).await;
        }
        serving.join().expect("server thread")
    });
    assert_eq!((summary.datagrams, summary.refused_datagrams), (0, 1));
}
