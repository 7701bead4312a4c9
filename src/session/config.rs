//! The limits of one session.

use std::time::Duration;

/// The limits of one echo session.
///
/// Fields may be added in a minor release: build one from `..Default::default()`, as below, so
/// that such an addition breaks no caller.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use smol_echo::EchoConfig;
///
/// let config = EchoConfig { idle_timeout: Some(Duration::from_millis(200)), ..EchoConfig::default() };
/// assert_eq!(config.max_line, 65536);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoConfig {
    /// How long the peer may go without completing a line, and how long the echo owed for one
    /// read may take to write. `None` turns both timeouts off.
    pub idle_timeout: Option<Duration>,
    /// The longest line accepted, CR LF included. A longer line closes the session.
    pub max_line: usize,
    /// After shutdown is asked, how long the session may go on echoing the complete lines that
    /// had already arrived. Zero closes at once.
    pub grace: Duration,
}

impl EchoConfig {
    /// The smallest `max_line` that makes sense: the sentinel line `.` takes three bytes with its
    /// CR LF.
    pub const MIN_MAX_LINE: usize = 3;
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig {
            idle_timeout: Some(Duration::from_secs(30)),
            max_line: 65536,
            grace: Duration::from_secs(5),
        }
    }
}
