//! `echo serve`: the process around the library's server: threads, signals, limits, output.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use argh::{ArgsInfo, FromArgs};
use async_executor::Executor;
use futures_lite::future;
use log::kv::Value;
use log::{Level, LevelFilter};
use smol_echo::metrics::{EndpointConfig, Metrics};
use smol_echo::proxy::{Cidr, ProxyConfig};
use smol_echo::server::{ListenAddr, Summary};
use smol_echo::{EchoConfig, Mode, Server, ServerConfig};

use super::{
    DEFAULT_ADDR, logger, parse_addr, parse_duration, parse_inet_addr, raise_open_file_limit, signals, stdio,
    tls,
};

/// The executor threads `--threads` may ask for: more than a thousand only cost memory.
const THREADS: std::ops::RangeInclusive<usize> = 1..=1024;

#[derive(FromArgs, ArgsInfo, Debug)]
/// Run the line echo server (also: server). Each line (up to CR LF) is echoed back; the line "."
/// ends a session. SIGINT or SIGTERM stops it gracefully; a second signal stops it at once.
#[argh(subcommand, name = "serve")]
pub(crate) struct ServeArgs {
    /// address to listen on, host:port, [v6addr]:port, tls:host:port or unix:/path;
    /// repeatable; a host name binds every address it resolves to (default localhost:8007
    /// unless --udp is given)
    #[argh(option, from_str_fn(parse_addr))]
    listen: Vec<String>,
    /// also serve the UDP echo on host:port: each datagram back to its sender; repeatable
    #[argh(option, from_str_fn(parse_inet_addr))]
    udp: Vec<String>,
    /// close a connection that completes no line (raw mode: sends no byte), or takes no echo,
    /// for this long: 250ms, 30s, 2m or seconds; 0 turns both timeouts off (default 30s)
    #[argh(
        option,
        from_str_fn(parse_duration),
        default = "EchoConfig::default().idle_timeout.unwrap_or_default()"
    )]
    idle_timeout: Duration,
    /// longest line accepted, in bytes with its CR LF; a longer one closes the connection
    /// (default 65536)
    #[argh(option, default = "EchoConfig::default().max_line")]
    max_line: usize,
    /// connections served at once; more wait in the listen backlog (default 10000)
    #[argh(option, default = "ServerConfig::default().max_connections")]
    max_connections: usize,
    /// connections served at once from one source, an IPv4 address or an IPv6 /64 (with
    /// --proxy-protocol, the client the header names); one more is closed at once (default 0:
    /// no limit)
    #[argh(option, default = "0")]
    max_per_source: usize,
    /// each stream connection starts with a PROXY protocol header (v1 or v2, as HAProxy sends
    /// with send-proxy): logs and --max-per-source name the client it gives; a connection
    /// without a valid header within 5s (or --idle-timeout if shorter) is closed
    #[argh(switch)]
    proxy_protocol: bool,
    /// with --proxy-protocol: take headers only from this address or block (10.0.0.0/8,
    /// 127.0.0.1, fd00::/8) and close other TCP connections at once; repeatable (default:
    /// any address)
    #[argh(option)]
    proxy_from: Vec<Cidr>,
    /// executor threads (default: the number of CPUs)
    #[argh(option)]
    threads: Option<usize>,
    /// on a signal, time allowed to echo the lines that have arrived; 0 closes at once
    /// (default 5s)
    #[argh(option, from_str_fn(parse_duration), default = "EchoConfig::default().grace")]
    grace: Duration,
    /// serve Prometheus metrics at http://ADDR/metrics (host:port), on a listener of their own
    #[argh(option, from_str_fn(parse_inet_addr))]
    metrics: Option<String>,
    /// protocol: line (CR LF lines, the sentinel ".", --max-line) or raw (RFC 862: every byte
    /// back as it arrives) (default line)
    #[argh(option, default = "Mode::default()")]
    mode: Mode,
    /// the certificate chain (PEM, leaf first) the tls: addresses present; without it they
    /// present a self-signed certificate made at start, whose fingerprint is logged
    #[argh(option)]
    tls_cert: Option<PathBuf>,
    /// the private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert
    #[argh(option)]
    tls_key: Option<PathBuf>,
    /// serve one session on standard input and output, then exit: for inetd (nowait), systemd
    /// (Accept=yes) and ssh forced commands; logs still go to stderr
    #[argh(switch)]
    stdio: bool,
    /// print only the listening lines, the summary, warnings and errors
    #[argh(switch, short = 'q')]
    quiet: bool,
    /// print debug detail too
    #[argh(switch, short = 'v')]
    verbose: bool,
    /// how stderr lines are written: text, or json (one object per line, with ts, level, event
    /// and the fields of the text line) (default text)
    #[argh(option, from_str_fn(logger::parse_format), default = "logger::Format::Text")]
    log_format: logger::Format,
}

