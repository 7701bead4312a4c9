//! `echo bench`: the load generator.

use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

use super::{at_least, parse_duration};

#[derive(FromArgs, Debug)]
/// Load an echo server and check every echoed byte; report lines/s, MiB/s and latency.
#[argh(subcommand, name = "bench")]
pub(crate) struct BenchArgs {
    /// server address, host:port or [v6addr]:port (default localhost:8007)
    #[argh(positional)]
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
        at_least("-s", self.size, 8)?;
        at_least("-p", self.depth, 1)?;
        if self.duration.is_some() && self.lines.is_some() {
            return Err("-d and -n cannot be used together".into());
        }
        Ok(())
    }
}

pub(crate) fn run(args: BenchArgs) -> ExitCode {
    eprintln!("echo: bench is not built yet ({args:?})");
    ExitCode::FAILURE
}
