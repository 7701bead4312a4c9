//! Failures of an operation retried in a loop, logged without a warning per attempt.

use std::fmt::Display;
use std::time::{Duration, Instant};

use async_io::Timer;
use log::Level;

/// The least time between two warnings about the same operation.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The failures of one operation that a loop retries after `retry` (an accept, a receive).
///
/// At the open-file limit an accept fails ten times a second for as long as the limit lasts,
/// and flaps between failing and working when connections come and go; a warning per attempt
/// would bury everything else in the log. So at most one failure per [`WARN_EVERY`] is a
/// warning, which counts the failures since the one before; the others are debug detail.
#[derive(Debug)]
pub(crate) struct Failures {
    what: &'static str,
    retry: Duration,
    warned: Option<Instant>,
    since_warning: u64,
}

impl Failures {
    /// No failures yet of `what`, which is retried after `retry`.
    pub(crate) fn new(what: &'static str, retry: Duration) -> Failures {
        Failures { what, retry, warned: None, since_warning: 0 }
    }

    /// Counts a failure with `err` and logs it as [`Failures::failed`] says; the timer is the
    /// rest before the operation is due again.
    pub(crate) fn rest(&mut self, err: &dyn Display) -> Timer {
        let (level, message) = self.failed(err, Instant::now());
        log::log!(level, "{message}");
        Timer::after(self.retry)
    }

    /// Counts a failure with `err` at `now`: what to log, and at which level.
    pub(crate) fn failed(&mut self, err: &dyn Display, now: Instant) -> (Level, String) {
        let Failures { what, retry, .. } = *self;
        if self.warned.is_some_and(|warned| now.duration_since(warned) < WARN_EVERY) {
            self.since_warning += 1;
            return (Level::Debug, format!("{what} failed: {err}; retrying in {retry:?}"));
        }
        self.warned = Some(now);
        let message = match std::mem::take(&mut self.since_warning) {
            0 => format!("{what} failed: {err}; retrying every {retry:?}"),
            more => format!(
                "{what} failed: {err}; retrying every {retry:?} ({more} more failures since the last warning)"
            ),
        };
        (Level::Warn, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_period_counting_the_failures_in_between() {
        let start = Instant::now();
        let at = |millis| start + Duration::from_millis(millis);
        let mut failures = Failures::new("accept", Duration::from_millis(100));
        let err = "Too many open files (os error 24)";
        assert_eq!(
            failures.failed(&err, start),
            (Level::Warn, "accept failed: Too many open files (os error 24); retrying every 100ms".into())
        );
        for n in 1..100 {
            let (level, message) = failures.failed(&err, at(n * 100));
            assert_eq!(level, Level::Debug, "failure {n} was a warning: {message}");
        }
        assert_eq!(
            failures.failed(&err, at(10_000)),
            (
                Level::Warn,
                "accept failed: Too many open files (os error 24); retrying every 100ms \
                 (99 more failures since the last warning)"
                    .into()
            )
        );
        assert_eq!(failures.failed(&err, at(10_100)).0, Level::Debug);
        // A failure after a quiet spell is a warning again, whatever happened in between.
        assert_eq!(failures.failed(&"again", at(60_000)).0, Level::Warn);
    }
}
