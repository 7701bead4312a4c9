//! SIGINT and SIGTERM for `echo serve` (on sockets or `--stdio`) and `echo bench`: the first asks
//! for a graceful stop, a second ends the process at once, as an impatient operator expects.

use std::io;

use async_signal::{Signal, Signals};
use futures_lite::StreamExt;

/// Catches SIGINT and SIGTERM from now on.
pub(crate) fn catch() -> io::Result<Signals> {
    Signals::new([Signal::Int, Signal::Term])
}

/// Completes at the first signal, which it logs.
pub(crate) async fn first(signals: &mut Signals) {
    if let Some(Ok(signal)) = signals.next().await {
        let name = name(signal);
        log::info!(event = "signal", signal = name; "{name} received: shutting down");
    }
}

/// Ends the process at the next signal, with status 128 + its number.
pub(crate) async fn exit_on_next(mut signals: Signals) {
    if let Some(Ok(signal)) = signals.next().await {
        std::process::exit(128 + signal as i32);
    }
}

fn name(signal: Signal) -> &'static str {
    match signal {
        Signal::Int => "SIGINT",
        Signal::Term => "SIGTERM",
        _ => "signal",
    }
}
