//! Errors that say what was being done, and keep their cause.

use std::error::Error;
use std::fmt;
use std::io;

/// The error of an operation, with what was being done when it failed: shown as
/// `what: cause`, with the cause as its [`source`](Error::source).
///
/// # Examples
///
/// ```
/// use std::error::Error;
/// use std::io;
///
/// let cause = io::Error::from(io::ErrorKind::ConnectionRefused);
/// let err = smol_echo::error::context(cause, "cannot connect to localhost:8007");
/// assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
/// assert!(err.to_string().starts_with("cannot connect to localhost:8007: "));
/// let wrapped = err.get_ref().unwrap().downcast_ref::<smol_echo::error::Context>().unwrap();
/// assert_eq!(wrapped.what(), "cannot connect to localhost:8007");
/// assert_eq!(wrapped.source().unwrap().to_string(), io::Error::from(io::ErrorKind::ConnectionRefused).to_string());
/// ```
#[derive(Debug)]
pub struct Context {
    what: String,
    source: io::Error,
}

impl Context {
    /// What was being done.
    pub fn what(&self) -> &str {
        &self.what
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl Error for Context {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

/// `err` with `what` in front of it: the same kind, a [`Context`] that keeps `err` as its
/// source.
pub fn context(err: io::Error, what: impl fmt::Display) -> io::Error {
    io::Error::new(err.kind(), Context { what: what.to_string(), source: err })
}
