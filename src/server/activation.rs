//! systemd socket activation: serving on sockets passed in rather than bound here.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use async_io::Async;
use listenfd::ListenFd;

use super::listener::{Kind, Listener};

/// The sockets systemd (or any manager speaking its protocol) passed to this process, as
/// `sd_listen_fds` finds them: `LISTEN_PID` is this process and `LISTEN_FDS` counts the
/// descriptors from 3 on. `None` when the variables are not there or are for another process.
///
/// TCP and Unix stream listeners and UDP sockets are taken; any other descriptor is an error,
/// and so is a stream socket that is not listening (a connection passed by `Accept=yes`, which
/// is what `echo serve --stdio` is for).
/// The variables are cleared, so that a child process does not take the sockets for its own;
/// call this before starting threads. The sockets are left in place on exit: they belong to
/// the manager, which may pass them to the next instance.
///
/// # Examples
///
/// ```
/// // Not started by systemd: nothing was passed.
/// assert!(smol_echo::server::activated().unwrap().is_none());
/// ```
pub fn activated() -> io::Result<Option<Vec<Listener>>> {
    let for_us = std::env::var("LISTEN_PID").is_ok_and(|pid| pid.parse() == Ok(std::process::id()));
    if !for_us {
        return Ok(None);
    }
    // Reads and clears both variables.
    let mut fds = ListenFd::from_env();
    (0..fds.len()).map(|index| take(&mut fds, index)).collect::<io::Result<_>>().map(Some)
}

/// The socket at `index`, of whichever kind it is.
fn take(fds: &mut ListenFd, index: usize) -> io::Result<Listener> {
    let fd = index + 3;
    let kind = if let Ok(Some(listener)) = fds.take_tcp_listener(index) {
        Kind::Tcp(Arc::new(Async::new(listening(listener, fd)?)?))
    } else if let Ok(Some(listener)) = fds.take_unix_listener(index) {
        Kind::Unix(Arc::new(Async::new(listening(listener, fd)?)?), None)
    } else if let Ok(Some(socket)) = fds.take_udp_socket(index) {
        Kind::Udp(Arc::new(Async::new(socket)?))
    } else {
        let message = format!("passed descriptor {fd} is not a TCP, UDP or Unix stream socket");
        return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    };
    Ok(Listener(kind))
}

/// `socket`, if it is listening: listenfd checks a descriptor's type and family, not its state,
/// and accepting on a connection fails with EINVAL for ever.
fn listening<S: AsFd>(socket: S, fd: usize) -> io::Result<S> {
    if rustix::net::sockopt::socket_acceptconn(&socket)? {
        return Ok(socket);
    }
    let message =
        format!("passed descriptor {fd} is a stream socket that is not listening (Accept=yes? use --stdio)");
    Err(io::Error::new(io::ErrorKind::InvalidInput, message))
}
