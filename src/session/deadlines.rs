//! The three deadlines of a session, served by its one timer.

use std::time::{Duration, Instant};

use super::alarm::Alarm;
use super::config::EchoConfig;

/// When a session must have heard from its peer (idle), have written its echo (write), and be
/// over after shutdown was asked (grace), with the one [`Alarm`] that waits for them.
///
/// The idle deadline is restarted by each echo; a write deadline is the idle timeout counted
/// from the start of a write that blocks; the grace deadline is set once, when shutdown is
/// asked, and bounds every wait after it.
#[derive(Debug)]
pub(super) struct Deadlines {
    alarm: Alarm,
    idle_timeout: Option<Duration>,
    grace: Duration,
    idle: Option<Instant>,
    grace_end: Option<Instant>,
}

impl Deadlines {
    /// The deadlines of a session that starts now.
    pub(super) fn new(config: &EchoConfig) -> Deadlines {
        let idle = config.idle_timeout.map(|d| Instant::now() + d);
        Deadlines {
            alarm: Alarm::default(),
            idle_timeout: config.idle_timeout,
            grace: config.grace,
            idle,
            grace_end: None,
        }
    }

    /// The idle (or write) timeout counted from now; `None` when timeouts are off.
    pub(super) fn timeout_from_now(&self) -> Option<Instant> {
        self.idle_timeout.map(|d| Instant::now() + d)
    }

    /// The peer did something that counts: the idle timeout starts again.
    pub(super) fn restart_idle(&mut self) {
        self.idle = self.timeout_from_now();
    }

    /// Shutdown was asked: from now on the session has the grace period left.
    pub(super) fn begin_drain(&mut self) {
        self.grace_end = Some(Instant::now() + self.grace);
    }

    /// Whether shutdown was asked.
    pub(super) fn draining(&self) -> bool {
        self.grace_end.is_some()
    }

    /// Whether shutdown was asked and the grace period is over.
    pub(super) fn grace_over(&self) -> bool {
        self.grace_end.is_some_and(|end| Instant::now() >= end)
    }

    /// `deadline`, or the end of the grace period if that comes first.
    pub(super) fn within_grace(&self, deadline: Option<Instant>) -> Option<Instant> {
        earliest(deadline, self.grace_end)
    }

    /// Whether `deadline`, as [`within_grace`](Self::within_grace) gave it, is the grace
    /// period's end.
    pub(super) fn is_grace_end(&self, deadline: Option<Instant>) -> bool {
        deadline == self.grace_end
    }

    /// When a linger of at most `linger` that starts now must end: never past the idle timeout
    /// or the grace period.
    pub(super) fn linger_end(&self, linger: Duration) -> Instant {
        let linger = self.idle_timeout.map_or(linger, |idle| idle.min(linger));
        let end = Instant::now() + linger;
        self.grace_end.map_or(end, |grace_end| grace_end.min(end))
    }

    /// Completes when the idle deadline passes; never when timeouts are off.
    pub(super) async fn idle_passed(&mut self) {
        self.alarm.until(self.idle).await;
    }

    /// Completes at `deadline`; never when there is none.
    pub(super) async fn until(&mut self, deadline: Option<Instant>) {
        self.alarm.until(deadline).await;
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
