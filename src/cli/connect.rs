//! `echo connect`: the interactive and pipe-friendly client.

use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

use super::parse_duration;

#[derive(FromArgs, Debug)]
/// Connect to an echo server (also: client) and send standard input line by line.
#[argh(subcommand, name = "connect")]
pub(crate) struct ConnectArgs {
    /// server address, host:port or [v6addr]:port (default localhost:8007)
    #[argh(positional)]
    addr: Option<String>,
    /// give up connecting after this long: 250ms, 30s, 2m or seconds (default 10s)
    #[argh(option, from_str_fn(parse_duration), default = "Duration::from_secs(10)")]
    connect_timeout: Duration,
}

pub(crate) fn run(args: ConnectArgs) -> ExitCode {
    eprintln!("echo: connect is not built yet ({args:?})");
    ExitCode::FAILURE
}