impl ServeArgs {
    pub(crate) fn validate(&self) -> Result<(), String> {
        let flag = |field| match field {
            "max_line" => "--max-line",
            "max_connections" => "--max-connections",
            "max_per_source" => "--max-per-source",
            "idle_timeout" => "--idle-timeout",
            _ => "--grace",
        };
        self.config().check(&flag).map_err(|err| err.to_string())?;
        if let Some(threads) = self.threads
            && !THREADS.contains(&threads)
        {
            return Err(format!("--threads must be from 1 to {}, not {threads}", THREADS.end()));
        }
        if self.stdio && self.addresses_given() {
            return Err("--listen and --udp cannot be used with --stdio".into());
        }
        if self.stdio && (self.proxy_protocol || self.max_per_source > 0) {
            return Err("--proxy-protocol and --max-per-source cannot be used with --stdio".into());
        }
        if !self.proxy_from.is_empty() && !self.proxy_protocol {
            return Err("--proxy-from needs --proxy-protocol".into());
        }
        if self.stdio && self.metrics.is_some() {
            return Err("--metrics cannot be used with --stdio: one session has nothing to scrape".into());
        }
        if self.quiet && self.verbose {
            return Err("--quiet and --verbose cannot be used together".into());
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err("--tls-cert needs --tls-key".into()),
            (None, Some(_)) => return Err("--tls-key needs --tls-cert".into()),
            (Some(_), Some(_)) => {
                tls::built_in("--tls-cert")?;
                if !self.listen.iter().any(|addr| addr.starts_with("tls:")) {
                    return Err("--tls-cert needs a tls: address in --listen, e.g. tls:localhost:8443".into());
                }
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// Whether --listen or --udp named anything to bind.
    fn addresses_given(&self) -> bool {
        !(self.listen.is_empty() && self.udp.is_empty())
    }

    fn config(&self) -> ServerConfig {
        ServerConfig {
            echo: EchoConfig {
                idle_timeout: Some(self.idle_timeout).filter(|d| !d.is_zero()),
                max_line: self.max_line,
                grace: self.grace,
            },
            max_connections: self.max_connections,
            mode: self.mode,
            max_per_source: self.max_per_source,
            proxy: self
                .proxy_protocol
                .then(|| ProxyConfig { from: self.proxy_from.clone(), ..ProxyConfig::default() }),
        }
    }

    fn log_level(&self) -> LevelFilter {
        match (self.quiet, self.verbose) {
            (true, _) => LevelFilter::Warn,
            (_, true) => LevelFilter::Debug,
            _ => LevelFilter::Info,
        }
    }
}

pub(crate) fn run(args: ServeArgs) -> ExitCode {
    logger::init(args.log_level(), args.log_format);
    if args.stdio {
        let config = args.config();
        return stdio::run(config.mode, &config.echo);
    }
    match serve(args) {
        Ok((summary, udp)) => {
            let datagrams = match udp {
                true => format!(", {} datagrams", summary.datagrams),
                false => String::new(),
            };
            let refused = match summary.refused_datagrams {
                0 => String::new(),
                n => format!(", {n} datagrams from refused ports not answered"),
            };
            let refused = match summary.refused {
                0 => refused,
                n => format!("{refused}, {n} connections refused"),
            };
            let unfinished = match summary.unfinished {
                0 => String::new(),
                n => format!(", {n} cut off at the end of the grace period"),
            };
            let fields = [
                ("connections", summary.connections.into()),
                ("lines", summary.lines.into()),
                ("datagrams", summary.datagrams.into()),
                ("bytes", summary.bytes.into()),
                ("refused_datagrams", summary.refused_datagrams.into()),
                ("refused", summary.refused.into()),
                ("unfinished", summary.unfinished.into()),
            ];
            logger::always(
                Level::Info,
                "summary",
                &fields,
                format_args!(
                    "shutdown: {} connections, {} lines{datagrams}, {} bytes echoed{refused}{unfinished}",
                    summary.connections, summary.lines, summary.bytes
                ),
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            logger::always(Level::Error, "error", &[], format_args!("echo: {err}"));
            ExitCode::FAILURE
        }
    }
}

/// Serves until a signal; returns the summary and whether UDP was served.
fn serve(args: ServeArgs) -> std::io::Result<(Summary, bool)> {
    // First, while this is the only thread: it clears the environment variables it reads.
    let activated = smol_echo::server::activated()?.filter(|listeners| !listeners.is_empty());
    raise_open_file_limit();
    // Signals are caught before the listening lines go out, so that whoever waits for those
    // lines can signal at once.
    let mut signals = signals::catch()?;
    let mut listen = args.listen.clone();
    listen.extend(args.udp.iter().map(|addr| format!("udp:{addr}")));
    if listen.is_empty() {
        listen.push(DEFAULT_ADDR.to_string());
    }
    if activated.is_some() && args.addresses_given() {
        log::warn!("serving the sockets systemd passed: --listen and --udp are ignored");
    }
    // Before anything listens: a certificate that cannot be used is an error at start.
    #[cfg(feature = "tls")]
    let certificate = tls::load(&args.tls_cert, &args.tls_key)?;
    let threads = args.threads.unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()));
    let config = args.config();

    // The executor's `run` polls its main future whenever any task wakes, so the server runs as
    // a task of its own and the main future is only its cheap handle.
    static EXECUTOR: Executor<'static> = Executor::new();
    // This thread and `threads - 1` helpers all run the executor, and take turns driving the
    // reactor when they have nothing else to do. Helpers end with the process.
    for n in 1..threads {
        let helper = || async_io::block_on(EXECUTOR.run(future::pending::<()>()));
        thread::Builder::new().spawn(helper).map_err(|err| {
            std::io::Error::new(
                err.kind(),
                format!("cannot start executor thread {} of {threads}: {err}", n + 1),
            )
        })?;
    }
    async_io::block_on(async {
        let listeners = match activated {
            Some(listeners) => listeners,
            None => {
                let bound = smol_echo::server::bind_each(&listen).await?;
                for failure in bound.failures {
                    log::warn!("{failure}");
                }
                bound.listeners
            }
        };
        #[cfg(feature = "tls")]
        let listeners = tls::certify(listeners, certificate, &listen)?;
        let mut server = Server::new(listeners, config);
        let addrs = server.local_addrs()?;
        // Bound before any listening line goes out, so that whoever reads them can scrape.
        let metrics = match &args.metrics {
            Some(addr) => Some(serve_metrics(addr).await?),
            None => None,
        };
        for addr in &addrs {
            let fields = [("addr", Value::from_display(addr))];
            logger::always(Level::Info, "listening", &fields, format_args!("listening on {addr}"));
        }
        if let Some((listener, metrics)) = metrics {
            let url = format!("http://{}/metrics", listener.local_addr()?);
            let fields = [("url", Value::from(&*url))];
            logger::always(Level::Info, "metrics", &fields, format_args!("metrics on {url}"));
            server = server.with_metrics(metrics.clone());
            let spawn = |task| EXECUTOR.spawn(task).detach();
            EXECUTOR
                .spawn(smol_echo::metrics::serve(listener, metrics, EndpointConfig::default(), spawn))
                .detach();
        }
        let udp = addrs.iter().any(|addr| matches!(addr, ListenAddr::Udp(_)));
        let shutdown = async move {
            signals::first(&mut signals).await;
            EXECUTOR.spawn(signals::exit_on_next(signals)).detach();
        };
        let serving = EXECUTOR.spawn(server.run(|task| EXECUTOR.spawn(task).detach(), shutdown));
        Ok((EXECUTOR.run(serving).await, udp))
    })
}

/// The metrics endpoint's listener on `addr`, and the metrics it will serve.
async fn serve_metrics(addr: &str) -> std::io::Result<(async_net::TcpListener, Arc<Metrics>)> {
    let listener = async_net::TcpListener::bind(addr)
        .await
        .map_err(|err| smol_echo::error::context(err, format_args!("cannot bind --metrics {addr}")))?;
    Ok((listener, Arc::new(Metrics::default())))
}

#[cfg(test)]
mod tests {
    use argh::FromArgs;

    use super::*;

    fn idle_timeout_of(args: &[&str]) -> Option<Duration> {
        ServeArgs::from_args(&["serve"], args).expect("parses").config().echo.idle_timeout
    }

    #[test]
    fn idle_timeout_zero_turns_the_timeouts_off_rather_than_taking_the_default() {
        assert_eq!(idle_timeout_of(&["--idle-timeout", "0"]), None);
        assert_eq!(idle_timeout_of(&["--idle-timeout", "250ms"]), Some(Duration::from_millis(250)));
        assert_eq!(idle_timeout_of(&[]), Some(Duration::from_secs(30)));
    }
}
