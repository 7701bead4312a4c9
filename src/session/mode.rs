//! Which protocol a session speaks.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::str::FromStr;

use futures_lite::io::{AsyncRead, AsyncWrite};

use super::config::EchoConfig;
use super::line::echo;
use super::outcome::Session;
use super::raw::echo_raw;

/// Which protocol a session speaks.
///
/// # Examples
///
/// ```
/// use futures_lite::future;
/// use smol_echo::{EchoConfig, Mode};
///
/// let mut io = futures_lite::io::Cursor::new(b"no line end".to_vec());
/// let session = future::block_on(Mode::Raw.echo(&mut io, &EchoConfig::default(), future::pending()));
/// assert_eq!(session.bytes, 11);
/// assert_eq!(Mode::default(), Mode::Line);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// The line protocol of [`echo`]: CR LF lines, the sentinel `.`, the maximum line length.
    #[default]
    Line,
    /// RFC 862: every byte back as it arrives; see [`echo_raw`].
    Raw,
}

/// Parses `line` or `raw`.
///
/// # Examples
///
/// ```
/// use smol_echo::Mode;
///
/// assert_eq!("raw".parse::<Mode>().unwrap(), Mode::Raw);
/// assert!("lines".parse::<Mode>().is_err());
/// ```
impl FromStr for Mode {
    type Err = io::Error;

    fn from_str(text: &str) -> io::Result<Mode> {
        match text {
            "line" => Ok(Mode::Line),
            "raw" => Ok(Mode::Raw),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid mode '{text}': use line or raw"),
            )),
        }
    }
}

impl Mode {
    /// Runs one session of this protocol over `io`: [`echo`] or [`echo_raw`], boxed so that
    /// either fits where a session goes.
    pub fn echo<'a, S, F>(
        self,
        io: S,
        config: &EchoConfig,
        shutdown: F,
    ) -> Pin<Box<dyn Future<Output = Session> + Send + 'a>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'a,
        F: Future<Output = ()> + Send + 'a,
    {
        match self {
            Mode::Line => Box::pin(echo(io, config, shutdown)),
            Mode::Raw => Box::pin(echo_raw(io, config, shutdown)),
        }
    }
}
