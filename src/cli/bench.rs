//! `echo bench`: the load generator.

use std::io::{self, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;
use smol_echo::{BenchConfig, BenchLimit, Progress};

use super::{DEFAULT_ADDR, at_least, parse_addr, parse_duration, raise_open_file_limit};

#[derive(FromArgs, Debug)]
/// Load an echo server and check every echoed byte; report lines/s, MiB/s and latency.
#[argh(subcommand, name = "bench")]
pub(crate) struct BenchArgs {
    /// server address, host:port or [v6addr]:port (default localhost:8007)
    #[argh(positional, from_str_fn(parse_addr))]
    addr: Option<String>,
    /// connections to open (default 50)
    #[argh(option, short = 'c', default = "50")]
    connections: usize,
    /// how long to run: 250ms, 30s, 2m or seconds (default 10s)
    #[argh(option, short = 'd', from_str_fn(parse_duration))]
    duration: Option<Duration>,
    /// lines to send in total, instead of a duration
    #[argh(option, short = 'n')]
    lines: Option<u64>,
    /// line size in bytes, CR LF included, at least 8 (default 64)
    #[argh(option, short = 's', default = "64")]
    size: usize,
    /// lines in flight per connection (default 1)
    #[argh(option, short = 'p', default = "1")]
    depth: usize,
    /// print one JSON object instead of the table
    #[argh(switch)]
    json: bool,
}

impl BenchArgs {
    pub(crate) fn validate(&self) -> Result<(), String> {
        at_least("-c", self.connections, 1)?;
        at_least("-s", self.size, BenchConfig::MIN_SIZE)?;
        at_least("-p", self.depth, 1)?;
        if self.duration.is_some() && self.lines.is_some() {
            return Err("-d and -n cannot be used together".into());
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err("-d must be more than 0".into());
        }
        if self.lines == Some(0) {
            return Err("-n must be at least 1, not 0".into());
        }
        Ok(())
    }

    fn config(&self) -> BenchConfig {
        let limit = match (self.lines, self.duration) {
            (Some(lines), _) => BenchLimit::Lines(lines),
            (None, duration) => BenchLimit::Duration(duration.unwrap_or(Duration::from_secs(10))),
        };
        BenchConfig {
            connections: self.connections,
            depth: self.depth,
            size: self.size,
            limit,
            ..BenchConfig::default()
        }
    }
}

pub(crate) fn run(args: BenchArgs) -> ExitCode {
    // Each connection is a descriptor: thousands of them need more than the usual soft limit.
    raise_open_file_limit();
    let addr = args.addr.as_deref().unwrap_or(DEFAULT_ADDR);
    let mut progress = ProgressLine::new(io::stderr().is_terminal());
    let result = async_io::block_on(smol_echo::bench(addr, &args.config(), |p| progress.show(p)));
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
    }
    if report.errors == 0 {
        return ExitCode::SUCCESS;
    }
    let first = report.first_error.as_deref().unwrap_or("unknown");
    eprintln!("echo: {} errors; the first: {first}", report.errors);
    ExitCode::FAILURE
}

/// The progress line on a terminal, rewritten in place once a second; nothing otherwise.
struct ProgressLine {
    on: bool,
    last: Progress,
}

impl ProgressLine {
    fn new(on: bool) -> ProgressLine {
        ProgressLine { on, last: Progress::default() }
    }

    fn show(&mut self, now: &Progress) {
        if !self.on {
            return;
        }
        let secs = (now.elapsed - self.last.elapsed).as_secs_f64();
        let rate = (now.lines - self.last.lines) as f64 / secs;
        eprint!(
            "\r{:.0} s: {} lines, {rate:.0} lines/s, {} errors\x1b[K",
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
