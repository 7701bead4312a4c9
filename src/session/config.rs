//! The limits of one session.

use std::fmt;
use std::io;
use std::ops::RangeInclusive;
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

    /// The lengths [`EchoConfig::max_line`] may take: room for the sentinel's three bytes, and
    /// no more than a session may sensibly hold of one line, 1 GiB.
    pub const MAX_LINE: RangeInclusive<usize> = EchoConfig::MIN_MAX_LINE..=1 << 30;

    /// Refuses settings out of their documented ranges: [`EchoConfig::MAX_LINE`], and durations
    /// of at most [`MAX_DURATION`]. The message names each setting by `name(field)`, so that a
    /// command line can speak of its flags (`&|field| field` keeps the field names).
    ///
    /// # Examples
    ///
    /// ```
    /// use smol_echo::EchoConfig;
    ///
    /// assert!(EchoConfig::default().check(&|field| field).is_ok());
    /// let huge = EchoConfig { max_line: 1 << 40, ..EchoConfig::default() };
    /// let err = huge.check(&|_| "--max-line").unwrap_err();
    /// assert_eq!(err.to_string(), "--max-line must be from 3 to 1073741824, not 1099511627776");
    /// ```
    pub fn check(&self, name: &dyn Fn(&'static str) -> &'static str) -> io::Result<()> {
        in_range(name("max_line"), self.max_line, EchoConfig::MAX_LINE)?;
        if let Some(idle_timeout) = self.idle_timeout {
            check_duration(name("idle_timeout"), idle_timeout, Duration::ZERO)?;
        }
        check_duration(name("grace"), self.grace, Duration::ZERO)
    }
}

/// The longest duration any setting takes: a week. A longer one is surely a mistake, and far
/// longer ones would overflow the clock's arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// `InvalidInput` unless `value` is within `range`: "NAME must be from A to B, not V".
pub(crate) fn in_range<T: PartialOrd + fmt::Display>(
    name: &str,
    value: T,
    range: RangeInclusive<T>,
) -> io::Result<()> {
    if range.contains(&value) {
        return Ok(());
    }
    let message = format!("{name} must be from {} to {}, not {value}", range.start(), range.end());
    Err(io::Error::new(io::ErrorKind::InvalidInput, message))
}

/// `InvalidInput` unless `value` is at least `min` (zero, or just above it when `min` is
/// `Duration::from_nanos(1)`) and at most [`MAX_DURATION`]: the check of every duration setting,
/// for the durations that have no config.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let above_zero = Duration::from_nanos(1);
/// assert!(smol_echo::check_duration("timeout", Duration::from_secs(1), above_zero).is_ok());
/// let err = smol_echo::check_duration("timeout", Duration::ZERO, above_zero).unwrap_err();
/// assert_eq!(err.to_string(), "timeout must be more than 0 and at most 7 days (604800s), not 0ns");
/// ```
pub fn check_duration(name: &str, value: Duration, min: Duration) -> io::Result<()> {
    if (min..=MAX_DURATION).contains(&value) {
        return Ok(());
    }
    let range = if min.is_zero() { "from 0 to" } else { "more than 0 and at most" };
    let message = format!("{name} must be {range} 7 days (604800s), not {value:?}");
    Err(io::Error::new(io::ErrorKind::InvalidInput, message))
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
