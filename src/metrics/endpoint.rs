//! The metrics endpoint: a minimal HTTP/1.x responder on a listener of its own, which answers
//! `GET /metrics` and nothing else, one request per connection.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_net::{TcpListener, TcpStream};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::Metrics;
use super::request::{self, Answer, MAX_HEAD};
use crate::net::within_saying;
use crate::server::failures::Failures;
use crate::server::permits::Permits;
use crate::server::{ACCEPT_BACKOFF, ConnectionTask};

/// The most bytes read and dropped after the answer, so that the close does not reset the
/// connection (and lose the answer) while the client is still sending.
const DRAIN_AT_MOST: usize = 64 * 1024;

/// The limits of the metrics endpoint.
///
/// Fields may be added in a minor release: build one from `..Default::default()`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use smol_echo::metrics::EndpointConfig;
///
/// let config = EndpointConfig { timeout: Duration::from_secs(2), ..EndpointConfig::default() };
/// assert_eq!(config.max_scrapes, 8);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// The time one connection may take, from accept to close: reading the request and
    /// writing the answer.
    pub timeout: Duration,
    /// Connections served at once; more wait in the listen backlog. Apart from the server's
    /// `max_connections`: scrapes never take an echo's place, nor echoes a scrape's.
    pub max_scrapes: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig { timeout: Duration::from_secs(5), max_scrapes: 8 }
    }
}

/// Answers HTTP requests on `listener` for ever: `GET /metrics` with [`Metrics::render`]
/// (200, [`CONTENT_TYPE`](super::CONTENT_TYPE)), another path with 404, another method with
/// 405, a head larger than 8 KiB with 431, anything else with 400. Each connection gets one
/// answer and is closed; one that has not finished within `config.timeout` is closed without
/// one. `spawn` runs each connection's task, as for [`Server::run`](crate::Server::run).
///
/// It ends only when dropped: race it against the server, or spawn it.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
/// use smol_echo::metrics::{EndpointConfig, Metrics, serve};
///
/// smol::block_on(async {
///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
///     let addr = listener.local_addr()?;
///     let endpoint = serve(listener, Arc::new(Metrics::default()), EndpointConfig::default(), |task| {
///         smol::spawn(task).detach()
///     });
///     let scrape = async {
///         let mut client = async_net::TcpStream::connect(addr).await?;
///         client.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await?;
///         let mut answer = String::new();
///         client.read_to_string(&mut answer).await?;
///         std::io::Result::Ok(answer)
///     };
///     let answer = scrape.or(async { endpoint.await; unreachable!() }).await?;
///     assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
///     assert!(answer.contains("\necho_build_info{version="));
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
pub async fn serve<S>(listener: TcpListener, metrics: Arc<Metrics>, config: EndpointConfig, spawn: S)
where
    S: Fn(ConnectionTask),
{
    let permits = Permits::new(config.max_scrapes.max(1));
    let mut failures = Failures::new("metrics accept", ACCEPT_BACKOFF);
    loop {
        let permit = permits.acquire().await;
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                failures.rest(&err).await;
                continue;
            }
        };
        let (metrics, timeout) = (metrics.clone(), config.timeout);
        spawn(Box::pin(async move {
            let answered = within_saying(timeout, exchange(stream, &metrics), "unfinished after");
            if let Err(err) = answered.await {
                log::debug!("metrics request: {err}");
            }
            drop(permit);
        }));
    }
}

/// Reads one request head, answers it and closes.
async fn exchange(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    let mut head = vec![0; MAX_HEAD];
    let mut len = 0;
    let answer = loop {
        // The parser answers at MAX_HEAD bytes at the latest, so the buffer never fills.
        let n = stream.read(&mut head[len..]).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before the end of its request"));
        }
        len += n;
        if let Some(answer) = request::answer(&head[..len]) {
            break answer;
        }
    };
    let (code, reason) = answer.status();
    let (content_type, body) = match answer {
        Answer::Metrics => (super::CONTENT_TYPE, metrics.render()),
        _ => ("text/plain; charset=utf-8", format!("{code} {reason}: only GET /metrics is served here\n")),
    };
    let allow = match answer {
        Answer::MethodNotAllowed => "Allow: GET\r\n",
        _ => "",
    };
    let header = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;
    stream.shutdown(std::net::Shutdown::Write)?;
    // What the client still sends (a body, the rest of an over-long head) is read and dropped
    // until it closes, so that closing with it unread does not reset the connection and lose
    // the answer. The caller's timeout bounds this too.
    let mut drained = 0;
    while drained < DRAIN_AT_MOST {
        match stream.read(&mut head).await? {
            0 => break,
            n => drained += n,
        }
    }
    Ok(())
}
