//! `echo serve --stdio`: one session over standard input and output, for inetd (`nowait`),
//! systemd socket units with `Accept=yes`, and ssh forced commands.

use std::fs::File;
use std::io::{self, Stdin};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::{FutureExt, future};
use smol::Unblock;
use smol_echo::{CloseReason, EchoConfig, Mode, Session};

use log::Level;

use super::{logger, signals};

/// Standard input and output joined into the one stream a session takes.
struct Stdio {
    input: Unblock<Stdin>,
    /// A duplicate of descriptor 1 rather than `std::io::stdout()`, whose line buffer would hold
    /// back bytes that do not end in LF.
    output: Unblock<File>,
}

impl AsyncRead for Stdio {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.input).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stdio {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.output).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.output).poll_flush(cx)
    }

    /// Flushes, then drops the duplicate of standard output; the peer sees the end when the
    /// process exits, right after the session.
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.output).poll_flush(cx))?;
        Pin::new(&mut self.output).poll_close(cx)
    }
}

/// Serves the session; exit status 1 when it ended on an I/O error other than the peer leaving.
pub(crate) fn run(mode: Mode, config: &EchoConfig) -> ExitCode {
    match serve(mode, config) {
        Ok(Session { reason: reason @ CloseReason::Error(_), .. }) => {
            // Said again beside the close line, which --quiet drops.
            logger::always(Level::Error, "error", &[], format_args!("echo: {reason}"));
            ExitCode::FAILURE
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            logger::always(Level::Error, "error", &[], format_args!("echo: {err}"));
            ExitCode::FAILURE
        }
    }
}

fn serve(mode: Mode, config: &EchoConfig) -> io::Result<Session> {
    let mut signals = signals::catch()?;
    let output = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    let stdio = Stdio { input: Unblock::new(io::stdin()), output: Unblock::new(output) };
    let started = Instant::now();
    let (stop, stopped) = async_channel::bounded::<()>(1);
    // The first signal drains the session as the server drains its connections; a second one
    // ends the process at once.
    let signalled = async move {
        signals::first(&mut signals).await;
        stop.close();
        signals::exit_on_next(signals).await;
        future::pending().await
    };
    let shutdown = async move {
        // Closed, never sent on: the error is the signal.
        stopped.recv().await.ok();
    };
    let session = async_io::block_on(mode.echo(stdio, config, shutdown).or(signalled));
    // Rounded as the text is, so that both say the same.
    let duration_s = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    log::info!(
        event = "close", peer = "stdio", lines = session.lines, bytes = session.bytes, duration_s,
        reason:% = session.reason;
        "close stdio lines={} bytes={} duration={duration_s:.3}s reason={}",
        session.lines,
        session.bytes,
        session.reason
    );
    Ok(session)
}
