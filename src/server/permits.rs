//! The server's connection limit: a count of free places, taken per connection and given back
//! when its session ends.
//!
//! Only the accept loop ever waits for a place, so one [`AtomicWaker`] is all the waiting needs;
//! this keeps the library on crates that async-io and async-net bring anyway.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use atomic_waker::AtomicWaker;
use futures_lite::future;

#[derive(Debug)]
pub(crate) struct Permits {
    available: AtomicUsize,
    freed: AtomicWaker,
}

/// One taken place, given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit(Arc<Permits>);

impl Permits {
    pub(crate) fn new(count: usize) -> Arc<Permits> {
        Arc::new(Permits { available: AtomicUsize::new(count), freed: AtomicWaker::new() })
    }

    /// A place if one is free now.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        self.available
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .ok()
            .map(|_| Permit(self.clone()))
    }

    /// A place, once one is free. Meant for one waiter at a time: a second would take the
    /// first one's wake-up.
    pub(crate) fn acquire(self: &Arc<Self>) -> impl Future<Output = Permit> + '_ {
        future::poll_fn(move |cx| {
            if let Some(permit) = self.try_acquire() {
                return Poll::Ready(permit);
            }
            self.freed.register(cx.waker());
            // A place freed between the first try and the registration woke no one: try again.
            self.try_acquire().map_or(Poll::Pending, Poll::Ready)
        })
    }

    pub(crate) fn available(&self) -> usize {
        self.available.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.available.fetch_add(1, Ordering::AcqRel);
        self.0.freed.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::FutureExt;
    use std::time::Duration;

    #[test]
    fn a_place_comes_back_when_its_permit_is_dropped() {
        let permits = Permits::new(2);
        let first = permits.try_acquire().unwrap();
        let _second = permits.try_acquire().unwrap();
        assert!(permits.try_acquire().is_none());
        assert_eq!(permits.available(), 0);
        drop(first);
        assert_eq!(permits.available(), 1);
        assert!(permits.try_acquire().is_some());
    }

    #[test]
    fn a_waiter_wakes_when_another_thread_frees_a_place() {
        let permits = Permits::new(1);
        let held = permits.try_acquire().unwrap();
        let freer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
        });
        let waited = async_io::block_on(async { Some(permits.acquire().await) }.or(async {
            async_io::Timer::after(Duration::from_secs(5)).await;
            None
        }));
        assert!(waited.is_some(), "no wake-up within 5 s of the place being freed");
        freer.join().unwrap();
        assert_eq!(permits.available(), 0);
    }
}
