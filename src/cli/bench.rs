//! `echo bench`: the load generator.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use argh::{ArgsInfo, FromArgs};
use futures_lite::StreamExt;
use smol_echo::bench::{BenchLimit, Progress, Transport};
use smol_echo::{BenchConfig, Mode, proxy};

use super::{DEFAULT_ADDR, parse_addr, parse_duration, raise_open_file_limit, signals, tls, udp_addr};

#[derive(FromArgs, ArgsInfo, Debug)]
/// Load an echo server and check every echoed byte; report lines/s, MiB/s and latency.
#[argh(subcommand, name = "bench")]
pub(crate) struct BenchArgs {
    /// server address, host:port, [v6addr]:port, tls:host:port or unix:/path (default
    /// localhost:8007)
    #[argh(positional, from_str_fn(parse_addr))]
    addr: Option<String>,
    /// connections to open (default 50)
    #[argh(option, short = 'c', default = "BenchConfig::default().connections")]
    connections: usize,
    /// how long to run: 250ms, 30s, 2m or seconds (default 10s)
    #[argh(option, short = 'd', from_str_fn(parse_duration))]
    duration: Option<Duration>,
    /// lines to send in total, instead of a duration
    #[argh(option, short = 'n')]
    lines: Option<u64>,
    /// line size in bytes, CR LF included, at least 8 (default 64); with --mode raw or --udp,
    /// the size of a message or datagram (at most 65507 for UDP)
    #[argh(option, short = 's', default = "BenchConfig::default().size")]
    size: usize,
    /// lines in flight per connection (default 1)
    #[argh(option, short = 'p', default = "BenchConfig::default().depth")]
    depth: usize,
    /// line: CR LF lines for a line server; raw: messages of arbitrary bytes for an RFC 862
    /// server (default line)
    #[argh(option)]
    mode: Option<Mode>,
    /// UDP: -c flows of datagrams to a UDP echo server at host:port; replies missing after
    /// --timeout are lost
    #[argh(switch)]
    udp: bool,
    /// how long to wait for an echo when none comes at all (counted from the last echo or
    /// connection opened), and for a UDP reply before it is lost (default 5s)
    #[argh(option, from_str_fn(parse_duration))]
    timeout: Option<Duration>,
    /// how long a connection may take to open (default 5s)
    #[argh(option, from_str_fn(parse_duration))]
    connect_timeout: Option<Duration>,
    /// with a tls: address: trust the CA certificates in this PEM file instead of the
    /// system's trust store
    #[argh(option)]
    tls_ca: Option<PathBuf>,
    /// with a tls: address: the name to verify the certificate against and to send (SNI),
    /// when the address does not name the server
    #[argh(option)]
    tls_server_name: Option<String>,
    /// with a tls: address: do not verify the server's certificate (encrypted, but not
    /// authenticated; a warning says so)
    #[argh(switch)]
    tls_insecure: bool,
    /// open loop: send N lines/s in total, spread evenly over the connections, and measure
    /// each line's latency from when it was due; -p still caps the lines in flight
    #[argh(option)]
    rate: Option<u64>,
    /// close each connection after K lines (half-close, then read to the end) and open
    /// another; reports connects/s and connect latency
    #[argh(option)]
    churn: Option<u64>,
    /// write the latency histogram to FILE in HdrHistogram's percentile distribution format
    /// (milliseconds), which its plotters read
    #[argh(option)]
    percentiles: Option<PathBuf>,
    /// start each connection with a PROXY protocol header naming its own addresses, v1 (text)
    /// or v2 (binary), as a balancer would: for a server run with --proxy-protocol
    #[argh(option)]
    proxy_protocol: Option<proxy::Version>,
    /// print one JSON object instead of the table
    #[argh(switch)]
    json: bool,
}

impl BenchArgs {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.duration.is_some() && self.lines.is_some() {
            return Err("-d and -n cannot be used together".into());
        }
        self.config().check(&flag).map_err(|err| err.to_string())?;
        self.verify().check(self.addr.as_deref().unwrap_or(DEFAULT_ADDR))?;
        if self.udp {
            udp_addr(self.addr.as_deref())?;
            if self.rate.is_some() || self.churn.is_some() {
                return Err("--rate and --churn apply to stream benches, not --udp".into());
            }
            if self.mode == Some(Mode::Line) {
                return Err("--udp sends datagrams of raw bytes: --mode line does not apply".into());
            }
            if self.proxy_protocol.is_some() {
                return Err("--proxy-protocol is for stream connections, not --udp".into());
            }
            if self.size > BenchConfig::MAX_UDP_SIZE {
                return Err(format!(
                    "-s must be from {} to {} with --udp, not {}",
                    BenchConfig::MIN_SIZE,
                    BenchConfig::MAX_UDP_SIZE,
                    self.size
                ));
            }
        }
        Ok(())
    }

    fn config(&self) -> BenchConfig {
        let limit = match (self.lines, self.duration) {
            (Some(lines), _) => BenchLimit::Lines(lines),
            (None, Some(duration)) => BenchLimit::Duration(duration),
            (None, None) => BenchConfig::default().limit,
        };
        BenchConfig {
            connections: self.connections,
            depth: self.depth,
            size: self.size,
            limit,
            timeout: self.timeout.unwrap_or(BenchConfig::default().timeout),
            connect_timeout: self.connect_timeout.unwrap_or(BenchConfig::default().connect_timeout),
            mode: self.mode.unwrap_or_default(),
            proxy_protocol: self.proxy_protocol,
            rate: self.rate,
            churn: self.churn,
            #[cfg(feature = "tls")]
            tls: self.verify().config(),
        }
    }

    fn verify(&self) -> tls::Verify {
        tls::Verify {
            ca: self.tls_ca.clone(),
            server_name: self.tls_server_name.clone(),
            insecure: self.tls_insecure,
        }
    }

    /// What the bench sends, and over what.
    fn transport(&self) -> Transport {
        if self.udp { Transport::Udp } else { Transport::stream(self.mode.unwrap_or_default()) }
    }
}

