//! The library under a foreign runtime: tokio runs the tasks, tokio-util's compat layer turns a
//! tokio stream into a futures-io one, and async-io's own thread drives the library's timers and
//! sockets. tokio is a dev-dependency for this test only.

use std::time::Duration;

use smol_echo::{CloseReason, EchoConfig, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::compat::TokioAsyncReadCompatExt;

/// Fails the test instead of hanging when `fut` takes longer than 10 s.
async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut).await.expect("timed out after 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_runs_over_a_tokio_stream() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let config = EchoConfig { idle_timeout: Some(Duration::from_millis(500)), ..EchoConfig::default() };
        smol_echo::echo(stream.compat(), &config, std::future::pending()).await
    });

    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client.write_all(b"one\r\ntwo\r\n.\r\n").await.unwrap();
    let mut echoed = Vec::new();
    within(client.read_to_end(&mut echoed)).await.unwrap();
    assert_eq!(echoed, b"one\r\ntwo\r\n");
    let session = within(server).await.unwrap();
    assert_eq!((session.lines, session.reason), (2, CloseReason::Sentinel));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_timeout_holds_under_tokio() {
    let (server_end, mut client) = tokio::io::duplex(1024);
    let config = EchoConfig { idle_timeout: Some(Duration::from_millis(200)), ..EchoConfig::default() };
    let session =
        tokio::spawn(
            async move { smol_echo::echo(server_end.compat(), &config, std::future::pending()).await },
        );
    client.write_all(b"no line end").await.unwrap();
    let session = within(session).await.unwrap();
    assert_eq!((session.lines, session.reason), (0, CloseReason::IdleTimeout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_spawns_its_connections_on_tokio() {
    let listeners = smol_echo::bind(&["127.0.0.1:0"]).await.unwrap();
    let server = Server::new(listeners, ServerConfig::default());
    let addr = server.local_addrs().unwrap()[0].to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(
        |task| {
            tokio::spawn(task);
        },
        async move {
            stopped.await.ok();
        },
    ));

    let mut client = tokio::net::TcpStream::connect(&*addr).await.unwrap();
    client.write_all(b"over tokio\r\n.\r\n").await.unwrap();
    let mut echoed = Vec::new();
    within(client.read_to_end(&mut echoed)).await.unwrap();
    assert_eq!(echoed, b"over tokio\r\n");

    stop.send(()).unwrap();
    let summary = within(serving).await.unwrap();
    assert_eq!((summary.connections, summary.lines, summary.unfinished), (1, 1, 0));
}
