//! Open-loop pacing (`rate`): when each line of a connection is due.
//!
//! N lines per second in total over c connections: the bench's line j is due j/N seconds after
//! the start, and connection i sends its lines i, i + c, i + 2c, ...: N/c lines per second each,
//! every connection 1/N after the one before, so the load is even instead of c lines at once. A
//! line's latency runs from when it was due, not from when it could be sent (wrk2's answer to
//! coordinated omission): a line held back by a slow server, or by `depth` lines already in
//! flight, counts its wait. A connection that falls behind sends what is due at once, as far as
//! `depth` lets it. With a duration the schedule ends there: a connection sends the lines due
//! before the end and is done, without waiting for a timer past it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_io::Timer;

/// The schedule of one connection's lines, and the timer that wakes it for the next.
pub(super) struct Pace {
    origin: Instant,
    /// The bench's index of this connection's next line.
    next: u64,
    /// Connections: the indices between two lines of one connection.
    stride: u64,
    /// Lines per second in total.
    rate: u64,
    /// No line is due from then on.
    end: Option<Instant>,
    timer: Timer,
    /// When the timer is set for, if it is.
    armed: Option<Instant>,
}

impl Pace {
    /// The schedule of connection `connection` of `connections`, sharing `rate` lines per second
    /// from `origin` until `end`.
    pub(super) fn new(
        connection: usize,
        connections: usize,
        rate: u64,
        origin: Instant,
        end: Option<Instant>,
    ) -> Pace {
        Pace {
            origin,
            next: connection as u64,
            stride: connections as u64,
            rate,
            end,
            timer: Timer::never(),
            armed: None,
        }
    }

    /// When the next line is due. `next` only moves on once a line is due, so this is never
    /// more than one interval past now: no overflow.
    fn due(&self) -> Instant {
        let nanos = u128::from(self.next) * 1_000_000_000 / u128::from(self.rate);
        self.origin + Duration::from_nanos(nanos as u64)
    }

    /// No more lines are due: the next would be at or after the end.
    pub(super) fn over(&self) -> bool {
        self.end.is_some_and(|end| self.due() >= end)
    }

    /// Calls `send` with the due time of each line due by now, at most `max` of them, and tells
    /// how many. When fewer than `max` were due, `cx` is woken when the next one is, unless the
    /// schedule is [over](Pace::over).
    pub(super) fn take_due(&mut self, max: u64, cx: &mut Context<'_>, mut send: impl FnMut(Instant)) -> u64 {
        let mut taken = 0;
        let mut now = Instant::now();
        while taken < max {
            let due = self.due();
            if self.end.is_some_and(|end| due >= end) {
                break;
            }
            if due <= now {
                send(due);
                self.next += self.stride;
                taken += 1;
                continue;
            }
            if self.armed != Some(due) {
                self.timer.set_at(due);
                self.armed = Some(due);
            }
            match Pin::new(&mut self.timer).poll(cx) {
                // Due meanwhile: take it.
                Poll::Ready(fired) => now = fired.max(now),
                Poll::Pending => break,
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The due times of the first `lines` lines of `connection`, in microseconds from the origin.
    fn schedule(connection: usize, connections: usize, rate: u64, lines: u64) -> Vec<u128> {
        let origin = Instant::now() - Duration::from_secs(3600);
        let mut pace = Pace::new(connection, connections, rate, origin, None);
        let mut due = Vec::new();
        let waker = std::task::Waker::noop();
        pace.take_due(lines, &mut Context::from_waker(waker), |at| due.push((at - origin).as_micros()));
        due
    }

    #[test]
    fn connections_share_the_rate_evenly_with_a_phase_each() {
        // 1000 lines/s over 4 connections: each sends every 4 ms, 1 ms after the one before.
        assert_eq!(schedule(0, 4, 1000, 3), [0, 4000, 8000]);
        assert_eq!(schedule(1, 4, 1000, 3), [1000, 5000, 9000]);
        assert_eq!(schedule(3, 4, 1000, 3), [3000, 7000, 11000]);
        // A rate that does not divide a second: no drift, each due time rounds down alone.
        assert_eq!(schedule(0, 1, 3, 4), [0, 333_333, 666_666, 1_000_000]);
    }

    #[test]
    fn only_the_lines_due_are_taken_and_the_timer_is_set_for_the_next() {
        let mut pace = Pace::new(0, 1, 10, Instant::now() - Duration::from_millis(250), None);
        let waker = std::task::Waker::noop();
        let mut due = 0;
        // Due at 0, 100 and 200 ms; the next at 300 ms is not yet.
        assert_eq!(pace.take_due(100, &mut Context::from_waker(waker), |_| due += 1), 3);
        assert_eq!(due, 3);
        assert!(pace.armed.is_some_and(|at| at > Instant::now()));
        // At most `max`, even when more are due.
        let mut late = Pace::new(0, 1, 1000, Instant::now() - Duration::from_secs(1), None);
        assert_eq!(late.take_due(5, &mut Context::from_waker(waker), |_| {}), 5);
    }

    #[test]
    fn the_schedule_ends_before_the_end_and_sets_no_timer_past_it() {
        let origin = Instant::now() - Duration::from_millis(500);
        // 10 lines/s over 2 connections for 300 ms: lines at 0, 100 and 200 ms, the first and
        // the third on connection 0; its next, at 400 ms, is past the end.
        let mut pace = Pace::new(0, 2, 10, origin, Some(origin + Duration::from_millis(300)));
        let waker = std::task::Waker::noop();
        assert_eq!(pace.take_due(100, &mut Context::from_waker(waker), |_| {}), 2);
        assert!(pace.over());
        assert_eq!(pace.armed, None);
    }
}
