//! `echo connect`: the interactive and pipe-friendly client.

use std::io::{self, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;
use futures_lite::AsyncWriteExt;
use smol::Unblock;
use smol_echo::Ending;

use super::{DEFAULT_ADDR, parse_addr, parse_duration};

/// Bytes in flight between each standard stream and its thread. Unblock's default, 8 MiB each,
/// is no faster for a 40 MB file and makes the process five times bigger.
const PIPE: usize = 256 * 1024;

#[derive(FromArgs, Debug)]
/// Connect to an echo server (also: client): send each line of standard input with CR LF and
/// print its echo. The line "." ends the session. End of input (Ctrl-D) half-closes the
/// connection, without sending ".", and waits for the last echoes. Exit 0 when the server
/// closes the connection, 1 when it cannot be reached or resets the connection.
#[argh(subcommand, name = "connect")]
pub(crate) struct ConnectArgs {
    /// server address, host:port or [v6addr]:port (default localhost:8007)
    #[argh(positional, from_str_fn(parse_addr))]
    addr: Option<String>,
    /// give up connecting after this long: 250ms, 30s, 2m or seconds (default 10s)
    #[argh(option, from_str_fn(parse_duration), default = "Duration::from_secs(10)")]
    connect_timeout: Duration,
}

pub(crate) fn run(args: ConnectArgs) -> ExitCode {
    let addr = args.addr.as_deref().unwrap_or(DEFAULT_ADDR);
    smol::block_on(async {
        let stream = match smol_echo::connect(addr, args.connect_timeout).await {
            Ok(stream) => stream,
            Err(err) => {
                eprintln!("echo: cannot connect to {addr}: {err}");
                return ExitCode::FAILURE;
            }
        };
        // The only Unblock around stdin: a dropped one can leave a blocking read behind that
        // swallows input.
        let stdin = Unblock::with_capacity(PIPE, io::stdin());
        let mut stdout = Unblock::with_capacity(PIPE, io::stdout());
        let ended = smol_echo::converse(stream, stdin, &mut stdout, io::stdout().is_terminal()).await;
        // The conversation flushed if it ended well; after a failure, print what can be printed.
        stdout.flush().await.ok();
        match ended {
            Ok(Ending::InputEnded | Ending::Sentinel) => ExitCode::SUCCESS,
            Ok(Ending::ServerClosed) => {
                eprintln!("echo: the server closed the connection");
                ExitCode::SUCCESS
            }
            Ok(Ending::Reset) => {
                eprintln!("echo: connection reset");
                ExitCode::FAILURE
            }
            Err(err) => {
                eprintln!("echo: {err}");
                ExitCode::FAILURE
            }
        }
    })
}
