//! One timer per session, re-armed lazily.

use std::time::Instant;

use async_io::Timer;
use futures_lite::future;

/// A timer that serves deadlines which move forward often and are rarely reached.
///
/// Moving a deadline later costs nothing: the timer fires at the old one, sees it is early, and
/// re-arms once. Only a deadline earlier than the armed one touches the reactor at once. A session
/// that echoes a line every millisecond with a 30 s idle timeout re-arms about once in 30 s.
#[derive(Debug)]
pub(crate) struct Alarm {
    timer: Timer,
    armed: Option<Instant>,
}

impl Default for Alarm {
    fn default() -> Self {
        Alarm { timer: Timer::never(), armed: None }
    }
}

impl Alarm {
    /// Completes at `deadline`; never when there is none.
    pub(crate) async fn until(&mut self, deadline: Option<Instant>) {
        let Some(deadline) = deadline else {
            return future::pending().await;
        };
        loop {
            if self.armed.is_none_or(|armed| armed > deadline) {
                self.timer.set_at(deadline);
                self.armed = Some(deadline);
            }
            (&mut self.timer).await;
            self.armed = None;
            if Instant::now() >= deadline {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn fires_at_the_deadline_even_after_an_earlier_one_was_armed() {
        future::block_on(async {
            let mut alarm = Alarm::default();
            let start = Instant::now();
            // Arm for 20 ms and abandon it, then wait for 40 ms.
            future::poll_once(alarm.until(Some(start + Duration::from_millis(20)))).await;
            alarm.until(Some(start + Duration::from_millis(40))).await;
            assert!(start.elapsed() >= Duration::from_millis(40));
        });
    }

    #[test]
    fn an_earlier_deadline_rearms_at_once() {
        future::block_on(async {
            let mut alarm = Alarm::default();
            let start = Instant::now();
            future::poll_once(alarm.until(Some(start + Duration::from_secs(60)))).await;
            alarm.until(Some(start + Duration::from_millis(10))).await;
            assert!(start.elapsed() < Duration::from_secs(5));
        });
    }
}