pub(crate) fn run(args: BenchArgs) -> ExitCode {
    // Each connection is a descriptor: thousands of them need more than the usual soft limit.
    raise_open_file_limit();
    let addr = args.addr.as_deref().unwrap_or(DEFAULT_ADDR);
    let mut progress = ProgressLine::new(io::stderr().is_terminal(), args.transport().units());
    let config = args.config();
    args.verify().warn();
    // Created first, so that a path that cannot be written fails before the run, not after it.
    let mut percentiles = match &args.percentiles {
        Some(path) => match File::create(path) {
            Ok(file) => Some((file, path)),
            Err(err) => {
                eprintln!("echo: cannot write {}: {err}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let mut signals = match signals::catch() {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("echo: cannot handle signals: {err}");
            return ExitCode::FAILURE;
        }
    };
    // The first SIGINT or SIGTERM stops the bench, which reports what it measured; a second
    // ends the process at once.
    let signalled = Cell::new(None);
    let signal_seen = &signalled;
    let interrupt = async move {
        if let Some(Ok(signal)) = signals.next().await {
            signal_seen.set(Some(signal));
        }
        smol::spawn(signals::exit_on_next(signals)).detach();
    };
    let result = if args.udp {
        smol::block_on(smol_echo::bench::bench_udp_until(addr, &config, |p| progress.show(p), interrupt))
    } else {
        smol::block_on(smol_echo::bench::bench_until(addr, &config, |p| progress.show(p), interrupt))
    };
    progress.clear();
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            eprintln!("echo: {err}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
        if io::stdout().is_terminal() {
            print!("{}", report.distribution.bars(terminal_width()));
        }
    }
    if let Some(rate) = report.rate.filter(|rate| !rate.kept()) {
        let (achieved, target) = (rate.achieved_per_s, rate.target_per_s);
        eprintln!(
            "echo: sent {achieved:.1} lines/s, under 99 % of --rate {target}: the server or the bench fell behind"
        );
    }
    if let Some((file, path)) = &mut percentiles
        && let Err(err) = file.write_all(report.distribution.percentile_text().as_bytes())
    {
        eprintln!("echo: cannot write {}: {err}", path.display());
        return ExitCode::FAILURE;
    }
    if let Some(signal) = signalled.get() {
        // Interrupted, as a shell reports a command a signal ended: 130 for SIGINT, 143 for
        // SIGTERM; errors are still told.
        if report.errors > 0 {
            eprintln!(
                "echo: {} errors; the first: {}",
                report.errors,
                report.first_error.as_deref().unwrap_or("unknown")
            );
        }
        return ExitCode::from(128 + signal as u8);
    }
    if report.errors == 0 {
        return ExitCode::SUCCESS;
    }
    let first = report.first_error.as_deref().unwrap_or("unknown");
    let could_not_connect = match report.connect_errors {
        0 => String::new(),
        n => format!(" ({n} could not connect)"),
    };
    eprintln!("echo: {} errors{could_not_connect}; the first: {first}", report.errors);
    ExitCode::FAILURE
}

/// The flag of each setting of `BenchConfig`, for its range errors.
fn flag(field: &'static str) -> &'static str {
    match field {
        "connections" => "-c",
        "depth" => "-p",
        "size" => "-s",
        "lines" => "-n",
        "duration" => "-d",
        "connect_timeout" => "--connect-timeout",
        "rate" => "--rate",
        "churn" => "--churn",
        _ => "--timeout",
    }
}

/// The columns of the terminal on stdout; 80 when it cannot tell.
fn terminal_width() -> usize {
    rustix::termios::tcgetwinsize(io::stdout()).map_or(80, |size| match size.ws_col {
        0 => 80,
        cols => usize::from(cols),
    })
}

/// The progress line on a terminal, rewritten in place once a second; nothing otherwise.
struct ProgressLine {
    on: bool,
    unit: &'static str,
    last: Progress,
}

impl ProgressLine {
    fn new(on: bool, unit: &'static str) -> ProgressLine {
        ProgressLine { on, unit, last: Progress::default() }
    }

    fn show(&mut self, now: &Progress) {
        if !self.on {
            return;
        }
        let secs = (now.elapsed - self.last.elapsed).as_secs_f64();
        let rate = (now.lines - self.last.lines) as f64 / secs;
        let unit = self.unit;
        eprint!(
            "\r{:.0} s: {} {unit}, {rate:.0} {unit}/s, {} errors\x1b[K",
            now.elapsed.as_secs_f64(),
            now.lines,
            now.errors
        );
        self.last = *now;
    }

    fn clear(&self) {
        if self.on && self.last.elapsed > Duration::ZERO {
            eprint!("\r\x1b[K");
        }
    }
}
